#!/usr/bin/env bash
# PostgreSQL (Debian's postgresql-15) for state several proxy replicas share (export job ownership), on
# loopback with trust auth; installed from Debian's packages when missing.
#   postgres.sh start   initdb (once) and start; prints the DSN
#   postgres.sh stop    stop it (idempotent)
#   postgres.sh dsn     print the DSN
# Env: JOBSTORE_PG_PORT (5433), JOBSTORE_PG_DIR (<repo>/.fhirwall/postgres-jobstore).
# initdb and postgres refuse to run as root, so as root they run as the postgres user.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PORT=${JOBSTORE_PG_PORT:-5433}   # see ports.env
DIR=${JOBSTORE_PG_DIR:-$ROOT/.fhirwall/postgres-jobstore}
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
DSN="postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "${1:-}" in
  start)
    if [ ! -x "$BIN/postgres" ]; then
      echo "[postgres.sh] installing postgresql-15 from Debian" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    fi
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
      as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; exit 1; }
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
      as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR" start >/dev/null
    fi
    echo "$DSN" ;;
  stop)
    [ -f "$DIR/data/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true ;;
  dsn) echo "$DSN" ;;
  *) echo "usage: $0 {start|stop|dsn}" >&2; exit 2 ;;
esac
