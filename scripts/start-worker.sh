#!/usr/bin/env bash
# A worker consuming every queue: default, ingest, timeframes and all greeks.<shard> queues.
# (The worker farm assigns shard queues to workers dynamically; locally one worker takes all.)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
QUEUES=$($PY -c "import os; n=int(os.environ.get('SHARD_COUNT', 64)); print(','.join(['default','ingest','timeframes'] + [f'greeks.{i}' for i in range(n)]))")
exec "$(dirname "$PY")/celery" -A signalsvc worker -l info -Q "$QUEUES" --concurrency "${WORKER_CONCURRENCY:-2}" -O fair "$@"
