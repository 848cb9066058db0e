"""Floats on their way to SQL and JSON (numpy only): a value that is not finite is "no value",
NULL in PostgreSQL and null in JSON, never NaN or a made-up number."""

from __future__ import annotations

import math

import numpy as np


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, or None when it is None, NaN or infinite."""
    return None if value is None or not math.isfinite(value) else float(value)


def finite_or_none_list(values: np.ndarray) -> list:
    """The array as Python floats, with None where a value is not finite (column-wise: no Python
    work per value beyond the list)."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    return values.tolist() if finite.all() else np.where(finite, values, None).tolist()
