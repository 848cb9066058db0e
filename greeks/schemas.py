"""OpenAPI documentation of the greeks endpoints' bodies (documentation only: the views answer the
stored JSON or plain dicts; see ``signalsvc.api.schemas``)."""

from __future__ import annotations

from rest_framework import serializers

from greeks.engine.reasons import IVReason, describe_reason
from signalsvc.api.schemas import number, one_of

OPTION_TYPE = ("call", "put")
IV_REASONS = tuple(describe_reason(int(reason)) for reason in IVReason)


class OptionGreeksSerializer(serializers.Serializer):
    """Units of ``greeks.engine.pricing``: delta and gamma per unit of the underlying; theta and
    charm per calendar day; vega, vanna and vomma per vol point; rho per 1 % of rate. Null where
    the IV has no solution."""

    delta = number()
    gamma = number()
    theta = number()
    vega = number()
    rho = number()
    vanna = number()
    vomma = number()
    charm = number()
    iv = number(help_text="Implied volatility, decimal (0.15 = 15 %)")


class RealtimeGreeksSerializer(serializers.Serializer):
    """The latest values of one option, as the chain task stored them."""

    instrument_key = serializers.CharField()
    underlying_key = serializers.CharField()
    timestamp = serializers.DateTimeField(help_text="The option tick's time")
    minute = serializers.DateTimeField(help_text="The minute the values are stored under")
    expiry = serializers.DateField()
    strike = serializers.FloatField()
    option_type = one_of("OptionType", *OPTION_TYPE)
    model = one_of("PricingModel", "black_scholes", "black76")
    underlying_price = serializers.FloatField(help_text="Spot")
    forward = serializers.FloatField()
    forward_source = one_of("ForwardSource", "future", "parity", "carry")
    option_price = number(help_text="Bid/ask mid, or the last price")
    price_source = one_of("PriceSource", "mid", "ltp")
    time_to_expiry = serializers.FloatField(help_text="Years (ACT/365) to 15:30 Asia/Kolkata on the expiry")
    iv = number(help_text="Decimal; null when it has no solution (iv_reason says why)")
    iv_reason = one_of("IvReason", *IV_REASONS)
    greeks = OptionGreeksSerializer()
    computed_at = serializers.DateTimeField()


class BatchGreeksRequestSerializer(serializers.Serializer):
    instrument_keys = serializers.ListField(
        child=serializers.CharField(),
        min_length=1,
        max_length=100,
        help_text="Option keys (API_V2_BATCH_SIZE)",
    )


class BatchGreeksKeyErrorSerializer(serializers.Serializer):
    code = one_of(
        "BatchGreeksErrorCode", "invalid_instrument_key", "unknown_instrument", "not_an_option", "no_data"
    )
    message = serializers.CharField()


class BatchGreeksSerializer(serializers.Serializer):
    results = serializers.DictField(
        child=RealtimeGreeksSerializer(), help_text="By instrument key as given: its latest values"
    )
    errors = serializers.DictField(
        child=BatchGreeksKeyErrorSerializer(), help_text="By instrument key as given"
    )
    requested = serializers.IntegerField()
    succeeded = serializers.IntegerField()


class CalculatorRowSerializer(serializers.Serializer):
    option_type = serializers.CharField(help_text="call or put (also c/p, CE/PE; any case)")
    underlying_price = serializers.FloatField(help_text="Spot, or the forward for black76")
    strike = serializers.FloatField()
    time_to_expiry = serializers.FloatField(required=False, help_text="Years (ACT/365); or expiry")
    expiry = serializers.DateField(required=False, help_text="To 15:30 Asia/Kolkata; or time_to_expiry")
    valuation_time = serializers.DateTimeField(required=False, help_text="With expiry; default now")
    rate = serializers.FloatField(required=False, help_text="Decimal; default RISK_FREE_RATE")
    dividend_yield = serializers.FloatField(required=False, help_text="Decimal; default DIVIDEND_YIELD")
    volatility = serializers.FloatField(required=False, help_text="Decimal: price and Greeks at it")
    option_price = serializers.FloatField(required=False, help_text="Implied volatility, then Greeks at it")


class CalculatorRequestSerializer(serializers.Serializer):
    model = one_of(
        "PricingModel", "black_scholes", "black76", required=False, help_text="Default black_scholes"
    )
    rows = CalculatorRowSerializer(many=True, help_text="At most GREEKS_CALCULATOR_MAX_ROWS")


class CalculatorResultSerializer(serializers.Serializer):
    """Units as in OptionGreeks; null where a value is not finite."""

    price = number()
    delta = number()
    gamma = number()
    theta = number()
    vega = number()
    rho = number()
    vanna = number()
    vomma = number()
    charm = number()
    iv = number(help_text="The volatility given, or the implied one (null when it has no solution)")
    iv_reason = one_of("IvReason", *IV_REASONS, required=False, help_text="Rows given an option_price only")


class CalculatorSerializer(serializers.Serializer):
    model = one_of("PricingModel", "black_scholes", "black76")
    count = serializers.IntegerField()
    results = CalculatorResultSerializer(many=True, help_text="In the order of the rows")
