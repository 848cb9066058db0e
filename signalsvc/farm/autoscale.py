"""Worker-replica autoscaling (SPEC §11): observe the farm, decide, apply through a backend.

Each interval: the broker backlog (every farm queue, one round trip), the live workers
(``farm:workers``), host CPU and memory (psutil) and the backend's replica count make an
:class:`~signalsvc.farm.core.scaling.Observation`; :func:`~signalsvc.farm.core.scaling.decide`
turns it into a decision; the backend applies it; one log line tells what and why.

Backends:

- ``docker-compose``: the compose project's ``worker`` service through the Docker Engine API
  (the mounted socket). Compose has no "scale" call in the API and the ``docker compose`` CLI inside
  the container would need the compose file, the project's ``.env`` secrets and the CLI plugin, so
  scaling up clones a running replica (its config, host config, networks and compose labels, a new
  container number, a hostname of its own) and scaling down stops (warm shutdown, the replica's own
  stop timeout) and removes the highest-numbered replicas, as ``docker compose up --scale`` does. The
  clones carry the compose labels, so ``docker compose ps/logs/up --scale`` see them as replicas.
- ``kubernetes``: patches the scale subresource of the worker Deployment (official client; in-cluster
  configuration, else the kubeconfig).
- ``dry-run``: logs what it would do and remembers it, so cooldowns run as if it had been applied.
"""

from __future__ import annotations

import logging
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psutil
import redis
from django.conf import settings

from signalsvc.farm.core.scaling import Decision, Observation, Policy, State, decide, state_after
from signalsvc.farm.ownership import owners_read, workers_read
from signalsvc.farm.queues import farm_depths, queue_depths
from signalsvc.farm.routing import all_queues

logger = logging.getLogger(__name__)

BACKENDS = ("docker-compose", "kubernetes", "dry-run")


def backend_name(raw: str) -> str:
    """``docker_compose``/``dry_run`` (environment style) and ``k8s`` are accepted spellings."""
    name = raw.strip().lower().replace("_", "-")
    name = {"k8s": "kubernetes", "compose": "docker-compose", "dryrun": "dry-run"}.get(name, name)
    if name not in BACKENDS:
        raise ValueError(f"unknown autoscaler backend {raw!r}: use one of {', '.join(BACKENDS)}")
    return name


def policy_from_settings() -> Policy:
    return Policy(
        min_workers=settings.AUTOSCALER_MIN_WORKERS,
        max_workers=settings.AUTOSCALER_MAX_WORKERS,
        target_per_worker=settings.AUTOSCALER_TARGET_PER_WORKER,
        up_threshold=settings.AUTOSCALER_UP_THRESHOLD,
        down_threshold=settings.AUTOSCALER_DOWN_THRESHOLD,
        up_cooldown=settings.AUTOSCALER_UP_COOLDOWN_SECONDS,
        down_cooldown=settings.AUTOSCALER_DOWN_COOLDOWN_SECONDS,
    )


class Backend(Protocol):
    name: str

    def replicas(self) -> int: ...

    def scale(self, replicas: int) -> None: ...


# ------------------------------------------------------------------------------------------------
# dry-run
# ------------------------------------------------------------------------------------------------


class DryRunBackend:
    name = "dry-run"

    def __init__(self, replicas: int) -> None:
        self._replicas = replicas

    def replicas(self) -> int:
        return self._replicas

    def scale(self, replicas: int) -> None:
        logger.info("dry-run: worker replicas would go from %d to %d", self._replicas, replicas)
        self._replicas = replicas


# ------------------------------------------------------------------------------------------------
# docker compose (Docker Engine API)
# ------------------------------------------------------------------------------------------------

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"
# Container config fields that belong to one container and must not be copied to a clone: the
# hostname is the celery node name (celery@HOSTNAME), so each replica needs its own (Docker gives
# it the new container's id, as compose does).
_NOT_CLONED = ("Hostname", "MacAddress")
# `docker stop` without a timeout waits 10 s (the Engine's default) before SIGKILL.
DEFAULT_STOP_TIMEOUT = 10


def replica_number(labels: dict[str, str]) -> int:
    try:
        return int(labels.get(NUMBER_LABEL, ""))
    except ValueError:
        return 0


