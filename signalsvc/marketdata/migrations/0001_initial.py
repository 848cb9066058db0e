from django.db import migrations, models

CREATE = """
CREATE TABLE market_bar_1m (
    instrument_id bigint NOT NULL,
    ts timestamptz NOT NULL,
    open double precision NOT NULL,
    high double precision NOT NULL,
    low double precision NOT NULL,
    close double precision NOT NULL,
    volume double precision NOT NULL DEFAULT 0,
    oi double precision,
    source_seq bigint,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument_id, ts),
    CHECK (high >= low AND volume >= 0)
) PARTITION BY RANGE (ts);
"""


class Migration(migrations.Migration):
    initial = True
    dependencies = [("instruments", "0001_initial")]

    operations = [
        migrations.RunSQL(CREATE, "DROP TABLE market_bar_1m"),
        # Unmanaged: the table above is the real one; this only gives the ORM its shape.
        migrations.CreateModel(
            name="Bar1m",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "instrument_id", "ts", blank=True, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "instrument",
                    models.ForeignKey(
                        db_constraint=False, on_delete=models.DO_NOTHING, to="instruments.instrument"
                    ),
                ),
                ("ts", models.DateTimeField(help_text="minute start, UTC")),
                ("open", models.FloatField()),
                ("high", models.FloatField()),
                ("low", models.FloatField()),
                ("close", models.FloatField()),
                ("volume", models.FloatField(default=0)),
                ("oi", models.FloatField(null=True)),
                ("source_seq", models.BigIntegerField(null=True)),
                ("updated_at", models.DateTimeField()),
            ],
            options={"db_table": "market_bar_1m", "managed": False, "ordering": ["instrument_id", "ts"]},
        ),
    ]
