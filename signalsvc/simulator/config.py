"""Parameters of the demo market. All rates and volatilities are annualised in calendar time
(ACT/365); intervals are in seconds; quantities are in lots unless stated otherwise."""

from __future__ import annotations

from dataclasses import dataclass, field

from .surface import check_ssvi_parameters


@dataclass(frozen=True)
class UnderlyingConfig:
    symbol: str
    spot_low: float  # the initial spot is drawn uniformly from [spot_low, spot_high];
    spot_high: float  # the long-run anchor of the price is the band's centre
    strike_interval: float  # exchange strike step (index points)
    lot_size: int  # units per lot (futures and options)
    weekly_expiries: int  # listed weekly option expiries (Tuesdays)
    monthly_expiries: int  # listed monthly option expiries after the last weekly
    future_expiries: int = 3  # listed monthly futures
    exchange: str = "NSE"
    # stochastic variance (CIR/Heston) and jumps
    long_run_vol: float = 0.13  # sqrt of the long-run variance
    kappa: float = 5.0  # variance mean reversion per year (half-life ln2/kappa years)
    vol_of_vol: float = 0.22  # xi in dv = ... + xi sqrt(v) dW
    spot_vol_correlation: float = -0.6  # leverage
    jump_intensity: float = 150.0  # jumps per year (about 0.4 a day)
    jump_mean: float = -0.0005  # mean log-jump
    jump_stdev: float = 0.003  # stdev of the log-jump
    anchor_pull: float = 1.0  # per year: weak mean reversion of ln S toward the band centre
    # SSVI skew (see surface.py)
    skew_rho: float = -0.6
    skew_eta: float = 1.0
    skew_gamma: float = 0.45
    # microstructure
    option_lots_per_tick: float = 40.0  # mean lots per tick of an ATM option of the nearest expiry
    future_lots_per_tick: float = 10.0  # mean lots per tick of the nearest future
    option_oi_lots: float = 60000.0  # open interest of an ATM option of the nearest expiry
    future_oi_lots: float = 150000.0  # open interest of the nearest future

    def __post_init__(self) -> None:
        if not 0 < self.spot_low <= self.spot_high:
            raise ValueError(f"{self.symbol}: need 0 < spot_low <= spot_high")
        if self.strike_interval <= 0 or self.lot_size <= 0:
            raise ValueError(f"{self.symbol}: strike_interval and lot_size must be positive")
        if self.weekly_expiries < 0 or self.monthly_expiries < 0 or self.future_expiries < 0:
            raise ValueError(f"{self.symbol}: expiry counts must be >= 0")
        if self.weekly_expiries + self.monthly_expiries == 0:
            raise ValueError(f"{self.symbol}: lists no option expiry")
        if min(self.long_run_vol, self.kappa, self.vol_of_vol) <= 0:
            raise ValueError(f"{self.symbol}: long_run_vol, kappa and vol_of_vol must be positive")
        if 2 * self.kappa * self.long_run_vol**2 < self.vol_of_vol**2:
            raise ValueError(f"{self.symbol}: variance parameters violate the Feller condition")
        if not -1 < self.spot_vol_correlation < 1:
            raise ValueError(f"{self.symbol}: spot_vol_correlation must be in (-1, 1)")
        if self.jump_intensity < 0 or self.jump_stdev < 0 or self.anchor_pull < 0:
            raise ValueError(f"{self.symbol}: jump_intensity, jump_stdev, anchor_pull must be >= 0")
        check_ssvi_parameters(self.skew_rho, self.skew_eta, self.skew_gamma)

    @property
    def anchor(self) -> float:
        return 0.5 * (self.spot_low + self.spot_high)


NIFTY = UnderlyingConfig(
    symbol="NIFTY",
    spot_low=24500.0,
    spot_high=25500.0,
    strike_interval=50.0,
    lot_size=75,
    weekly_expiries=2,
    # Two monthlies, as NSE lists months ahead: the expiries then always bracket 30 days, so the
    # 30-day constant-maturity ATM IV exists at any date.
    monthly_expiries=2,
)

BANKNIFTY = UnderlyingConfig(
    symbol="BANKNIFTY",
    spot_low=54000.0,
    spot_high=55500.0,
    strike_interval=100.0,
    lot_size=35,
    weekly_expiries=0,
    monthly_expiries=3,
    long_run_vol=0.155,
    vol_of_vol=0.25,
    spot_vol_correlation=-0.5,
    jump_stdev=0.004,
    skew_rho=-0.5,
    skew_eta=1.1,
    option_lots_per_tick=30.0,
    future_lots_per_tick=6.0,
    option_oi_lots=40000.0,
    future_oi_lots=80000.0,
)


@dataclass(frozen=True)
class MarketConfig:
    rate: float = 0.065  # continuously compounded risk-free rate r
    dividend_yield: float = 0.0  # continuous dividend yield q; forward F = S exp((r - q) t)
    tick_size: float = 0.05  # price grid of every published price (1 / tick_size an integer)
    strike_range: float = 0.15  # strikes listed within +-15% of the spot at listing time
    # seconds between two ticks of one strike (its call and put tick together): ATM .. at the edge
    # of the strike range, each drawn +-15% around that; a step every second adds about half a
    # second on average. (0, 0) ticks every option at every step (a synchronous test market).
    option_tick_interval: tuple[float, float] = (2.5, 5.5)
    option_half_spread: float = 0.0005  # ATM half spread as a fraction of the price (>= 1 tick)
    future_half_spread: float = 0.00001  # futures half spread as a fraction of the price
    futures_basis_noise: float = 0.00001  # stationary stdev of the futures' relative basis noise
    futures_basis_halflife: float = 30.0  # seconds
    index_correlation: float = 0.75  # correlation of the price shocks of the indices
    max_substep_seconds: float = 60.0  # long gaps between steps are simulated in substeps
    max_substeps: int = 5000  # ... of at most this many (longer substeps beyond)
    underlyings: tuple[UnderlyingConfig, ...] = field(default_factory=lambda: (NIFTY, BANKNIFTY))

    def __post_init__(self) -> None:
        per_unit = 1.0 / self.tick_size if self.tick_size > 0 else 0.0
        if self.tick_size <= 0 or abs(per_unit - round(per_unit)) > 1e-9:
            raise ValueError(f"tick_size must divide 1 (e.g. 0.05), got {self.tick_size}")
        if not 0 < self.strike_range < 1:
            raise ValueError(f"strike_range must be in (0, 1), got {self.strike_range}")
        lo, hi = self.option_tick_interval
        if not 0 <= lo <= hi:
            raise ValueError(f"option_tick_interval must be 0 < low <= high, got {self.option_tick_interval}")
        if not -1 < self.index_correlation < 1:
            raise ValueError(f"index_correlation must be in (-1, 1), got {self.index_correlation}")
        if self.max_substep_seconds <= 0 or self.max_substeps < 1:
            raise ValueError("max_substep_seconds and max_substeps must be positive")
        if min(self.option_half_spread, self.future_half_spread, self.futures_basis_noise) < 0:
            raise ValueError("spreads and basis noise must be >= 0")
        if self.futures_basis_halflife <= 0:
            raise ValueError("futures_basis_halflife must be positive")
        symbols = [u.symbol for u in self.underlyings]
        if not symbols or len(set(symbols)) != len(symbols):
            raise ValueError(f"underlyings must be non-empty with distinct symbols, got {symbols}")
