"""What the fault tests count, read from the private Redis and PostgreSQL independently of the
service's code.

Bars: the stream is the ledger. Every bar stores ``source_seq``, the stream position of the last
tick merged into it, so each stored bar can be checked against exactly the entries it claims to
hold, while the simulator keeps publishing:

* exact: a bar equals the OHLCV that the stream's entries of its (instrument, minute) up to its
  ``source_seq`` imply (a tick merged twice would double its volume; a lost one would change it);
* complete: every entry at or below the consumer group's *acknowledged frontier* (the last
  delivered id when nothing is pending, else just below the oldest pending entry) is in its bar
  (the bar exists and its ``source_seq`` is at or past the entry).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import redis

UTC = dt.UTC
STREAM = "md:ticks"
GROUP = "ingest"
DEAD_LETTERS = "md:ticks:dead"


def position(entry_id: str) -> int:
    ms, _, seq = entry_id.partition("-")
    return int(ms) * 1_000_000 + int(seq or 0)


def acked_frontier(client: redis.Redis) -> int:
    """Every entry at or below this stream position is acknowledged by the ingest group."""
    group = next(g for g in client.xinfo_groups(STREAM) if g["name"] == GROUP)
    last = position(group["last-delivered-id"])
    if group["pending"] == 0:
        return last
    oldest = client.xpending(STREAM, GROUP)["min"]
    if oldest is None:  # acknowledged between the two calls
        return last
    return min(last, position(oldest) - 1)


def last_position(client: redis.Redis) -> int:
    info = client.xinfo_stream(STREAM)
    return position(info["last-generated-id"])


@dataclass
class BarsReport:
    entries: int  # stream entries read
    covered: int  # entries at or below the acknowledged frontier: all must be in bars
    bars: int  # bars stored
    frontier: int
    dead_letters: int
    doubled_or_wrong: list  # (key, minute, stored, implied)
    missing: list  # (entry id, key, minute, the bar's source_seq or None)

    def ok(self) -> bool:
        return not self.doubled_or_wrong and not self.missing and self.dead_letters == 0

    def describe(self) -> str:
        return (
            f"{self.entries} entries, {self.covered} acknowledged, {self.bars} bars, "
            f"{self.dead_letters} dead letters; wrong bars (first 5): {self.doubled_or_wrong[:5]}; "
            f"ticks missing from their bars (first 5, of {len(self.missing)}): {self.missing[:5]}"
        )


def _minute(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms // 60_000 * 60, tz=UTC)


def bars_check(client: redis.Redis, pg) -> BarsReport:
    # Order matters: the frontier first (it only grows), then the bars, then the entries (a
    # superset of what the bars and the frontier can refer to).
    frontier = acked_frontier(client)
    with pg.cursor() as cur:
        cur.execute(
            "SELECT i.key, b.ts, b.open, b.high, b.low, b.close, b.volume, b.oi, b.source_seq "
            "FROM market_bar_1m b JOIN instruments_instrument i ON i.id = b.instrument_id"
        )
        stored = {(r[0], r[1].astimezone(UTC)): r[2:] for r in cur.fetchall()}
    entries = client.xrange(STREAM)
    per_bar: dict[tuple[str, dt.datetime], list[tuple[int, str, dict]]] = {}
    for entry_id, fields in entries:
        per_bar.setdefault((fields["key"], _minute(int(fields["ts"]))), []).append(
            (position(entry_id), entry_id, fields)
        )
    wrong, missing, covered = [], [], 0
    for bar_key, ticks in per_bar.items():
        bar = stored.get(bar_key)
        seq = bar[6] if bar is not None else None
        for pos, entry_id, _ in ticks:
            if pos <= frontier:
                covered += 1
                if seq is None or seq < pos:
                    missing.append((entry_id, *bar_key, seq))
        if bar is None:
            continue
        held = [f for pos, _, f in ticks if pos <= seq]
        if not held:
            wrong.append((*bar_key, bar, "no entry at or below its source_seq"))
            continue
        prices = [float(f["ltp"]) for f in held]
        ois = [float(f["oi"]) for f in held if f.get("oi")]
        implied = (
            prices[0], max(prices), min(prices), prices[-1],
            sum(float(f.get("volume") or 0) for f in held), ois[-1] if ois else None,
        )  # fmt: skip
        actual = tuple(bar[:6])
        same = actual[:4] == implied[:4] and math.isclose(actual[4], implied[4], rel_tol=1e-12, abs_tol=1e-9)
        same = same and actual[5] == implied[5]
        if not same:
            wrong.append((*bar_key, actual, implied))
    for bar_key in stored.keys() - per_bar.keys():
        wrong.append((*bar_key, stored[bar_key], "a bar with no entry in the stream"))
    return BarsReport(
        entries=len(entries),
        covered=covered,
        bars=len(stored),
        frontier=frontier,
        dead_letters=client.xlen(DEAD_LETTERS) if client.exists(DEAD_LETTERS) else 0,
        doubled_or_wrong=wrong,
        missing=missing,
    )


def greeks_minutes(pg) -> dict[tuple[str, dt.datetime], int]:
    """(underlying key, minute) -> Greeks rows stored."""
    with pg.cursor() as cur:
        cur.execute(
            "SELECT u.key, g.ts, count(*) FROM greeks_option_1m g "
            "JOIN instruments_instrument u ON u.id = g.underlying_id GROUP BY u.key, g.ts"
        )
        return {(k, ts.astimezone(UTC)): n for k, ts, n in cur.fetchall()}


def duplicate_rows(pg) -> dict[str, int]:
    """Rows sharing their natural key, per table (each must be 0)."""
    queries = {
        "market_bar_1m": "SELECT count(*) - count(DISTINCT (instrument_id, ts)) FROM market_bar_1m",
        "greeks_option_1m": "SELECT count(*) - count(DISTINCT (instrument_id, ts)) FROM greeks_option_1m",
        "signal_moneyness_greeks": (
            "SELECT count(*) - count(DISTINCT (underlying_id, expiry, level, ts)) FROM signal_moneyness_greeks"
        ),
        "signal_atm_iv": "SELECT count(*) - count(DISTINCT (underlying_id, expiry, ts)) FROM signal_atm_iv",
    }
    out = {}
    with pg.cursor() as cur:
        for table, sql in queries.items():
            cur.execute(sql)
            out[table] = cur.fetchone()[0]
    return out
