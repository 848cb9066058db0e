"""Indicators: equal to TA-Lib's own output on the same bars, exact from the first returned value
after the documented warm-up, session VWAP, supertrend, parameter validation."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st
from talib import abstract

from signalsvc.core.calendar import get_calendar
from timeframes.core import indicators as ind
from timeframes.core.buckets import session_buckets
from timeframes.core.grammar import Timeframe, parse_timeframe
from timeframes.core.indicators import InvalidIndicator

TOL = 1e-9


def random_bars(seed: int, n: int = 4000, level: float = 20_000.0) -> dict[str, np.ndarray]:
    """A geometric random walk with consistent OHLC and random volume."""
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    spread = np.abs(rng.normal(0, 0.0015, n)) * close
    high = close + spread * rng.random(n)
    low = close - spread * rng.random(n)
    open_ = low + (high - low) * rng.random(n)
    return {
        "open": open_,
        "high": np.maximum.reduce([high, open_, close]),
        "low": np.minimum.reduce([low, open_, close]),
        "close": close,
        "volume": rng.integers(100, 100_000, n).astype(float),
    }


def assert_same(actual: np.ndarray, expected: np.ndarray, tol: float = TOL, what: str = "") -> None:
    """Equal NaN/inf pattern; |a - b| <= tol x max(1, scale of the finite part of the series)."""
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    assert actual.shape == expected.shape, what
    np.testing.assert_array_equal(
        np.isfinite(actual), np.isfinite(expected), err_msg=f"non-finite pattern {what}"
    )
    np.testing.assert_array_equal(
        actual[~np.isfinite(actual)], expected[~np.isfinite(expected)], err_msg=what
    )
    finite = np.isfinite(expected)
    if finite.any():
        scale = max(1.0, float(np.max(np.abs(expected[finite]))))
        worst = float(np.max(np.abs(actual[finite] - expected[finite])))
        assert worst <= tol * scale, f"{what}: max diff {worst:.3e} > {tol:.0e} x scale {scale:.3e}"


def talib_abstract(name: str, params: dict, bars: dict[str, np.ndarray]) -> list[np.ndarray]:
    """TA-Lib's own output through its abstract API (which maps inputs by name itself)."""
    spec = ind.get_spec(name)
    fn = abstract.Function(spec.talib_name)
    fn.set_parameters({(p.talib_name or p.name): params[p.name] for p in spec.parameters})
    out = fn(bars)
    return [np.asarray(o) for o in (out if isinstance(out, list) else [out])]


BARS = random_bars(1)
TALIB_NAMES = [s for s in ind.indicator_names() if ind.get_spec(s).source == "ta-lib"]
ANCHORED = {"obv", "ad", "wad", "pvt", "nvi", "pvi", "cumsum", "vwap"}


# -- registry ----------------------------------------------------------------------------------


def test_required_indicators_are_present():
    names = set(ind.indicator_names())
    required = {
        "sma",
        "ema",
        "wma",
        "rsi",
        "macd",
        "bbands",
        "atr",
        "adx",
        "cci",
        "mfi",
        "obv",
        "stoch",
        "willr",
        "roc",
    }
    assert required | {"vwap", "supertrend"} <= names


def test_every_talib_function_is_exposed_except_the_documented_ones():
    exposed = {s.upper() for s in TALIB_NAMES}
    assert set(talib.get_functions()) - exposed == {
        "MAVP",
        "MAXINDEX",
        "MININDEX",
        "MINMAXINDEX",
        "VWAP",
        "SUPERTREND",
    }
    assert all(name == name.lower() for name in ind.indicator_names())


