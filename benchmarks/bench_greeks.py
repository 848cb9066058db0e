"""Greeks engine throughput against py_vollib_vectorized (baseline) and vollib (scalar reference).

Workload: a NIFTY-like random option mix (spot ~24 000, strikes within ±15 % on the 50-point grid,
1 to 90 days, vol 8 %..60 %, calls and puts as "c"/"p" strings, r = 6.5 %, no dividends), model
``black_scholes``, every input a full array. For implied vol the prices are the model prices
rounded to the NSE tick (0.05, floored at one tick), as quotes would be: some ITM quotes then fall
below intrinsic, far OTM quotes sit on the floor.

Rows:
* greeks N=1e6: ours (default = auto threads, and threads=1), py_vollib_vectorized price + its five
  Greeks (delta, gamma, theta, rho, vega: it has no vanna/vomma/charm), and vollib's scalar
  functions in a Python loop on a 1 000-option sample (items/s is per option, so comparable).
* implied vol N=1e4 and N=1e6: the same three.

The machine is shared and noisy, so the engine and its baseline are timed interleaved (A, B, A,
B, ...) and compared by their medians: a burst of load from a neighbour hits both sides alike.
Each row's note states the ratio and whether the target is met; the first engine row also shows
the load average.

Targets (from the engine issue): greeks >= 10 M options/s and >= 10x py_vollib_vectorized; IV
>= 1.3x py_vollib_vectorized at N=1e4 and >= 1.0x at N=1e6, with NaN + a reason (never a silent
0) for quotes that have no solution.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.common import Result, load_note, median_time, verdict
from greeks.engine import IVReason, greeks, implied_vol, price

R = 0.065
TICK = 0.05
GREEKS_N = 1_000_000
IV_NS = (10_000, 1_000_000)
SCALAR_N = 1_000

GREEKS_TARGET_RATE = 10_000_000.0
GREEKS_TARGET_RATIO = 10.0
IV_TARGET_RATIO = {10_000: 1.3, 1_000_000: 1.0}

_BENCH = "greeks: price+8 greeks"
_IV_BENCH = "greeks: implied vol"
_OURS = "signalsvc engine (auto threads)"
_OURS_1 = "signalsvc engine (threads=1)"
_PVV = "py_vollib_vectorized (baseline)"
_SCALAR = "vollib scalar loop (reference)"


def market(n: int, seed: int = 7) -> dict[str, Any]:
    """A random NIFTY-like option mix (arrays of length n) with tick-rounded quotes."""
    rng = np.random.default_rng(seed)
    S = 24_000.0 * (1.0 + 0.002 * rng.standard_normal(n))
    K = np.round(24_000.0 * rng.uniform(0.85, 1.15, n) / 50.0) * 50.0
    t = rng.uniform(1.0, 90.0, n) / 365.0
    sigma = rng.uniform(0.08, 0.60, n)
    flag = np.where(rng.random(n) < 0.5, "c", "p")
    quote = np.maximum(np.round(price(flag, S, K, t, R, sigma) / TICK) * TICK, TICK)
    return {"S": S, "K": K, "t": t, "sigma": sigma, "flag": flag, "quote": quote}


def interleaved_medians(
    fns: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median wall time of each function, timed in rotation so that load changes hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for i in range(repeats):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def _quiet(fn: Callable[[], object]) -> Callable[[], object]:
    def call() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()

    return call


def _pvv() -> tuple[Any, str]:
    """Import py_vollib_vectorized and check it actually runs (its numba kernels compile lazily)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import py_vollib_vectorized as pvv

            pvv.get_all_greeks("c", 100.0, 100.0, 0.1, 0.05, 0.2, model="black_scholes", return_as="dict")
            pvv.vectorized_implied_volatility(
                1.0, 100.0, 100.0, 0.1, 0.05, "c", q=0.0, model="black_scholes", return_as="numpy"
            )
        return pvv, ""
    except ImportError as exc:
        return None, f"py_vollib_vectorized not importable ({exc}); ratio not measured"
    except Exception as exc:
        hint = ""
        if "Untyped global name" in str(exc) or "recursion" in str(exc):
            hint = (
                " [vollib pulls in lets_be_rational>=1.1, which overwrites py_lets_be_rational with an"
                " un-jitted shim; fix: pip install --force-reinstall --no-deps lets_be_rational==1.1.2"
                " && pip install --force-reinstall --no-deps py_lets_be_rational==1.0.1]"
            )
        first = str(exc).strip().splitlines()[0][:80]
        return None, f"py_vollib_vectorized fails to run: {type(exc).__name__}: {first}{hint}; not measured"


