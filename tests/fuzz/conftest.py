"""Fixtures of the REST fuzzing: the seeded market inside one transaction, and the record of every
request made and its answer (the raw material of docs/reliability.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis as redis_lib
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import DatabaseError, close_old_connections, connection, transaction

from tests.fuzz.market import market_seed

# Written by every run of the fuzz tests; scripts/reliability_table.py turns it into the REST
# section of docs/reliability.md. .run/ is not versioned.
RECORD_PATH = Path(settings.BASE_DIR) / ".run" / "reliability" / "rest.json"


def forget_process_state() -> None:
    """Empty Redis and every in-process cache, so that nothing of the module's world outlives it."""
    from moneyness import selectors as moneyness_selectors
    from moneyness import services as moneyness_services
    from signalsvc.accounts.selectors import api_key_cache_clear
    from signalsvc.db.partitions import partitions_forget_cache
    from signalsvc.farm.backpressure import backpressure_forget
    from signalsvc.instruments.selectors import instrument_ids_clear_cache
    from signalsvc.ops.metrics import api_metrics_buffer_discard
    from timeframes import cache as timeframes_cache
    from timeframes import selectors as timeframes_selectors

    api_metrics_buffer_discard()
    redis_lib.Redis.from_url(settings.REDIS_URL).flushdb()
    instrument_ids_clear_cache()
    api_key_cache_clear()
    partitions_forget_cache()
    backpressure_forget()
    timeframes_selectors.watermarks_forget()
    timeframes_cache.local_ranges.clear()
    moneyness_selectors._cache.clear()
    moneyness_services._fits.clear()


def _redis_snapshot() -> list[tuple[bytes, int, bytes]]:
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    return [(key, client.pttl(key), client.dump(key)) for key in client.scan_iter(count=1000)]


def _redis_restore(snapshot: list[tuple[bytes, int, bytes]]) -> None:
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    pipe = client.pipeline(transaction=False)
    for key, ttl, value in snapshot:
        pipe.restore(key, max(ttl, 0), value, replace=True)
    pipe.execute()


@pytest.fixture(scope="module")
def _seeded(django_db_setup, django_db_blocker):
    """The seeded market (tests/fuzz/market.py) inside a transaction rolled back at the end of the
    module: the raw API keys ``writer`` and ``reader``, and the snapshot of Redis right after.

    Django's WSGI handler closes the database connection after a request made outside autocommit
    (``close_old_connections``), which would end this transaction: like Django's test client, the
    module disconnects it while it runs."""
    with django_db_blocker.unblock():
        assert connection.settings_dict["NAME"].startswith("test_"), "not on a test database"
        forget_process_state()
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            with transaction.atomic():
                keys = market_seed()
                yield keys, _redis_snapshot()
                transaction.set_rollback(True)
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
            forget_process_state()


@pytest.fixture
def market_in_redis(_seeded, _clean_redis_and_caches) -> None:
    """Every test starts with an empty Redis (tests/conftest.py): this puts the seeded market's
    latest values back (about 50 ms), for the tests that read them."""
    _redis_restore(_seeded[1])


@pytest.fixture(scope="module")
def api_keys(_seeded) -> dict[str, str]:
    """The raw API keys ``writer`` and ``reader`` of the seeded market."""
    return _seeded[0]


class Savepoint:
    """One request's writes are kept for the requests after it (as in a running service) unless the
    request left the transaction unusable, which a 5xx reports anyway: then they are rolled back, so
    that one failure does not turn every later request into a failure too."""

    def __enter__(self):
        self.sid = transaction.savepoint()
        return self

    def __exit__(self, *exc):
        try:
            transaction.savepoint_commit(self.sid)
        except DatabaseError:
            transaction.savepoint_rollback(self.sid)
            connection.needs_rollback = False
        return False


@pytest.fixture(scope="module")
def rest_record():
    """Every fuzzed request and its answer, as a list of dicts, written to RECORD_PATH at the end
    of the module."""
    entries: list[dict] = []
    yield entries
    RECORD_PATH.parent.mkdir(parents=True, exist_ok=True)
    tmp = RECORD_PATH.with_suffix(".tmp")
    tmp.write_text(json.dumps({"entries": entries}, indent=0, ensure_ascii=True))
    tmp.replace(RECORD_PATH)
