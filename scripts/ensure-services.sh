#!/usr/bin/env bash
# PostgreSQL and Redis must answer on 127.0.0.1 (or DATABASE_URL / REDIS_URL). If they do not and
# a local installation exists, start it; otherwise say exactly what is missing and how to start it.
set -uo pipefail

pg_up() { pg_isready -q -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    echo "PostgreSQL is not answering; starting the local cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
  pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432. Install it (apt-get install postgresql) and start it: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2; exit 1; }
fi

if ! redis_up; then
  if command -v redis-server >/dev/null; then
    echo "Redis is not answering; starting a local one"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  fi
  redis_up || { echo "Redis is not reachable on 127.0.0.1:6379. Install it (apt-get install redis-server) and start it: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no" >&2; exit 1; }
fi
