import django.db.models.deletion
from django.db import migrations, models

# Buckets of the standard timeframes, range-partitioned by month on bucket_start (partitions are
# made by signalsvc.db.partitions, registered in TimeframesConfig.ready, dropped after
# BARS_RETENTION_DAYS like the bars they come from).
CREATE_ROLLUP = """
CREATE TABLE timeframe_rollup (
    instrument_id bigint NOT NULL,
    timeframe varchar(4) NOT NULL,
    bucket_start timestamptz NOT NULL,
    bucket_end timestamptz NOT NULL,
    session_date date NOT NULL,
    open double precision NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    volume double precision NOT NULL,
    oi double precision,
    bars integer NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument_id, timeframe, bucket_start)
) PARTITION BY RANGE (bucket_start);
"""


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("instruments", "0001_initial"),
        ("marketdata", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(CREATE_ROLLUP, "DROP TABLE timeframe_rollup"),
        # Unmanaged: the table above is the real one; this only gives the ORM its shape.
        migrations.CreateModel(
            name="Rollup",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "instrument_id",
                        "timeframe",
                        "bucket_start",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "instrument",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=models.DO_NOTHING,
                        related_name="+",
                        to="instruments.instrument",
                    ),
                ),
                ("timeframe", models.CharField(max_length=4)),
                ("bucket_start", models.DateTimeField()),
                ("bucket_end", models.DateTimeField()),
                ("session_date", models.DateField(help_text="trading date of the bucket's session")),
                ("open", models.FloatField()),
                ("high", models.FloatField()),
                ("low", models.FloatField()),
                ("close", models.FloatField()),
                ("volume", models.FloatField()),
                ("oi", models.FloatField(null=True)),
                ("bars", models.IntegerField()),
                ("computed_at", models.DateTimeField()),
            ],
            options={"db_table": "timeframe_rollup", "managed": False},
        ),
        migrations.CreateModel(
            name="RollupWatermark",
            fields=[
                ("timeframe", models.CharField(max_length=8, primary_key=True, serialize=False)),
                ("watermark", models.DateTimeField(null=True)),
                ("refreshed_at", models.DateTimeField(null=True)),
                (
                    "last_rows",
                    models.BigIntegerField(default=0, help_text="1-minute bars seen by the last refresh"),
                ),
                (
                    "last_buckets",
                    models.BigIntegerField(default=0, help_text="buckets re-aggregated by the last refresh"),
                ),
                ("last_duration_ms", models.FloatField(null=True)),
            ],
            options={"db_table": "timeframe_rollup_watermark", "ordering": ["timeframe"]},
        ),
        migrations.CreateModel(
            name="CustomTimeframe",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("timeframe", models.CharField(help_text="canonical label, e.g. 7m, 90m, 2h", max_length=16)),
                ("minutes", models.PositiveIntegerField()),
                ("first_requested_at", models.DateTimeField()),
                ("last_requested_at", models.DateTimeField()),
                ("request_count", models.BigIntegerField(default=0)),
                (
                    "sessions_from_cache",
                    models.BigIntegerField(default=0, help_text="sessions served from the Redis cache"),
                ),
                (
                    "sessions_computed",
                    models.BigIntegerField(default=0, help_text="sessions aggregated in PostgreSQL"),
                ),
                (
                    "instrument",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="instruments.instrument",
                    ),
                ),
            ],
            options={
                "db_table": "signal_custom_timeframes",
                "ordering": ["-last_requested_at"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("instrument", "timeframe"), name="custom_timeframe_unique"
                    )
                ],
            },
        ),
    ]
