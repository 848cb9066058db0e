"""The WebSocket subscription protocol (SPEC §10): every client message is validated here.

A client message is a JSON object with a ``type``: ``subscribe`` and ``unsubscribe`` (with
``channel``, ``instrument_key`` and ``params``), ``ping`` or ``list``. A bad message raises
:class:`ProtocolError`, which the consumer sends as an ``error`` message; the connection stays open.

A subscription names a **feed**: what is computed once per process per update and sent to every
socket that subscribed to it (``streaming.feeds``), and the **topic**: the Redis pub/sub channel
whose messages announce an update of the feed. Validating a subscription resolves its instrument
(a registry lookup, so :func:`subscription_from` is synchronous and runs in a thread).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import orjson

from greeks.services import UPDATES_CHANNEL_PREFIX as GREEKS_TOPIC_PREFIX
from moneyness.core.levels import GRAMMAR, InvalidLevel, parse_level
from moneyness.services import UPDATES_CHANNEL_PREFIX as MONEYNESS_TOPIC_PREFIX
from signalsvc.core.keys import OPTIONS, InvalidKey, parse_key
from signalsvc.instruments.selectors import UnknownInstrument, instrument_ref
from signalsvc.marketdata.bar_events import CHANNEL_PREFIX as BARS_TOPIC_PREFIX
from timeframes.core import indicators
from timeframes.core.grammar import TIMEFRAME_GRAMMAR, InvalidTimeframe
from timeframes.selectors import timeframe_parse

CHANNELS = ("greeks", "indicators", "moneyness", "atm_iv", "bars")
MESSAGE_TYPES = ("subscribe", "unsubscribe", "ping", "list")
MONEYNESS_KEY = "moneyness_greeks"  # the seed's instrument_key for moneyness subscriptions
DEFAULT_TIMEFRAME = "1m"


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


@dataclass(frozen=True)
class Feed:
    """What is computed once per update, for every socket subscribed to it."""

    channel: str
    instrument_key: str  # canonical: the option, the instrument, or the underlying's key
    instrument_id: int
    params: tuple  # sorted (name, value) pairs, normalised

    @property
    def params_dict(self) -> dict:
        return dict(self.params)


@dataclass(frozen=True)
class Subscription:
    key: str  # the subscription key: the same fields give the same key
    feed: Feed
    topic: str  # Redis pub/sub channel announcing updates of the feed
    instrument_key: str  # as the client wrote it (echoed in data messages)

    @cached_property
    def json_fields(self) -> str:
        """The subscription's fields of a data message, as JSON object members (encoded once)."""
        fields = {
            "channel": self.feed.channel,
            "instrument_key": self.instrument_key,
            "subscription_key": self.key,
        }
        return orjson.dumps(fields).decode()[1:-1]


