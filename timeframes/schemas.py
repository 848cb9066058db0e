"""OpenAPI documentation of the timeframe and indicator endpoints' bodies (documentation only: the
views render their bodies with orjson and pre-rendered series items; see ``signalsvc.api.schemas``).

Historical series keep the original design's shape (SPEC §9): ``{instrument_key, start_time,
end_time, timeframe, data_points, time_series[{timestamp, value{…}, metadata{bucket_end, …}}]}``."""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from signalsvc.api.schemas import ErrorSerializer, IndicatorParameterSerializer, number, one_of


class SeriesHeadSerializer(serializers.Serializer):
    instrument_key = serializers.CharField()
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField()
    timeframe = serializers.CharField(help_text="The timeframe's canonical label, e.g. 1m, 7m, 1h, 1d")
    data_points = serializers.IntegerField(help_text="Buckets in time_series")


# -- bars --------------------------------------------------------------------------------------------------


class BarValueSerializer(serializers.Serializer):
    open = serializers.FloatField()
    high = serializers.FloatField()
    low = serializers.FloatField()
    close = serializers.FloatField()
    volume = serializers.FloatField()
    oi = number(help_text="The last open interest of the bucket; null when no bar has one")


class BarMetadataSerializer(serializers.Serializer):
    bucket_end = serializers.DateTimeField()
    bars = serializers.IntegerField(help_text="1-minute bars in the bucket")


class BarItemSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField(help_text="Start of the bucket")
    value = BarValueSerializer()
    metadata = BarMetadataSerializer()


class BarsCacheSerializer(serializers.Serializer):
    source = one_of("BarsCacheSource", "range", "sessions", "database", help_text="Where the bars came from")
    sessions_cached = serializers.IntegerField()
    sessions_computed = serializers.IntegerField()


class HistoricalBarsSerializer(SeriesHeadSerializer):
    cache = BarsCacheSerializer()
    time_series = BarItemSerializer(many=True)


# -- greeks ------------------------------------------------------------------------------------------------


class GreekValuesSerializer(serializers.Serializer):
    """The bucket's value of each field (last observation, or the mean with agg=mean); units of
    ``greeks.engine.pricing``, null when no observation has one."""

    iv = number()
    delta = number()
    gamma = number()
    theta = number()
    vega = number()
    rho = number()
    vanna = number()
    vomma = number()
    charm = number()
    option_price = number()
    underlying_price = number()


class AtmSideSerializer(serializers.Serializer):
    iv = number()
    delta = number()
    gamma = number()
    theta = number()
    vega = number()
    rho = number()
    vanna = number()
    vomma = number()
    charm = number()
    option_price = number()


class AtmGreekValuesSerializer(GreekValuesSerializer):
    """Fields of GreekValues: the mean of the ATM call's and put's (either alone when the other has
    none)."""

    atm_iv = number(help_text="IV at the forward (total variance between the bracketing OTM options)")
    call = AtmSideSerializer()
    put = AtmSideSerializer()


class OptionGreeksMetadataSerializer(serializers.Serializer):
    """Of the bucket's last minute."""

    bucket_end = serializers.DateTimeField()
    observations = serializers.IntegerField()
    model = serializers.CharField(allow_null=True)
    forward = number()
    forward_source = serializers.CharField(allow_null=True)
    price_source = serializers.CharField(allow_null=True)
    time_to_expiry = number()
    source_ts = serializers.DateTimeField(allow_null=True)


class AtmGreeksMetadataSerializer(serializers.Serializer):
    """Of the bucket's last minute."""

    bucket_end = serializers.DateTimeField()
    observations = serializers.IntegerField()
    expiry = serializers.DateField(allow_null=True)
    atm_strike = number()
    forward = number()
    model = serializers.CharField(allow_null=True)
    call_instrument_key = serializers.CharField(allow_null=True)
    put_instrument_key = serializers.CharField(allow_null=True)


class OptionGreeksItemSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField(help_text="Start of the bucket")
    value = GreekValuesSerializer()
    metadata = OptionGreeksMetadataSerializer()


class AtmGreeksItemSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField(help_text="Start of the bucket")
    value = AtmGreekValuesSerializer()
    metadata = AtmGreeksMetadataSerializer()


class HistoricalGreeksHeadSerializer(SeriesHeadSerializer):
    agg = one_of("SeriesAgg", "last", "mean")


class OptionGreeksSeriesSerializer(HistoricalGreeksHeadSerializer):
    """An option key: that option's series."""

    series = one_of("OptionSeries", "option")
    time_series = OptionGreeksItemSerializer(many=True)


class AtmGreeksSeriesSerializer(HistoricalGreeksHeadSerializer):
    """An underlying key: the ATM series of each session's nearest expiry (or expiry_date)."""

    series = one_of("AtmSeries", "atm")
    time_series = AtmGreeksItemSerializer(many=True)


HISTORICAL_GREEKS = PolymorphicProxySerializer(
    component_name="HistoricalGreeks",
    serializers={"option": OptionGreeksSeriesSerializer, "atm": AtmGreeksSeriesSerializer},
    resource_type_field_name="series",
    help_text="By `series`: option for an option key, atm for an underlying key",
)


# -- available timeframes ------------------------------------------------------------------------------------


