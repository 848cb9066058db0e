#!/usr/bin/env bash
# Create the application database if it does not exist (trust auth on the local cluster).
set -euo pipefail
DB=${DATABASE_NAME:-signal_service}
PGUSER=${PGUSER:-postgres}
if ! psql -h 127.0.0.1 -U "$PGUSER" -tAc "SELECT 1 FROM pg_database WHERE datname='$DB'" postgres | grep -q 1; then
  createdb -h 127.0.0.1 -U "$PGUSER" "$DB"
  echo "created database $DB"
fi
