"""Acceptance: SIGKILL the ingest process while ticks are being published, restart it, and the
bars in PostgreSQL are exactly what the stream's contents imply: nothing lost, nothing doubled."""

import datetime as dt
import signal
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings

from tests.conftest import subprocess_env
from tests.signalsvc.marketdata.streamdata import expected_bars, publish_ticks, stored_bars

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

KEYS = [f"NSE@SYM{i}@equity_spot" for i in range(20)]


def start_ingest(name: str | None, claim_idle_ms: int) -> subprocess.Popen:
    """An ingest process; ``name`` None: the default consumer name, as the Procfile starts it."""
    named = ["--name", name] if name else []
    return subprocess.Popen(
        [sys.executable, "manage.py", "ingest_market_data", *named, "--batch", "50"],
        env=subprocess_env(MARKET_DATA_CLAIM_IDLE_MS=str(claim_idle_ms)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def group_state(redis_client) -> dict:
    groups = redis_client.xinfo_groups(settings.MARKET_DATA_STREAM)
    return next((g for g in groups if g["name"] == settings.MARKET_DATA_GROUP), {})


def wait_until(what: str, check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout}s")


@pytest.mark.parametrize(
    ("first_name", "restart_name", "claim_idle_ms"),
    [
        ("ingest-a", "ingest-a", 500),
        ("ingest-a", "ingest-b", 500),
        # A new name started at once (a pod rescheduled under a new host name): the dead one's entries
        # are not yet claimable, and are processed before anything newer all the same.
        ("ingest-a", "ingest-b", 5_000),
        # The default name survives a restart: what the dead process left pending is re-read first,
        # with no claim (none could happen within the test at the default idle limit).
        (None, None, 30_000),
    ],
    ids=["same-consumer", "new-consumer-claims", "new-consumer-waits", "default-name-resumes"],
)
def test_sigkill_during_publishing_loses_and_duplicates_nothing(
    redis_client, make_instruments, first_name, restart_name, claim_idle_ms
):
    make_instruments(*KEYS)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    stop = threading.Event()

    def publisher():
        n = 0
        while not stop.is_set():
            publish_ticks(redis_client, KEYS, start=start + dt.timedelta(seconds=n), count=100, seed=n)
            n += 70
            time.sleep(0.02)

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    first = start_ingest(first_name, claim_idle_ms=claim_idle_ms)
    try:
        # Kill it in the middle of its work, not before it has started.
        wait_until("first batches", lambda: (group_state(redis_client).get("entries-read") or 0) > 1000)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        time.sleep(1)
        second = start_ingest(restart_name, claim_idle_ms=claim_idle_ms)
        time.sleep(2)
        stop.set()
        thread.join(10)
        total = redis_client.xlen(settings.MARKET_DATA_STREAM)
        if second.poll() is not None:
            raise AssertionError(second.stderr.read().decode()[-3000:])
        wait_until(
            "stream consumed",
            lambda: (
                group_state(redis_client).get("entries-read") == total
                and group_state(redis_client)["pending"] == 0
            ),
        )
    finally:
        stop.set()
        for process in (first, locals().get("second")):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(15)
    assert second.returncode == 0, second.stderr.read().decode()[-2000:]
    assert total > 1000
    expected = expected_bars(redis_client)
    assert stored_bars() == expected
