#!/usr/bin/env bash
# REST (and admin, docs, metrics): granian running the WSGI app, WEB_WORKERS_PER_CORE processes per
# core (default 2) or exactly WEB_WORKERS, each serving one request at a time, behind nginx
# (scripts/start-proxy.sh locally, compose's nginx in production). docs/decisions.md "Serving".
# WEB_SERVER=gunicorn runs the same app in gunicorn's sync workers (signalsvc/gunicorn_conf.py),
# the server before granian, kept for comparison.
#
# Environment: WEB_BIND (host:port, default 127.0.0.1:$WEB_HTTP_PORT; compose 0.0.0.0:8003),
# WEB_WORKERS, WEB_WORKERS_PER_CORE, WEB_GRACEFUL_TIMEOUT (seconds a worker may take to finish its
# request after SIGTERM, default 25: compose's stop grace period is 30), PROMETHEUS_MULTIPROC_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ports.sh
# make run's virtualenv; the image's own Python where there is none (docker/Dockerfile).
PY=${PY:-$(if [ -x .venv/bin/python ]; then echo .venv/bin/python; else command -v python; fi)}
BIN=$(dirname "$PY")
# The REST process sits behind exactly one proxy: the client address is the last X-Forwarded-For hop.
export API_PROXY_COUNT=${API_PROXY_COUNT:-1}
export WEB_BIND=${WEB_BIND:-127.0.0.1:$WEB_HTTP_PORT}
# The app is loaded in server workers: each warms up before serving (signalsvc/wsgi.py).
export WEB_SERVER_WORKER=1
case "${WEB_SERVER:-granian}" in
granian)
    # Several worker processes: Prometheus samples go to files that /metrics sums; empty at start.
    export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-${TMPDIR:-/tmp}/signal-metrics-web-${WEB_BIND##*:}}
    rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    workers=$("$PY" -m signalsvc.core.processes WEB_WORKERS WEB_WORKERS_PER_CORE 2)
    # One blocking thread per worker: Django's views run one at a time per process and in parallel
    # across processes, as in gunicorn's sync workers, while granian parses HTTP in Rust and keeps
    # nginx's upstream connections alive (a sync worker closes every one). A worker that dies is
    # replaced. HTTP/1 only: nginx speaks HTTP/1.1 to its upstreams.
    exec "$BIN/granian" --interface wsgi --host "${WEB_BIND%:*}" --port "${WEB_BIND##*:}" \
        --workers "$workers" --blocking-threads 1 --http 1 --no-ws --backlog 2048 \
        --respawn-failed-workers --workers-kill-timeout "${WEB_GRACEFUL_TIMEOUT:-25}" \
        --log-level "$(tr '[:upper:]' '[:lower:]' <<<"${LOG_LEVEL:-warning}")" \
        signalsvc.wsgi:application "$@"
    ;;
gunicorn)
    exec "$BIN/gunicorn" -c python:signalsvc.gunicorn_conf signalsvc.wsgi:application "$@"
    ;;
*)
    echo "start-web: WEB_SERVER must be granian or gunicorn, not ${WEB_SERVER}" >&2
    exit 2
    ;;
esac
