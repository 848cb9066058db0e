"""Incremental rollups of the standard timeframes: refresh by updated_at watermark, current reads."""

from __future__ import annotations

import datetime as dt

import numpy as np
import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.timeframes.conftest import put_bars, random_rows, refresh
from tests.timeframes.reference import reference_bars
from timeframes import selectors
from timeframes.core.grammar import parse_timeframe
from timeframes.models import Rollup, RollupWatermark
from timeframes.services import rollups_refresh

pytestmark = pytest.mark.django_db

STANDARD = ("5m", "15m", "30m", "1h", "4h", "1d")


@pytest.fixture
def sessions(nse):
    return nse.sessions(dt.date(2025, 3, 10), dt.date(2025, 3, 12))


def _rollup_rows(instrument_id: int, label: str) -> list[tuple]:
    return list(
        Rollup.objects.filter(instrument_id=instrument_id, timeframe=label)
        .order_by("bucket_start")
        .values_list("bucket_start", "bucket_end", "open", "high", "low", "close", "volume", "oi", "bars")
    )


def _reference_rows(rows, sessions, label) -> list[tuple]:
    ref = reference_bars(rows, sessions, parse_timeframe(label).minutes)
    return [
        (
            r.start.to_pydatetime(), r.end.to_pydatetime(), r.open, r.high, r.low, r.close, r.volume,
            None if np.isnan(r.oi) else r.oi, r.count,
        )
        for r in ref.itertuples()
    ]  # fmt: skip


def _read(instrument_id, label, sessions) -> dict:
    return selectors.bars_at(
        instrument_id=instrument_id,
        timeframe=parse_timeframe(label),
        start=sessions[0].open,
        end=sessions[-1].close,
    )


def _assert_read_matches(bars: dict, rows, sessions, label) -> None:
    ref = reference_bars(rows, sessions, parse_timeframe(label).minutes)
    assert len(bars["start"]) == len(ref)
    for field in ("open", "high", "low", "close", "volume", "oi"):
        np.testing.assert_array_equal(
            bars[field], ref[field].to_numpy(dtype=float), err_msg=f"{label} {field}"
        )
    np.testing.assert_array_equal(bars["count"], ref["count"].to_numpy())


@pytest.mark.parametrize("label", STANDARD)
def test_refresh_fills_the_rollup_exactly(spot, sessions, label):
    rows = random_rows(sessions, seed=5, keep=0.9, with_oi=True)
    put_bars(spot.id, rows)

    report = refresh()

    assert report["rows"] == len(rows)
    assert report["buckets"][label] == len(_reference_rows(rows, sessions, label))
    assert _rollup_rows(spot.id, label) == _reference_rows(rows, sessions, label)


def test_reads_are_current_before_the_refresh_and_the_rollup_catches_up(spot, sessions):
    rows = random_rows(sessions[:2], seed=6)
    put_bars(spot.id, rows)
    refresh()
    # After the refresh: new bars in the next session, and an old bar corrected after the fact.
    more = random_rows(sessions[2:], seed=7)
    ts, o, h, low, c, v, oi = rows[100]
    corrected = (ts, o, h + 50.0, low, c, v + 1000.0, oi)
    put_bars(spot.id, [*more, corrected])
    current = [*rows[:100], corrected, *rows[101:], *more]

    for label in STANDARD:
        _assert_read_matches(_read(spot.id, label, sessions), current, sessions, label)
    # The rollup itself has not seen the change yet: the read above did not come from it alone.
    assert _rollup_rows(spot.id, "5m") != _reference_rows(current, sessions, "5m")

    report = refresh()

    assert report["rows"] == len(more) + 1
    for label in STANDARD:
        assert _rollup_rows(spot.id, label) == _reference_rows(current, sessions, label), label
        _assert_read_matches(_read(spot.id, label, sessions), current, sessions, label)


def test_refresh_reaggregates_only_the_touched_buckets(spot, sessions):
    rows = random_rows(sessions, seed=8)
    put_bars(spot.id, rows)
    refresh()
    ts, o, h, low, c, v, oi = rows[500]
    put_bars(spot.id, [(ts, o, h, low - 20.0, c, v, oi)])

    report = refresh()

    assert report["rows"] == 1
    assert report["buckets"] == dict.fromkeys(STANDARD, 1)
    assert report["sessions_invalidated"] == 1


def test_a_second_refresh_with_nothing_new_does_nothing(spot, sessions):
    put_bars(spot.id, random_rows(sessions, seed=9))
    refresh()
    before = {label: _rollup_rows(spot.id, label) for label in STANDARD}

    report = refresh()

    assert report["rows"] == 0
    assert {label: _rollup_rows(spot.id, label) for label in STANDARD} == before


def test_a_backlog_is_worked_off_in_bounded_steps(spot, sessions):
    rows = random_rows(sessions, seed=10)
    put_bars(spot.id, rows)
    # Three different write times, so the batch bound can cut between them.
    with connection.cursor() as cur:
        for i, s in enumerate(sessions):
            cur.execute(
                "UPDATE market_bar_1m SET updated_at = now() - %s * interval '1 hour' "
                "WHERE instrument_id = %s AND ts >= %s AND ts < %s",
                [3 - i, spot.id, s.open, s.close],
            )

    steps = []
    while True:
        report = rollups_refresh(batch_rows=400, settle=dt.timedelta(0))
        steps.append(report["rows"])
        if not report["backlog"]:
            break

    assert steps == [375, 375, 375]
    for label in STANDARD:
        assert _rollup_rows(spot.id, label) == _reference_rows(rows, sessions, label)


def test_the_watermark_stays_behind_recent_writes_by_the_settle_window(spot, sessions):
    put_bars(spot.id, random_rows(sessions, seed=11))

    rollups_refresh()  # default SETTLE: 120 s

    with connection.cursor() as cur:
        cur.execute("SELECT now()")
        now = cur.fetchone()[0]
    for mark in RollupWatermark.objects.all():
        assert mark.watermark <= now - dt.timedelta(seconds=119)
    # Bars written just now are newer than the watermark: reads aggregate them from the 1-minute bars.
    assert selectors.sessions_changed_after(
        instrument_id=spot.id, sessions=sessions, watermark=selectors.watermark_get(tracker="5m")
    ) == {s.date for s in sessions}


def test_a_refresh_already_running_makes_the_next_one_return_at_once(db):
    db_settings = django_settings.DATABASES["default"]
    with psycopg.connect(
        host=db_settings["HOST"] or "127.0.0.1",
        port=db_settings["PORT"] or 5432,
        user=db_settings["USER"] or "postgres",
        dbname=connection.settings_dict["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_advisory_lock(hashtext('timeframes.rollups_refresh'))")
        assert rollups_refresh() == {"skipped": True}


def test_the_refresh_task_is_registered_routed_and_acks_late():
    from signalsvc.celery import app
    from timeframes.tasks import REFRESH_TASK

    task = app.tasks[REFRESH_TASK]
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    assert app.amqp.router.route({}, REFRESH_TASK)["queue"].name == "timeframes"
    assert app.conf.beat_schedule["timeframes-rollups"]["task"] == REFRESH_TASK


def test_the_refresh_task_runs_the_refresh_and_the_registry_flush(spot, sessions):
    from timeframes.tasks import refresh_rollups

    put_bars(spot.id, random_rows(sessions[:1], seed=12))

    result = refresh_rollups.run()

    assert result == {"steps": 1, "rows": 375, "custom_timeframes": 0, "warms_after_close": 0}
    assert RollupWatermark.objects.count() == 7
