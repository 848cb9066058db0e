"""Independent reference pricing for the simulator tests: Black-76 from math.erfc and an
implied-vol solver by scipy.optimize.brentq (no code shared with the simulator or greeks/)."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr

KOLKATA = ZoneInfo("Asia/Kolkata")


def ncdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def npdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def expiry_instant(expiry: dt.date) -> dt.datetime:
    return dt.datetime(expiry.year, expiry.month, expiry.day, 15, 30, tzinfo=KOLKATA)


def years(ts: dt.datetime, expiry: dt.date) -> float:
    """ACT/365 from ts to 15:30 IST on the expiry date."""
    return (expiry_instant(expiry) - ts).total_seconds() / (365 * 86400)


def black76(forward: float, strike: float, t: float, vol: float, rate: float, is_call: bool) -> float:
    sd = vol * math.sqrt(t)
    d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    df = math.exp(-rate * t)
    if is_call:
        return df * (forward * ncdf(d1) - strike * ncdf(d2))
    return df * (strike * ncdf(-d2) - forward * ncdf(-d1))


def vega(forward: float, strike: float, t: float, vol: float, rate: float) -> float:
    """d price / d vol (per 1.00 of vol)."""
    sd = vol * math.sqrt(t)
    d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
    return math.exp(-rate * t) * forward * npdf(d1) * math.sqrt(t)


def implied_vol(price: float, forward: float, strike: float, t: float, rate: float, is_call: bool) -> float:
    return brentq(
        lambda s: black76(forward, strike, t, s, rate, is_call) - price,
        1e-4,
        5.0,
        xtol=1e-12,
        rtol=1e-12,
        maxiter=500,
    )


def black76_array(forward, strike, t, vol, rate, is_call):
    """Vectorised Black-76 (numpy arrays broadcast)."""
    sd = np.asarray(vol) * np.sqrt(t)
    d1 = (np.log(np.asarray(forward) / np.asarray(strike)) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    df = np.exp(-np.asarray(rate) * t)
    call = df * (forward * ndtr(d1) - strike * ndtr(d2))
    put = df * (strike * ndtr(-d2) - forward * ndtr(-d1))
    return np.where(is_call, call, put)
