from __future__ import annotations

import datetime as dt

from signalsvc.accounts.models import ApiKey
from signalsvc.accounts.services import digest_of


def api_key_for(*, raw_key: str) -> ApiKey | None:
    """The active, unexpired key whose secret is ``raw_key``, or None."""
    key = (
        ApiKey.objects.select_related("subscription__tier")
        .filter(digest=digest_of(raw_key), active=True, subscription__active=True)
        .first()
    )
    if key is None or (key.expires_at is not None and key.expires_at <= dt.datetime.now(dt.UTC)):
        return None
    return key
