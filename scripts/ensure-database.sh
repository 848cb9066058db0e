#!/usr/bin/env bash
# Create the application database if it does not exist (trust auth on the local cluster).
set -euo pipefail
# The database named by DATABASE_URL (default signal_service).
URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/signal_service}
DB=${URL##*/}
DB=${DB%%\?*}
PGUSER=${PGUSER:-postgres}
if ! psql -h 127.0.0.1 -U "$PGUSER" -tAc "SELECT 1 FROM pg_database WHERE datname='$DB'" postgres | grep -q 1; then
  createdb -h 127.0.0.1 -U "$PGUSER" "$DB"
  echo "created database $DB"
fi