def parse_message(text: str) -> dict:
    """The client message as a dict with a known ``type``, or ProtocolError."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError("invalid_json", "the message is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("invalid_message", "a message must be a JSON object with a `type`")
    _one_of("unknown_type", "message type", message.get("type"), MESSAGE_TYPES, "types")
    return message


def _one_of(code: str, what: str, value: object, allowed: tuple[str, ...], detail: str) -> None:
    if value not in allowed:
        raise ProtocolError(
            code, f"unknown {what} {value!r}; expected one of {', '.join(allowed)}", {detail: list(allowed)}
        )


def _text(params: dict, name: str, *, required: bool = False, default: str | None = None) -> str | None:
    value = params.get(name, default)
    if value is None:
        if required:
            raise ProtocolError("missing_parameter", f"params.{name} is required")
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ProtocolError("invalid_parameter", f"params.{name} must be a string or a number")
    return str(value)


def _expiry(params: dict) -> str | None:
    value = _text(params, "expiry_date")
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ProtocolError(
            "invalid_parameter", f"params.expiry_date={value!r} is not an ISO date (YYYY-MM-DD)"
        ) from None


def _instrument(key: str):
    try:
        return instrument_ref(key)
    except InvalidKey as exc:
        raise ProtocolError("invalid_instrument_key", str(exc)) from None
    except UnknownInstrument as exc:
        raise ProtocolError(
            "unknown_instrument", f"unknown instrument {exc.key}", {"instrument_key": exc.key}
        ) from None


def _underlying(message: dict, params: dict):
    from moneyness.selectors import NotAnUnderlying, underlying_get

    given = params.get("underlying")
    if given is None and message.get("instrument_key") not in (None, MONEYNESS_KEY):
        given = message.get("instrument_key")
    if given is None:
        raise ProtocolError(
            "missing_parameter",
            "params.underlying is required: a symbol (NIFTY) or an index key (NSE@NIFTY@equity_spot)",
        )
    if not isinstance(given, str):
        raise ProtocolError("invalid_parameter", "params.underlying must be a string")
    try:
        return underlying_get(given)
    except NotAnUnderlying as exc:
        raise ProtocolError("not_an_underlying", str(exc)) from None
    except InvalidKey as exc:
        raise ProtocolError("invalid_underlying", str(exc)) from None
    except UnknownInstrument as exc:
        raise ProtocolError(
            "unknown_underlying", f"unknown underlying {exc.key}", {"underlying": exc.key}
        ) from None


def _timeframe(params: dict) -> str:
    value = _text(params, "timeframe", default=DEFAULT_TIMEFRAME)
    try:
        return timeframe_parse(value).label
    except InvalidTimeframe as exc:
        raise ProtocolError("invalid_timeframe", str(exc), {"grammar": TIMEFRAME_GRAMMAR}) from None


def subscription_from(message: dict) -> Subscription:
    """The subscription a subscribe/unsubscribe message names (ProtocolError when it is bad)."""
    channel = message.get("channel")
    _one_of("unknown_channel", "channel", channel, CHANNELS, "channels")
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError("invalid_parameter", "params must be a JSON object")
    given_key = message.get("instrument_key")
    if given_key is not None and not isinstance(given_key, str):
        raise ProtocolError("invalid_instrument_key", "instrument_key must be a string")

    if channel in ("moneyness", "atm_iv"):
        underlying = _underlying(message, params)
        normalised = {"expiry_date": _expiry(params)}
        if channel == "moneyness":
            try:
                normalised["moneyness_level"] = parse_level(params.get("moneyness_level", "ATM")).name
            except InvalidLevel as exc:
                raise ProtocolError("invalid_level", str(exc), {"grammar": GRAMMAR}) from None
        feed = Feed(channel, underlying.key, underlying.id, tuple(sorted(normalised.items())))
        topic = MONEYNESS_TOPIC_PREFIX + underlying.key
    else:
        if not given_key:
            raise ProtocolError("missing_parameter", f"instrument_key is required for channel {channel}")
        instrument = _instrument(given_key)
        if channel == "greeks":
            if instrument.product != OPTIONS:
                raise ProtocolError(
                    "not_an_option",
                    f"{given_key} is not an option key; for an underlying subscribe to the moneyness "
                    "or atm_iv channel",
                )
            normalised = {}
            topic = GREEKS_TOPIC_PREFIX + parse_key(instrument.key).underlying_key
        elif channel == "bars":
            normalised = {"timeframe": _timeframe(params)}
            topic = f"{BARS_TOPIC_PREFIX}{instrument.id}"
        else:  # indicators
            name = _text(params, "indicator", required=True)
            rest = {k: v for k, v in params.items() if k not in ("indicator", "timeframe")}
            try:
                spec = indicators.get_spec(name)
                values = indicators.validate(spec.name, rest)
            except indicators.InvalidIndicator as exc:
                raise ProtocolError("invalid_indicator", str(exc), {"indicator": name}) from None
            normalised = {"indicator": spec.name, "timeframe": _timeframe(params), **values}
            topic = f"{BARS_TOPIC_PREFIX}{instrument.id}"
        feed = Feed(channel, instrument.key, instrument.id, tuple(sorted(normalised.items())))
    key = (
        f"{channel}:{feed.instrument_key}:"
        + orjson.dumps({k: v for k, v in feed.params if v is not None}, option=orjson.OPT_SORT_KEYS).decode()
    )
    return Subscription(key=key, feed=feed, topic=topic, instrument_key=given_key or feed.instrument_key)
