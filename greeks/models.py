from django.db import models

from signalsvc.instruments.models import Instrument


class OptionGreeks(models.Model):
    """IV and Greeks of one option at one minute (SPEC §6, §12). Range-partitioned by day on
    ``ts`` and written only by COPY upserts (greeks/services.py); this model is for reads and admin.

    ``source_ts`` is the timestamp of the market data the row was computed from: a write never
    replaces a row computed from newer data, so a retried or stolen task is harmless.
    Units: theta and charm per calendar day, vega/vanna per vol point, vomma per vol point², rho per 1 %.
    """

    pk = models.CompositePrimaryKey("instrument_id", "ts")
    instrument = models.ForeignKey(
        Instrument, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    ts = models.DateTimeField(help_text="minute, UTC")
    underlying = models.ForeignKey(
        Instrument, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    expiry = models.DateField()
    strike = models.FloatField()
    option_type = models.CharField(max_length=4)
    model = models.CharField(max_length=16)
    source_ts = models.DateTimeField()
    underlying_price = models.FloatField(null=True)
    forward = models.FloatField(null=True)
    forward_source = models.CharField(max_length=8)
    option_price = models.FloatField(null=True)
    price_source = models.CharField(max_length=4)
    time_to_expiry = models.FloatField()
    iv = models.FloatField(null=True)
    iv_reason = models.SmallIntegerField()
    delta = models.FloatField(null=True)
    gamma = models.FloatField(null=True)
    theta = models.FloatField(null=True)
    vega = models.FloatField(null=True)
    rho = models.FloatField(null=True)
    vanna = models.FloatField(null=True)
    vomma = models.FloatField(null=True)
    charm = models.FloatField(null=True)
    computed_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "greeks_option_1m"
