"""Pure-core tests: no database, no Redis."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_redis_and_caches():
    """Override the suite-wide Redis/cache reset: these tests touch neither."""
    yield
