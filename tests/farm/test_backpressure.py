"""Backpressure (SPEC §11): the pure level decision, the shared reading measured from real task
messages on the real broker (no worker consuming them), the ops endpoint, the 503 guard of
compute-on-demand, and the latency recorded by a real worker."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from celery import current_app
from django.conf import settings
from django.test import override_settings

from greeks.tasks import chain_compute
from signalsvc.farm.backpressure import (
    MEASURING_KEY,
    REPORT_KEY,
    backpressure_forget,
    backpressure_guard,
    backpressure_read,
    backpressure_report,
    cadence_factor,
    current_level,
    stream_interval,
)
from signalsvc.farm.core.pressure import (
    SIGNALS,
    Latency,
    Level,
    Thresholds,
    cpu_busy_percent,
    latency_summarize,
    level_decide,
    level_parse,
    percentile,
)
from signalsvc.farm.queues import SENT_AT_HEADER
from signalsvc.farm.routing import greeks_queue, shard_for
from signalsvc.farm.signals import LATENCY_KEY, TASKS_KEY, latency_sample_parse, task_latency_record
from tests.conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[2]
NIFTY = "NSE@NIFTY@equity_spot"
BANKNIFTY = "NSE@BANKNIFTY@equity_spot"
DEAD = "redis://127.0.0.1:1/0"
OFF = (math.inf, math.inf, math.inf)


def limits(**only: tuple[float, float, float]) -> dict[str, tuple[float, float, float]]:
    """Thresholds where only the named signals can rise above LOW: the host's CPU and memory on a
    shared machine must not decide a test about queues."""
    return {name: only.get(name, OFF) for name in SIGNALS}


# -- the pure decision -------------------------------------------------------------------------------------

T = {
    "total_depth": Thresholds(10, 20, 30),
    "shard_depth": Thresholds(5, 10, 15),
    "oldest_age": Thresholds(5, 15, 60),
    "task_wait": Thresholds(2, 5, 20),
    "task_run": Thresholds(5, 15, 60),
    "cpu": Thresholds(80, 95, math.inf),
    "memory": Thresholds(80, 90, 95),
}
QUIET = {
    "total_depth": 0.0,
    "shard_depth": 0.0,
    "oldest_age": 0.0,
    "task_wait": 0.1,
    "task_run": 0.2,
    "cpu": 10.0,
    "memory": 30.0,
}


@pytest.mark.parametrize(
    ("changes", "level", "set_by"),
    [
        ({}, Level.LOW, ()),
        ({"total_depth": 9.99}, Level.LOW, ()),
        ({"total_depth": 10}, Level.MEDIUM, ("total_depth",)),  # at the threshold: that level
        ({"total_depth": 20}, Level.HIGH, ("total_depth",)),
        ({"total_depth": 31}, Level.CRITICAL, ("total_depth",)),
        ({"shard_depth": 15}, Level.CRITICAL, ("shard_depth",)),
        ({"oldest_age": 16}, Level.HIGH, ("oldest_age",)),
        ({"task_wait": 2.5}, Level.MEDIUM, ("task_wait",)),
        ({"task_run": 61}, Level.CRITICAL, ("task_run",)),
        ({"memory": 95}, Level.CRITICAL, ("memory",)),
        # An infinite threshold is never reached: CPU alone stops at HIGH.
        ({"cpu": 100}, Level.HIGH, ("cpu",)),
        # The worst signal decides; every signal at that level is named, in SIGNALS order.
        ({"cpu": 85, "oldest_age": 20, "total_depth": 25}, Level.HIGH, ("total_depth", "oldest_age")),
        ({"memory": 85, "task_wait": 3}, Level.MEDIUM, ("task_wait", "memory")),
        # Not measurable (no recent task, no CPU sample yet) says nothing: LOW.
        ({"task_wait": None, "task_run": None, "cpu": None}, Level.LOW, ()),
        ({"task_wait": math.nan}, Level.LOW, ()),
        ({"task_wait": None, "shard_depth": 10}, Level.HIGH, ("shard_depth",)),
    ],
)
def test_the_level_is_the_worst_signals_level(changes, level, set_by):
    decision = level_decide(QUIET | changes, T)

    assert decision.level == level
    assert decision.set_by == set_by
    assert max(decision.levels.values()) == level


def test_a_signal_without_thresholds_does_not_count_and_a_missing_one_is_low():
    decision = level_decide(
        {"total_depth": 1e9, "oldest_age": 16}, {"oldest_age": T["oldest_age"], "cpu": T["cpu"]}
    )

    assert (decision.level, decision.set_by) == (Level.HIGH, ("oldest_age",))
    assert decision.levels == {"oldest_age": Level.HIGH, "cpu": Level.LOW}


@pytest.mark.parametrize("values", [(3, 2, 1), (1, math.nan, 2), (5, 5, 4)])
def test_thresholds_out_of_order_are_refused(values):
    with pytest.raises(ValueError, match="MEDIUM <= HIGH <= CRITICAL"):
        Thresholds(*values)


def test_levels_parse_by_name_and_order_by_severity():
    assert [level_parse(n) for n in ("low", "MEDIUM", "High", "CRITICAL")] == sorted(Level)
    with pytest.raises(ValueError, match="LOW, MEDIUM, HIGH, CRITICAL"):
        level_parse("SEVERE")


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 95, None),
        ([4.0], 95, 4.0),
        ([3.0, 1.0, 2.0], 50, 2.0),
        (list(range(1, 101)), 95, 95),
        ([1, 2], 0, 1),
    ],
)
def test_percentile_is_nearest_rank(values, q, expected):
    assert percentile(values, q) == expected


def test_latency_counts_only_the_window_and_waits_that_were_measured():
    now = 1000.0
    samples = [
        (now - 120, 50.0, 50.0),  # out of the 60 s window
        (now - 10, 1.0, 0.5),
        (now - 5, None, 0.7),  # published without the sent_at header: no wait
        (now - 1, 3.0, 0.1),
    ]

    assert latency_summarize(samples, now=now, window=60) == Latency(
        samples=3, wait_p50=1.0, wait_p95=3.0, run_p50=0.5, run_p95=0.7
    )
    assert latency_summarize(samples[:1], now=now, window=60) == Latency(0, None, None, None, None)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ((10, 100), (15, 110), 50.0),
        ((10, 100), (20, 110), 100.0),
        ((10, 100), (10, 100), None),
        ((10, 100), (5, 50), None),
    ],
)
def test_cpu_busy_is_the_busy_share_between_two_samples(before, after, expected):
    assert cpu_busy_percent(before, after) == expected


# -- settings ------------------------------------------------------------------------------------------------


def test_every_level_has_a_cadence_factor_and_a_stream_interval_that_grow_with_it():
    factors = [cadence_factor(level) for level in Level]
    intervals = [stream_interval(level) for level in Level]

    assert factors == [float(f) for f in settings.BACKPRESSURE_CADENCE_FACTORS]
    assert factors[Level.LOW] == 1.0 and factors == sorted(factors)
    assert intervals[Level.LOW] == 0.0 and intervals == sorted(intervals)
    assert set(settings.BACKPRESSURE_THRESHOLDS) == set(SIGNALS)


@pytest.mark.parametrize(
    ("value", "message"),
    [("1,2", "must be 3 comma-separated numbers"), ("a,b,c", "must be 3 comma"), ("3,2,1", "MEDIUM <= HIGH")],
)
def test_bad_threshold_variables_stop_start_up_with_their_name(value, message):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=subprocess_env(DJANGO_SETTINGS_MODULE="signalsvc.settings", BACKPRESSURE_OLDEST_AGE=value),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "BACKPRESSURE_OLDEST_AGE" in result.stderr and message in result.stderr


# -- the shared reading, from real messages on the broker ------------------------------------------------------


def publish(underlying: str, count: int, *, age: float = 0.0) -> None:
    """``count`` chain tasks on the underlying's shard queue; ``age``: published that long ago."""
    headers = {SENT_AT_HEADER: time.time() - age} if age else None
    for _ in range(count):
        chain_compute.apply_async(
            args=[underlying], queue=greeks_queue(underlying, settings.SHARD_COUNT), headers=headers
        )


