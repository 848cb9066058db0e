import datetime as dt
from decimal import Decimal

import pytest

from signalsvc.core.keys import KEY_GRAMMAR, InvalidKey, build_key, parse_key


@pytest.mark.parametrize(
    ("text", "product", "expiry", "option_type", "strike"),
    [
        ("NSE@NIFTY@equity_spot", "equity_spot", None, None, None),
        ("NSE@NIFTY@equity_futures@2025-07-31", "equity_futures", dt.date(2025, 7, 31), None, None),
        (
            "NSE@NIFTY@equity_options@2025-07-10@call@21500",
            "equity_options",
            dt.date(2025, 7, 10),
            "call",
            Decimal(21500),
        ),
        (
            "NSE@M&M@equity_options@2025-07-31@put@2912.5",
            "equity_options",
            dt.date(2025, 7, 31),
            "put",
            Decimal("2912.5"),
        ),
    ],
)
def test_parse_valid_keys(text, product, expiry, option_type, strike):
    key = parse_key(text)
    assert (key.product, key.expiry, key.option_type, key.strike) == (product, expiry, option_type, strike)
    assert str(key) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "NSE",
        "NSE@NIFTY",
        "nse@NIFTY@equity_spot",
        "NSE@NIFTY@equity_swaps",
        "NSE@NIFTY@equity_spot@2025-07-31",
        "NSE@NIFTY@equity_futures",
        "NSE@NIFTY@equity_futures@2025-13-01",
        "NSE@NIFTY@equity_futures@20250731",
        "NSE@NIFTY@equity_options@2025-07-10@call",
        "NSE@NIFTY@equity_options@2025-07-10@CE@21500",
        "NSE@NIFTY@equity_options@2025-07-10@call@-5",
        "NSE@NIFTY@equity_options@2025-07-10@call@0",
        "NSE@NIFTY@equity_options@2025-07-10@call@NaN",
        "NSE@NIFTY@equity_options@2025-07-10@call@1e5",
        "NSE@NIFTY@equity_options@2025-07-10@call@21500@x",
    ],
)
def test_malformed_keys_name_the_grammar(text):
    with pytest.raises(InvalidKey) as error:
        parse_key(text)
    assert KEY_GRAMMAR in str(error.value)


def test_build_key_is_canonical():
    assert build_key("NSE", "NIFTY", "equity_options", dt.date(2025, 7, 10), "put", 21500.0) == (
        "NSE@NIFTY@equity_options@2025-07-10@put@21500"
    )
