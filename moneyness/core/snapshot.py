"""One expiry's priced chain as columns, and its compact binary form (the latest chain in Redis).

The chain task keeps the latest chain of every (underlying, expiry) as one value, so that any
level, delta or expiry can be answered in realtime from one read with numpy, without
recomputing the chain and without one key per option (SPEC §7, docs/moneyness.md).

Layout of the encoded value: ``MAGIC``, a 4-byte little-endian header length, a JSON header (the
scalars, and the column names and dtypes in order), then each column's raw little-endian bytes.
Decoding is ``numpy.frombuffer`` on slices: no per-option Python objects. NaN means "no value"
(no IV, no Greeks, unknown OI) and is kept as NaN.

Units: strikes, prices and the forward in index points; ``t`` (time to expiry) in years ACT/365;
IV a decimal; Greeks as the engine returns them (theta and charm per calendar day, vega and vanna
per vol point, vomma per vol point², rho per 1 %); ``oi``: open interest of the latest tick, in
units (contracts × lot size).
"""

from __future__ import annotations

import datetime as dt
import json
import struct
from dataclasses import dataclass, field

import numpy as np

MAGIC = b"SCC1"
FLOAT_COLUMNS = (
    "strike", "iv", "delta", "gamma", "theta", "vega", "rho", "vanna", "vomma", "charm",
    "option_price", "oi",
)  # fmt: skip
INT_COLUMNS = ("instrument_id",)
BOOL_COLUMNS = ("is_call",)


class SnapshotError(ValueError):
    """The bytes are not an encoded chain snapshot."""


@dataclass(frozen=True)
class ChainSnapshot:
    """The options of one (underlying, expiry) priced at one instant, sorted by (strike, type).

    ``minute``: the minute the rows are stored under (UTC); ``source_ts``: the spot tick's time
    the chain was priced at; ``t``: years from ``source_ts`` to expiry; ``columns``: the arrays
    named in ``FLOAT_COLUMNS``, ``INT_COLUMNS`` and ``BOOL_COLUMNS``, all of one length."""

    underlying_key: str
    expiry: dt.date
    minute: dt.datetime
    source_ts: dt.datetime
    spot: float
    forward: float
    forward_source: str
    t: float
    model: str
    columns: dict[str, np.ndarray] = field(repr=False)

    def __len__(self) -> int:
        return len(self.columns["strike"])

    @property
    def strikes(self) -> np.ndarray:
        return self.columns["strike"]

    @property
    def is_call(self) -> np.ndarray:
        return self.columns["is_call"]

    def greeks(self) -> dict[str, np.ndarray]:
        """The per-option values the moneyness analytics take (``moneyness.core.analytics.GREEKS``)."""
        return {name: self.columns[name] for name in ("delta", "gamma", "theta", "vega", "rho", "iv")}


def _dtype(name: str) -> str:
    if name in INT_COLUMNS:
        return "<i8"
    if name in BOOL_COLUMNS:
        return "|b1"
    return "<f8"


def encode(snapshot: ChainSnapshot) -> bytes:
    names = (*FLOAT_COLUMNS, *INT_COLUMNS, *BOOL_COLUMNS)
    header = {
        "underlying_key": snapshot.underlying_key,
        "expiry": snapshot.expiry.isoformat(),
        "minute": snapshot.minute.isoformat(),
        "source_ts": snapshot.source_ts.isoformat(),
        "spot": snapshot.spot,
        "forward": snapshot.forward,
        "forward_source": snapshot.forward_source,
        "t": snapshot.t,
        "model": snapshot.model,
        "n": len(snapshot),
        "columns": [[name, _dtype(name)] for name in names],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    body = [np.ascontiguousarray(snapshot.columns[name], dtype=_dtype(name)).tobytes() for name in names]
    return b"".join((MAGIC, struct.pack("<I", len(head)), head, *body))


def decode(data: bytes) -> ChainSnapshot:
    if not isinstance(data, bytes | bytearray | memoryview) or bytes(data[:4]) != MAGIC:
        raise SnapshotError("not an encoded chain snapshot")
    (length,) = struct.unpack_from("<I", data, 4)
    header = json.loads(bytes(data[8 : 8 + length]))
    n = header["n"]
    offset = 8 + length
    columns = {}
    for name, dtype in header["columns"]:
        size = np.dtype(dtype).itemsize * n
        columns[name] = np.frombuffer(data, dtype=dtype, count=n, offset=offset)
        offset += size
    if offset != len(data):
        raise SnapshotError(f"chain snapshot has {len(data) - offset} trailing bytes")
    return ChainSnapshot(
        underlying_key=header["underlying_key"],
        expiry=dt.date.fromisoformat(header["expiry"]),
        minute=dt.datetime.fromisoformat(header["minute"]),
        source_ts=dt.datetime.fromisoformat(header["source_ts"]),
        spot=header["spot"],
        forward=header["forward"],
        forward_source=header["forward_source"],
        t=header["t"],
        model=header["model"],
        columns=columns,
    )