def test_the_reading_counts_ready_and_unacked_tasks_and_the_oldest_age(broker):
    assert shard_for(NIFTY, settings.SHARD_COUNT) != shard_for(BANKNIFTY, settings.SHARD_COUNT)
    nifty, banknifty = (greeks_queue(k, settings.SHARD_COUNT) for k in (NIFTY, BANKNIFTY))
    publish(NIFTY, 1, age=20)
    publish(NIFTY, 3)
    publish(BANKNIFTY, 2)
    with current_app.connection_for_write() as conn:
        # A worker has taken one BANKNIFTY task and not acknowledged it yet.
        taken = conn.default_channel.basic_get(queue=banknifty, no_ack=False)
        assert taken is not None

        report = backpressure_read(broker)

    assert report.queues[nifty].ready == 4 and report.queues[nifty].unacked == 0
    assert report.queues[banknifty].ready == 1 and report.queues[banknifty].unacked == 1
    assert set(report.queues) == {nifty, banknifty}  # only the queues holding a task
    assert report.signals["total_depth"] == 6
    assert report.signals["shard_depth"] == 4
    assert report.deepest_shard().queue == nifty
    assert 20 <= report.signals["oldest_age"] < 25
    assert report.signals["task_wait"] is None and report.signals["task_run"] is None  # no task ran
    assert 0 < report.signals["memory"] <= 100
    assert time.time() - report.measured_at < 5