def test_list_indicators_describes_parameters_inputs_and_outputs():
    listing = {item["name"]: item for item in ind.list_indicators()}
    assert len(listing) == len(ind.indicator_names())
    rsi = listing["rsi"]
    assert rsi["group"] == "Momentum Indicators"
    assert rsi["description"] == "Relative Strength Index"
    assert rsi["inputs"] == ["close"]
    assert rsi["outputs"] == ["rsi"]
    assert rsi["parameters"] == [
        {
            "name": "period",
            "type": "int",
            "default": 14,
            "min": 2,
            "max": 10000,
            "description": "Time period",
            "alias_of": "timeperiod",
        }
    ]
    assert rsi["memory"] == "decaying"
    assert rsi["lookback"] == 14
    assert rsi["warmup_bars"] == 14 + 40 * 14
    assert listing["macd"]["outputs"] == ["macd", "macdsignal", "macdhist"]
    assert listing["bbands"]["parameters"][3]["name"] == "matype"
    assert listing["bbands"]["parameters"][3]["choices"]["1"] == "Exponential Moving Average"
    assert listing["mfi"]["inputs"] == ["high", "low", "close", "volume"]
    assert listing["sma"]["memory"] == "finite"
    assert listing["sma"]["warmup_bars"] == 29
    assert listing["vwap"]["session_anchored"] is True
    assert listing["obv"]["memory"] == "anchored"
    assert listing["supertrend"]["outputs"] == ["supertrend", "direction"]
    assert [p["name"] for p in listing["supertrend"]["parameters"]] == ["period", "multiplier"]


# -- equal to TA-Lib ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "direct"),
    [
        ("sma", {"period": 20}, lambda b: talib.SMA(b["close"], timeperiod=20)),
        ("ema", {"period": 20}, lambda b: talib.EMA(b["close"], timeperiod=20)),
        ("wma", {"period": 9}, lambda b: talib.WMA(b["close"], timeperiod=9)),
        ("rsi", {}, lambda b: talib.RSI(b["close"], timeperiod=14)),
        ("rsi", {"period": 7}, lambda b: talib.RSI(b["close"], timeperiod=7)),
        ("macd", {}, lambda b: talib.MACD(b["close"], fastperiod=12, slowperiod=26, signalperiod=9)),
        (
            "bbands",
            {"period": 20, "nbdevup": 2, "nbdevdn": 2},
            lambda b: talib.BBANDS(b["close"], 20, 2.0, 2.0, 0),
        ),
        ("bbands", {"period": 10, "matype": 1}, lambda b: talib.BBANDS(b["close"], 10, 2.0, 2.0, 1)),
        ("atr", {"period": 14}, lambda b: talib.ATR(b["high"], b["low"], b["close"], timeperiod=14)),
        ("adx", {"period": 14}, lambda b: talib.ADX(b["high"], b["low"], b["close"], timeperiod=14)),
        ("cci", {"period": 20}, lambda b: talib.CCI(b["high"], b["low"], b["close"], timeperiod=20)),
        (
            "mfi",
            {"period": 14},
            lambda b: talib.MFI(b["high"], b["low"], b["close"], b["volume"], timeperiod=14),
        ),
        ("stoch", {}, lambda b: talib.STOCH(b["high"], b["low"], b["close"])),
        ("willr", {"period": 14}, lambda b: talib.WILLR(b["high"], b["low"], b["close"], timeperiod=14)),
        ("roc", {"period": 10}, lambda b: talib.ROC(b["close"], timeperiod=10)),
        ("obv", {}, lambda b: talib.OBV(b["close"], b["volume"])),
        ("cdlengulfing", {}, lambda b: talib.CDLENGULFING(b["open"], b["high"], b["low"], b["close"])),
    ],
)
def test_named_indicators_equal_talib_direct_calls(name, params, direct):
    ours = ind.compute(name, params, BARS, session_ids=np.zeros(len(BARS["close"])))
    theirs = direct(BARS)
    theirs = list(theirs) if isinstance(theirs, tuple) else [theirs]
    spec = ind.get_spec(name)
    assert list(ours) == list(spec.outputs)
    nan_bars = ind.warmup(name, params).nan_bars
    for out_name, expected in zip(spec.outputs, theirs, strict=True):
        expected = np.asarray(expected, dtype=float)
        if np.asarray(theirs[0]).dtype.kind in "iu":
            expected[:nan_bars] = np.nan  # integer outputs: the lookback is "no value", not 0
        assert_same(ours[out_name], expected, tol=0.0, what=f"{name}.{out_name}")


