"""Instrument-master CSV: one instrument per row.

Columns (header row required): ``key`` (required, the SPEC §4 grammar), ``lot_size`` (integer,
default 1), ``tick_size`` (decimal, default 0.05), ``active`` (true/false/1/0, default true).
Exchange, symbol, product, expiry, option type and strike come from the key; if the file also has
those columns they must agree with the key.
"""

from __future__ import annotations

import csv
from decimal import Decimal, InvalidOperation
from typing import TextIO

from signalsvc.core.keys import InstrumentSpec, InvalidKey

COLUMNS = ("key", "lot_size", "tick_size", "active")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def read_instruments_csv(handle: TextIO) -> tuple[list[InstrumentSpec], list[str]]:
    """Parse every row; returns (specs, errors). Errors name the line."""
    reader = csv.DictReader(handle)
    if reader.fieldnames is None or "key" not in reader.fieldnames:
        return [], [f"header must include 'key' (columns: {', '.join(COLUMNS)})"]
    specs, errors = [], []
    for line, row in enumerate(reader, start=2):
        try:
            lot = int(row.get("lot_size") or 1)
            tick = Decimal(row.get("tick_size") or "0.05")
            active_text = (row.get("active") or "true").strip().lower()
            if active_text not in _TRUE | _FALSE:
                raise ValueError(f"active must be true/false, got '{active_text}'")
            if lot < 1 or not tick.is_finite() or tick <= 0:
                raise ValueError("lot_size must be >= 1 and tick_size > 0")
            spec = InstrumentSpec.from_key(
                (row.get("key") or "").strip(), lot_size=lot, tick_size=tick, active=active_text in _TRUE
            )
            for column in ("exchange", "symbol", "product", "option_type"):
                given = (row.get(column) or "").strip()
                if given and given != getattr(spec, column):
                    raise ValueError(f"{column} '{given}' disagrees with the key")
        except (InvalidKey, ValueError, InvalidOperation) as exc:
            errors.append(f"line {line}: {exc}")
            continue
        specs.append(spec)
    return specs, errors