@pytest.mark.parametrize(
    ("thresholds", "level", "set_by"),
    [
        (limits(), Level.LOW, ()),
        (limits(total_depth=(5, 10, 20)), Level.MEDIUM, ("total_depth",)),
        (limits(shard_depth=(2, 4, 8), total_depth=(5, 10, 20)), Level.HIGH, ("shard_depth",)),
        (limits(oldest_age=(5, 15, 60)), Level.HIGH, ("oldest_age",)),
        (
            limits(oldest_age=(5, 10, 15), shard_depth=(1, 2, 4)),
            Level.CRITICAL,
            ("shard_depth", "oldest_age"),
        ),
    ],
)
def test_the_level_of_a_real_backlog(broker, thresholds, level, set_by):
    publish(NIFTY, 1, age=20)
    publish(NIFTY, 3)
    publish(BANKNIFTY, 2)

    with override_settings(BACKPRESSURE_THRESHOLDS=thresholds):
        decision = backpressure_read(broker).decision()
        assert current_level(broker) == level

    assert (decision.level, decision.set_by) == (level, set_by)


def test_a_fresh_reading_is_shared_and_a_stale_one_is_measured_again(broker):
    publish(NIFTY, 2)
    first = backpressure_report(broker)
    publish(NIFTY, 3)

    # Fresh: every process gets the stored reading, nobody measures the queues again.
    assert backpressure_report(broker) == first
    assert backpressure_report(broker).signals["total_depth"] == 2

    with override_settings(BACKPRESSURE_REPORT_SECONDS=0):
        again = backpressure_report(broker)

    assert again.signals["total_depth"] == 5
    assert again.measured_at > first.measured_at
    assert backpressure_report(broker) == again  # stored for the others


def test_while_another_process_measures_the_previous_reading_is_served(broker):
    publish(NIFTY, 2)
    first = backpressure_report(broker)
    publish(NIFTY, 3)
    broker.set(MEASURING_KEY, "another process", px=5000)

    with override_settings(BACKPRESSURE_REPORT_SECONDS=0):
        assert backpressure_report(broker) == first
        broker.delete(MEASURING_KEY)
        assert backpressure_report(broker).signals["total_depth"] == 5


FRESH_BUT_BAD_SIGNAL = {
    "signals": {"cpu": "high"},
    "queues": {},
    "latency": {"samples": 0, "wait_p50": None, "wait_p95": None, "run_p50": None, "run_p95": None},
    "cpu_sample": None,
}