@pytest.mark.parametrize("name", TALIB_NAMES)
def test_every_talib_indicator_equals_talibs_abstract_api(name):
    spec = ind.get_spec(name)
    params = ind.validate(name, {})
    ours = ind.compute(name, params, BARS, session_ids=np.zeros(len(BARS["close"])))
    expected = talib_abstract(name, params, BARS)
    nan_bars = ind.warmup(name, params).nan_bars
    assert len(ours) == len(expected) == len(spec.outputs)
    for out_name, exp in zip(spec.outputs, expected, strict=True):
        is_integer = exp.dtype.kind in "iu"
        exp = exp.astype(float)
        if is_integer:
            exp[:nan_bars] = np.nan  # integer outputs: the lookback is "no value", not 0
        assert ours[out_name].dtype == np.float64
        assert_same(ours[out_name], exp, tol=0.0, what=f"{name}.{out_name}")


def test_period_aliases_timeperiod():
    by_alias = ind.compute("sma", {"period": 5}, BARS)["sma"]
    by_talib_name = ind.compute("sma", {"timeperiod": 5}, BARS)["sma"]
    assert_same(by_alias, talib.SMA(BARS["close"], timeperiod=5), tol=0.0)
    assert_same(by_talib_name, by_alias, tol=0.0)
    assert ind.validate("sma", {"timeperiod": 5}) == {"period": 5}


def test_integer_outputs_are_nan_during_the_lookback():
    out = ind.compute("cdldoji", {}, BARS)["cdldoji"]
    lb = ind.warmup("cdldoji").nan_bars
    assert lb > 0
    assert np.isnan(out[:lb]).all()
    assert set(np.unique(out[lb:])) <= {-100.0, 0.0, 100.0}


def test_short_and_empty_inputs():
    short = {k: v[:5] for k, v in BARS.items()}
    assert np.isnan(ind.compute("rsi", {}, short)["rsi"]).all()
    empty = {k: v[:0] for k, v in BARS.items()}
    assert ind.compute("macd", {}, empty)["macd"].shape == (0,)
    assert ind.compute("vwap", {}, empty, session_ids=np.zeros(0))["vwap"].shape == (0,)


def test_missing_bar_field_is_an_error():
    with pytest.raises(ValueError, match=r"mfi needs bar fields .*missing \['volume'\]"):
        ind.compute("mfi", {}, {k: BARS[k] for k in ("high", "low", "close")})


def test_bar_fields_of_different_lengths_are_an_error():
    with pytest.raises(ValueError, match="one length"):
        ind.compute("atr", {}, {"high": BARS["high"], "low": BARS["low"][:-1], "close": BARS["close"]})


def test_anchored_indicators_need_session_ids():
    with pytest.raises(ValueError, match="session-anchored: pass session_ids"):
        ind.compute("vwap", {}, BARS)
    with pytest.raises(ValueError, match="session-anchored"):
        ind.compute("obv", {}, BARS)
    with pytest.raises(ValueError, match="one entry per bar"):
        ind.compute("obv", {}, BARS, session_ids=np.zeros(3))


# -- warm-up -----------------------------------------------------------------------------------


def warmup_property(name: str, params: dict, bars: dict[str, np.ndarray], k: int) -> None:
    """Values from bar k computed on bars[k - warmup:] equal those computed on all of bars."""
    w = ind.warmup(name, params)
    assert not w.anchored
    assert w.bars <= k, f"{name}: warm-up {w.bars} exceeds the test's history {k}"
    full = ind.compute(name, params, bars)
    part = ind.compute(name, params, {f: a[k - w.bars :] for f, a in bars.items()})
    for out in full:
        first = part[out][w.bars]
        assert not math.isnan(first) or math.isnan(full[out][k]), f"{name}.{out}: first value missing"
        assert_same(part[out][w.bars :], full[out][k:], what=f"{name}{params}.{out} memory={w.memory}")


