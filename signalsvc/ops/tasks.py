import datetime as dt

from celery import shared_task

from signalsvc.ops.metrics import api_metrics_flush as flush


@shared_task(name="signalsvc.ops.tasks.api_metrics_flush", ignore_result=True)
def api_metrics_flush() -> int:
    return flush(now=dt.datetime.now(dt.UTC))