@pytest.mark.parametrize(
    "stored",
    [{"measured_at": "yesterday"}, "not json", FRESH_BUT_BAD_SIGNAL],
    ids=["bad time", "not JSON", "bad signal"],
)
def test_a_reading_that_is_not_a_report_is_measured_again(broker, stored):
    publish(NIFTY, 1)
    if isinstance(stored, dict):
        stored = json.dumps({"measured_at": time.time()} | stored)
    broker.set(REPORT_KEY, stored)

    assert backpressure_report(broker).signals["total_depth"] == 1
    assert current_level(broker) == Level.LOW


def test_the_process_keeps_its_level_for_the_local_seconds_then_reads_again(broker):
    with override_settings(
        BACKPRESSURE_THRESHOLDS=limits(total_depth=(1, 2, 3)), BACKPRESSURE_REPORT_SECONDS=0
    ):
        assert current_level(broker) == Level.LOW
        publish(NIFTY, 3)
        assert current_level(broker) == Level.LOW  # this process's copy, under a second old
        with override_settings(BACKPRESSURE_LOCAL_SECONDS=0):
            assert current_level(broker) == Level.CRITICAL


def test_new_thresholds_apply_at_once_to_the_same_reading(broker):
    publish(NIFTY, 3)
    assert current_level(broker) == Level.LOW  # the defaults: 3 tasks are nothing

    with override_settings(BACKPRESSURE_THRESHOLDS=limits(shard_depth=(1, 2, 3))):
        assert current_level(broker) == Level.CRITICAL


def test_a_blind_monitor_answers_low_and_does_not_raise(broker):
    everything_is_critical = limits(memory=(0, 0, 0))
    with override_settings(CELERY_BROKER_URL=DEAD, BACKPRESSURE_THRESHOLDS=everything_is_critical):
        started = time.monotonic()
        assert current_level() == Level.LOW
        backpressure_guard()  # lets the request through
        assert time.monotonic() - started < 3
    backpressure_forget()
    with override_settings(BACKPRESSURE_THRESHOLDS=everything_is_critical):
        assert current_level() == Level.CRITICAL  # the same thresholds, with the broker readable


def test_cpu_is_averaged_between_readings_at_least_a_second_apart(broker):
    psutil_baseline = psutil.cpu_percent(interval=None)
    assert psutil_baseline is not None
    first = backpressure_read(broker)
    assert first.signals["cpu"] is None  # one sample is not an average

    too_soon = backpressure_read(broker)
    assert too_soon.signals["cpu"] is None
    assert too_soon.cpu_sample == first.cpu_sample  # the baseline is kept until a second passed

    time.sleep(1.2)
    later = backpressure_read(broker)
    reference = psutil.cpu_percent(interval=None)  # psutil's own figure over the same interval

    assert later.cpu_sample.at > first.cpu_sample.at
    assert 0 <= later.signals["cpu"] <= 100
    assert abs(later.signals["cpu"] - reference) < 15


# -- the endpoint ----------------------------------------------------------------------------------------------


