"""Technical indicators by name (SPEC §8): every TA-Lib function plus session ``vwap`` and ``supertrend``.

Pure code: standard library, numpy and the TA-Lib wrapper (``talib``, the maintained technical-
analysis library the service standardises on).

Names and parameters
--------------------
Indicators are exposed by lowercase TA-Lib name (``sma``, ``ema``, ``rsi``, ``macd``, ``bbands``,
``cdldoji``, ...) with TA-Lib's own parameter names and defaults, except that ``timeperiod`` is
called ``period`` (``timeperiod`` is accepted as an alias). Not exposed: ``mavp`` (needs a
per-bar period series, not bars), ``maxindex``/``minindex``/``minmaxindex`` (their values are
positions in whatever array was loaded, meaningless to a client); TA-Lib's own ``VWAP`` (cumulative
from the first loaded bar) and ``SUPERTREND`` are replaced by ours below. A single-output function's
output is named after the indicator (``{"rsi": ...}``); multi-output functions keep TA-Lib's
output names (``macd``, ``macdsignal``, ``macdhist``). Candlestick and other integer outputs are
returned as float64 (NaN in the lookback, otherwise TA-Lib's integer values).

Warm-up ("the first returned value is already exact")
----------------------------------------------------
The service computes over ``[start - warmup bars, end]`` and returns values from ``start``.
:func:`warmup` says how many bars that is and why (``Warmup.memory``):

``finite``
    The value at bar i depends only on a fixed window of bars (SMA, WMA, BBANDS with SMA, CCI,
    STOCH, WILLR, MFI, candlesticks, ...). ``bars`` = TA-Lib's lookback; with that many bars of
    history the value equals the value computed on all history up to floating-point rounding of
    TA-Lib's running sums (~1e-15 relative).
``decaying``
    Exponential/Wilder smoothing or adaptive state (EMA, RSI, ATR, ADX, MACD, DEMA, TEMA, TRIX,
    KAMA, MAMA, HT_*, SAR, supertrend, finite functions run with an EMA-family ``matype``, ...): the
    value depends on all history, with the influence of bar i-k decaying geometrically in k. We
    define "exact" as equal to the library's output on the extended history to 1e-9 relative to
    the series' scale, and load ``bars = lookback + settle`` where ``settle`` =
    ``SETTLE_BARS_PER_PERIOD`` (40) x the longest period parameter (Wilder smoothing, the slowest,
    leaves (1-1/p)^(40p) ~ e^-40 ~ 4e-18 of the initial error), or a per-function constant where
    the memory is not set by a period (HT_* 1000, KAMA max(2000, 40p), MAMA 40/slowlimit, SAR and
    SAREXT 250, HA 100). tests/timeframes/core/test_indicators.py checks the property for every
    exposed function on random walks.
``anchored``
    Cumulative functions whose level depends on where accumulation started (``obv``, ``ad``,
    ``wad``, ``pvt``, ``nvi``, ``pvi``, ``cumsum``) and our ``vwap``: they restart at every change
    of ``session_ids`` (the service passes :func:`anchor_ids`: the session for intraday timeframes,
    the calendar year for ``1d``) and are exact when the computation starts at the anchor (see
    :func:`history_start`). Within one anchor group the output equals TA-Lib's on that group.

Indicators are computed over consecutive bars of the timeframe; apart from the anchored ones they
run across session boundaries like any charting package. TA-Lib's global settings (unstable
periods, compatibility mode) must stay at their defaults; nothing in the service changes them.
"""

from __future__ import annotations

import datetime as dt
import difflib
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import talib
from talib import abstract

from timeframes.core.buckets import session_index, to_datetime64
from timeframes.core.grammar import Timeframe

__all__ = [
    "BAR_FIELDS",
    "MAX_PERIOD",
    "SETTLE_BARS_PER_PERIOD",
    "IndicatorSpec",
    "InvalidIndicator",
    "Parameter",
    "Warmup",
    "anchor_ids",
    "compute",
    "get_spec",
    "history_start",
    "indicator_names",
    "list_indicators",
    "lookback",
    "validate",
    "warmup",
]

