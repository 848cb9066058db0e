"""Reads from the instrument registry, including the key -> id map hot paths use."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

from signalsvc.core.keys import OPTIONS, InvalidKey, canonical_key, parse_key
from signalsvc.instruments.models import Instrument


class UnknownInstrument(LookupError):
    """A well-formed key that is not in the registry (a 404)."""

    def __init__(self, key: str):
        super().__init__(f"unknown instrument '{key}'")
        self.key = key


def instrument_get(*, key: str) -> Instrument:
    """The registry row for ``key``; raises InvalidKey (400) or UnknownInstrument (404)."""
    canonical = str(parse_key(key))
    try:
        return Instrument.objects.get(key=canonical)
    except Instrument.DoesNotExist:
        pass
    # Not registered here: the instrument service (when configured) may know it.
    from signalsvc.instruments.remote import remote_instrument
    from signalsvc.instruments.services import instruments_upsert

    spec = remote_instrument(canonical)
    if spec is None or spec.key != canonical:
        raise UnknownInstrument(key)
    instruments_upsert(specs=[spec])
    return Instrument.objects.get(key=canonical)


def option_expiries(*, underlying_id: int, since: dt.date) -> list[dt.date]:
    """Expiry dates on or after ``since`` of the options listed on an underlying (same exchange
    and symbol as the underlying's row), oldest first."""
    underlying = Instrument.objects.filter(id=underlying_id).values("exchange", "symbol").first()
    if underlying is None:
        return []
    return list(
        Instrument.objects.filter(**underlying, product=OPTIONS, expiry__gte=since)
        .values_list("expiry", flat=True)
        .distinct()
        .order_by("expiry")
    )


# key -> (id, product), cached in-process: neither ever changes for a key.
_refs: dict[str, tuple[int, str]] = {}
_refs_lock = threading.Lock()


def _instrument_refs(keys: set[str]) -> dict[str, tuple[int, str]]:
    missing = [k for k in keys if k not in _refs]
    if missing:
        found = {
            key: (pk, product)
            for key, pk, product in Instrument.objects.filter(key__in=missing).values_list(
                "key", "id", "product"
            )
        }
        with _refs_lock:
            _refs.update(found)
    return {k: _refs[k] for k in keys if k in _refs}


def instrument_ids(*, keys: set[str]) -> dict[str, int]:
    """Map keys to registry ids, caching hits in-process (ids never change for a key).
    Keys that are not registered are absent from the result."""
    return {k: ref[0] for k, ref in _instrument_refs(keys).items()}


def instrument_products(*, keys: set[str]) -> dict[str, str]:
    """Product of each registered key (at most one query, hits cached in-process like the ids);
    unregistered keys are absent."""
    return {k: ref[1] for k, ref in _instrument_refs(keys).items()}


@dataclass(frozen=True)
class InstrumentRef:
    id: int
    key: str  # canonical
    product: str


def instrument_ref(key: str) -> InstrumentRef:
    """The registry entry of ``key``: InvalidKey (400) when malformed, UnknownInstrument (404) when
    unknown. Known keys come from the in-process cache (a key's id and product never change), so a
    hot path makes no query; an unknown one may be asked of the instrument service."""
    canonical = canonical_key(key)
    found = _instrument_refs({canonical}).get(canonical)
    if found is not None:
        return InstrumentRef(found[0], canonical, found[1])
    instrument = instrument_get(key=key)
    return InstrumentRef(instrument.id, instrument.key, instrument.product)


def underlyings_with_options() -> list[str]:
    """Keys of the registered underlyings (spot/index) with at least one active option."""
    from signalsvc.core.keys import OPTIONS, SPOT

    pairs = (
        Instrument.objects.filter(product=OPTIONS, active=True).values_list("exchange", "symbol").distinct()
    )
    keys = [f"{exchange}@{symbol}@{SPOT}" for exchange, symbol in pairs]
    return list(Instrument.objects.filter(key__in=keys).values_list("key", flat=True))


def instrument_ids_clear_cache() -> None:
    with _refs_lock:
        _refs.clear()


__all__ = [
    "InvalidKey",
    "UnknownInstrument",
    "instrument_get",
    "instrument_ids",
    "instrument_products",
    "instrument_ref",
    "option_expiries",
]