@pytest.mark.parametrize("seed", [11, 12])
@pytest.mark.parametrize("name", [n for n in ind.indicator_names() if n not in ANCHORED])
def test_first_returned_value_is_exact_after_the_warmup(name, seed):
    bars = random_bars(seed, n=3600)
    warmup_property(name, ind.validate(name, {}), bars, k=2400)


def test_finite_memory_needs_exactly_the_lookback():
    """For a finite function even one bar less than the lookback changes the first value."""
    bars = random_bars(3, n=400)
    w = ind.warmup("sma", {"period": 20})
    assert (w.memory, w.bars, w.nan_bars) == ("finite", 19, 19)
    short = ind.compute("sma", {"period": 20}, {f: a[200 - w.bars + 1 :] for f, a in bars.items()})
    assert math.isnan(short["sma"][w.bars - 1])


def test_decaying_memory_is_not_exact_at_the_bare_lookback():
    """Why the settle window exists: with only TA-Lib's lookback, EMA's first value is off."""
    bars = random_bars(4, n=2000)
    lb = ind.warmup("ema", {"period": 20}).nan_bars
    full = ind.compute("ema", {"period": 20}, bars)["ema"]
    bare = ind.compute("ema", {"period": 20}, {f: a[1000 - lb :] for f, a in bars.items()})["ema"]
    assert abs(bare[lb] - full[1000]) > 1e-6
    assert ind.warmup("ema", {"period": 20}).bars == lb + 40 * 20


MATYPE_CASES = [("ma", {"period": 30, "matype": m}) for m in sorted(talib.MA_Type._lookup)] + [
    ("bbands", {"period": 20, "matype": 1}),
    ("stoch", {"slowk_matype": 1, "slowd_matype": 6}),
    ("stochf", {"fastd_matype": 13}),
    ("apo", {"matype": 0}),
    ("ppo", {"matype": 7}),
    ("macdext", {"fastmatype": 1, "slowmatype": 8, "signalmatype": 3}),
    ("kdj", {"slowk_matype": 0, "slowd_matype": 0}),
]


@pytest.mark.parametrize(("name", "params"), MATYPE_CASES)
def test_warmup_follows_the_moving_average_type(name, params):
    bars = random_bars(21, n=3600)
    warmup_property(name, ind.validate(name, params), bars, k=2400)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(
        ["ema", "rsi", "atr", "adx", "dema", "tema", "trix", "cmo", "natr", "mfi", "cci", "willr", "sma"]
    ),
    period=st.integers(2, 40),
    seed=st.integers(0, 2**32 - 1),
    level=st.sampled_from([1.0, 100.0, 25_000.0, 60_000.0]),
)
def test_warmup_property_over_random_periods_and_price_levels(name, period, seed, level):
    bars = random_bars(seed, n=2000, level=level)
    k = ind.warmup(name, {"period": period}).bars + 50
    warmup_property(name, {"period": period}, bars, k=k)


@settings(max_examples=10, deadline=None)
@given(
    fast=st.integers(2, 20),
    extra=st.integers(1, 20),
    signal=st.integers(2, 15),
    seed=st.integers(0, 2**32 - 1),
)
def test_macd_warmup_property(fast, extra, signal, seed):
    params = {"fastperiod": fast, "slowperiod": fast + extra, "signalperiod": signal}
    bars = random_bars(seed, n=2200)
    warmup_property("macd", params, bars, k=ind.warmup("macd", params).bars + 10)


@pytest.mark.parametrize("name", sorted(ANCHORED))
def test_anchored_indicators_are_exact_from_the_anchor(name):
    """Starting at the session open gives the same values as starting sessions earlier."""
    bars = random_bars(5, n=375 * 4)
    ids = np.repeat(np.arange(4), 375)
    full = ind.compute(name, {}, bars, session_ids=ids)
    from_anchor = ind.compute(name, {}, {f: a[750:] for f, a in bars.items()}, session_ids=ids[750:])
    for out in full:
        assert_same(from_anchor[out], full[out][750:], tol=0.0, what=name)
    w = ind.warmup(name)
    assert (w.memory, w.anchored, w.bars) == ("anchored", True, w.nan_bars)


