"""OpenAPI documentation of the moneyness endpoints' bodies (documentation only: the views answer
the dicts of ``moneyness.selectors`` or orjson-rendered series; see ``signalsvc.api.schemas``).

Realtime bodies start with the chain's head: the underlying, the spot, the expiry and the instant of
the snapshot they were computed from."""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from greeks.schemas import OPTION_TYPE, OptionGreeksSerializer
from signalsvc.api.schemas import ErrorSerializer, number, one_of
from timeframes.schemas import SeriesHeadSerializer

BANDS = ("DITM", "ITM", "ATM", "OTM", "DOTM")
CM_STATUSES = ("interpolated", "exact", "only_shorter_expiries", "only_longer_expiries", "no_data")


class ChainHeadSerializer(serializers.Serializer):
    underlying = serializers.CharField(help_text="The symbol, e.g. NIFTY")
    underlying_key = serializers.CharField()
    spot_price = serializers.FloatField()
    expiry = serializers.DateField()
    timestamp = serializers.DateTimeField(help_text="The spot tick's time: the chain's instant")
    minute = serializers.DateTimeField(help_text="The minute the chain is stored under")
    forward = number(help_text="The expiry's forward")
    forward_source = one_of("ForwardSource", "future", "parity", "carry")
    time_to_expiry = serializers.FloatField(help_text="Years (ACT/365)")


# -- level greeks ------------------------------------------------------------------------------------------


class GroupGreeksSerializer(serializers.Serializer):
    """Means over the group's options with a value (units of ``greeks.engine.pricing``); null when
    none has one."""

    delta = number()
    gamma = number()
    theta = number()
    vega = number()
    rho = number()
    iv = number()
    count = serializers.IntegerField(help_text="Options with an IV")


class AggregatedGreeksSerializer(serializers.Serializer):
    all = GroupGreeksSerializer()
    calls = GroupGreeksSerializer()
    puts = GroupGreeksSerializer()


class LevelStrikesSerializer(serializers.Serializer):
    min = number()
    max = number()
    count = serializers.IntegerField(help_text="Distinct strikes of the level's options")


class InterpolatedSerializer(serializers.Serializer):
    strike = number(help_text="The strike at exactly the target |delta|")
    iv = number()


class InterpolatedSidesSerializer(serializers.Serializer):
    call = InterpolatedSerializer()
    put = InterpolatedSerializer()


class LevelMemberSerializer(serializers.Serializer):
    instrument_key = serializers.CharField()
    strike = serializers.FloatField()
    option_type = one_of("OptionType", *OPTION_TYPE)
    iv = number()
    delta = number()


class LevelGreeksSerializer(ChainHeadSerializer):
    moneyness_level = serializers.CharField(
        help_text="The level's canonical name, e.g. ATM, OTM2, OTM25delta"
    )
    aggregated_greeks = AggregatedGreeksSerializer()
    strikes = LevelStrikesSerializer()
    interpolated = InterpolatedSidesSerializer(
        required=False, help_text="OTM delta levels: the strike and IV at exactly the target |delta|"
    )
    instruments = LevelMemberSerializer(many=True, required=False, help_text="With include=instruments")


# -- atm iv ------------------------------------------------------------------------------------------------


class AtmBracketSerializer(serializers.Serializer):
    lower_strike = number()
    upper_strike = number()


class AtmIvSerializer(ChainHeadSerializer):
    moneyness = one_of("AtmMoneyness", "ATM")
    iv = number(help_text="IV at the forward; null when a side of it has no OTM option with an IV")
    call_iv = number(help_text="Of the call at the ATM strike")
    put_iv = number(help_text="Of the put at the ATM strike")
    iv_skew = number(help_text="put_iv - call_iv")
    atm_strike = number(help_text="The listed strike nearest the forward")
    option_count = serializers.IntegerField(help_text="Options of the expiry with an IV")
    bracket = AtmBracketSerializer(help_text="The OTM strikes the IV at the forward is interpolated between")


