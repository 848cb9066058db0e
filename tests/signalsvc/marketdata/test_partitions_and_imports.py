import datetime as dt

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from signalsvc.db.partitions import partitions_drop_expired, partitions_ensure
from signalsvc.instruments.models import Instrument
from signalsvc.marketdata.models import Bar1m

pytestmark = pytest.mark.django_db


def partitions_of(table):
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY 1",
            [table],
        )
        return [r[0] for r in cur.fetchall()]


def test_partitions_are_made_ahead_and_dropped_after_retention():
    now = dt.datetime(2031, 5, 15, tzinfo=dt.UTC)
    partitions_ensure(table="market_bar_1m", start=dt.datetime(2030, 12, 1, tzinfo=dt.UTC), end=now)
    made = partitions_of("market_bar_1m")
    assert {"market_bar_1m_p2030_12", "market_bar_1m_p2031_01", "market_bar_1m_p2031_05"} <= set(made)
    dropped = partitions_drop_expired(table="market_bar_1m", retention_days=100, now=now)
    # 2031-05-15 minus 100 days is 2031-02-04: every partition ending by then goes.
    assert {"market_bar_1m_p2030_12", "market_bar_1m_p2031_01"} <= set(dropped)
    assert "market_bar_1m_p2031_02" not in dropped
    assert "market_bar_1m_p2031_02" in partitions_of("market_bar_1m")


def test_ensure_partitions_command_covers_today():
    call_command("ensure_partitions")
    today = dt.datetime.now(dt.UTC)
    assert f"market_bar_1m_p{today:%Y_%m}" in partitions_of("market_bar_1m")


def test_import_instruments_csv(tmp_path):
    path = tmp_path / "master.csv"
    path.write_text(
        "key,lot_size,tick_size,active\n"
        "NSE@NIFTY@equity_spot,1,0.05,true\n"
        "NSE@NIFTY@equity_options@2026-12-29@call@24000,75,0.05,true\n"
        "NSE@NIFTY@equity_futures@2026-12-29,75,0.1,false\n"
    )
    call_command("import_instruments", str(path))
    option = Instrument.objects.get(key="NSE@NIFTY@equity_options@2026-12-29@call@24000")
    assert (option.symbol, option.product, option.option_type, int(option.strike), option.lot_size) == (
        "NIFTY",
        "equity_options",
        "call",
        24000,
        75,
    )
    assert Instrument.objects.get(key="NSE@NIFTY@equity_futures@2026-12-29").active is False


def test_import_instruments_rejects_the_whole_file_on_one_bad_row(tmp_path):
    path = tmp_path / "master.csv"
    path.write_text("key,lot_size\nNSE@NIFTY@equity_spot,1\nNSE@NIFTY@bogus,1\n")
    with pytest.raises(CommandError, match="line 3"):
        call_command("import_instruments", str(path))
    assert Instrument.objects.count() == 0


def test_import_bars_csv_is_idempotent(tmp_path, make_instruments):
    make_instruments("NSE@NIFTY@equity_spot")
    path = tmp_path / "bars.csv"
    path.write_text(
        "instrument_key,timestamp,open,high,low,close,volume,oi\n"
        "NSE@NIFTY@equity_spot,2026-11-24T09:15:00,24000,24010,23990,24005,100,\n"
        "NSE@NIFTY@equity_spot,2026-11-24T09:16:00,24005,24012,24001,24011,50,\n"
    )
    call_command("import_bars", str(path))
    call_command("import_bars", str(path))
    assert Bar1m.objects.count() == 2
    assert Bar1m.objects.order_by("ts").first().ts == dt.datetime(2026, 11, 24, 3, 45, tzinfo=dt.UTC)


def test_import_bars_rejects_bad_rows(tmp_path, make_instruments):
    make_instruments("NSE@NIFTY@equity_spot")
    path = tmp_path / "bars.csv"
    path.write_text(
        "instrument_key,timestamp,open,high,low,close,volume,oi\n"
        "NSE@NIFTY@equity_spot,2026-11-24T09:15:00,24000,24010,23990,24005,100,\n"
        "NSE@NIFTY@equity_spot,2026-11-24T09:16:00,abc,24012,24001,24011,50,\n"
    )
    with pytest.raises(CommandError, match="row 3"):
        call_command("import_bars", str(path))
    assert Bar1m.objects.count() == 0