BAR_FIELDS = ("open", "high", "low", "close", "volume")
MAX_PERIOD = 10_000
SETTLE_BARS_PER_PERIOD = 40
_HT_SETTLE = 1_000
_KAMA_SETTLE = 2_000
_SAR_SETTLE = 250
_HA_SETTLE = 100
_UNKNOWN_SETTLE = 1_000  # decaying TA-Lib functions this module has not been taught about

_EXCLUDED = {
    "MAVP": "needs a per-bar period series, not bars",
    "MAXINDEX": "returns positions in the loaded array",
    "MININDEX": "returns positions in the loaded array",
    "MINMAXINDEX": "returns positions in the loaded array",
    "VWAP": "replaced by the session-anchored vwap",
    "SUPERTREND": "replaced by our supertrend",
}


def _names(*groups: str) -> frozenset[str]:
    return frozenset(name for group in groups for name in group.split())


# Functions whose value depends only on a fixed window (verified by the warm-up tests); those
# with a matype parameter are finite only with a finite moving-average type.
_FINITE = _names(
    # math operators and transforms
    "ADD DIV MAX MIN MINMAX MULT SUB SUM",
    "ACOS ASIN ATAN CEIL COS COSH EXP FLOOR LN LOG10 SIN SINH SQRT TAN TANH",
    # momentum
    "AC AO APO AROON AROONOSC BOP CCI CMOU COPPOCK DPO ER FOSC FRACTAL IMI KDJ MACDEXT MFI MOM",
    "PPO QSTICK ROC ROCP ROCR ROCR100 STOCH STOCHF ULTOSC VHF VORTEX WILLR",
    # overlap studies
    "ACCBANDS BBANDS DONCHIAN HMA MA MIDPOINT MIDPRICE SMA TRIMA VWMA WMA",
    # price transform, statistics, volatility, volume
    "AVGDEV AVGPRICE MEDPRICE TYPPRICE WCLPRICE",
    "BETA CORREL LINEARREG LINEARREG_ANGLE LINEARREG_INTERCEPT LINEARREG_SLOPE",
    "PERCENTILE PERCENTRANK STDDEV TSF VAR ADR TRANGE CMF MARKETFI RVOL PVO",
)
# Smoothed functions whose memory is set by their period parameters (40 x longest period).
_DECAYING = _names(
    "ADX ADXR CMO DX ERI MACD MACDFIX MINUS_DI MINUS_DM PLUS_DI PLUS_DM RSI SMI STOCHRSI TRIX TSI",
    "DEMA EMA KC RMA T3 TEMA ZLEMA ATR CVI MASSI NATR RVI ADOSC EFI",
)
_HT = {"HT_DCPERIOD", "HT_DCPHASE", "HT_PHASOR", "HT_SINE", "HT_TRENDMODE", "HT_TRENDLINE"}
_ANCHORED = {"AD", "CUMSUM", "NVI", "OBV", "PVI", "PVT", "WAD"}
# TA-Lib MA_Type values whose moving average has a finite window: SMA, WMA, TRIMA, HMA, identity.
_FINITE_MATYPES = {0, 2, 5, 9, 10}
_MACDFIX_SLOW = 26  # MACDFIX's fixed slow EMA


class InvalidIndicator(ValueError):
    """Unknown indicator or bad parameters; the message lists what is valid."""


