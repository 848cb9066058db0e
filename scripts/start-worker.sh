#!/usr/bin/env bash
# A Celery worker, in one of two roles (docs/farm.md):
#   scripts/start-worker.sh          a farm worker (SPEC §11): it consumes `default` (periodic tasks
#                                    of milliseconds) and joins shard ownership (--farm): the
#                                    coordinator hands it its share of the greeks.<shard> queues
#                                    and moves them when workers come and go.
#   scripts/start-worker.sh batch    the batch lane: `ingest` and `timeframes` (rollups, partition
#                                    upkeep), work that can take seconds and so must never hold up
#                                    a live chain computation on a farm worker.
# Tasks run one at a time in the worker's own process (--pool solo), which keeps each shard's chains
# in order, spares a pool child and its IPC, and lets a SIGTERM to the whole process group (honcho,
# Ctrl-C) finish the task in hand; scale the farm by running more workers (make run starts WORKERS
# of them). Extra arguments go to celery.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ROLE=farm
if [[ "${1:-}" == batch ]]; then
  ROLE=batch
  shift
fi
# honcho names its processes worker.1, worker.2, batch.1, ...: unique node names on one host.
NODE=${WORKER_NAME:-${HONCHO_PROCESS_NAME:-$ROLE}}
if [[ $ROLE == batch ]]; then
  exec "$(dirname "$PY")/celery" -A signalsvc worker -l info -n "${NODE}@%h" \
    -Q ingest,timeframes --pool solo "$@"
fi
exec "$(dirname "$PY")/celery" -A signalsvc worker -l info -n "${NODE}@%h" --farm \
  -Q default --pool solo "$@"
