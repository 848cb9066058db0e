"""Moneyness tables (SPEC §7, §12): range-partitioned by day on ``ts``, written only by COPY upserts
(moneyness/services.py) and guarded by ``source_ts`` so an older computation never overwrites a
newer one. These models are for reads and the admin.

Each table's real primary key is composite (see the migration). Django's admin cannot show a
model with a composite key, so the models name ``ts`` as their key: the admin lists rows and never
opens one by key (moneyness/admin.py). Units as in greeks.models.OptionGreeks; IVs are decimals.
"""

from django.db import models

from signalsvc.instruments.models import Instrument

GROUPS = ("all", "calls", "puts")
GROUP_FIELDS = ("delta", "gamma", "theta", "vega", "rho", "iv")
ATM_SIDE_FIELDS = ("delta", "gamma", "theta", "vega", "rho", "vanna", "vomma", "charm", "option_price")


def _underlying():
    return models.ForeignKey(Instrument, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")


class MoneynessGreeks(models.Model):
    """Aggregated Greeks of one moneyness level of one expiry at one minute: the means over the
    level's options with a value, for all of them, the calls and the puts (``<group>_<field>``),
    and ``<group>_count`` = options with an IV. Delta levels also keep the strike and IV
    interpolated at exactly the target |delta| for each type (NULL without a bracket)."""

    ts = models.DateTimeField(
        primary_key=True, help_text="minute, UTC (the key is underlying, level, expiry, ts)"
    )
    underlying = _underlying()
    expiry = models.DateField()
    level = models.CharField(max_length=24)
    source_ts = models.DateTimeField()
    spot = models.FloatField(null=True)
    forward = models.FloatField(null=True)
    time_to_expiry = models.FloatField()
    locals().update(
        {f"{g}_{f}": models.FloatField(null=True) for g in GROUPS for f in GROUP_FIELDS}
        | {f"{g}_count": models.IntegerField() for g in GROUPS}
    )
    strike_min = models.FloatField(null=True)
    strike_max = models.FloatField(null=True)
    strike_count = models.IntegerField()
    call_interp_strike = models.FloatField(null=True)
    call_interp_iv = models.FloatField(null=True)
    put_interp_strike = models.FloatField(null=True)
    put_interp_iv = models.FloatField(null=True)
    computed_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "signal_moneyness_greeks"
        verbose_name_plural = "moneyness greeks"


class AtmIv(models.Model):
    """ATM IV of one expiry at one minute: ``iv`` at the forward (total variance interpolated
    between the OTM options bracketing it), the call and put IV and skew (put − call) at the ATM
    strike with both sides' Greeks, and the smile fitted that minute (raw SVI parameters in total
    variance against log-moneyness, RMS error in vol)."""

    ts = models.DateTimeField(primary_key=True, help_text="minute, UTC (the key is underlying, expiry, ts)")
    underlying = _underlying()
    expiry = models.DateField()
    source_ts = models.DateTimeField()
    model = models.CharField(max_length=16)
    underlying_price = models.FloatField(null=True)
    forward = models.FloatField(null=True)
    forward_source = models.CharField(max_length=8)
    time_to_expiry = models.FloatField()
    atm_strike = models.FloatField(null=True)
    iv = models.FloatField(null=True)
    call_iv = models.FloatField(null=True)
    put_iv = models.FloatField(null=True)
    iv_skew = models.FloatField(null=True)
    lower_strike = models.FloatField(null=True)
    upper_strike = models.FloatField(null=True)
    option_count = models.IntegerField()
    call_instrument_id = models.BigIntegerField(null=True)
    put_instrument_id = models.BigIntegerField(null=True)
    locals().update(
        {f"{s}_{f}": models.FloatField(null=True) for s in ("call", "put") for f in ATM_SIDE_FIELDS}
    )
    svi_a = models.FloatField(null=True)
    svi_b = models.FloatField(null=True)
    svi_rho = models.FloatField(null=True)
    svi_m = models.FloatField(null=True)
    svi_sigma = models.FloatField(null=True)
    svi_rmse_vol = models.FloatField(null=True)
    svi_points = models.IntegerField()
    svi_status = models.CharField(max_length=24)
    computed_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "signal_atm_iv"
        verbose_name = "ATM IV"
        verbose_name_plural = "ATM IV"


class AtmIvConstantMaturity(models.Model):
    """Constant-maturity ATM IV (``tenor_days``, 30 by default) at one minute: linear in total
    variance between the two expiries bracketing the tenor. ``iv`` is NULL when only one side
    exists, and ``status`` says which; nothing is extrapolated."""

    ts = models.DateTimeField(
        primary_key=True, help_text="minute, UTC (the key is underlying, tenor_days, ts)"
    )
    underlying = _underlying()
    tenor_days = models.IntegerField()
    source_ts = models.DateTimeField()
    iv = models.FloatField(null=True)
    status = models.CharField(max_length=24)
    lower_expiry = models.DateField(null=True)
    upper_expiry = models.DateField(null=True)
    lower_iv = models.FloatField(null=True)
    upper_iv = models.FloatField(null=True)
    weight = models.FloatField(null=True)
    computed_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "signal_atm_iv_cm"
        verbose_name = "constant-maturity ATM IV"
        verbose_name_plural = "constant-maturity ATM IV"
