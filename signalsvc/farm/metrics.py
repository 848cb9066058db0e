"""Prometheus metrics of the worker farm, read from Redis at scrape time (SPEC §11; Flower has none).

Every web and WebSocket replica exposes the same farm-wide values (they come from the shared
backpressure reading and the ownership hashes, not from the process): dashboards take ``max``
over instances. Appended to ``/metrics`` by :func:`signalsvc.ops.apis.metrics_view` from their own
registry, so they appear alike with and without prometheus_client's multiprocess mode.

A scrape costs the process at most one backpressure measurement (usually one GET of the shared
reading) and three hash reads. When the broker's Redis cannot be read, only
``signal_farm_up 0`` is exposed: an absent series is "unknown", never a made-up zero.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import redis
from django.conf import settings
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from signalsvc.farm.backpressure import backpressure_report
from signalsvc.farm.core.pressure import SIGNALS, Level
from signalsvc.farm.ownership import owners_read, workers_read
from signalsvc.farm.routing import all_queues
from signalsvc.farm.signals import TASKS_KEY, monitor_client

log = logging.getLogger(__name__)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class FarmCollector:
    """Queues, backpressure, task latency and counts, shard owners and live workers."""

    def describe(self) -> list[Metric]:
        # Nothing to describe up front: registering must not read Redis.
        return []

    def collect(self):
        try:
            client = monitor_client()
            report = backpressure_report(client)
            owners = owners_read(client)
            workers = workers_read(client, ttl=settings.FARM_WORKER_TTL_SECONDS)
            tasks = client.hgetall(TASKS_KEY)
        except (redis.RedisError, OSError) as exc:
            log.warning("farm metrics: the broker's Redis cannot be read: %s", exc)
            yield GaugeMetricFamily(
                "signal_farm_up", "1 when the farm's state could be read from Redis", value=0
            )
            return
        yield GaugeMetricFamily("signal_farm_up", "1 when the farm's state could be read from Redis", value=1)
        yield from self._queues(report)
        yield from self._backpressure(report)
        yield from self._tasks(report, tasks)
        owner = GaugeMetricFamily(
            "signal_farm_shard_owner",
            "1 for the worker the coordinator assigned the shard to",
            labels=["shard", "worker"],
        )
        for shard, worker in sorted(owners.items()):
            owner.add_metric([str(shard), worker], 1)
        yield owner
        yield GaugeMetricFamily("signal_farm_workers", "Workers with a recent heartbeat", value=len(workers))

    def _queues(self, report):
        ready = GaugeMetricFamily(
            "signal_queue_ready", "Tasks waiting in the broker (every priority)", labels=["queue"]
        )
        unacked = GaugeMetricFamily(
            "signal_queue_unacked", "Tasks delivered to a worker, not acknowledged yet", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "signal_queue_oldest_age_seconds",
            "Age of the oldest waiting task (0 when none)",
            labels=["queue"],
        )
        for queue in all_queues(settings.SHARD_COUNT):
            depth = report.queues.get(queue)
            ready.add_metric([queue], depth.ready if depth else 0)
            unacked.add_metric([queue], depth.unacked if depth else 0)
            oldest.add_metric([queue], depth.oldest_age if depth else 0.0)
        yield from (ready, unacked, oldest)

    def _backpressure(self, report):
        decision = report.decision()
        yield GaugeMetricFamily(
            "signal_backpressure_measured_seconds",
            "When the shared backpressure reading was measured (epoch seconds)",
            value=report.measured_at,
        )
        yield GaugeMetricFamily(
            "signal_backpressure_level",
            "Backpressure level: 0 LOW, 1 MEDIUM, 2 HIGH, 3 CRITICAL",
            value=int(decision.level),
        )
        state = GaugeMetricFamily(
            "signal_backpressure_state", "1 for the current backpressure level", labels=["level"]
        )
        for level in Level:
            state.add_metric([level.name], 1 if level == decision.level else 0)
        yield state
        value = GaugeMetricFamily(
            "signal_backpressure_signal", "Measured backpressure signals, in their units", labels=["signal"]
        )
        own = GaugeMetricFamily(
            "signal_backpressure_signal_level",
            "Each backpressure signal's own level (0-3)",
            labels=["signal"],
        )
        for name in SIGNALS:
            if report.signals.get(name) is not None:  # not measurable: no sample rather than a zero
                value.add_metric([name], report.signals[name])
            own.add_metric([name], int(decision.levels[name]))
        yield from (value, own)

    def _tasks(self, report, tasks: dict):
        latency = report.latency
        for name, help_text, p50, p95 in (
            (
                "signal_task_wait_seconds",
                "Publish -> start of recently finished tasks",
                latency.wait_p50,
                latency.wait_p95,
            ),
            (
                "signal_task_run_seconds",
                "Start -> finish of recently finished tasks",
                latency.run_p50,
                latency.run_p95,
            ),
        ):
            family = GaugeMetricFamily(name, help_text, labels=["quantile"])
            for quantile, value in (("0.5", p50), ("0.95", p95)):
                if value is not None:
                    family.add_metric([quantile], value)
            yield family
        finished = CounterMetricFamily(
            "signal_tasks", "Tasks finished, by task and state", labels=["task", "state"]
        )
        for field, count in sorted((_text(k), int(v)) for k, v in tasks.items()):
            task, _, state = field.rpartition("|")
            finished.add_metric([task, state], count)
        yield finished


@lru_cache(maxsize=1)
def farm_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FarmCollector())
    return registry
