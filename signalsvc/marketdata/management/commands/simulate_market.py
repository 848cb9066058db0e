"""Publish the demo market into the market-data stream (make run's simulator process)."""

import datetime as dt
import logging
import signal
import time

import redis
from django.conf import settings
from django.core.management.base import BaseCommand

from signalsvc.instruments.models import Instrument
from signalsvc.instruments.selectors import instrument_ids
from signalsvc.instruments.services import instruments_upsert
from signalsvc.marketdata.services import BarIn, bars_upsert
from signalsvc.marketdata.stream import publish, redis_client, tick_fields
from signalsvc.simulator.config import MarketConfig
from signalsvc.simulator.market import DemoMarket

log = logging.getLogger(__name__)

# ~1 hour of ticks at the demo's rate: far more than the consumer falls behind by.
STREAM_MAXLEN = 1_000_000


class Command(BaseCommand):
    help = (
        "Run the simulated NSE-like market: registers its instruments, backfills 1-minute bars of "
        "the indices and futures, then publishes ticks into the market-data stream in real time "
        "and keeps its true volatility surface in SIMULATOR_TRUTH_FILE."
    )

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between steps")
        parser.add_argument("--backfill-minutes", type=int, default=3 * 1440)
        parser.add_argument("--truth-file", default=None)
        parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")

    def handle(self, *args, seed, interval, backfill_minutes, truth_file, duration, **options):
        truth_file = truth_file or settings.SIMULATOR_TRUTH_FILE
        stopping = {"flag": False}

        def stop(signum, frame):
            stopping["flag"] = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

        now = dt.datetime.now(dt.UTC)
        config = MarketConfig(rate=settings.RISK_FREE_RATE, dividend_yield=settings.DIVIDEND_YIELD)
        market = DemoMarket(start=now, seed=seed, config=config)
        listed = self.register(market)
        if backfill_minutes > 0:
            self.backfill(market, end=now, minutes=backfill_minutes)
        client = redis_client()
        market.write_truth(truth_file)
        self.stdout.write(f"simulator: {listed} instruments; truth in {truth_file}")
        version = market.listing_version
        last_truth = time.monotonic()
        started = time.monotonic()
        published = 0
        unreachable_since = None
        while not stopping["flag"]:
            if duration is not None and time.monotonic() - started >= duration:
                break
            # max(): a wall clock stepped backwards must not stop the market.
            ticks = market.step(max(dt.datetime.now(dt.UTC), market.now))
            if market.listing_version != version:
                version = market.listing_version
                self.register(market)
            try:
                published += publish(
                    client,
                    (
                        tick_fields(
                            key=t.key, ts=t.ts, ltp=t.ltp, volume=t.volume, oi=t.oi, bid=t.bid, ask=t.ask
                        )
                        for t in ticks
                    ),
                    maxlen=STREAM_MAXLEN,
                )
                if unreachable_since is not None:
                    log.warning("simulator: Redis is back after %.1f s", time.monotonic() - unreachable_since)
                    unreachable_since = None
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # Redis is away: this step's ticks were not acknowledged (or only some were, and
                # those are in the stream). The market moves on; publishing resumes with Redis.
                if unreachable_since is None:
                    log.warning("simulator: Redis unavailable (%s); ticks are dropped until it returns", exc)
                    unreachable_since = time.monotonic()
            if time.monotonic() - last_truth >= 2:
                market.write_truth(truth_file)
                last_truth = time.monotonic()
            time.sleep(max(0.0, interval - (time.monotonic() - started) % interval))
        market.write_truth(truth_file)
        self.stdout.write(f"simulator stopped after publishing {published} ticks")

    def register(self, market: DemoMarket) -> int:
        specs = market.instruments()
        instruments_upsert(specs=specs)
        listed = {s.key for s in specs}
        # Expired demo instruments stay in the registry (their history stays readable) but inactive.
        Instrument.objects.filter(active=True, exchange="NSE").exclude(key__in=listed).filter(
            symbol__in={s.symbol for s in specs}
        ).update(active=False)
        return len(specs)

    def backfill(self, market: DemoMarket, *, end: dt.datetime, minutes: int) -> None:
        history = market.history(end=end, minutes=minutes)
        ids = instrument_ids(keys={b.key for b in history})
        bars = [
            BarIn(ids[b.key], b.ts, b.open, b.high, b.low, b.close, b.volume, b.oi)
            for b in history
            if b.key in ids
        ]
        for start in range(0, len(bars), 50_000):
            bars_upsert(bars=bars[start : start + 50_000])
        self.stdout.write(f"simulator: backfilled {len(bars)} one-minute bars")
