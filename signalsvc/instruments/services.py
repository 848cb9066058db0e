"""Writes to the instrument registry."""

from __future__ import annotations

from collections.abc import Iterable

from signalsvc.core.keys import InstrumentSpec
from signalsvc.instruments.models import Instrument

_FIELDS = [
    "exchange",
    "symbol",
    "product",
    "expiry",
    "option_type",
    "strike",
    "lot_size",
    "tick_size",
    "active",
]


def instruments_upsert(*, specs: Iterable[InstrumentSpec]) -> int:
    """Insert or update registry rows by key in one statement; returns how many were given."""
    rows = [
        Instrument(key=s.key, **{f: getattr(s, f) for f in _FIELDS})
        for s in {spec.key: spec for spec in specs}.values()
    ]
    if not rows:
        return 0
    Instrument.objects.bulk_create(
        rows,
        batch_size=2000,
        update_conflicts=True,
        unique_fields=["key"],
        update_fields=[*_FIELDS, "updated_at"],
    )
    from signalsvc.instruments import selectors

    selectors.instrument_ids_clear_cache()
    return len(rows)
