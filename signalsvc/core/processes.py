"""Long-running processes: how many server processes to run (a per-core figure or an exact count,
from the environment), and the start-up objects a process freezes once it is ready to serve.

The count is used by the REST server's start (``scripts/start-web.sh``, ``signalsvc/gunicorn_conf.py``)
and the WebSocket server's (``scripts/start-ws.sh``)::

    python -m signalsvc.core.processes WEB_WORKERS WEB_WORKERS_PER_CORE 2
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Mapping


def usable_cores() -> int:
    """The cores this process may run on (a container's CPU set), not the host's count."""
    return len(os.sched_getaffinity(0)) or 1


def processes_for(env: Mapping[str, str], *, exact: str, per_core: str, default_per_core: float) -> int:
    """``env[exact]`` when it is a positive integer, else ``env[per_core]`` (default
    ``default_per_core``) times the usable cores, rounded, at least 1."""
    count = int(env.get(exact) or 0)
    if count > 0:
        return count
    factor = float(env.get(per_core) or default_per_core)
    return max(1, round(factor * usable_cores()))


def freeze_startup_objects() -> int:
    """Collect, then move every object alive now into the permanent generation (``gc.freeze``): for
    a process whose start-up is done (modules, settings, URLconf, caches loaded), so that what it
    allocates while serving is collected soon after it becomes garbage. Returns the count frozen.

    Why: CPython frees reference cycles that reach its oldest generation only in a full collection,
    and runs one only when the objects that entered that generation since the last one number a
    quarter of those that were in it then. A process that has imported Django, Celery and numpy
    holds several hundred thousand such objects, so its cycles (a request's, an event's) pile up to
    tens of thousands of objects, megabytes, for tens of minutes before one collection frees them:
    growth in RSS with nothing leaking (Flower in the soak bench, docs/reliability.md "Soak").
    Frozen objects are neither counted nor scanned, so the quarter is of what the process made
    since, and each full collection is short. (CPython still considers one only every 70,000 net
    new objects: see ``collect_every`` for a process that makes them slowly.) The frozen objects are
    never freed, which is what start-up objects are for."""
    gc.collect()  # start-up's own garbage is freed, not frozen
    gc.freeze()
    # A full collection now scans nothing, and sets what the next one waits for from what is left
    # outside the frozen objects (next to nothing) rather than from all of them.
    gc.collect()
    return gc.get_freeze_count()


def collect_every(seconds: float) -> threading.Event:
    """A full collection every ``seconds``, from a daemon thread; set the returned event to stop it.

    For a process that makes long-lived objects slowly (Flower: a task's state lives minutes in its
    LRU, then is dropped as a reference cycle): CPython considers a full collection only after
    70,000 new objects have outlived the young generations' collections, which such a process takes
    tens of minutes to make, while its dropped cycles wait in the oldest generation. After
    ``freeze_startup_objects`` a full collection scans only what the process made since (tens of
    thousands of objects, a few milliseconds)."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(seconds):
            gc.collect()

    threading.Thread(target=run, name="gc-collect", daemon=True).start()
    return stop


if __name__ == "__main__":
    exact_var, per_core_var, default = sys.argv[1:4]
    print(processes_for(os.environ, exact=exact_var, per_core=per_core_var, default_per_core=float(default)))