class TenorBracketSerializer(serializers.Serializer):
    expiry = serializers.DateField()
    time_to_expiry = serializers.FloatField()
    iv = number()


class AtmIvTenorSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    underlying_key = serializers.CharField()
    moneyness = one_of("AtmMoneyness", "ATM")
    tenor = serializers.CharField(help_text="e.g. 30d")
    tenor_days = serializers.IntegerField()
    iv = number(help_text="Null unless status is interpolated or exact")
    status = one_of(
        "ConstantMaturityStatus", *CM_STATUSES, help_text="How the value was made; never extrapolated"
    )
    method = serializers.CharField()
    lower = TenorBracketSerializer(allow_null=True)
    upper = TenorBracketSerializer(allow_null=True)
    weight_upper = number(help_text="Weight of the upper expiry's total variance")
    spot_price = serializers.FloatField()
    timestamp = serializers.DateTimeField()
    minute = serializers.DateTimeField()


REALTIME_ATM_IV = PolymorphicProxySerializer(
    component_name="RealtimeAtmIv",
    serializers=[AtmIvSerializer, AtmIvTenorSerializer],
    resource_type_field_name=None,
    help_text="AtmIv for an expiry; AtmIvTenor with tenor=Nd",
)


# -- otm delta ---------------------------------------------------------------------------------------------


class OtmDeltaSerializer(ChainHeadSerializer):
    """The listed OTM option nearest the target |delta| (null fields when no OTM option of the type
    has a delta; note says so), and the strike and IV at exactly that delta."""

    delta_target = serializers.FloatField()
    option_type = one_of("OptionType", *OPTION_TYPE)
    strike = number()
    instrument_key = serializers.CharField(allow_null=True)
    greeks = OptionGreeksSerializer(allow_null=True)
    iv = number()
    option_price = number()
    interpolated = InterpolatedSerializer()
    note = serializers.CharField(allow_null=True)


# -- smile -------------------------------------------------------------------------------------------------


class AtmIvRecordSerializer(serializers.Serializer):
    iv = number()
    call_iv = number()
    put_iv = number()
    iv_skew = number()
    forward = number()
    atm_strike = number()
    bracket = AtmBracketSerializer()
    option_count = serializers.IntegerField()


class SviParamsSerializer(serializers.Serializer):
    """Raw SVI: total variance w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))."""

    a = serializers.FloatField()
    b = serializers.FloatField()
    rho = serializers.FloatField()
    m = serializers.FloatField()
    sigma = serializers.FloatField()


class SmileFitSerializer(serializers.Serializer):
    model = one_of("SmileModel", "svi_raw")
    status = one_of("SmileFitStatus", "ok", "too_few_points", "failed", "not_fitted")
    params = SviParamsSerializer(allow_null=True)
    rmse_vol = number(help_text="RMS of fitted - input vol (decimals)")
    max_abs_error_vol = number()
    points = serializers.IntegerField(help_text="Quotes fitted")
    butterfly_arbitrage_free = serializers.BooleanField()


class SmilePointSerializer(serializers.Serializer):
    strike = serializers.FloatField()
    option_type = one_of("OptionType", *OPTION_TYPE)
    log_moneyness = serializers.FloatField(help_text="ln(strike / forward)")
    iv = number()
    delta = number()
    fitted_iv = number(help_text="The fitted smile at this strike")
    instrument_key = serializers.CharField()


class SmileSerializer(ChainHeadSerializer):
    atm_iv = AtmIvRecordSerializer(allow_null=True)
    fit = SmileFitSerializer(allow_null=True)
    points = SmilePointSerializer(many=True, help_text="The OTM option of each strike, by strike")


# -- summary -----------------------------------------------------------------------------------------------


class RatioSerializer(serializers.Serializer):
    puts = number(help_text="Total over the puts with a known value")
    calls = number()
    ratio = number(help_text="puts / calls; null when it cannot be formed (note says why)")
    put_count = serializers.IntegerField()
    call_count = serializers.IntegerField()
    note = serializers.CharField(allow_blank=True)


