"""The engine tests are pure (numpy/scipy only): no database, no Redis, no Django settings.

``tests/conftest.py`` has an autouse fixture that flushes Redis before every test; it is
overridden here so these tests neither need nor touch Redis. Run them alone with
``pytest tests/greeks/engine -p no:django --confcutdir=tests/greeks/engine``.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_redis_and_caches() -> None:
    """No-op override: nothing shared to clean for the pure engine."""
