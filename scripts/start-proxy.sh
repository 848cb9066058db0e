#!/usr/bin/env bash
# The one public port of the local topology: nginx on WEB_PORT, routing the WebSocket path to the
# ASGI server and everything else to the REST server (granian). The config is docker/nginx.conf (compose's) with
# local addresses and paths (scripts/nginx_local.py), so the local run and production route alike.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ports.sh
PY=${PY:-.venv/bin/python}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then
    echo "start-proxy: nginx is missing; run scripts/install-system-deps.sh as root" >&2
    exit 1
fi
# Proxied WebSockets hold two descriptors each: take the hard limit, and tell nginx what it is.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
conf=$(NGINX_NOFILE=$(ulimit -n) "$PY" scripts/nginx_local.py)
exec "$NGINX" -e stderr -c "$conf" -g "daemon off;"
