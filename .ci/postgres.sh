#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the tests; print its SQLAlchemy URL.
# Installs Debian's server package when it is missing. Usage: eval "$(bash .ci/postgres.sh)"
set -euo pipefail
PORT="${SEQCAST_PG_PORT:-55432}"
DIR="${SEQCAST_PG_DIR:-/tmp/seqcast-pg}"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); else AS=(); fi
if [ -f "$DIR/postmaster.pid" ]; then "${AS[@]}" "$BIN/pg_ctl" -D "$DIR" -m fast stop >&2 || true; fi
rm -rf "$DIR"; mkdir -p "$DIR"
[ "$(id -u)" = 0 ] && chown postgres "$DIR"
"${AS[@]}" "$BIN/initdb" -D "$DIR" -U postgres --auth=trust -E UTF8 >/dev/null
"${AS[@]}" "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DIR -c fsync=off" start >&2
"$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qc "CREATE DATABASE seqcast_test" >&2
echo "export SEQCAST_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:$PORT/seqcast_test"