@dataclass(frozen=True)
class Parameter:
    """One parameter: public ``name`` (``period`` for TA-Lib's ``timeperiod``), ``type`` "int" or
    "float", default, inclusive bounds (``None`` = checked by TA-Lib itself) and, for moving-average
    types, the allowed ``choices`` (value -> description)."""

    name: str
    type: str
    default: int | float
    minimum: int | float | None
    maximum: int | float | None
    description: str
    talib_name: str | None = None
    choices: Mapping[int, str] | None = None

    def describe(self) -> str:
        if self.choices:
            rng = "one of " + ", ".join(f"{k} ({v})" for k, v in self.choices.items())
        elif self.type == "int":
            rng = f"an integer in [{self.minimum}, {self.maximum}]"
        elif self.minimum is not None:
            rng = f"a number > {self.minimum}" + (
                f" and <= {self.maximum}" if self.maximum is not None else ""
            )
        else:
            rng = "a finite number"
        return f"{self.name} ({rng}, default {self.default})"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "min": self.minimum,
            "max": self.maximum,
            "description": self.description,
        }
        if self.talib_name and self.talib_name != self.name:
            out["alias_of"] = self.talib_name
        if self.choices:
            out["choices"] = {str(k): v for k, v in self.choices.items()}
        return out


@dataclass(frozen=True)
class IndicatorSpec:
    name: str
    group: str
    description: str
    parameters: tuple[Parameter, ...]
    inputs: tuple[str, ...]  # bar fields, in the positional order of the TA-Lib function
    outputs: tuple[str, ...]
    source: str  # "ta-lib" or "signalsvc"
    talib_name: str | None = None

    @property
    def session_anchored(self) -> bool:
        return self.name == "vwap" or (self.talib_name in _ANCHORED)

    def parameter(self, name: str) -> Parameter | None:
        for p in self.parameters:
            if p.name == name or p.talib_name == name:
                return p
        return None

    def as_dict(self) -> dict[str, Any]:
        defaults = {p.name: p.default for p in self.parameters}
        w = warmup(self.name, defaults)
        return {
            "name": self.name,
            "group": self.group,
            "description": self.description,
            "source": self.source,
            "parameters": [p.as_dict() for p in self.parameters],
            "inputs": list(dict.fromkeys(self.inputs)),
            "outputs": list(self.outputs),
            "memory": w.memory,
            "session_anchored": self.session_anchored,
            "lookback": w.nan_bars,
            "warmup_bars": w.bars,
        }


@dataclass(frozen=True)
class Warmup:
    """History needed before the first requested bar.

    ``bars``: bars of the timeframe to load before it; ``nan_bars``: leading outputs that are NaN
    (TA-Lib's lookback); ``memory``: "finite", "decaying" or "anchored" (see module docstring);
    ``anchored``: the computation must also start at the anchor (session open / year start).
    """

    bars: int
    nan_bars: int
    memory: str
    anchored: bool


# -- registry ----------------------------------------------------------------------------------

_MA_CHOICES = dict(sorted(talib.MA_Type._lookup.items()))


def _parameter_help(fn_name: str, idx: int, fallback: str) -> str:
    try:  # TA-Lib's hint text; the wrapper only exposes it through a private helper
        from talib import _ta_lib

        return str(_ta_lib._ta_getOptInputParameterInfo(fn_name.encode(), idx)["help"]) or fallback
    except (ImportError, AttributeError, KeyError, TypeError):
        return fallback


def _talib_parameters(fn_name: str, info: Mapping[str, Any]) -> tuple[Parameter, ...]:
    params = []
    for idx, (talib_name, default) in enumerate(info["parameters"].items()):
        text = _parameter_help(fn_name, idx, talib_name)
        public = "period" if talib_name == "timeperiod" else talib_name
        if talib_name.endswith("matype"):
            params.append(
                Parameter(public, "int", int(default), 0, max(_MA_CHOICES), text, talib_name, _MA_CHOICES)
            )
        elif isinstance(default, int):
            minimum = _int_minimum(fn_name, talib_name, default)
            params.append(Parameter(public, "int", default, minimum, MAX_PERIOD, text, talib_name))
        else:
            params.append(Parameter(public, "float", float(default), None, None, text, talib_name))
    return tuple(params)


