"""The farm's Prometheus metrics (SPEC §11): scraped from /metrics after real tasks were queued on
the real broker, with and without prometheus_client's multiprocess mode; and the Grafana
dashboard, whose every expression uses only metric names the code defines."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from greeks.tasks import chain_compute
from signalsvc.farm.core.pressure import SIGNALS, Level
from signalsvc.farm.metrics import farm_registry
from signalsvc.farm.ownership import OWNERS_KEY, WORKERS_KEY
from signalsvc.farm.queues import SENT_AT_HEADER
from signalsvc.farm.routing import all_queues, greeks_queue
from signalsvc.farm.signals import task_latency_record

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docker" / "grafana" / "signal-service.json"
NIFTY = "NSE@NIFTY@equity_spot"
OFF = (math.inf, math.inf, math.inf)


def scrape(client) -> dict[str, list[tuple[dict, float]]]:
    """/metrics as {sample name: [(labels, value)]}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def by(samples, name: str, label: str) -> dict[str, float]:
    return {labels[label]: value for labels, value in samples.get(name, [])}


@pytest.mark.parametrize("multiprocess", [False, True], ids=["single-process", "multiprocess"])
def test_a_scrape_shows_queues_backpressure_tasks_owners_and_workers(
    client, broker, monkeypatch, tmp_path, multiprocess
):
    if multiprocess:
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    nifty = greeks_queue(NIFTY, settings.SHARD_COUNT)
    chain_compute.apply_async(args=[NIFTY], queue=nifty, headers={SENT_AT_HEADER: time.time() - 20})
    for _ in range(2):
        chain_compute.apply_async(args=[NIFTY], queue=nifty)
    now = time.time()
    for wait, run, state in ((0.5, 0.1, "SUCCESS"), (1.5, 0.3, "SUCCESS"), (2.5, 0.2, "FAILURE")):
        task_latency_record(
            broker, task="greeks.tasks.chain_compute", state=state, finished=now, wait=wait, run=run
        )
    broker.hset(OWNERS_KEY, mapping={"0": "w1@h", "1": "w1@h", "2": "w2@h"})
    for name, seen in (("w1@h", now), ("w2@h", now), ("gone@h", now - 3600)):
        broker.hset(WORKERS_KEY, name, json.dumps({"seen": seen, "queues": [], "stolen": [], "busy": False}))

    thresholds = {name: OFF for name in SIGNALS} | {"shard_depth": (1, 2, 3)}
    with override_settings(BACKPRESSURE_THRESHOLDS=thresholds):
        samples = scrape(client)

    assert samples["signal_farm_up"] == [({}, 1.0)]
    ready = by(samples, "signal_queue_ready", "queue")
    assert set(ready) == set(all_queues(settings.SHARD_COUNT))
    assert ready[nifty] == 3 and sum(ready.values()) == 3
    assert sum(by(samples, "signal_queue_unacked", "queue").values()) == 0
    oldest = by(samples, "signal_queue_oldest_age_seconds", "queue")
    assert 20 <= oldest[nifty] < 25 and sum(oldest.values()) == oldest[nifty]

    assert samples["signal_backpressure_level"] == [({}, float(Level.CRITICAL))]
    assert by(samples, "signal_backpressure_state", "level") == {
        "LOW": 0.0,
        "MEDIUM": 0.0,
        "HIGH": 0.0,
        "CRITICAL": 1.0,
    }
    assert by(samples, "signal_backpressure_signal_level", "signal") == {
        name: float(Level.CRITICAL if name == "shard_depth" else Level.LOW) for name in SIGNALS
    }
    measured = by(samples, "signal_backpressure_signal", "signal")
    assert (measured["total_depth"], measured["shard_depth"]) == (3.0, 3.0)
    assert measured["task_wait"] == 2.5 and measured["task_run"] == 0.3
    assert abs(samples["signal_backpressure_measured_seconds"][0][1] - now) < 5

    assert by(samples, "signal_task_wait_seconds", "quantile") == {"0.5": 1.5, "0.95": 2.5}
    assert by(samples, "signal_task_run_seconds", "quantile") == {"0.5": 0.2, "0.95": 0.3}
    assert {(labels["task"], labels["state"]): value for labels, value in samples["signal_tasks_total"]} == {
        ("greeks.tasks.chain_compute", "SUCCESS"): 2.0,
        ("greeks.tasks.chain_compute", "FAILURE"): 1.0,
    }

    owners = {
        (labels["shard"], labels["worker"]): value for labels, value in samples["signal_farm_shard_owner"]
    }
    assert owners == {("0", "w1@h"): 1.0, ("1", "w1@h"): 1.0, ("2", "w2@h"): 1.0}
    assert samples["signal_farm_workers"] == [({}, 2.0)]  # the one silent for an hour is not live


def test_the_process_metrics_are_still_there_beside_the_farm(client, broker):
    assert client.get("/api/v2/ops/backpressure").status_code == 200

    samples = scrape(client)

    endpoints = {labels["endpoint"] for labels, _ in samples["signal_http_requests_total"]}
    assert "api/v2/ops/backpressure" in endpoints
    assert samples["signal_farm_up"] == [({}, 1.0)]


def test_a_scrape_while_the_broker_is_down_says_so_and_invents_nothing(client):
    with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0"):
        samples = scrape(client)

    assert samples["signal_farm_up"] == [({}, 0.0)]
    assert not {
        name
        for name in samples
        if name.startswith(("signal_queue_", "signal_backpressure_", "signal_farm_s"))
    }


# -- the Grafana dashboard -----------------------------------------------------------------------------------

KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions,
    aggregations, keywords, label names or values, or Grafana's range variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("(") or match.group() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_metric_names_are_read_from_expressions():
    expr = (
        'histogram_quantile(0.95, sum by (le, endpoint) (rate(signal_http_request_seconds_bucket{status=~"5.."}'
        "[$__rate_interval]))) / on (job) group_left max without (instance) (up) or vector(0) - time()"
    )
    assert metric_names(expr) == {"signal_http_request_seconds_bucket", "up"}


def defined_metric_names() -> set[str]:
    """Every sample name the code's collectors can expose (a histogram's buckets, a counter's
    _total, ...), including the metrics of the WebSocket process."""
    # Imported for their registrations: each module registers its metrics with the default registry.
    from signalsvc.ops import health, metrics  # noqa: F401
    from streaming import metrics as streaming_metrics  # noqa: F401

    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
        "unknown": ("",),
    }
    names = set()
    for registry in (REGISTRY, farm_registry()):
        for family in registry.collect():
            names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def dashboard_panels() -> list[dict]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def test_every_metric_of_the_dashboard_is_one_the_code_defines(broker):
    defined = defined_metric_names()
    used: dict[str, set[str]] = {}
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            used[panel["title"]] = used.get(panel["title"], set()) | names

    undefined = {title: names - defined for title, names in used.items() if names - defined}
    assert undefined == {}
    everything = set().union(*used.values())
    # Requests, tasks, queues, backpressure, shard owners and WebSockets each have their panels.
    for prefix in (
        "signal_http_",
        "signal_tasks_total",
        "signal_task_wait_seconds",
        "signal_queue_",
        "signal_backpressure_level",
        "signal_farm_shard_owner",
        "signal_farm_workers",
        "signal_ws_",
    ):
        assert any(name.startswith(prefix) for name in everything), prefix


def test_the_dashboard_panels_have_unique_ids_and_a_prometheus_data_source():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard_panels()

    assert len({p["id"] for p in panels}) == len(panels)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    assert {p["datasource"]["uid"] for p in panels if p["type"] != "row"} == {"${datasource}"}