def test_the_endpoint_reports_level_signals_depth_and_latency(api, broker):
    nifty, banknifty = (greeks_queue(k, settings.SHARD_COUNT) for k in (NIFTY, BANKNIFTY))
    publish(NIFTY, 1, age=20)
    publish(NIFTY, 2)
    publish(BANKNIFTY, 1)
    now = time.time()
    for wait, run in ((0.5, 0.1), (1.0, 0.2), (3.0, 0.3)):
        task_latency_record(broker, task="t", state="SUCCESS", finished=now - 1, wait=wait, run=run)

    thresholds = limits(oldest_age=(5, 15, 60), task_wait=(2, 5, 20))
    with override_settings(BACKPRESSURE_THRESHOLDS=thresholds):
        response = api.get("/api/v2/ops/backpressure")

    assert response.status_code == 200
    body = response.json()
    assert (body["level"], body["level_value"], body["set_by"]) == ("HIGH", 2, ["oldest_age"])
    assert body["cadence_factor"] == settings.BACKPRESSURE_CADENCE_FACTORS[Level.HIGH]
    assert body["stream_interval"] == settings.BACKPRESSURE_STREAM_INTERVALS[Level.HIGH]
    measured_at = dt.datetime.fromisoformat(body["measured_at"])
    assert measured_at.tzinfo is not None and abs(measured_at.timestamp() - now) < 5
    assert 20 <= body["oldest_age"] < 25
    deepest = body["depth"]["deepest_shard"]
    assert deepest["oldest_age"] == body["oldest_age"]
    assert {k: v for k, v in deepest.items() if k != "oldest_age"} == {
        "queue": nifty,
        "shard": shard_for(NIFTY, settings.SHARD_COUNT),
        "ready": 3,
        "unacked": 0,
        "total": 3,
    }
    assert body["depth"]["queues"] == [
        deepest,
        {
            "queue": banknifty,
            "shard": shard_for(BANKNIFTY, settings.SHARD_COUNT),
            "ready": 1,
            "unacked": 0,
            "total": 1,
            "oldest_age": body["depth"]["queues"][1]["oldest_age"],
        },
    ]
    assert body["depth"]["queues"][1]["oldest_age"] < 5
    assert (body["depth"]["total"], body["depth"]["ready"], body["depth"]["unacked"]) == (4, 4, 0)
    assert body["latency"] == {
        "window_seconds": settings.BACKPRESSURE_LATENCY_WINDOW_SECONDS,
        "samples": 3,
        "wait_p50": 1.0,
        "wait_p95": 3.0,
        "run_p50": 0.2,
        "run_p95": 0.3,
    }
    assert set(body["signals"]) == set(SIGNALS)
    assert body["signals"]["oldest_age"] == {
        "value": body["signals"]["oldest_age"]["value"],
        "unit": "seconds",
        "level": "HIGH",
        "thresholds": {"medium": 5.0, "high": 15.0, "critical": 60.0},
    }
    assert body["signals"]["task_wait"]["value"] == 3.0
    assert body["signals"]["task_wait"]["level"] == "MEDIUM"
    assert body["signals"]["shard_depth"]["value"] == 3.0
    assert body["signals"]["cpu"]["thresholds"] == {"medium": None, "high": None, "critical": None}
    assert body["memory_percent"] == body["signals"]["memory"]["value"]


def test_the_endpoint_of_an_idle_farm(api, broker):
    with override_settings(BACKPRESSURE_THRESHOLDS=limits()):
        body = api.get("/api/v2/ops/backpressure").json()

    assert (body["level"], body["set_by"]) == ("LOW", [])
    assert body["depth"] == {"total": 0, "ready": 0, "unacked": 0, "deepest_shard": None, "queues": []}
    assert body["oldest_age"] == 0.0
    assert body["latency"]["samples"] == 0 and body["latency"]["wait_p95"] is None


def test_the_endpoint_says_it_cannot_measure_when_the_broker_is_down(api):
    with override_settings(CELERY_BROKER_URL=DEAD):
        response = api.get("/api/v2/ops/backpressure")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "redis_unavailable"
    assert response.headers["Retry-After"] == "5"


# -- the guard of compute-on-demand ----------------------------------------------------------------------------

ROW = {
    "option_type": "call",
    "underlying_price": 100.0,
    "strike": 100.0,
    "time_to_expiry": 0.5,
    "volatility": 0.2,
}