@pytest.mark.parametrize("name", sorted(ANCHORED - {"vwap"}))
def test_anchored_talib_indicators_restart_per_session(name):
    bars = random_bars(6, n=300)
    ids = np.repeat([7, 8, 9], 100)
    ours = ind.compute(name, {}, bars, session_ids=ids)
    for s in range(3):
        part = {f: a[s * 100 : (s + 1) * 100] for f, a in bars.items()}
        expected = talib_abstract(name, {}, part)
        for out, exp in zip(ind.get_spec(name).outputs, expected, strict=True):
            assert_same(ours[out][s * 100 : (s + 1) * 100], exp, tol=0.0, what=name)


# -- vwap --------------------------------------------------------------------------------------


def test_vwap_resets_at_each_session_open():
    bars = random_bars(7, n=375 * 3)
    ids = np.repeat([0, 1, 2], 375)
    ours = ind.compute("vwap", {}, bars, session_ids=ids)["vwap"]
    frame = pd.DataFrame(bars).assign(session=ids)
    frame["pv"] = (frame["high"] + frame["low"] + frame["close"]) / 3 * frame["volume"]
    cum = frame.groupby("session")[["pv", "volume"]].cumsum()
    expected = (cum["pv"] / cum["volume"]).to_numpy()
    assert_same(ours, expected, tol=1e-12)
    typical = (bars["high"] + bars["low"] + bars["close"]) / 3
    assert ours[375] == pytest.approx(typical[375], rel=1e-15)  # the first bar of a session is its own VWAP


def test_vwap_is_no_value_until_volume_trades():
    bars = random_bars(8, n=10)
    bars["volume"][:3] = 0.0
    out = ind.compute("vwap", {}, bars, session_ids=np.zeros(10))["vwap"]
    assert np.isnan(out[:3]).all()
    assert np.isfinite(out[3:]).all()
    bars["volume"][:] = 0.0  # an index: no volume at all
    assert np.isnan(ind.compute("vwap", {}, bars, session_ids=np.zeros(10))["vwap"]).all()


# -- supertrend --------------------------------------------------------------------------------


def reference_supertrend(high, low, close, period, multiplier):
    """Straightforward loop: Wilder ATR by hand, then the textbook band-flip rules."""
    n = len(close)
    tr = [math.nan] * n
    for i in range(1, n):
        tr[i] = max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
    atr = [math.nan] * n
    if n > period:
        atr[period] = sum(tr[1 : period + 1]) / period
        for i in range(period + 1, n):
            atr[i] = (atr[i - 1] * (period - 1) + tr[i]) / period
    value, direction = [math.nan] * n, [math.nan] * n
    final_upper = final_lower = None
    trend = None
    for i in range(n):
        if math.isnan(atr[i]):
            continue
        mid = (high[i] + low[i]) / 2
        basic_upper, basic_lower = mid + multiplier * atr[i], mid - multiplier * atr[i]
        if trend is None:
            final_upper, final_lower, trend = basic_upper, basic_lower, 1
        else:
            if basic_upper < final_upper or close[i - 1] > final_upper:
                final_upper = basic_upper
            if basic_lower > final_lower or close[i - 1] < final_lower:
                final_lower = basic_lower
            if trend == 1 and close[i] < final_lower:
                trend = -1
            elif trend == -1 and close[i] > final_upper:
                trend = 1
        value[i] = final_lower if trend == 1 else final_upper
        direction[i] = trend
    return np.array(value), np.array(direction, dtype=float)


@pytest.mark.parametrize(("period", "multiplier"), [(10, 3.0), (7, 2.0), (20, 1.0), (3, 4.5), (1, 3.0)])
def test_supertrend_equals_a_straightforward_loop(period, multiplier):
    bars = random_bars(9, n=1500)
    ours = ind.compute("supertrend", {"period": period, "multiplier": multiplier}, bars)
    value, direction = reference_supertrend(
        bars["high"].tolist(), bars["low"].tolist(), bars["close"].tolist(), period, multiplier
    )
    assert_same(ours["supertrend"], value, tol=1e-9)
    np.testing.assert_array_equal(ours["direction"], direction)
    assert set(np.unique(direction[~np.isnan(direction)])) == {-1.0, 1.0}