def clone_name(template_name: str, number: int, *, project: str, service: str) -> str:
    """The template's name with the new number: ``proj-worker-1`` -> ``proj-worker-3`` (compose v2;
    v1's ``proj_worker_1`` keeps its underscores)."""
    match = re.fullmatch(r"/?(.*[-_])\d+", template_name)
    return f"{match.group(1)}{number}" if match else f"{project}-{service}-{number}"


def clone_config(
    template: dict[str, Any], number: int, *, project: str, service: str
) -> tuple[str, dict, dict]:
    """What creates replica ``number`` from a running replica's ``inspect``: its name, the create
    body and the networks to connect after creation (network -> aliases)."""
    name = clone_name(template["Name"], number, project=project, service=service)
    config = {key: value for key, value in template["Config"].items() if key not in _NOT_CLONED}
    # The image id, not the tag: a clone runs the same build as its siblings even when the tag
    # has been rebuilt or pulled since the project was brought up.
    config["Image"] = template["Image"]
    config["Labels"] = {**(template["Config"].get("Labels") or {}), NUMBER_LABEL: str(number)}
    config["HostConfig"] = template["HostConfig"]
    aliases = [service, name]
    networks = list((template.get("NetworkSettings") or {}).get("Networks") or {})
    # The network of NetworkMode first: the Engine attaches it at creation; older API versions
    # accept a single network there, so the others are connected afterwards.
    networks.sort(key=lambda network: network != template["HostConfig"].get("NetworkMode"))
    if networks:
        config["NetworkingConfig"] = {"EndpointsConfig": {networks[0]: {"Aliases": aliases}}}
    return name, config, {network: aliases for network in networks[1:]}


def scale_plan(running: list[int], existing: list[int], desired: int) -> tuple[list[int], list[int]]:
    """Replica numbers to create and running ones to remove (highest first) to run ``desired``.
    New numbers follow the highest of every existing replica, stopped ones included, so a name is
    never reused while a stopped container still holds it."""
    running = sorted(running)
    if desired > len(running):
        start = max([0, *existing, *running]) + 1
        return list(range(start, start + desired - len(running))), []
    return [], running[desired:][::-1]


class DockerComposeBackend:
    name = "docker-compose"

    def __init__(self, *, project: str, service: str, client: Any = None) -> None:
        if client is None:
            import docker

            try:
                client = docker.APIClient(**docker.utils.kwargs_from_env())
            except docker.errors.DockerException as exc:
                raise RuntimeError(
                    f"cannot reach the Docker Engine ({exc}): mount /var/run/docker.sock (compose.yaml does) "
                    "or set AUTOSCALER_BACKEND=dry_run"
                ) from exc
        self.client = client
        self.service = service
        self.project = project or self._own_project()

    def _own_project(self) -> str:
        """The compose project of the container this runs in (its hostname is its id)."""
        import docker

        try:
            labels = self.client.inspect_container(socket.gethostname())["Config"]["Labels"] or {}
        except docker.errors.APIError as exc:
            raise RuntimeError(
                f"cannot read this container's compose project ({exc}): set AUTOSCALER_COMPOSE_PROJECT"
            ) from exc
        if PROJECT_LABEL not in labels:
            raise RuntimeError(
                "this container is not part of a compose project: set AUTOSCALER_COMPOSE_PROJECT"
            )
        return labels[PROJECT_LABEL]

    def _containers(self, *, include_stopped: bool) -> list[dict]:
        labels = [
            f"{PROJECT_LABEL}={self.project}",
            f"{SERVICE_LABEL}={self.service}",
            f"{ONEOFF_LABEL}=False",
        ]
        return self.client.containers(all=include_stopped, filters={"label": labels})

    def replicas(self) -> int:
        return len(self._containers(include_stopped=False))

    def scale(self, replicas: int) -> None:
        running = {replica_number(c["Labels"]): c for c in self._containers(include_stopped=False)}
        existing = [replica_number(c["Labels"]) for c in self._containers(include_stopped=True)]
        create, remove = scale_plan(list(running), existing, replicas)
        if create and not running:
            raise RuntimeError(
                f"no running replica of {self.service!r} in project {self.project!r} to clone: "
                f"start one with `docker compose up -d {self.service}`"
            )
        if create:
            template = self.client.inspect_container(running[min(running)]["Id"])
            for number in create:
                self._start_clone(template, number)
        for number in remove:
            self._stop_and_remove(running[number]["Id"])

    def _start_clone(self, template: dict, number: int) -> None:
        name, config, more_networks = clone_config(
            template, number, project=self.project, service=self.service
        )
        created = self.client.create_container_from_config(config, name=name)
        for network, aliases in more_networks.items():
            self.client.connect_container_to_network(created["Id"], network, aliases=aliases)
        self.client.start(created["Id"])
        logger.info("docker-compose: started %s", name)

    def _stop_and_remove(self, container_id: str) -> None:
        info = self.client.inspect_container(container_id)
        timeout = info["Config"].get("StopTimeout") or DEFAULT_STOP_TIMEOUT
        name = info["Name"].lstrip("/")
        # A worker's warm shutdown: it finishes the tasks it runs (acks late: anything killed at
        # the timeout is redelivered). This call waits for it, up to the replica's stop timeout.
        logger.info("docker-compose: stopping %s (warm shutdown, up to %ds)", name, timeout)
        self.client.stop(container_id, timeout=timeout)
        self.client.remove_container(container_id)
        logger.info("docker-compose: removed %s", name)


