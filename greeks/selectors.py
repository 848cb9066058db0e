from __future__ import annotations

import json

from greeks.services import LATEST_PREFIX, redis_client


def greeks_latest_many(*, keys: list[str]) -> dict[str, dict]:
    """Latest computed values per option key (those that have one)."""
    if not keys:
        return {}
    values = redis_client().mget([LATEST_PREFIX + k for k in keys])
    return {k: json.loads(v) for k, v in zip(keys, values, strict=True) if v is not None}
