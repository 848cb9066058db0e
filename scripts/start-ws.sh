#!/usr/bin/env bash
# The WebSocket (Channels): uvicorn with uvloop, WS_WORKERS_PER_CORE processes per core (default 1),
# on loopback behind the local nginx. WS_SERVER=daphne runs Channels' own server instead (one process).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ports.sh
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
# Many sockets per process: raise the open-file limit to the hard limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
case "${WS_SERVER:-uvicorn}" in
daphne)
    exec "$BIN/daphne" -b 127.0.0.1 -p "$WS_PORT" --proxy-headers --proxy-headers-host X-Real-IP \
        signalsvc.asgi:application
    ;;
uvicorn)
    # Several worker processes: Prometheus samples go to files that /metrics on this port sums.
    export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-.run/metrics-ws-$WS_PORT}
    rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    workers=$("$PY" -m signalsvc.core.processes WS_WORKERS WS_WORKERS_PER_CORE 1)
    # Protocol pings every 60 s (the app sends its own heartbeat every 30): at the default 20 s,
    # 10,000 sockets cost 500 pings a second and a timer each. No per-message compression: the
    # messages are small JSON, and deflate per socket would cost more CPU than the bytes it saves.
    # Frames over WS_MAX_FRAME_BYTES close the socket (1009); the app answers smaller oversize
    # messages (WEBSOCKET_MAX_MESSAGE_BYTES) with an error.
    exec "$BIN/uvicorn" signalsvc.asgi:application --host 127.0.0.1 --port "$WS_PORT" \
        --workers "$workers" --loop uvloop --http httptools --ws websockets-sansio --lifespan off \
        --ws-ping-interval 60 --ws-per-message-deflate false --ws-max-size "${WS_MAX_FRAME_BYTES:-65536}" \
        --proxy-headers --forwarded-allow-ips 127.0.0.1 --no-access-log
    ;;
*)
    echo "start-ws: WS_SERVER must be uvicorn or daphne, not ${WS_SERVER}" >&2
    exit 2
    ;;
esac
