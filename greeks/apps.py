from django.apps import AppConfig


class GreeksConfig(AppConfig):
    name = "greeks"
    label = "greeks"

    def ready(self) -> None:
        from signalsvc.db import partitions

        partitions.register(
            partitions.PartitionedTable(
                "greeks_option_1m", granularity="day", retention_setting="GREEKS_RETENTION_DAYS"
            )
        )