def _int_minimum(fn_name: str, talib_name: str, default: int) -> int:
    """Smallest value in 1..5 TA-Lib accepts for this parameter (others at default)."""
    fn = abstract.Function(fn_name)
    for value in range(1, min(default, 5) + 1):
        fn.set_parameters({talib_name: value})
        if fn.lookback >= 0:
            return value
    return max(1, min(default, 5))


def _talib_inputs(info: Mapping[str, Any]) -> tuple[str, ...]:
    fields: list[str] = []
    for value in info["input_names"].values():
        fields.extend([value] if isinstance(value, str) else value)
    return tuple(fields)


_OWN: tuple[IndicatorSpec, ...] = (
    IndicatorSpec(
        name="vwap",
        group="Volume Indicators",
        description="Session VWAP: typical price (high+low+close)/3 weighted by volume, reset at each session open",
        parameters=(),
        inputs=("high", "low", "close", "volume"),
        outputs=("vwap",),
        source="signalsvc",
    ),
    IndicatorSpec(
        name="supertrend",
        group="Overlap Studies",
        description="Supertrend: hl2 -/+ multiplier x ATR(period) (Wilder) bands with band-flip rules; "
        "direction +1 up (value = lower band), -1 down (value = upper band)",
        parameters=(
            Parameter("period", "int", 10, 1, MAX_PERIOD, "ATR period", "timeperiod"),
            Parameter("multiplier", "float", 3.0, 0.0, 1000.0, "ATR multiplier"),
        ),
        inputs=("high", "low", "close"),
        outputs=("supertrend", "direction"),
        source="signalsvc",
    ),
)


@lru_cache(maxsize=1)
def _registry() -> dict[str, IndicatorSpec]:
    specs: dict[str, IndicatorSpec] = {}
    for fn_name in talib.get_functions():
        if fn_name in _EXCLUDED:
            continue
        info = abstract.Function(fn_name).info
        name = fn_name.lower()
        outputs = tuple(info["output_names"])
        if len(outputs) == 1:
            outputs = (name,)
        specs[name] = IndicatorSpec(
            name=name,
            group=info["group"],
            description=info["display_name"],
            parameters=_talib_parameters(fn_name, info),
            inputs=_talib_inputs(info),
            outputs=outputs,
            source="ta-lib",
            talib_name=fn_name,
        )
    for spec in _OWN:
        specs[spec.name] = spec
    return dict(sorted(specs.items()))


def indicator_names() -> list[str]:
    return list(_registry())


def get_spec(name: str) -> IndicatorSpec:
    registry = _registry()
    spec = registry.get(name) if isinstance(name, str) else None
    if spec is None:
        hint = ""
        if isinstance(name, str):
            close = difflib.get_close_matches(name.lower(), registry, n=3)
            if close:
                hint = f" (did you mean {', '.join(close)}?)"
        raise InvalidIndicator(
            f"unknown indicator {name!r}{hint}; valid indicators (lowercase): {', '.join(registry)}"
        )
    return spec


def list_indicators() -> list[dict[str, Any]]:
    """Every indicator: name, group, description, parameters (type, default, range), inputs,
    outputs, memory class, session anchoring, TA-Lib lookback and warm-up bars at the defaults."""
    return [spec.as_dict() for spec in _registry().values()]


# -- validation --------------------------------------------------------------------------------

_INT_TEXT = re.compile(r"[+-]?[0-9]+", re.ASCII)