class VolumeRatioSerializer(RatioSerializer):
    session = serializers.DateField(allow_null=True)
    source = serializers.CharField()


class PutCallRatiosSerializer(serializers.Serializer):
    open_interest = RatioSerializer()
    volume = VolumeRatioSerializer()


class MaxPainSerializer(serializers.Serializer):
    strike = number()
    total_payout = number()
    options_with_oi = serializers.IntegerField()
    note = serializers.CharField(allow_blank=True)


class IvHistorySerializer(serializers.Serializer):
    lookback_days = serializers.IntegerField()
    observations = serializers.IntegerField()
    sampling = serializers.CharField()


class IvRankSerializer(serializers.Serializer):
    tenor = serializers.CharField()
    current_iv = number()
    rank = number(help_text="Percent: 0 at the low, 100 at the high")
    percentile = number(help_text="Percent of the history strictly below current_iv")
    observations = serializers.IntegerField()
    low = number()
    high = number()
    note = serializers.CharField(allow_blank=True)
    history = IvHistorySerializer()


class BandSideSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    oi = serializers.FloatField()
    oi_count = serializers.IntegerField()
    oi_share = number()
    volume = serializers.FloatField()
    volume_count = serializers.IntegerField()
    volume_share = number()


class BandSerializer(serializers.Serializer):
    calls = BandSideSerializer()
    puts = BandSideSerializer()
    all = BandSideSerializer()


BandDistributionSerializer = type(
    "BandDistributionSerializer", (serializers.Serializer,), {band: BandSerializer() for band in BANDS}
)


class SummarySerializer(ChainHeadSerializer):
    put_call_ratio = PutCallRatiosSerializer()
    max_pain = MaxPainSerializer()
    iv_rank = IvRankSerializer()
    moneyness_distribution = BandDistributionSerializer()


# -- historical --------------------------------------------------------------------------------------------


class MoneynessSeriesHeadSerializer(SeriesHeadSerializer):
    underlying = serializers.CharField()
    agg = one_of("SeriesAgg", "last", "mean")


class GroupGreeksBucketSerializer(GroupGreeksSerializer):
    count = serializers.IntegerField(
        allow_null=True, help_text="Options with an IV, at the bucket's last minute"
    )


class LevelBucketValueSerializer(serializers.Serializer):
    all = GroupGreeksBucketSerializer()
    calls = GroupGreeksBucketSerializer()
    puts = GroupGreeksBucketSerializer()


class LevelBucketMetadataSerializer(serializers.Serializer):
    """Of the bucket's last minute."""

    bucket_end = serializers.DateTimeField()
    observations = serializers.IntegerField()
    expiry = serializers.DateField(allow_null=True)
    spot = number()
    forward = number()
    time_to_expiry = number()
    strike_min = number()
    strike_max = number()
    strike_count = serializers.IntegerField(allow_null=True)
    call_interp_strike = number()
    call_interp_iv = number()
    put_interp_strike = number()
    put_interp_iv = number()
    source_ts = serializers.DateTimeField(allow_null=True)


class LevelBucketSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField(help_text="Start of the bucket")
    value = LevelBucketValueSerializer()
    metadata = LevelBucketMetadataSerializer()


class HistoricalLevelGreeksSerializer(MoneynessSeriesHeadSerializer):
    moneyness_level = serializers.CharField()
    time_series = LevelBucketSerializer(many=True)


class AtmIvBucketValueSerializer(serializers.Serializer):
    iv = number()
    call_iv = number()
    put_iv = number()
    iv_skew = number()
    forward = number()
    atm_strike = number()


class AtmIvBucketMetadataSerializer(serializers.Serializer):
    bucket_end = serializers.DateTimeField()
    observations = serializers.IntegerField()
    expiry = serializers.DateField(allow_null=True)
    time_to_expiry = number()
    option_count = serializers.IntegerField(allow_null=True)
    underlying_price = number()
    source_ts = serializers.DateTimeField(allow_null=True)


