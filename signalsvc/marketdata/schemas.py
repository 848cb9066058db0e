"""OpenAPI documentation of the market data endpoints' bodies (documentation only; see
``signalsvc.api.schemas``)."""

from __future__ import annotations

from rest_framework import serializers

from signalsvc.api.schemas import number, one_of


class BarInSerializer(serializers.Serializer):
    """One 1-minute bar to upsert (``signalsvc.marketdata.validation``)."""

    instrument_key = serializers.CharField()
    timestamp = serializers.DateTimeField(help_text="The minute's start; naive = Asia/Kolkata")
    open = serializers.FloatField(help_text="> 0")
    high = serializers.FloatField(help_text=">= open, close, low")
    low = serializers.FloatField(help_text="<= open, close")
    close = serializers.FloatField()
    volume = serializers.FloatField(required=False, allow_null=True, help_text=">= 0; default 0")
    oi = serializers.FloatField(required=False, allow_null=True, help_text=">= 0")


class BarsWrittenSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    written = serializers.IntegerField()


class StoredBarSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField(help_text="The minute's start")
    open = serializers.FloatField()
    high = serializers.FloatField()
    low = serializers.FloatField()
    close = serializers.FloatField()
    volume = serializers.FloatField()
    oi = number()


class StoredBarsSerializer(serializers.Serializer):
    instrument_key = serializers.CharField()
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField()
    timeframe = one_of("StoredBarsTimeframe", "1m")
    data_points = serializers.IntegerField()
    bars = StoredBarSerializer(many=True, help_text="Oldest first")