def _coerce(spec: IndicatorSpec, param: Parameter, value: object) -> int | float:
    def bad(reason: str) -> InvalidIndicator:
        valid = "; ".join(p.describe() for p in spec.parameters)
        return InvalidIndicator(f"{spec.name}: {param.name} {reason}; valid parameters: {valid}")

    if isinstance(value, bool) or value is None:
        raise bad(f"must be {'an integer' if param.type == 'int' else 'a number'}, got {value!r}")
    if param.type == "int":
        if isinstance(value, str):
            if not _INT_TEXT.fullmatch(value.strip()):
                raise bad(f"must be an integer, got {value!r}")
            number: int | float = int(value)
        elif isinstance(value, int | np.integer) or (
            isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer()
        ):
            number = int(value)
        else:
            raise bad(f"must be an integer, got {value!r}")
        if param.choices is not None and number not in param.choices:
            raise bad(f"must be one of {sorted(param.choices)}, got {number}")
        if not param.minimum <= number <= param.maximum:  # type: ignore[operator]
            raise bad(f"must be in [{param.minimum}, {param.maximum}], got {number}")
        return number
    try:
        number = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise bad(f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise bad(f"must be finite, got {value!r}")
    if param.minimum is not None and number <= param.minimum:
        raise bad(f"must be > {param.minimum}, got {number}")
    if param.maximum is not None and number > param.maximum:
        raise bad(f"must be <= {param.maximum}, got {number}")
    return number


def validate(name: str, params: Mapping[str, object] | None = None) -> dict[str, int | float]:
    """Normalised parameters of ``name``: every parameter under its public name, defaults filled in.

    Values may be numbers or their text (query strings). Raises :class:`InvalidIndicator` for an
    unknown indicator, an unknown or duplicated parameter, a wrong type, a value out of range or a
    combination TA-Lib rejects; the message lists the valid indicators or parameters.
    """
    spec = get_spec(name)
    params = dict(params or {})
    valid = "; ".join(p.describe() for p in spec.parameters) or "none"
    out: dict[str, int | float] = {}
    for key, value in params.items():
        param = spec.parameter(key) if isinstance(key, str) else None
        if param is None:
            raise InvalidIndicator(f"{spec.name}: unknown parameter {key!r}; valid parameters: {valid}")
        if param.name in out:
            raise InvalidIndicator(
                f"{spec.name}: parameter {param.name!r} given twice (as {key!r}); use one name"
            )
        out[param.name] = _coerce(spec, param, value)
    for p in spec.parameters:
        out.setdefault(p.name, p.default)
    normalised = {p.name: out[p.name] for p in spec.parameters}
    if spec.talib_name is not None and _talib_lookback(spec.talib_name, _freeze(spec, normalised)) < 0:
        raise InvalidIndicator(
            f"{spec.name}: TA-Lib rejects the parameters {normalised}; valid parameters: {valid}"
        )
    return normalised


def _freeze(spec: IndicatorSpec, params: Mapping[str, int | float]) -> tuple[tuple[str, int | float], ...]:
    """TA-Lib keyword arguments as a hashable tuple."""
    return tuple((p.talib_name or p.name, params[p.name]) for p in spec.parameters)


@lru_cache(maxsize=4096)
def _talib_lookback(fn_name: str, frozen: tuple[tuple[str, int | float], ...]) -> int:
    fn = abstract.Function(fn_name)
    if frozen:
        fn.set_parameters(dict(frozen))
    return int(fn.lookback)


# -- warm-up -----------------------------------------------------------------------------------


def _settle(fn_name: str, params: Mapping[str, int | float], spec: IndicatorSpec) -> int | None:
    """Extra bars for decaying functions; ``None`` for finite ones."""
    periods = [
        int(v)
        for p in spec.parameters
        if p.type == "int" and p.choices is None and "period" in (p.talib_name or p.name)
        for v in [params[p.name]]
    ]
    longest = max(periods, default=0)
    matypes = {int(params[p.name]) for p in spec.parameters if p.choices is not None}
    extra = 0
    if 6 in matypes:
        extra = max(extra, _KAMA_SETTLE)
    if 7 in matypes:
        extra = max(extra, math.ceil(SETTLE_BARS_PER_PERIOD / 0.05))  # MAMA's default slowlimit
    by_period = SETTLE_BARS_PER_PERIOD * longest
    if fn_name in _FINITE:
        if matypes <= _FINITE_MATYPES:
            return None
        return max(by_period, extra)
    if fn_name in _HT:
        return _HT_SETTLE
    if fn_name == "KAMA":
        return max(_KAMA_SETTLE, by_period)
    if fn_name == "MAMA":
        return math.ceil(SETTLE_BARS_PER_PERIOD / max(float(params["slowlimit"]), 1e-3))
    if fn_name in ("SAR", "SAREXT"):
        return _SAR_SETTLE
    if fn_name == "HA":
        return _HA_SETTLE
    if fn_name == "MACDFIX":
        return max(SETTLE_BARS_PER_PERIOD * max(longest, _MACDFIX_SLOW), extra)
    if fn_name in _DECAYING:
        return max(by_period, extra)
    if fn_name.startswith("CDL"):
        return None  # candlestick patterns: fixed windows of body/shadow averages
    return max(by_period, extra, _UNKNOWN_SETTLE)


def warmup(name: str, params: Mapping[str, object] | None = None) -> Warmup:
    """Warm-up policy of ``name`` with ``params`` (see the module docstring)."""
    spec = get_spec(name)
    p = validate(name, params)
    if spec.name == "vwap":
        return Warmup(bars=0, nan_bars=0, memory="anchored", anchored=True)
    if spec.name == "supertrend":
        period = int(p["period"])
        return Warmup(
            bars=period + SETTLE_BARS_PER_PERIOD * period, nan_bars=period, memory="decaying", anchored=False
        )
    assert spec.talib_name is not None
    nan_bars = _talib_lookback(spec.talib_name, _freeze(spec, p))
    if spec.talib_name in _ANCHORED:
        return Warmup(bars=nan_bars, nan_bars=nan_bars, memory="anchored", anchored=True)
    settle = _settle(spec.talib_name, p, spec)
    if settle is None:
        return Warmup(bars=nan_bars, nan_bars=nan_bars, memory="finite", anchored=False)
    return Warmup(bars=nan_bars + settle, nan_bars=nan_bars, memory="decaying", anchored=False)


def lookback(name: str, params: Mapping[str, object] | None = None) -> int:
    """Bars of warm-up needed before the first exact value (``warmup(name, params).bars``)."""
    return warmup(name, params).bars


# -- computation -------------------------------------------------------------------------------


def _bars(spec: IndicatorSpec, bars: Mapping[str, object]) -> tuple[dict[str, np.ndarray], int]:
    missing = [f for f in dict.fromkeys(spec.inputs) if f not in bars]
    if missing:
        raise ValueError(
            f"{spec.name} needs bar fields {list(dict.fromkeys(spec.inputs))}; missing {missing}"
        )
    arrays = {f: np.ascontiguousarray(bars[f], dtype=np.float64) for f in dict.fromkeys(spec.inputs)}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"bar fields must be 1-D arrays of one length, got shapes {sorted(shapes)}")
    return arrays, len(next(iter(arrays.values())))


