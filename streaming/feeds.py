"""What each feed sends (SPEC §10), computed once per process per update for every socket that
subscribed to it, with the same code and the same errors as the realtime REST endpoints.

``feeds_compute`` takes the feeds of one topic and returns, per feed, either the JSON of its
``data`` (bytes, encoded once) or an error. It is synchronous (Redis and PostgreSQL reads) and the
hub runs it in a thread, once per topic update.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from greeks import selectors as greeks_selectors
from moneyness import selectors as moneyness_selectors
from moneyness.apis import api_errors as moneyness_errors
from moneyness.core.levels import parse_level
from signalsvc.api.errors import ApiError
from signalsvc.core.keys import parse_key
from signalsvc.core.numbers import finite_or_none
from signalsvc.instruments.selectors import instrument_ref
from streaming.protocol import Feed
from timeframes import indicator_selectors
from timeframes import selectors as timeframes_selectors
from timeframes.apis import latest_json as indicator_latest_json
from timeframes.render import iso_utc


@dataclass(frozen=True)
class FeedError:
    code: str
    message: str
    details: dict

    @classmethod
    def of(cls, exc: ApiError) -> FeedError:
        return cls(exc.error_code, exc.message, exc.details or {})


def _underlying(feed: Feed) -> moneyness_selectors.Underlying:
    return moneyness_selectors.Underlying(
        feed.instrument_id, feed.instrument_key, parse_key(feed.instrument_key).symbol
    )


def _expiry(feed: Feed) -> dt.date | None:
    value = feed.params_dict.get("expiry_date")
    return dt.date.fromisoformat(value) if value else None


def _moneyness(feed: Feed) -> bytes:
    with moneyness_errors():
        if feed.channel == "atm_iv":
            payload = moneyness_selectors.atm_iv_realtime(underlying=_underlying(feed), expiry=_expiry(feed))
        else:
            payload = moneyness_selectors.level_greeks_realtime(
                underlying=_underlying(feed),
                level=parse_level(feed.params_dict["moneyness_level"]),
                expiry=_expiry(feed),
            )
    return orjson.dumps(payload)


def _bars(feed: Feed) -> bytes:
    """The bucket of the timeframe holding the instrument's latest 1-minute bar (maybe still open)."""
    timeframe = timeframes_selectors.timeframe_parse(feed.params_dict["timeframe"])
    try:
        bars, latest = indicator_selectors.bar_latest(instrument_id=feed.instrument_id, timeframe=timeframe)
    except indicator_selectors.NoData:
        raise ApiError(
            status_code=404, code="no_data", message=f"no 1-minute bars stored for {feed.instrument_key}"
        ) from None
    value = {f: finite_or_none(bars[f][-1]) for f in ("open", "high", "low", "close", "volume", "oi")}
    return orjson.dumps(
        {
            "instrument_key": feed.instrument_key,
            "timeframe": timeframe.label,
            "timestamp": iso_utc(bars["start"][-1:])[0],
            "value": value,
            "metadata": {
                "bucket_end": iso_utc(bars["end"][-1:])[0],
                "last_bar": latest.astimezone(dt.UTC).isoformat(),
            },
        }
    )


def _indicator(feed: Feed) -> bytes:
    params = feed.params_dict
    name, timeframe = params.pop("indicator"), params.pop("timeframe")
    return indicator_latest_json(
        instrument_ref(feed.instrument_key), name, params, timeframes_selectors.timeframe_parse(timeframe)
    )


_ONE_BY_ONE = {"moneyness": _moneyness, "atm_iv": _moneyness, "bars": _bars, "indicators": _indicator}


async def greeks_read(redis, feeds: list[Feed]) -> dict[Feed, bytes | FeedError]:
    """The greeks feeds' data, read in the event loop with one round trip (one HMGET per chain)
    from ``redis`` (an asyncio client): the stored JSON of each option, or a ``no_data`` error."""
    keys = [f.instrument_key for f in feeds]
    reads = greeks_selectors.latest_reads(keys)
    pipe = redis.pipeline(transaction=False)
    for chain, fields in reads:
        pipe.hmget(chain, fields)
    values = greeks_selectors.latest_reorder(keys, reads, await pipe.execute())
    return {
        feed: value
        if value is not None
        else FeedError("no_data", f"no greeks computed yet for {feed.instrument_key}; updates follow", {})
        for feed, value in zip(feeds, values, strict=True)
    }


def feeds_compute(feeds: Iterable[Feed]) -> dict[Feed, bytes | FeedError]:
    """The data of every feed (JSON bytes) or its error, for the feeds that are not greeks
    (those read only Redis: the hub reads them in its event loop, ``greeks_read``)."""
    out: dict[Feed, bytes | FeedError] = {}
    for feed in feeds:
        try:
            out[feed] = _ONE_BY_ONE[feed.channel](feed)
        except ApiError as exc:
            out[feed] = FeedError.of(exc)
    return out
