"""Independent reference aggregation for the database tests: pandas, anchored per session.

Written without timeframes.core on purpose: each session's rows are resampled with
``origin=session open`` (left-closed, left-labelled), empty bins dropped, and the bucket end capped
at the session close; ``1d`` is one bucket per session.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd


def reference_bars(rows: list[tuple], sessions, minutes: int | None) -> pd.DataFrame:
    """``rows``: (ts aware, open, high, low, close, volume, oi|None). Returns one row per non-empty
    bucket: start, end (UTC Timestamps), open, high, low, close, volume, oi (NaN if none), count."""
    frame = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume", "oi"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["oi"] = frame["oi"].astype(float)
    frame = frame.sort_values("ts")
    out = []
    for s in sessions:
        open_, close = pd.Timestamp(s.open), pd.Timestamp(s.close)
        part = frame[(frame["ts"] >= open_) & (frame["ts"] < close)].set_index("ts")
        if part.empty:
            continue
        if minutes is None:
            groups = [(open_, part)]
        else:
            resampled = part.resample(f"{minutes}min", origin=open_, closed="left", label="left")
            groups = [(start, g) for start, g in resampled if len(g)]
        for start, g in groups:
            end = close if minutes is None else min(start + pd.Timedelta(minutes=minutes), close)
            oi = g["oi"].dropna()
            out.append(
                {
                    "start": start,
                    "end": end,
                    "open": g["open"].iloc[0],
                    "high": g["high"].max(),
                    "low": g["low"].min(),
                    "close": g["close"].iloc[-1],
                    "volume": g["volume"].sum(),
                    "oi": oi.iloc[-1] if len(oi) else np.nan,
                    "count": len(g),
                }
            )
    return pd.DataFrame(
        out, columns=["start", "end", "open", "high", "low", "close", "volume", "oi", "count"]
    )


def as_utc_datetimes(values: np.ndarray) -> list[dt.datetime]:
    return [v.replace(tzinfo=dt.UTC) for v in values.astype("datetime64[us]").tolist()]
