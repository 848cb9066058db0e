"""How many worker replicas the farm should run (SPEC §11). Standard library only.

One decision per interval, from an :class:`Observation`, a :class:`Policy` and the :class:`State`
left by the decisions applied before:

1. Bounds first: below ``min_workers`` or above ``max_workers`` goes straight to the bound, with
   no cooldown (a bound is configuration, not load).
2. Depth: ``backlog`` is every task on the broker (ready + unacknowledged, every farm queue);
   the farm needs ``ceil(backlog / target_per_worker)`` workers. More than now: scale up to that
   number at once (proportional), capped at ``max_workers``. A backlog grows while the farm is
   short, so waiting for one step per cooldown would let it grow for minutes.
3. CPU or memory above ``up_threshold`` percent while tasks are waiting: one more worker. Hot
   with nothing waiting is left alone: the farm keeps up, and on a shared host the heat may be
   another process's (web, ingest), which another worker would not cool.
4. Depth calls for fewer workers and CPU and memory are both below ``down_threshold``: one fewer
   per decision. One step at a time because each removal is a warm shutdown plus shard moves,
   and a busy farm with a short queue (between the thresholds) is sized right: it holds.
5. Cooldowns: no scale-up within ``up_cooldown`` seconds of the last scale-up (new workers need
   that long to start and take their shards before the backlog can show their effect); no
   scale-down within ``down_cooldown`` seconds of the last change of either direction.

Units: percent in 0..100, seconds of a monotonic clock, counts of tasks and replicas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    BELOW_MIN = "below_min"  # replicas < min_workers: up to the minimum
    ABOVE_MAX = "above_max"  # replicas > max_workers: down to the maximum
    DEPTH = "depth"  # backlog per worker above the target: up to the workers it needs
    CPU = "cpu"  # CPU above the up threshold with tasks waiting: one more
    MEMORY = "memory"  # memory above the up threshold with tasks waiting: one more
    IDLE = "idle"  # backlog fits fewer workers, CPU and memory below the down threshold: one fewer
    BUSY = "busy"  # backlog fits fewer workers, but CPU or memory is not below the down threshold
    STEADY = "steady"  # the backlog needs exactly the replicas running
    AT_MAX = "at_max"  # more are wanted, already at max_workers
    AT_MIN = "at_min"  # fewer would do, already at min_workers
    UP_COOLDOWN = "up_cooldown"  # more are wanted, the last scale-up is too recent
    DOWN_COOLDOWN = "down_cooldown"  # fewer would do, the last change is too recent


@dataclass(frozen=True)
class Policy:
    min_workers: int
    max_workers: int
    target_per_worker: int  # tasks (ready + unacknowledged) one worker replica is sized for
    up_threshold: float = 70.0  # percent of CPU or memory above which a waiting backlog adds one
    down_threshold: float = 30.0  # percent both must be below for a scale-down
    up_cooldown: float = 60.0  # seconds after a scale-up before the next scale-up
    down_cooldown: float = 300.0  # seconds after any change before a scale-down

    def __post_init__(self) -> None:
        if not 1 <= self.min_workers <= self.max_workers:
            raise ValueError(
                f"need 1 <= min_workers <= max_workers, not {self.min_workers}..{self.max_workers}"
            )
        if self.target_per_worker < 1:
            raise ValueError(f"target_per_worker must be at least 1, not {self.target_per_worker}")
        if not 0 <= self.down_threshold < self.up_threshold <= 100:
            raise ValueError(
                f"need 0 <= down_threshold < up_threshold <= 100 (percent), "
                f"not {self.down_threshold} and {self.up_threshold}"
            )
        if self.up_cooldown < 0 or self.down_cooldown < 0:
            raise ValueError("cooldowns are seconds >= 0")


@dataclass(frozen=True)
class Observation:
    replicas: int  # worker replicas now, as the backend reports them
    backlog: int  # tasks on the broker: ready + unacknowledged, every farm queue
    cpu: float  # percent busy, every core of the host
    memory: float  # percent in use
    now: float  # seconds, monotonic


@dataclass(frozen=True)
class State:
    """When the applied decisions changed the replicas (monotonic seconds; None: never)."""

    last_up: float | None = None
    last_change: float | None = None


@dataclass(frozen=True)
class Decision:
    current: int
    desired: int
    reason: Reason
    detail: str  # the numbers behind the reason, for the log line

    @property
    def action(self) -> str:
        if self.desired > self.current:
            return "up"
        if self.desired < self.current:
            return "down"
        return "hold"


def workers_for(backlog: int, target_per_worker: int) -> int:
    """Workers a backlog needs at ``target_per_worker`` tasks each (0 for no backlog)."""
    return math.ceil(max(backlog, 0) / target_per_worker)


def _left(since: float | None, cooldown: float, now: float) -> float:
    """Seconds of ``cooldown`` still to run after ``since`` (0 when over or never started)."""
    return 0.0 if since is None else max(0.0, cooldown - (now - since))


def decide(obs: Observation, policy: Policy, state: State) -> Decision:
    """The replicas the farm should run now, and why (see the module docstring for the rules)."""
    current = obs.replicas
    needed = workers_for(obs.backlog, policy.target_per_worker)
    load = f"backlog {obs.backlog} / {policy.target_per_worker} per worker = {needed}"
    if current < policy.min_workers:
        # Straight to what the backlog needs when that is more: a scale-up to the minimum
        # would start the up cooldown and hold the rest back for a minute.
        desired = min(max(needed, policy.min_workers), policy.max_workers)
        return Decision(current, desired, Reason.BELOW_MIN, f"min_workers={policy.min_workers}; {load}")
    if current > policy.max_workers:
        return Decision(current, policy.max_workers, Reason.ABOVE_MAX, f"max_workers={policy.max_workers}")

    resources = f"cpu {obs.cpu:.0f}%, memory {obs.memory:.0f}%"
    if needed > current:
        wanted, reason, detail = needed, Reason.DEPTH, load
    elif obs.backlog > 0 and max(obs.cpu, obs.memory) > policy.up_threshold:
        reason = Reason.CPU if obs.cpu >= obs.memory else Reason.MEMORY
        wanted, detail = current + 1, f"{resources} > {policy.up_threshold:g}% with {obs.backlog} waiting"
    elif needed < current:
        if max(obs.cpu, obs.memory) >= policy.down_threshold:
            return Decision(
                current, current, Reason.BUSY, f"{load}; {resources} not < {policy.down_threshold:g}%"
            )
        wanted, reason, detail = current - 1, Reason.IDLE, f"{load}; {resources} < {policy.down_threshold:g}%"
    else:
        return Decision(current, current, Reason.STEADY, load)

    if wanted > current:
        if current >= policy.max_workers:
            return Decision(current, current, Reason.AT_MAX, f"{detail}; max_workers={policy.max_workers}")
        wanted = min(wanted, policy.max_workers)
        left = _left(state.last_up, policy.up_cooldown, obs.now)
        if left > 0:
            return Decision(
                current, current, Reason.UP_COOLDOWN, f"{detail} wants {wanted}; {left:.0f}s left"
            )
        return Decision(current, wanted, reason, detail)

    if current <= policy.min_workers:
        return Decision(current, current, Reason.AT_MIN, f"{detail}; min_workers={policy.min_workers}")
    left = _left(state.last_change, policy.down_cooldown, obs.now)
    if left > 0:
        return Decision(current, current, Reason.DOWN_COOLDOWN, f"{detail} wants {wanted}; {left:.0f}s left")
    return Decision(current, wanted, reason, detail)


def state_after(state: State, decision: Decision, now: float) -> State:
    """The state once ``decision`` has been applied at ``now`` (unchanged when it held)."""
    if decision.action == "up":
        return State(last_up=now, last_change=now)
    if decision.action == "down":
        return State(last_up=state.last_up, last_change=now)
    return state
