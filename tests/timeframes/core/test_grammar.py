"""Timeframe grammar: Nm, Nh, 1d, custom_N; everything else is rejected with the grammar."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timeframes.core.grammar import (
    STANDARD_TIMEFRAMES,
    TIMEFRAME_GRAMMAR,
    InvalidTimeframe,
    Timeframe,
    parse_timeframe,
)


@pytest.mark.parametrize(
    ("text", "minutes", "label", "standard"),
    [
        ("1m", 1, "1m", True),
        ("5m", 5, "5m", True),
        ("15m", 15, "15m", True),
        ("30m", 30, "30m", True),
        ("1h", 60, "1h", True),
        ("4h", 240, "4h", True),
        ("7m", 7, "7m", False),
        ("60m", 60, "1h", True),
        ("240m", 240, "4h", True),
        ("90m", 90, "90m", False),
        ("120m", 120, "2h", False),
        ("2h", 120, "2h", False),
        ("6h", 360, "6h", False),
        ("375m", 375, "375m", False),
        ("custom_7", 7, "7m", False),
        ("custom_1", 1, "1m", True),
        ("custom_60", 60, "1h", True),
        ("custom_375", 375, "375m", False),
    ],
)
def test_accepted(text, minutes, label, standard):
    tf = parse_timeframe(text)
    assert tf == Timeframe(minutes=minutes, is_daily=False, label=label)
    assert tf.is_standard is standard
    assert str(tf) == label


def test_daily():
    tf = parse_timeframe("1d")
    assert tf == Timeframe(minutes=None, is_daily=True, label="1d")
    assert tf.is_standard


def test_equal_lengths_parse_equal():
    assert parse_timeframe("1h") == parse_timeframe("60m") == parse_timeframe("custom_60")
    assert parse_timeframe("4h").minutes == 240


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 5m",
        "5m ",
        "5m\n",
        "0m",
        "00m",
        "05m",
        "0h",
        "7x",
        "-5m",
        "+5m",
        "5M",
        "1H",
        "1D",
        "1.5h",
        "2.0m",
        "2d",
        "0d",
        "1w",
        "60",
        "m",
        "h",
        "custom_0",
        "custom_",
        "custom_07",
        "custom_7m",
        "Custom_7",
        "custom-7",
        "376m",
        "1441m",
        "7h",
        "custom_376",
        "99999999999999999999m",
        "\uff15m",  # a non-ASCII (full-width) digit
        "1m1",
        "5 m",
    ],
)
def test_rejected_with_the_grammar_in_the_message(text):
    with pytest.raises(InvalidTimeframe) as err:
        parse_timeframe(text)
    assert TIMEFRAME_GRAMMAR in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("value", [None, 5, 5.0, b"5m", ["5m"]])
def test_non_strings_are_rejected(value):
    with pytest.raises(InvalidTimeframe, match="must be a string"):
        parse_timeframe(value)


def test_longer_than_the_session_names_the_limit():
    with pytest.raises(InvalidTimeframe, match=r"376 minutes is longer than the 375-minute session"):
        parse_timeframe("376m")


def test_max_minutes_follows_the_calendar():
    assert parse_timeframe("1440m", max_minutes=1440).label == "24h"
    assert parse_timeframe("24h", max_minutes=1440).minutes == 1440
    assert parse_timeframe("7h", max_minutes=1440).minutes == 420
    with pytest.raises(InvalidTimeframe):
        parse_timeframe("1441m", max_minutes=1440)
    with pytest.raises(InvalidTimeframe):
        parse_timeframe("2h", max_minutes=60)
    assert parse_timeframe("1d", max_minutes=60).is_daily


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "375"])
def test_max_minutes_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="max_minutes"):
        parse_timeframe("5m", max_minutes=bad)


def test_standard_timeframes():
    assert STANDARD_TIMEFRAMES == ("1m", "5m", "15m", "30m", "1h", "4h", "1d")
    assert all(parse_timeframe(t).label == t and parse_timeframe(t).is_standard for t in STANDARD_TIMEFRAMES)


def test_grammar_text_names_every_form():
    for form in ("Nm", "Nh", "1d", "custom_N"):
        assert form in TIMEFRAME_GRAMMAR


@given(st.integers(min_value=1, max_value=375))
def test_every_minute_count_up_to_the_session_round_trips(n):
    tf = parse_timeframe(f"{n}m")
    assert tf.minutes == n
    assert parse_timeframe(f"custom_{n}") == tf
    assert parse_timeframe(tf.label) == tf


@given(st.text(max_size=8))
def test_arbitrary_text_parses_or_raises_invalid_timeframe(text):
    try:
        tf = parse_timeframe(text)
    except InvalidTimeframe:
        return
    assert parse_timeframe(tf.label) == tf
    assert tf.is_daily or 1 <= tf.minutes <= 375
