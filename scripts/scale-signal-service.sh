#!/usr/bin/env bash
# Scale the worker farm (SPEC §11; docs/farm.md "Autoscaling").
#
#   scripts/scale-signal-service.sh scale N    # N worker replicas on the compose deployment
#   scripts/scale-signal-service.sh auto       # the autoscaler: started as the compose service
#   scripts/scale-signal-service.sh status     # workers, shard owners, queue depths, backpressure
#
# Run it from the deployment's checkout (compose.yaml and its .env). `status` and `auto` also work
# against `make run`: when no compose deployment is running here, they run the management commands
# with the local virtualenv (`auto` then only logs its decisions: make run's workers are honcho
# processes, not replicas). DOCKER / DOCKER_COMPOSE name other binaries (default docker,
# docker-compose), PY another Python (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DOCKER=${DOCKER:-docker}
DOCKER_COMPOSE=${DOCKER_COMPOSE:-docker-compose}
PY=${PY:-.venv/bin/python}
SERVICE=worker

usage() {
    echo "usage: $0 scale N | auto | status [--json]" >&2
    exit 2
}

fail() {
    echo "scale-signal-service: $*" >&2
    exit 2
}

# Compose v2 (the docker CLI plugin) or v1 (docker-compose), whichever is installed.
COMPOSE=()
if command -v "$DOCKER" >/dev/null 2>&1 && "$DOCKER" compose version >/dev/null 2>&1; then
    COMPOSE=("$DOCKER" compose)
elif command -v "$DOCKER_COMPOSE" >/dev/null 2>&1; then
    COMPOSE=("$DOCKER_COMPOSE")
fi

# True when this directory's compose project has running replicas of the service (no daemon, no
# project, or no compose at all: false).
compose_running() {
    [ "${#COMPOSE[@]}" -gt 0 ] && [ -n "$("${COMPOSE[@]}" ps -q "$1" 2>/dev/null)" ]
}

cmd_scale() {
    local replicas=${1:-}
    [[ "$replicas" =~ ^[0-9]+$ ]] || fail "scale needs a number of worker replicas, e.g. \`$0 scale 4\`"
    if [ "${#COMPOSE[@]}" -eq 0 ]; then
        fail "scale sets the worker replicas of the compose deployment and needs Docker Compose \
(\`docker compose\` or \`docker-compose\`), which is not installed here. Under \`make run\` the \
workers are honcho processes: start more with \`WORKERS=N make run\`."
    fi
    # Only the worker service: --no-deps keeps the one-shot migrate job (a dependency) from running
    # again, --no-recreate keeps the running replicas as they are (no restart of busy workers).
    if ! "${COMPOSE[@]}" up -d --no-deps --no-recreate --scale "$SERVICE=$replicas" "$SERVICE"; then
        fail "\`${COMPOSE[*]} up --scale $SERVICE=$replicas\` failed: is the Docker daemon running, and is \
this the deployment's directory (compose.yaml and its .env)?"
    fi
    if compose_running autoscaler; then
        echo "scale-signal-service: the autoscaler is running and will change this count at its next decision;" \
            "stop it (\`${COMPOSE[*]} stop autoscaler\`) to keep $replicas." >&2
    fi
    "${COMPOSE[@]}" ps "$SERVICE"
}

cmd_auto() {
    if compose_running "$SERVICE"; then
        "${COMPOSE[@]}" up -d --no-deps autoscaler
        echo "The autoscaler runs as the compose service \`autoscaler\` (manage.py autoscale_workers);" \
            "its latest decisions:"
        "${COMPOSE[@]}" logs --no-log-prefix --tail 5 autoscaler
        echo "Follow it with \`${COMPOSE[*]} logs -f autoscaler\`; stop it with \`${COMPOSE[*]} stop autoscaler\`."
        return
    fi
    echo "scale-signal-service: no compose deployment is running here: the autoscaler runs in the" \
        "foreground with the dry-run backend (it logs what it would do; Ctrl-C stops it)." >&2
    exec "$PY" manage.py autoscale_workers --backend dry-run
}

cmd_status() {
    if compose_running "$SERVICE"; then
        # A one-off container of the application image, with the deployment's settings.
        exec "${COMPOSE[@]}" run --rm --no-deps -T autoscaler python manage.py farm_status "$@"
    fi
    exec "$PY" manage.py farm_status "$@"
}

case "${1:-}" in
scale) cmd_scale "${2:-}" ;;
auto) cmd_auto ;;
status)
    shift
    cmd_status "$@"
    ;;
*) usage ;;
esac
