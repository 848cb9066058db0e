#!/usr/bin/env bash
# A farm worker (SPEC §11): it consumes default, ingest and timeframes, and joins shard ownership
# (--farm): the coordinator hands it its share of the greeks.<shard> queues and moves them when
# workers come and go. Tasks run one at a time in the worker's own process (--pool solo), which
# keeps each shard's chains in order, spares a pool child and its IPC, and lets a SIGTERM to the
# whole process group (honcho, Ctrl-C) finish the task in hand; scale by running more workers
# (make run starts WORKERS of them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
# honcho names its processes worker.1, worker.2, ...: unique node names on one host.
NODE=${WORKER_NAME:-${HONCHO_PROCESS_NAME:-worker}}
exec "$(dirname "$PY")/celery" -A signalsvc worker -l info -n "${NODE}@%h" --farm \
  -Q default,ingest,timeframes --pool solo "$@"
