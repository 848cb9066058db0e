"""JSON rendering of bar columns: the same text as Python's json module, byte for byte."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from timeframes.render import bar_items, iso_utc, json_numbers


def _python_json(value: float) -> str:
    return json.dumps(value) if math.isfinite(value) else "null"


@given(hnp.arrays(np.float64, st.integers(0, 60), elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_numbers_are_formatted_as_python_formats_them(values):
    assert json_numbers(values) == [_python_json(v) for v in values.tolist()]


def test_the_exponent_range_where_fast_formatters_differ_from_python():
    values = np.array([1e-5, 1e-7, 2.5e-10, 1.234e-4, 1e-4, 5e-324, -3e-6, 1e16, 1e22, -0.0, 1200.0])
    assert json_numbers(values) == [_python_json(v) for v in values.tolist()]
    assert json_numbers(np.array([3, 7], dtype=np.int64)) == ["3", "7"]


def test_bar_items_parse_back_to_the_columns():
    start = np.array(["2025-03-12T03:45", "2025-03-12T03:52"], dtype="datetime64[us]")
    bars = {
        "start": start,
        "end": start + np.timedelta64(7, "m"),
        "open": np.array([22000.5, 1e-5]),
        "high": np.array([22010.25, 2.0]),
        "low": np.array([21990.0, 0.5]),
        "close": np.array([22001.0, 1.5]),
        "volume": np.array([1200.0, 0.0]),
        "oi": np.array([np.nan, 35.0]),
        "count": np.array([7, 3]),
    }

    items, offsets = bar_items(bars)

    parsed = json.loads(b"[" + items[:-1] + b"]")
    assert (
        [p["timestamp"] for p in parsed]
        == iso_utc(start)
        == [
            "2025-03-12T03:45:00+00:00",
            "2025-03-12T03:52:00+00:00",
        ]
    )
    assert parsed[1]["value"] == {
        "open": 1e-5,
        "high": 2.0,
        "low": 0.5,
        "close": 1.5,
        "volume": 0.0,
        "oi": 35.0,
    }
    assert parsed[0]["value"]["oi"] is None
    assert parsed[0]["metadata"] == {"bucket_end": "2025-03-12T03:52:00+00:00", "bars": 7}
    assert offsets[0] == 0 and offsets[-1] == len(items)
    for i in range(2):  # each item is its slice, comma included
        assert items[offsets[i + 1] - 1 : offsets[i + 1]] == b","
        assert json.loads(items[offsets[i] : offsets[i + 1] - 1]) == parsed[i]
