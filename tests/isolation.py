"""pytest plugin loaded with ``-p tests.isolation`` before Django reads its settings: each xdist
worker gets its own Redis database and PostgreSQL test database, so parallel workers never see
each other's streams, caches or latest values."""

import os

_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
_index = int(_worker[2:]) if _worker[2:].isdigit() else 0
# TEST_REDIS_DB_BASE (with TEST_DATABASE_NAME) lets two suites run side by side on one machine.
_base = int(os.environ.get("TEST_REDIS_DB_BASE", "10"))
os.environ["REDIS_URL"] = f"redis://127.0.0.1:6379/{_base + _index}"
# Pub/sub is not per database: each worker's channels get their own prefix too.
os.environ["PUBSUB_PREFIX"] = f"test{_base + _index}:"
os.environ.setdefault("API_ANONYMOUS_READ", "true")
os.environ.setdefault("MARKET_CALENDAR", "NSE")
