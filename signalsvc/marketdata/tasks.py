import datetime as dt

from celery import shared_task
from django.conf import settings

from signalsvc.db import partitions


def run_partitions_upkeep(*, now: dt.datetime) -> dict:
    retention = {spec.name: getattr(settings, spec.retention_setting) for spec in partitions.registered()}
    return partitions.partitions_upkeep(
        now=now, ahead_days=settings.PARTITIONS_AHEAD_DAYS, retention_days=retention
    )


@shared_task(name="signalsvc.marketdata.tasks.partitions_upkeep", acks_late=True, ignore_result=True)
def partitions_upkeep() -> int:
    """Idempotent: safe to run twice or late."""
    report = run_partitions_upkeep(now=dt.datetime.now(dt.UTC))
    return sum(len(d) for d in report.values())
