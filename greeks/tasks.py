"""Chain computations on the farm: one task per underlying, on the shard queue of its underlying."""

from __future__ import annotations

from celery import shared_task

from signalsvc.farm.live import CHAIN_TASK, ChainRun, chain_request


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
    """One computation of the chain, on its shard's owner (the router sends it there)."""
    from greeks.services import chain_compute as compute
    from greeks.services import redis_client

    with ChainRun(redis_client(), underlying_key) as run:
        result = compute(underlying_key=underlying_key)
        run.timings = result.timings
    return {"underlying": result.underlying_key, "options": result.options, "solved": result.solved}


@shared_task(name="greeks.tasks.schedule_chains", ignore_result=True)
def schedule_chains() -> int:
    """Beat, every minute: every active chain is computed at least once a minute, ticks or not
    (coalesced with the live cadence's requests: one queued task per underlying at most).
    Returns how many were queued."""
    from greeks.services import active_underlyings, redis_client

    client = redis_client()
    return sum(chain_request(client, key, expires=55.0) for key in active_underlyings())