@pytest.mark.parametrize(("period", "multiplier"), [(10, 3.0), (14, 2.5)])
def test_supertrend_equals_talib_0_8_supertrend(period, multiplier):
    bars = random_bars(10, n=2000)
    ours = ind.compute("supertrend", {"period": period, "multiplier": multiplier}, bars)
    value, trend = talib.SUPERTREND(
        bars["high"], bars["low"], bars["close"], timeperiod=period, multiplier=multiplier
    )
    assert_same(ours["supertrend"], value, tol=0.0)
    valid = ~np.isnan(value)
    np.testing.assert_array_equal(ours["direction"][valid], trend[valid].astype(float))


def test_supertrend_warmup():
    w = ind.warmup("supertrend", {"period": 10})
    assert (w.memory, w.nan_bars, w.bars) == ("decaying", 10, 10 + 400)


# -- validation --------------------------------------------------------------------------------


def test_validate_fills_defaults_and_normalises_names():
    assert ind.validate("rsi") == {"period": 14}
    assert ind.validate("macd", {"fastperiod": "8"}) == {"fastperiod": 8, "slowperiod": 26, "signalperiod": 9}
    assert ind.validate("bbands", {"period": 20.0, "nbdevup": "2.5", "nbdevdn": 1}) == {
        "period": 20,
        "nbdevup": 2.5,
        "nbdevdn": 1.0,
        "matype": 0,
    }
    assert ind.validate("supertrend", {"multiplier": 2}) == {"period": 10, "multiplier": 2.0}
    assert ind.validate("vwap", {}) == {}


def test_unknown_indicator_lists_valid_names_and_suggests():
    with pytest.raises(InvalidIndicator) as err:
        ind.validate("rsii", {})
    message = str(err.value)
    assert "unknown indicator 'rsii'" in message
    assert "did you mean rsi" in message
    for name in ("sma", "ema", "macd", "vwap", "supertrend"):
        assert name in message


@pytest.mark.parametrize("name", ["RSI", "", "talib.rsi", "maxindex", "mavp", None, 5])
def test_unknown_or_excluded_names_are_invalid(name):
    with pytest.raises(InvalidIndicator, match="unknown indicator"):
        ind.validate(name, {})


@pytest.mark.parametrize(
    ("name", "params", "pattern"),
    [
        (
            "rsi",
            {"length": 14},
            r"rsi: unknown parameter 'length'; valid parameters: period \(an integer in \[2, 10000\], default 14\)",
        ),
        ("rsi", {"period": 14.5}, r"period must be an integer, got 14.5"),
        ("rsi", {"period": "14.5"}, r"period must be an integer"),
        ("rsi", {"period": "abc"}, r"period must be an integer"),
        ("rsi", {"period": True}, r"period must be an integer, got True"),
        ("rsi", {"period": None}, r"period must be an integer, got None"),
        ("rsi", {"period": 0}, r"period must be in \[2, 10000\], got 0"),
        ("rsi", {"period": 1}, r"period must be in \[2, 10000\], got 1"),
        ("rsi", {"period": -5}, r"period must be in \[2, 10000\]"),
        ("sma", {"period": 10001}, r"period must be in \[1, 10000\], got 10001"),
        ("sma", {"period": math.inf}, r"period must be an integer"),
        ("rsi", {"period": 14, "timeperiod": 14}, r"given twice"),
        ("bbands", {"matype": 99}, r"matype must be one of \[0, 1, .*13\], got 99"),
        ("bbands", {"nbdevup": "wide"}, r"nbdevup must be a number"),
        ("bbands", {"nbdevup": math.nan}, r"nbdevup must be finite"),
        (
            "sar",
            {"acceleration": -1.0},
            r"sar: TA-Lib rejects the parameters .*valid parameters: acceleration",
        ),
        ("t3", {"vfactor": 5.0}, r"TA-Lib rejects"),
        ("macd", {"fastperiod": 1}, r"fastperiod must be in \[2, 10000\]"),
        ("supertrend", {"multiplier": 0}, r"multiplier must be > 0.0"),
        ("supertrend", {"period": 0}, r"period must be in \[1, 10000\]"),
        ("vwap", {"period": 14}, r"vwap: unknown parameter 'period'; valid parameters: none"),
        ("obv", {"period": 14}, r"unknown parameter 'period'"),
    ],
)
def test_bad_parameters_name_what_is_valid(name, params, pattern):
    with pytest.raises(InvalidIndicator, match=pattern) as err:
        ind.validate(name, params)
    assert isinstance(err.value, ValueError)