@pytest.fixture
def computed_option(demo_market, redis_client):
    """An option whose Greeks are stored (a cached read)."""
    from greeks.services import chain_compute as compute
    from signalsvc.core.keys import OPTIONS
    from signalsvc.instruments.models import Instrument

    compute(underlying_key=NIFTY, client=redis_client)
    calls = Instrument.objects.filter(symbol="NIFTY", product=OPTIONS, option_type="call").order_by(
        "expiry", "strike"
    )
    front = list(calls.filter(expiry=calls.first().expiry).values_list("key", flat=True))
    return front[len(front) // 2]


def test_at_critical_compute_on_demand_is_503_while_cached_reads_are_served(api, broker, computed_option):
    publish(NIFTY, 3)  # a real backlog on NIFTY's shard, CRITICAL at 3

    with override_settings(BACKPRESSURE_THRESHOLDS=limits(shard_depth=(1, 2, 3))):
        refused = api.post("/api/v2/signals/greeks/calculate", {"rows": [ROW]}, format="json")
        refresh = api.get(f"/api/v2/signals/realtime/greeks/{computed_option}", {"refresh": "true"})
        read = api.get(f"/api/v2/signals/realtime/greeks/{computed_option}")

    assert refresh.status_code == 503 and refresh.json()["error"]["code"] == "backpressure"
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == str(settings.BACKPRESSURE_RETRY_AFTER_SECONDS)
    error = refused.json()["error"]
    assert error["code"] == "backpressure"
    assert "CRITICAL: shard_depth" in error["message"]
    assert error["details"] == {}
    assert read.status_code == 200
    assert read.json()["instrument_key"] == computed_option


@pytest.mark.parametrize("backlog", [0, 2], ids=["idle", "high"])
def test_below_critical_compute_on_demand_is_served(api, broker, backlog):
    publish(NIFTY, backlog)

    with override_settings(BACKPRESSURE_THRESHOLDS=limits(shard_depth=(1, 2, 3))):
        level = current_level(broker)
        response = api.post("/api/v2/signals/greeks/calculate", {"rows": [ROW]}, format="json")

    assert level == (Level.HIGH if backlog else Level.LOW)
    assert response.status_code == 200
    assert response.json()["results"][0]["delta"] > 0


# -- task latency from a real worker ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_records_each_tasks_wait_and_run_time(broker, tmp_path):
    from tests.farm.farm_app import RECORD_TASK, done_key

    published = time.time() - 2.0  # as if it had waited two seconds in the queue before the worker
    current_app.send_task(RECORD_TASK, args=[0, 1, 0.3], queue="default", headers={SENT_AT_HEADER: published})
    current_app.send_task(RECORD_TASK, args=[0, 2, 0.0], queue="default")
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 (closed with the process)
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"), "-A", "tests.farm.farm_app", "worker", "-l", "info",
            "-n", "latency@farmtest", "-Q", "default", "-P", "solo", "--without-gossip", "--without-mingle",
        ],
        cwd=ROOT, env=subprocess_env(DJANGO_SETTINGS_MODULE="signalsvc.settings"), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while broker.llen(LATENCY_KEY) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()

    assert broker.llen(done_key(0)) == 2, (tmp_path / "worker.log").read_text()[-3000:]
    newest_first = [latency_sample_parse(raw) for raw in broker.lrange(LATENCY_KEY, 0, -1)]
    (finished_2, wait_2, run_2), (finished_1, wait_1, run_1) = newest_first
    assert finished_1 <= finished_2 <= time.time()
    assert 0.3 <= run_1 < 2 and 0 <= run_2 < 0.3
    assert 2.0 <= wait_1 < 60  # start minus the sent_at header it was published with
    assert wait_2 is not None and 0 <= wait_2 < wait_1
    assert broker.hgetall(TASKS_KEY) == {f"{RECORD_TASK}|SUCCESS": "2"}

    report = backpressure_read(broker)
    assert report.latency.samples == 2
    assert report.signals["task_wait"] == wait_1 and report.signals["task_run"] == run_1


def test_latency_samples_are_capped(broker):
    with override_settings(BACKPRESSURE_LATENCY_SAMPLES=5):
        for i in range(8):
            task_latency_record(broker, task="t", state="SUCCESS", finished=1000.0 + i, wait=None, run=0.1)

    assert [s[0] for s in map(latency_sample_parse, broker.lrange(LATENCY_KEY, 0, -1))] == [
        1007.0,
        1006.0,
        1005.0,
        1004.0,
        1003.0,
    ]
    assert broker.hget(TASKS_KEY, "t|SUCCESS") == "8"
