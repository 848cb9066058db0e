from django.apps import AppConfig

MONEYNESS_TABLES = ("signal_moneyness_greeks", "signal_atm_iv", "signal_atm_iv_cm")


class MoneynessConfig(AppConfig):
    name = "moneyness"
    label = "moneyness"

    def ready(self) -> None:
        from signalsvc.db import partitions

        for table in MONEYNESS_TABLES:
            partitions.register(
                partitions.PartitionedTable(
                    table, granularity="day", retention_setting="MONEYNESS_RETENTION_DAYS"
                )
            )
