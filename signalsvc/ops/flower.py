"""Flower, the Celery monitor: ``python -m signalsvc.ops.flower [FLOWER OPTIONS]`` runs
``celery -A signalsvc flower [FLOWER OPTIONS]`` (the Procfile, compose and Kubernetes start it so).

The one difference is memory. Flower drops a task's state (a reference cycle) when its
``--max_tasks`` LRU is full, after the state has lived long enough to reach CPython's oldest
generation, and CPython collects that generation only after tens of minutes of Flower's slow
allocation: the soak bench saw its RSS climb ~30 MB an hour that way, with nothing leaking
(docs/reliability.md "Soak"). So what Flower loads at start (Django, the task modules, its own
modules) is loaded first and frozen, and a full collection, which then scans only Flower's own
state, runs every ``GC_FULL_COLLECT_SECONDS`` (default 60; not a ``FLOWER_`` name: Flower
reads every such variable as one of its options).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> None:
    from celery.__main__ import main as celery_main

    from signalsvc.celery import app
    from signalsvc.core.processes import collect_every, freeze_startup_objects

    app.loader.import_default_modules()  # Django set up and the task modules imported, as Flower does
    import flower.app  # noqa: F401 - Flower's own modules (tornado, prometheus_client), before the freeze

    freeze_startup_objects()
    collect_every(float(os.environ.get("GC_FULL_COLLECT_SECONDS", "60")))
    sys.argv = ["celery", "-A", "signalsvc", "flower", *argv]
    celery_main()


if __name__ == "__main__":
    main(sys.argv[1:])
