#!/usr/bin/env bash
# REST (and admin, docs, metrics): gunicorn sync workers, WEB_WORKERS_PER_CORE per core
# (signalsvc/gunicorn_conf.py), on loopback behind the local nginx (scripts/start-proxy.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ports.sh
PY=${PY:-.venv/bin/python}
# The REST process sits behind exactly one proxy: the client address is the last X-Forwarded-For hop.
export API_PROXY_COUNT=${API_PROXY_COUNT:-1}
export WEB_BIND=${WEB_BIND:-127.0.0.1:$WEB_HTTP_PORT}
exec "$(dirname "$PY")/gunicorn" -c python:signalsvc.gunicorn_conf signalsvc.wsgi:application "$@"
