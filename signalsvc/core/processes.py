"""How many server processes to run: a per-core figure or an exact count, from the environment.

Used by the REST server's start (``scripts/start-web.sh``, ``signalsvc/gunicorn_conf.py``) and the
WebSocket server's (``scripts/start-ws.sh``)::

    python -m signalsvc.core.processes WEB_WORKERS WEB_WORKERS_PER_CORE 2
"""

from __future__ import annotations

import os
import sys
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


if __name__ == "__main__":
    exact_var, per_core_var, default = sys.argv[1:4]
    print(processes_for(os.environ, exact=exact_var, per_core=per_core_var, default_per_core=float(default)))