class AtmIvBucketSerializer(serializers.Serializer):
    """A bucket of one expiry's ATM IV."""

    timestamp = serializers.DateTimeField(help_text="Start of the bucket")
    value = AtmIvBucketValueSerializer()
    metadata = AtmIvBucketMetadataSerializer()


class ConstantMaturityBucketValueSerializer(serializers.Serializer):
    iv = number()
    lower_iv = number()
    upper_iv = number()
    weight = number(help_text="Weight of the upper expiry's total variance")


class ConstantMaturityBucketMetadataSerializer(serializers.Serializer):
    bucket_end = serializers.DateTimeField()
    observations = serializers.IntegerField()
    status = one_of("ConstantMaturityStatus", *CM_STATUSES, allow_null=True)
    lower_expiry = serializers.DateField(allow_null=True)
    upper_expiry = serializers.DateField(allow_null=True)
    source_ts = serializers.DateTimeField(allow_null=True)


class ConstantMaturityBucketSerializer(serializers.Serializer):
    """A bucket of the constant-maturity ATM IV (tenor=30d)."""

    timestamp = serializers.DateTimeField(help_text="Start of the bucket")
    value = ConstantMaturityBucketValueSerializer()
    metadata = ConstantMaturityBucketMetadataSerializer()


class SeriesStatisticsSerializer(serializers.Serializer):
    """Over the returned iv values that are not null; all null without one."""

    mean = number()
    std = number(help_text="Population standard deviation")
    min = number()
    max = number()
    current = number(help_text="The last value")
    change = number(help_text="Last - first")
    change_pct = number()
    observations = serializers.IntegerField(required=False, help_text="Absent when there is no value")


class HistoricalAtmIvSerializer(MoneynessSeriesHeadSerializer):
    moneyness = one_of("AtmMoneyness", "ATM")
    tenor = serializers.CharField(required=False, help_text="With tenor=30d")
    statistics = SeriesStatisticsSerializer()
    time_series = PolymorphicProxySerializer(
        component_name="AtmIvSeriesBucket",
        serializers=[AtmIvBucketSerializer, ConstantMaturityBucketSerializer],
        resource_type_field_name=None,
        many=True,
        help_text="AtmIvBucket items; ConstantMaturityBucket items with tenor",
    )


# -- batch -------------------------------------------------------------------------------------------------


class BatchLevelItemSerializer(serializers.Serializer):
    underlying = serializers.CharField()
    moneyness_level = serializers.CharField()
    expiry_date = serializers.DateField(required=False)
    include = one_of("LevelInclude", "instruments", required=False)


class BatchLevelRequestSerializer(serializers.Serializer):
    items = BatchLevelItemSerializer(many=True, help_text="1..API_V2_BATCH_SIZE items")


class BatchLevelResultSerializer(serializers.Serializer):
    """One per item, in order. The item's fields are echoed as sent (absent when the item is not an
    object; null where the field is not a string)."""

    index = serializers.IntegerField()
    underlying = serializers.CharField(required=False, allow_null=True)
    moneyness_level = serializers.CharField(required=False, allow_null=True)
    status = one_of("BatchItemStatus", "ok", "error")
    result = LevelGreeksSerializer(required=False, help_text="With status ok")
    error = ErrorSerializer(required=False, help_text="With status error")


class BatchLevelGreeksSerializer(serializers.Serializer):
    requested = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    results = BatchLevelResultSerializer(many=True)


# -- the error codes of the reads, for their descriptions --------------------------------------------------

REALTIME_400 = (
    "invalid_underlying, not_an_underlying, invalid_parameter (expiry_date and the endpoint's parameters), "
    "missing_parameter."
)
REALTIME_404 = "unknown_underlying; no_data (no chain computed yet); unknown_expiry (details.live_expiries)."
REALTIME_422 = "expiry_expired (details.live_expiries)."
HISTORICAL_400 = (
    "invalid_underlying, not_an_underlying, invalid_timeframe, invalid_parameter, missing_parameter, "
    "invalid_range, range_too_large."
)
