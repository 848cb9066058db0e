from django.apps import AppConfig


class TimeframesConfig(AppConfig):
    name = "timeframes"
    label = "timeframes"

    def ready(self) -> None:
        from signalsvc.db import partitions

        # Rollups are derived from the bars, so they are kept exactly as long as the bars.
        partitions.register(
            partitions.PartitionedTable(
                "timeframe_rollup", granularity="month", retention_setting="BARS_RETENTION_DAYS"
            )
        )
