"""Chain computations on the farm: one task per underlying, on the shard queue of its underlying."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from signalsvc.celery import greeks_queue

CHAIN_TASK = "greeks.tasks.chain_compute"


@shared_task(
    name=CHAIN_TASK,
    acks_late=True,  # the write is idempotent and timestamp-guarded, so redelivery is harmless
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=True,
    max_retries=3,
)
def chain_compute(underlying_key: str) -> dict:
    from greeks.services import chain_compute as compute

    result = compute(underlying_key=underlying_key)
    return {"underlying": result.underlying_key, "options": result.options, "solved": result.solved}


def chain_compute_enqueue(underlying_key: str, *, expires: float = 55.0) -> None:
    """Route to the underlying's shard; a computation not started within a minute is stale."""
    chain_compute.apply_async(
        args=[underlying_key], queue=greeks_queue(underlying_key, settings.SHARD_COUNT), expires=expires
    )


@shared_task(name="greeks.tasks.schedule_chains", ignore_result=True)
def schedule_chains() -> int:
    """Beat, every minute: one chain task per active underlying."""
    from greeks.services import active_underlyings

    keys = active_underlyings()
    for key in keys:
        chain_compute_enqueue(key)
    return len(keys)
