from django.db import migrations, models

CREATE = """
CREATE TABLE greeks_option_1m (
    instrument_id bigint NOT NULL,
    ts timestamptz NOT NULL,
    underlying_id bigint NOT NULL,
    expiry date NOT NULL,
    strike double precision NOT NULL,
    option_type varchar(4) NOT NULL,
    model varchar(16) NOT NULL,
    source_ts timestamptz NOT NULL,
    underlying_price double precision,
    forward double precision,
    forward_source varchar(8) NOT NULL,
    option_price double precision,
    price_source varchar(4) NOT NULL,
    time_to_expiry double precision NOT NULL,
    iv double precision,
    iv_reason smallint NOT NULL,
    delta double precision,
    gamma double precision,
    theta double precision,
    vega double precision,
    rho double precision,
    vanna double precision,
    vomma double precision,
    charm double precision,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument_id, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX greeks_option_1m_chain ON greeks_option_1m (underlying_id, expiry, ts);
"""


class Migration(migrations.Migration):
    initial = True
    dependencies = [("instruments", "0001_initial")]

    operations = [
        migrations.RunSQL(CREATE, "DROP TABLE greeks_option_1m"),
        migrations.CreateModel(
            name="OptionGreeks",
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
                        db_constraint=False,
                        on_delete=models.DO_NOTHING,
                        related_name="+",
                        to="instruments.instrument",
                    ),
                ),
                ("ts", models.DateTimeField(help_text="minute, UTC")),
                (
                    "underlying",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=models.DO_NOTHING,
                        related_name="+",
                        to="instruments.instrument",
                    ),
                ),
                ("expiry", models.DateField()),
                ("strike", models.FloatField()),
                ("option_type", models.CharField(max_length=4)),
                ("model", models.CharField(max_length=16)),
                ("source_ts", models.DateTimeField()),
                ("underlying_price", models.FloatField(null=True)),
                ("forward", models.FloatField(null=True)),
                ("forward_source", models.CharField(max_length=8)),
                ("option_price", models.FloatField(null=True)),
                ("price_source", models.CharField(max_length=4)),
                ("time_to_expiry", models.FloatField()),
                ("iv", models.FloatField(null=True)),
                ("iv_reason", models.SmallIntegerField()),
                ("delta", models.FloatField(null=True)),
                ("gamma", models.FloatField(null=True)),
                ("theta", models.FloatField(null=True)),
                ("vega", models.FloatField(null=True)),
                ("rho", models.FloatField(null=True)),
                ("vanna", models.FloatField(null=True)),
                ("vomma", models.FloatField(null=True)),
                ("charm", models.FloatField(null=True)),
                ("computed_at", models.DateTimeField()),
            ],
            options={"db_table": "greeks_option_1m", "managed": False},
        ),
    ]