def _vollib() -> tuple[Any, str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from vollib.black_scholes import black_scholes
            from vollib.black_scholes.greeks import analytical
            from vollib.black_scholes.implied_volatility import implied_volatility

        return (black_scholes, analytical, implied_volatility), ""
    except Exception as exc:
        return None, f"vollib not usable ({type(exc).__name__}: {exc}); row skipped"


def _greeks_rows(pvv: Any, pvv_err: str, vl: Any, vl_err: str) -> list[Result]:
    n = GREEKS_N
    m = market(n)
    args = (m["flag"], m["S"], m["K"], m["t"], R, m["sigma"])
    fns: dict[str, Callable[[], object]] = {
        _OURS: lambda: greeks(*args),
        _OURS_1: lambda: greeks(*args, threads=1),
    }
    if pvv is not None:
        fns[_PVV] = _quiet(
            lambda: (
                pvv.vectorized_black_scholes(*args, return_as="numpy"),
                pvv.get_all_greeks(*args, model="black_scholes", return_as="dict"),
            )
        )
    load = load_note()
    med = interleaved_medians(fns, repeats=5)
    base_s = med.get(_PVV)

    def note(seconds: float) -> str:
        rate = n / seconds
        parts = [f"{rate / 1e6:.1f} M/s (target >= 10 M/s: {verdict(rate >= GREEKS_TARGET_RATE)})"]
        if base_s is not None:
            ratio = base_s / seconds
            parts.append(f"{ratio:.1f}x pvv (target >= 10x: {verdict(ratio >= GREEKS_TARGET_RATIO)})")
        else:
            parts.append(pvv_err)
        return "; ".join(parts)

    rows = [
        Result(_BENCH, _OURS, n, med[_OURS], f"{note(med[_OURS])} {load}"),
        Result(_BENCH, _OURS_1, n, med[_OURS_1], note(med[_OURS_1])),
    ]
    if base_s is not None:
        rows.append(
            Result(_BENCH, _PVV, n, base_s, "price + delta/gamma/theta/rho/vega (no 2nd-order Greeks)")
        )
    else:
        rows.append(Result(_BENCH, _PVV, n, float("nan"), pvv_err))
    if vl is not None:
        black_scholes, analytical, _ = vl
        k = SCALAR_N
        flags, S, K, t, sig = (m[c][:k].tolist() for c in ("flag", "S", "K", "t", "sigma"))
        scalar_greeks = (
            analytical.delta,
            analytical.gamma,
            analytical.theta,
            analytical.vega,
            analytical.rho,
        )

        def loop() -> None:
            for f, s_, k_, t_, v in zip(flags, S, K, t, sig, strict=True):
                black_scholes(f, s_, k_, t_, R, v)
                for fn in scalar_greeks:
                    fn(f, s_, k_, t_, R, v)

        sc_s = median_time(_quiet(loop), repeats=3, warmup=1)
        note_sc = f"price + 5 Greeks on a {k:,}-option sample; 1e6 would take ~{sc_s * n / k:.0f} s"
        rows.append(Result(_BENCH, _SCALAR, k, sc_s, note_sc))
    else:
        rows.append(Result(_BENCH, _SCALAR, SCALAR_N, float("nan"), vl_err))
    return rows


def _reason_summary(reason: np.ndarray) -> str:
    counts = np.bincount(reason.astype(np.intp), minlength=len(IVReason))
    return ", ".join(f"{IVReason(i).name}={c:,}" for i, c in enumerate(counts) if c)


def _iv_rows(n: int, pvv: Any, pvv_err: str, vl: Any, vl_err: str) -> list[Result]:
    m = market(n, seed=11)
    quote, flag, S, K, t = m["quote"], m["flag"], m["S"], m["K"], m["t"]
    fns: dict[str, Callable[[], object]] = {
        _OURS: lambda: implied_vol(quote, flag, S, K, t, R),
        _OURS_1: lambda: implied_vol(quote, flag, S, K, t, R, threads=1),
    }
    if pvv is not None:
        fns[_PVV] = _quiet(
            lambda: pvv.vectorized_implied_volatility(
                quote, S, K, t, R, flag, q=0.0, model="black_scholes", return_as="numpy", on_error="ignore"
            )
        )
    load = load_note()
    med = interleaved_medians(fns, repeats=5 if n >= 1_000_000 else 21)
    base_s = med.get(_PVV)

    iv, reason = implied_vol(quote, flag, S, K, t, R, return_reason=True)
    ok = reason == IVReason.OK
    with np.errstate(all="ignore"):
        rel = np.abs(price(flag[ok], S[ok], K[ok], t[ok], R, iv[ok]) / quote[ok] - 1.0)
    quality = f"max reprice rel err {rel.max():.1e}; {_reason_summary(reason)}"
    target = IV_TARGET_RATIO[n]

    def note(seconds: float) -> str:
        if base_s is None:
            return f"{pvv_err}; {quality}"
        ratio = base_s / seconds
        return f"{ratio:.2f}x pvv (target >= {target}x: {verdict(ratio >= target)}); {quality}"

    rows = [
        Result(_IV_BENCH, _OURS, n, med[_OURS], f"{note(med[_OURS])} {load}"),
        Result(_IV_BENCH, _OURS_1, n, med[_OURS_1], note(med[_OURS_1])),
    ]
    if base_s is not None:
        base_iv = np.asarray(fns[_PVV]())
        zeros = int(np.sum(base_iv == 0.0))
        wrong = int(np.sum(ok & ~(np.abs(base_iv - iv) <= 1e-6 * iv)))
        rows.append(
            Result(
                _IV_BENCH,
                _PVV,
                n,
                base_s,
                f"returns 0.0 for {zeros:,} quotes (silent zeros), NaN for {int(np.isnan(base_iv).sum()):,}; "
                f"differs from ours by >1e-6 rel on {wrong:,} solvable quotes",
            )
        )
    else:
        rows.append(Result(_IV_BENCH, _PVV, n, float("nan"), pvv_err))
    if n == IV_NS[0]:
        if vl is not None:
            _, _, implied_volatility = vl
            sample = [
                (float(quote[i]), float(S[i]), float(K[i]), float(t[i]), str(flag[i]))
                for i in np.flatnonzero(ok)[:SCALAR_N]
            ]

            def loop() -> None:
                for p_, s_, k_, t_, f in sample:
                    implied_volatility(p_, s_, k_, t_, R, f)

            sc_s = median_time(_quiet(loop), repeats=3, warmup=1)
            rows.append(Result(_IV_BENCH, _SCALAR, len(sample), sc_s, f"on {len(sample):,} solvable quotes"))
        else:
            rows.append(Result(_IV_BENCH, _SCALAR, SCALAR_N, float("nan"), vl_err))
    return rows


def run() -> list[Result]:
    pvv, pvv_err = _pvv()
    vl, vl_err = _vollib()
    results = _greeks_rows(pvv, pvv_err, vl, vl_err)
    for n in IV_NS:
        results.extend(_iv_rows(n, pvv, pvv_err, vl, vl_err))
    return results
