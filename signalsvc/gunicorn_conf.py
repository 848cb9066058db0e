"""gunicorn settings of the REST process when ``WEB_SERVER=gunicorn`` (docs/decisions.md "Serving").

granian is the REST server (``scripts/start-web.sh``); gunicorn's sync workers were before it and
are kept for comparison. Sync workers run Django's views in parallel, one per process, on every
core (under ASGI a process runs sync views one at a time); two per core served realtime Greeks at
~6x daphne's rate. They close every connection, so nginx opens one per request: granian, which
keeps them, served ~1.7x as many through nginx on the same machine.

Environment:
  WEB_BIND               address to listen on (default 127.0.0.1:8004; compose: 0.0.0.0:8003)
  WEB_WORKERS_PER_CORE   sync workers per usable core (default 2)
  WEB_WORKERS            an exact number of workers, overriding the per-core figure
  WEB_TIMEOUT            seconds a request may run before its worker is replaced (default 60)
  WEB_GRACEFUL_TIMEOUT   seconds a worker may take to finish its request after SIGTERM (default 25)
"""

from __future__ import annotations

import os
import shutil
import tempfile

from signalsvc.core.processes import processes_for

bind = os.environ.get("WEB_BIND", "127.0.0.1:8004")
workers = processes_for(os.environ, exact="WEB_WORKERS", per_core="WEB_WORKERS_PER_CORE", default_per_core=2)
worker_class = "sync"
timeout = int(os.environ.get("WEB_TIMEOUT") or 60)
# SIGTERM: workers finish the request in hand, then exit (compose's stop grace period is 30 s).
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT") or 25)
# nginx in front owns client keep-alive and slow clients; a sync worker serves one request at a time.
keepalive = 2
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# X-Forwarded-Proto from the local proxy marks HTTPS requests (secure cookies, redirects).
forwarded_allow_ips = os.environ.get("WEB_FORWARDED_ALLOW_IPS", "127.0.0.1")
proc_name = "signal-web"
# gunicorn's control socket sits at one path per user: two servers on a machine (make run beside
# the end-to-end test) would fight over it, and nothing here uses it.
control_socket_disable = True

# Prometheus counters live in each worker: in multiprocess mode every worker writes its samples to
# files in one directory and /metrics sums them (signalsvc.ops.apis.metrics_view). The directory
# must be set before any worker imports prometheus_client, and be empty at start.
_metrics_dir_created = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="signal-metrics-"))


def on_starting(server):
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if not _metrics_dir_created:
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    """A worker leaves (SIGTERM, max requests): write what it still holds, then exit without Python's
    own teardown of numpy, pandas, scipy and Django, which took ~0.7 s of CPU per worker: four of
    them made a SIGTERM take 3-5 s, and honcho kills a process group after 5."""
    try:
        from django.db import connections

        from signalsvc.ops.metrics import api_metrics_buffer_flush

        api_metrics_buffer_flush()
        connections.close_all()
    finally:
        os._exit(0)


def on_exit(server):
    if _metrics_dir_created:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