# ------------------------------------------------------------------------------------------------
# Kubernetes
# ------------------------------------------------------------------------------------------------


class KubernetesBackend:
    name = "kubernetes"

    def __init__(self, *, namespace: str, deployment: str, api: Any = None) -> None:
        if api is None:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                try:
                    config.load_kube_config()
                except config.ConfigException as exc:
                    raise RuntimeError(
                        f"no Kubernetes configuration: neither in a pod nor a kubeconfig ({exc})"
                    ) from exc
            api = client.AppsV1Api()
        self.api = api
        self.namespace = namespace
        self.deployment = deployment

    def replicas(self) -> int:
        scale = self.api.read_namespaced_deployment_scale(self.deployment, self.namespace)
        return scale.spec.replicas or 0

    def scale(self, replicas: int) -> None:
        # A merge patch, as `kubectl scale` sends, named rather than left to the client: its
        # generated code picks JSON Patch (which the API server refuses for an object body) and
        # only its REST layer swaps that for a strategic merge patch.
        self.api.patch_namespaced_deployment_scale(
            self.deployment,
            self.namespace,
            {"spec": {"replicas": replicas}},
            _content_type="application/merge-patch+json",
        )


def backend_create(name: str, *, live_workers: int) -> Backend:
    """The backend ``name`` configured from settings. The dry-run one starts from the live
    workers (there is nothing else to count; none live: the minimum)."""
    name = backend_name(name)
    if name == "docker-compose":
        return DockerComposeBackend(
            project=settings.AUTOSCALER_COMPOSE_PROJECT, service=settings.AUTOSCALER_COMPOSE_SERVICE
        )
    if name == "kubernetes":
        return KubernetesBackend(
            namespace=settings.AUTOSCALER_K8S_NAMESPACE, deployment=settings.AUTOSCALER_K8S_DEPLOYMENT
        )
    return DryRunBackend(live_workers or settings.AUTOSCALER_MIN_WORKERS)


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """What one interval saw, beside the observation the controller decides from."""

    observation: Observation
    live_workers: int
    ready: int
    unacked: int
    oldest_age: float


def farm_read(client: redis.Redis, backend: Backend, *, now: float, cpu: float, memory: float) -> Reading:
    """The farm's state now; ``cpu`` and ``memory`` are host percentages measured by the caller."""
    depths = farm_depths(client, settings.SHARD_COUNT).values()
    live = workers_read(client, ttl=settings.FARM_WORKER_TTL_SECONDS)
    ready = sum(d.ready for d in depths)
    unacked = sum(d.unacked for d in depths)
    observation = Observation(
        replicas=backend.replicas(), backlog=ready + unacked, cpu=cpu, memory=memory, now=now
    )
    return Reading(observation, len(live), ready, unacked, max((d.oldest_age for d in depths), default=0.0))


def decision_line(decision: Decision, reading: Reading, backend: Backend) -> str:
    """One log line per decision: action, replicas, reason, and the inputs."""
    obs = reading.observation
    return (
        f"autoscale {decision.action} {decision.current} -> {decision.desired} ({decision.reason}: "
        f"{decision.detail}) backend={backend.name} live_workers={reading.live_workers} "
        f"ready={reading.ready} unacked={reading.unacked} oldest={reading.oldest_age:.1f}s "
        f"cpu={obs.cpu:.0f}% memory={obs.memory:.0f}%"
    )