def _segments(session_ids: object, n: int) -> list[slice]:
    ids = np.asarray(session_ids)
    if ids.shape != (n,):
        raise ValueError(f"session_ids must have one entry per bar ({n}), got shape {ids.shape}")
    if n == 0:
        return []
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    bounds = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def _call_talib(
    spec: IndicatorSpec, params: Mapping[str, int | float], arrays: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    assert spec.talib_name is not None
    fn = getattr(talib, spec.talib_name)
    kwargs = dict(_freeze(spec, params))
    n = len(next(iter(arrays.values())))
    nan_bars = _talib_lookback(spec.talib_name, _freeze(spec, params))
    if n == 0:
        return [np.empty(0) for _ in spec.outputs]
    result = fn(*(arrays[f] for f in spec.inputs), **kwargs)
    outs = list(result) if isinstance(result, tuple) else [result]
    converted = []
    for out in outs:
        arr = np.asarray(out)
        if arr.dtype.kind in "iu":
            # TA-Lib fills the lookback of integer outputs with 0; make it "no value".
            arr = arr.astype(np.float64)
            arr[: min(nan_bars, n)] = np.nan
        converted.append(arr.astype(np.float64, copy=False))
    return converted


def compute(
    name: str,
    params: Mapping[str, object] | None,
    bars: Mapping[str, object],
    session_ids: object | None = None,
) -> dict[str, np.ndarray]:
    """Compute ``name`` over ``bars`` (``open``/``high``/``low``/``close``/``volume`` float64 arrays
    of the timeframe, oldest first; only the fields the indicator needs are required).

    Returns output name -> float64 array aligned with the input, NaN during the lookback.
    ``session_ids`` (one id per bar; a change of id starts a new anchor group) is required by the
    session-anchored indicators (``vwap``, ``obv``, ``ad``, ...) and ignored by the others.
    """
    spec = get_spec(name)
    p = validate(name, params)
    arrays, n = _bars(spec, bars)
    if spec.session_anchored:
        if session_ids is None:
            raise ValueError(f"{spec.name} is session-anchored: pass session_ids (see anchor_ids)")
        pieces = [
            _compute_one(spec, p, {f: a[s] for f, a in arrays.items()}) for s in _segments(session_ids, n)
        ]
        if not pieces:
            return {o: np.empty(0) for o in spec.outputs}
        return {o: np.concatenate([piece[o] for piece in pieces]) for o in spec.outputs}
    return _compute_one(spec, p, arrays)


def _compute_one(
    spec: IndicatorSpec, p: Mapping[str, int | float], arrays: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    if spec.name == "vwap":
        return {"vwap": _vwap(arrays["high"], arrays["low"], arrays["close"], arrays["volume"])}
    if spec.name == "supertrend":
        value, direction = _supertrend(
            arrays["high"], arrays["low"], arrays["close"], int(p["period"]), float(p["multiplier"])
        )
        return {"supertrend": value, "direction": direction}
    return dict(zip(spec.outputs, _call_talib(spec, p, arrays), strict=True))


def _vwap(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """VWAP of one anchor group; NaN while the cumulative volume is still 0 (e.g. an index)."""
    typical = (high + low + close) / 3.0
    cum_pv = np.cumsum(typical * volume)
    cum_v = np.cumsum(volume)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cum_v > 0, cum_pv / np.where(cum_v > 0, cum_v, 1.0), np.nan)


def _supertrend(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int, multiplier: float
) -> tuple[np.ndarray, np.ndarray]:
    """Supertrend over ATR(period) from TA-Lib (Wilder).

    Basic bands = hl2 -/+ multiplier x ATR. The final upper band only moves down unless the
    previous close broke above it; the final lower band only moves up unless the previous close
    broke below it. In a downtrend the trend flips up when close > final upper band; in an uptrend
    it flips down when close < final lower band. The value is the final lower band in an uptrend,
    the final upper band in a downtrend. The first bar with an ATR starts in an uptrend, as TA-Lib's
    own SUPERTREND does (TradingView starts down; the difference is gone after the warm-up).
    Direction: +1 up, -1 down (TradingView's ``ta.supertrend`` uses the opposite sign). A NaN ATR
    (NaN input) yields NaN and restarts the state. The recursion is sequential by nature, so it
    runs as a plain loop over Python floats (about 1 ms per 2,000 bars).
    """
    n = len(close)
    value = np.full(n, np.nan)
    direction = np.full(n, np.nan)
    if n == 0:
        return value, direction
    atr = talib.ATR(high, low, close, timeperiod=period)
    hl2 = ((high + low) / 2.0).tolist()
    upper_basic = (np.asarray(hl2) + multiplier * atr).tolist()
    lower_basic = (np.asarray(hl2) - multiplier * atr).tolist()
    closes = close.tolist()
    out_v = value.tolist()
    out_d = direction.tolist()
    started = False
    upper = lower = 0.0
    trend = 1
    for i in range(n):
        bu, bl = upper_basic[i], lower_basic[i]
        if bu != bu or bl != bl or closes[i] != closes[i]:  # NaN: no value, restart
            started = False
            continue
        if not started:
            upper, lower, trend, started = bu, bl, 1, True
        else:
            prev_close = closes[i - 1]
            upper = bu if (bu < upper or prev_close > upper) else upper
            lower = bl if (bl > lower or prev_close < lower) else lower
            if trend == -1 and closes[i] > upper:
                trend = 1
            elif trend == 1 and closes[i] < lower:
                trend = -1
        out_v[i] = lower if trend == 1 else upper
        out_d[i] = float(trend)
    return np.asarray(out_v), np.asarray(out_d)


# -- anchors and history -------------------------------------------------------------------------


class _SessionLike(Protocol):
    @property
    def date(self) -> dt.date: ...

    @property
    def open(self) -> dt.datetime: ...

    @property
    def close(self) -> dt.datetime: ...


class _CalendarLike(Protocol):
    def previous_sessions(self, ts: dt.datetime, count: int) -> list[Any]: ...

    def sessions(self, start: dt.date, end: dt.date) -> list[Any]: ...

    @property
    def timezone(self) -> dt.tzinfo: ...


def anchor_ids(bucket_start: object, sessions: Sequence[_SessionLike], timeframe: Timeframe) -> np.ndarray:
    """``session_ids`` for :func:`compute`: the session index of each bar for intraday timeframes;
    for ``1d`` (one bar per session) the calendar year of the session, so ``vwap``/``obv``/... on
    daily bars are year-to-date anchored instead of degenerating to one bar. -1 outside sessions."""
    idx = session_index(to_datetime64(bucket_start), sessions)
    if not timeframe.is_daily:
        return idx
    years = np.array([s.date.year for s in sessions], dtype=np.int64)
    return np.where(idx >= 0, years[np.maximum(idx, 0)] if len(years) else -1, -1)


def history_start(
    name: str,
    params: Mapping[str, object] | None,
    timeframe: Timeframe,
    start: dt.datetime,
    calendar: _CalendarLike,
) -> dt.datetime:
    """Earliest time (aware UTC) from which to load 1-minute bars so that the value of the first
    bar at or after ``start`` is exact: ``warmup().bars`` whole buckets of the calendar before
    ``start`` and, for session-anchored indicators, the anchor (the session open, or the first
    session of the year for ``1d``). Counted in calendar buckets: an instrument with empty buckets
    (no trades) has fewer bars, so a service that must be exact for illiquid instruments should
    instead take the last ``warmup().bars`` stored bars before ``start``.
    """
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    w = warmup(name, params)
    candidates = [start.astimezone(dt.UTC)]
    if w.bars > 0:
        per_session = 1 if timeframe.is_daily else None
        need, count = w.bars, max(2, w.bars // 50 + 2)
        while True:
            raw = calendar.previous_sessions(start, count)
            sessions = [s for s in raw if s.open < start]
            have, first_open = 0, None
            for s in reversed(sessions):
                if per_session:
                    have += 1
                else:
                    span = (min(s.close, start) - s.open) // dt.timedelta(minutes=1)
                    have += -(-span // timeframe.minutes)
                first_open = s.open
                if have >= need:
                    break
            if have >= need or len(raw) < count:  # enough, or the calendar's history is exhausted
                if first_open is not None:
                    candidates.append(first_open)
                break
            count *= 2
    if w.anchored:
        if timeframe.is_daily:
            year = start.astimezone(calendar.timezone).year
            first = calendar.sessions(dt.date(year, 1, 1), dt.date(year, 12, 31))
            if first:
                candidates.append(first[0].open)
        else:
            current = [s for s in calendar.previous_sessions(start, 1) if s.open <= start < s.close]
            if current:
                candidates.append(current[0].open)
    return min(candidates).astimezone(dt.UTC)