class CustomTimeframesSerializer(serializers.Serializer):
    grammar = serializers.CharField()
    min_minutes = serializers.IntegerField()
    max_minutes = serializers.IntegerField(help_text="The session's length in minutes")
    examples = serializers.ListField(child=serializers.CharField())
    recently_requested = serializers.ListField(
        child=serializers.CharField(), help_text="Custom timeframes asked of this instrument, most first"
    )


class DataRangeSerializer(serializers.Serializer):
    start = serializers.DateTimeField(allow_null=True, help_text="The first 1-minute bar; null without bars")
    end = serializers.DateTimeField(allow_null=True, help_text="The end of the last 1-minute bar")
    bars = serializers.IntegerField(help_text="1-minute bars stored")


class AvailableTimeframesSerializer(serializers.Serializer):
    instrument_key = serializers.CharField()
    standard_timeframes = serializers.ListField(child=serializers.CharField())
    custom_timeframes = CustomTimeframesSerializer()
    market_calendar = serializers.CharField()
    data_range = DataRangeSerializer()


# -- indicators ------------------------------------------------------------------------------------------------


class IndicatorSerializer(serializers.Serializer):
    name = serializers.CharField()
    group = serializers.CharField()
    description = serializers.CharField()
    source = one_of("IndicatorSource", "ta-lib", "signalsvc")
    parameters = IndicatorParameterSerializer(many=True)
    inputs = serializers.ListField(child=serializers.CharField(), help_text="Bar fields it reads")
    outputs = serializers.ListField(child=serializers.CharField())
    memory = one_of("IndicatorMemory", "finite", "decaying", "anchored")
    session_anchored = serializers.BooleanField()
    lookback = serializers.IntegerField(help_text="Leading outputs that are null (TA-Lib lookback)")
    warmup_bars = serializers.IntegerField(help_text="History loaded before the first bar, at the defaults")


class IndicatorListSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    indicators = IndicatorSerializer(many=True)


OUTPUT_VALUES_HELP = "By output name (see outputs); null where the indicator has no value (warm-up)"


class WarmupSerializer(serializers.Serializer):
    memory = one_of("IndicatorMemory", "finite", "decaying", "anchored")
    bars_required = serializers.IntegerField(help_text="Bars of the timeframe needed before the first")
    bars_found = serializers.IntegerField()
    complete = serializers.BooleanField(help_text="bars_found >= bars_required: the first value is exact")


class IndicatorMetadataSerializer(serializers.Serializer):
    bucket_end = serializers.DateTimeField()


class IndicatorItemSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField(help_text="Start of the bucket")
    value = serializers.DictField(child=number(), help_text=OUTPUT_VALUES_HELP)
    metadata = IndicatorMetadataSerializer()


class HistoricalIndicatorSerializer(SeriesHeadSerializer):
    indicator = serializers.CharField()
    params = serializers.DictField(
        child=serializers.FloatField(), help_text="Every parameter, defaults included"
    )
    outputs = serializers.ListField(child=serializers.CharField())
    warmup = WarmupSerializer()
    time_series = IndicatorItemSerializer(many=True)


class RealtimeIndicatorMetadataSerializer(serializers.Serializer):
    bucket_end = serializers.DateTimeField()
    bucket_closed = serializers.BooleanField(help_text="False while the bucket is still open")
    last_bar = serializers.DateTimeField(help_text="The latest 1-minute bar, inside this bucket")


class RealtimeIndicatorSerializer(serializers.Serializer):
    instrument_key = serializers.CharField()
    indicator = serializers.CharField()
    params = serializers.DictField(
        child=serializers.FloatField(), help_text="Every parameter, defaults included"
    )
    timeframe = serializers.CharField()
    timestamp = serializers.DateTimeField(help_text="Start of the bucket holding the latest 1-minute bar")
    value = serializers.DictField(child=number(), help_text=OUTPUT_VALUES_HELP)
    metadata = RealtimeIndicatorMetadataSerializer()
    warmup = WarmupSerializer()


class BatchIndicatorItemSerializer(serializers.Serializer):
    instrument_key = serializers.CharField()
    indicator = serializers.CharField()
    timeframe = serializers.CharField(required=False, help_text="Default 1m")
    params = serializers.DictField(
        child=serializers.FloatField(),
        required=False,
        help_text="Indicator parameters (numbers or numeric text)",
    )


class BatchIndicatorsRequestSerializer(serializers.Serializer):
    items = BatchIndicatorItemSerializer(many=True, help_text="1..API_V2_BATCH_SIZE items")


class BatchIndicatorResultSerializer(serializers.Serializer):
    """One per item, in order. The item's fields are echoed as sent (absent when the item is not an
    object; null where the field is not a string)."""

    index = serializers.IntegerField()
    instrument_key = serializers.CharField(required=False, allow_null=True)
    indicator = serializers.CharField(required=False, allow_null=True)
    timeframe = serializers.CharField(required=False, allow_null=True)
    status = one_of("BatchItemStatus", "ok", "error")
    result = RealtimeIndicatorSerializer(required=False, help_text="With status ok")
    error = ErrorSerializer(required=False, help_text="With status error")


class BatchIndicatorsSerializer(serializers.Serializer):
    requested = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    results = BatchIndicatorResultSerializer(many=True)


# The 400 codes of the series reads, for their descriptions.
SERIES_400 = (
    "invalid_instrument_key, invalid_timeframe (details: the grammar), invalid_parameter, missing_parameter, "
    "invalid_range, range_too_large."
)
