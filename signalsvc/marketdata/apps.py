from django.apps import AppConfig


class MarketdataConfig(AppConfig):
    name = "signalsvc.marketdata"
    label = "marketdata"

    def ready(self) -> None:
        from signalsvc.db import partitions

        partitions.register(
            partitions.PartitionedTable(
                "market_bar_1m", granularity="month", retention_setting="BARS_RETENTION_DAYS"
            )
        )