class Autoscaler:
    """The decision loop. ``report`` receives each decision's line (the command writes it out)."""

    def __init__(
        self,
        *,
        client: redis.Redis,
        backend: Backend,
        policy: Policy,
        report: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.backend = backend
        self.policy = policy
        self.report = report
        self.clock = clock
        # Start-up counts as a change: a restarted autoscaler does not scale down before it has
        # watched the farm for a down cooldown. Scale-ups are not held back.
        self.state = State(last_up=None, last_change=clock())
        self.stopping = threading.Event()
        self._cpu_sampled = False

    def _cpu(self) -> float:
        """Host CPU busy (percent of every core) since the previous decision; the first decision
        has no previous sample, so it measures over one second."""
        interval = None if self._cpu_sampled else 1.0
        self._cpu_sampled = True
        return psutil.cpu_percent(interval=interval)

    def step(self) -> Decision:
        cpu = self._cpu()
        now = self.clock()
        reading = farm_read(
            self.client, self.backend, now=now, cpu=cpu, memory=psutil.virtual_memory().percent
        )
        decision = decide(reading.observation, self.policy, self.state)
        self.report(decision_line(decision, reading, self.backend))
        if decision.action != "hold":
            self.backend.scale(decision.desired)
            self.state = state_after(self.state, decision, now)
        return decision

    def run(self, interval: float) -> None:
        """Decide every ``interval`` seconds until :meth:`stop`. A failed interval (broker or
        backend unreachable) is logged and the next one tries again."""
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception:
                logger.exception("autoscale: this interval failed; trying again in %.0fs", interval)
            self.stopping.wait(interval)

    def stop(self) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        def stop(signum, frame):
            logger.info("autoscale: %s received, stopping", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


# ------------------------------------------------------------------------------------------------
# Status (manage.py farm_status, scripts/scale-signal-service.sh status)
# ------------------------------------------------------------------------------------------------


def backpressure_read() -> dict[str, str | None]:
    """The backpressure level's name, or why there is none."""
    try:
        from signalsvc.farm.backpressure import current_level
    except ImportError:
        return {"level": None, "error": "not available (no signalsvc.farm.backpressure in this build)"}
    try:
        return {"level": current_level().name, "error": None}
    except Exception as exc:  # the status shows everything else even when the monitor fails
        return {"level": None, "error": f"unreadable: {exc}"}


def farm_status_read(client: redis.Redis, *, now: float | None = None) -> dict[str, Any]:
    """Live workers, shard owners, non-empty queues with totals, and the backpressure level."""
    now = time.time() if now is None else now
    live = workers_read(client, ttl=settings.FARM_WORKER_TTL_SECONDS, now=now)
    workers = {
        name: {
            "host": info.get("host"),
            "pid": info.get("pid"),
            "shards": len(info.get("queues") or []),
            "stolen": list(info.get("stolen") or []),
            "busy": bool(info.get("busy")),
            "seen_ago": round(max(0.0, now - float(info.get("seen", now))), 1),
        }
        for name, info in sorted(live.items())
    }
    owners = owners_read(client)
    per_worker: dict[str, int] = {}
    for owner in owners.values():
        per_worker[owner] = per_worker.get(owner, 0) + 1
    depths = queue_depths(client, all_queues(settings.SHARD_COUNT), now=now)
    queues = {
        d.queue: {"ready": d.ready, "unacked": d.unacked, "oldest_age": round(d.oldest_age, 1)}
        for d in depths.values()
        if d.total
    }
    return {
        "workers": workers,
        "owners": {
            "shard_count": settings.SHARD_COUNT,
            "per_worker": dict(sorted(per_worker.items())),
            "unowned": [s for s in range(settings.SHARD_COUNT) if s not in owners],
            "owner_not_live": {s: w for s, w in sorted(owners.items()) if w not in live},
        },
        "queues": queues,
        "totals": {
            "ready": sum(d.ready for d in depths.values()),
            "unacked": sum(d.unacked for d in depths.values()),
            "oldest_age": round(max((d.oldest_age for d in depths.values()), default=0.0), 1),
        },
        "backpressure": backpressure_read(),
    }
