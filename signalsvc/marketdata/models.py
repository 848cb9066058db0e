from django.db import models

from signalsvc.instruments.models import Instrument


class Bar1m(models.Model):
    """One-minute OHLCV bar (SPEC §5). The table is range-partitioned by month on ``ts`` and
    written only by COPY upserts (see services.py); this model is for reads and admin.

    ``source_seq`` is the Redis stream position (ms * 1e6 + seq) of the last tick merged into the
    bar: a replayed tick at or below it is skipped, which makes ingest exactly-once per bar.
    """

    pk = models.CompositePrimaryKey("instrument_id", "ts")
    instrument = models.ForeignKey(Instrument, on_delete=models.DO_NOTHING, db_constraint=False)
    ts = models.DateTimeField(help_text="minute start, UTC")
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField(default=0)
    oi = models.FloatField(null=True)
    source_seq = models.BigIntegerField(null=True)
    updated_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "market_bar_1m"
        ordering = ["instrument_id", "ts"]