def test_compute_and_lookback_validate_too():
    with pytest.raises(InvalidIndicator):
        ind.compute("rsi", {"period": 0}, BARS)
    with pytest.raises(InvalidIndicator):
        ind.lookback("nope", {})
    assert ind.lookback("sma", {"period": 50}) == 49
    assert ind.lookback("rsi", {"period": 14}) == 14 + 560


# -- anchors and history -------------------------------------------------------------------------

NSE = get_calendar("NSE")
IST = NSE.timezone


def test_anchor_ids_are_sessions_intraday_and_years_daily():
    sessions = NSE.sessions(dt.date(2024, 12, 30), dt.date(2025, 1, 2))
    starts, _ = session_buckets(sessions, parse_timeframe("1h"))
    ids = ind.anchor_ids(starts, sessions, parse_timeframe("1h"))
    assert ids.tolist() == [0] * 7 + [1] * 7 + [2] * 7 + [3] * 7
    daily, _ = session_buckets(sessions, Timeframe.daily())
    assert ind.anchor_ids(daily, sessions, Timeframe.daily()).tolist() == [2024, 2024, 2025, 2025]


def count_buckets_between(start: dt.datetime, end: dt.datetime, timeframe: Timeframe) -> int:
    sessions = NSE.sessions_overlapping(start, end)
    starts, _ = session_buckets(sessions, timeframe)
    lo = np.datetime64(start.astimezone(dt.UTC).replace(tzinfo=None), "us")
    hi = np.datetime64(end.astimezone(dt.UTC).replace(tzinfo=None), "us")
    return int(((starts >= lo) & (starts < hi)).sum())


@pytest.mark.parametrize(
    ("name", "params", "timeframe"),
    [("rsi", {}, "5m"), ("sma", {"period": 200}, "1h"), ("ema", {"period": 50}, "1d"), ("macd", {}, "7m")],
)
def test_history_start_covers_the_warmup(name, params, timeframe):
    tf = parse_timeframe(timeframe)
    start = dt.datetime(2025, 3, 17, 11, 0, tzinfo=IST)
    begin = ind.history_start(name, params, tf, start, NSE)
    assert begin.tzinfo is dt.UTC
    assert begin < start
    assert count_buckets_between(begin, start, tf) >= ind.lookback(name, params)


def test_history_start_of_an_anchored_indicator_is_the_session_open():
    start = dt.datetime(2025, 3, 17, 11, 0, tzinfo=IST)
    assert ind.history_start("vwap", {}, parse_timeframe("5m"), start, NSE) == dt.datetime(
        2025, 3, 17, 9, 15, tzinfo=IST
    )
    assert ind.history_start("obv", {}, Timeframe.daily(), start, NSE) == dt.datetime(
        2025, 1, 1, 9, 15, tzinfo=IST
    )


def test_history_start_of_a_finite_indicator_is_just_the_lookback():
    start = dt.datetime(2025, 3, 17, 9, 15, tzinfo=IST)
    begin = ind.history_start("sma", {"period": 3}, parse_timeframe("1h"), start, NSE)
    assert begin == dt.datetime(2025, 3, 13, 9, 15, tzinfo=IST)  # Holi on the 14th; 7 buckets per day


def test_history_start_rejects_naive_times():
    with pytest.raises(ValueError, match="aware"):
        ind.history_start("rsi", {}, parse_timeframe("5m"), dt.datetime(2025, 3, 17, 11, 0), NSE)
