from __future__ import annotations

from greeks.services import chain_latest_key
from signalsvc.core.keys import OPTIONS, InvalidKey, canonical_key, parse_key
from signalsvc.instruments.selectors import UnknownInstrument, instrument_products, instrument_ref
from signalsvc.redis_clients import redis_client as shared_redis_client

NO_DATA_HINT = "they are computed every minute from live ticks"


def latest_reads(keys: list[str]) -> list[tuple[str, list[str]]]:
    """How to read the latest values of canonical option keys: (chain hash, its fields) per
    underlying, in first-seen order; the values come back in that order, flattened."""
    fields: dict[str, list[str]] = {}
    for key in keys:
        fields.setdefault(chain_latest_key(parse_key(key).underlying_key), []).append(key)
    return list(fields.items())


def latest_reorder(keys: list[str], reads: list[tuple[str, list[str]]], values: list[list]) -> list:
    """The values read by ``latest_reads`` (one HMGET per chain) in the order of ``keys``."""
    found = {
        field: value
        for (_, fields), got in zip(reads, values, strict=True)
        for field, value in zip(fields, got, strict=True)
    }
    return [found[k] for k in keys]


def greeks_latest_raw_many(*, keys: list[str]) -> list[bytes | None]:
    """The latest values of many canonical option keys as stored (JSON bytes or None): one HMGET
    per underlying, all in one round trip."""
    if not keys:
        return []
    reads = latest_reads(keys)
    pipe = shared_redis_client(decode_responses=False).pipeline(transaction=False)
    for chain, fields in reads:
        pipe.hmget(chain, fields)
    return latest_reorder(keys, reads, pipe.execute())


def greeks_latest_raw(*, key: str) -> bytes | None:
    """The latest value of one canonical option key as stored: its JSON bytes (one HGET)."""
    return shared_redis_client(decode_responses=False).hget(
        chain_latest_key(parse_key(key).underlying_key), key
    )


def greeks_batch(*, keys: list[str], not_an_option_hint: str) -> tuple[dict[str, bytes], dict[str, dict]]:
    """Latest values of many option keys with one instrument query and one Redis read for the whole
    batch (keys the registry does not hold may still be asked of the instrument service, one by
    one). Returns (results, errors), both keyed by the key as given; each result is the stored
    JSON, as stored (no parse: the response splices it)."""
    results: dict[str, bytes] = {}
    errors: dict[str, dict] = {}
    canonical: dict[str, str] = {}
    for key in dict.fromkeys(keys):
        try:
            canonical[key] = canonical_key(key)
        except InvalidKey as exc:
            errors[key] = {"code": "invalid_instrument_key", "message": str(exc)}
    products = instrument_products(keys=set(canonical.values()))
    for key, text in canonical.items():
        if text not in products:
            try:
                products[text] = instrument_ref(key).product
            except UnknownInstrument as exc:
                errors[key] = {"code": "unknown_instrument", "message": str(exc)}
    options = []
    for key, text in canonical.items():
        if key in errors:
            continue
        if products[text] != OPTIONS:
            errors[key] = {
                "code": "not_an_option",
                "message": f"{key} is not an option key; {not_an_option_hint}",
            }
        else:
            options.append(key)
    latest = greeks_latest_raw_many(keys=[canonical[k] for k in options])
    for key, value in zip(options, latest, strict=True):
        if value is None:
            errors[key] = {"code": "no_data", "message": f"no greeks computed yet for {key}; " + NO_DATA_HINT}
        else:
            results[key] = value
    return results, errors
