#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the service tests (Debian's `postgresql` package).
#
#   scripts/postgres_for_tests.sh run -- CMD...   start, run CMD with OPENRFT_TEST_DATABASE_URL
#                                                 set, always stop (even when CMD fails)
#   scripts/postgres_for_tests.sh start           start; prints `export OPENRFT_TEST_DATABASE_URL=...`
#   scripts/postgres_for_tests.sh stop            stop it and delete its directory
#
# The cluster lives in a fresh temporary directory, listens on 127.0.0.1 on a free port
# (plus a Unix socket inside that directory), trusts local connections and is owned by
# the `postgres` user when run as root (PostgreSQL refuses to run as root).
# `run` exits with CMD's status.
set -euo pipefail

STATE="${OPENRFT_PG_STATE:-${TMPDIR:-/tmp}/openrft-test-postgres.state}"

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [[ -n "$dir" && -x "$dir/initdb" ]] || {
    echo "postgres_for_tests: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
    exit 1
  }
  echo "$dir"
}

as_owner() {  # run a server binary as the cluster's owner
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  [[ ! -e "$STATE" ]] || { echo "postgres_for_tests: already started ($STATE); stop it first" >&2; exit 1; }
  local bin dir port
  bin=$(pg_bin)
  dir=$(mktemp -d "${TMPDIR:-/tmp}/openrft-pg.XXXXXX")
  chmod 755 "$dir"
  [[ $(id -u) -ne 0 ]] || chown postgres: "$dir"
  port=$(free_port)
  printf '%s\n%s\n%s\n' "$bin" "$dir" "$port" > "$STATE"
  as_owner "$bin/initdb" -D "$dir/data" -U openrft -A trust -E UTF8 --no-locale >"$dir/initdb.log"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null
  as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U openrft openrft_test
  echo "export OPENRFT_TEST_DATABASE_URL=postgresql+psycopg://openrft@127.0.0.1:$port/openrft_test"
}

stop() {
  [[ -e "$STATE" ]] || return 0
  local bin dir
  { read -r bin; read -r dir; } < "$STATE"
  if [[ -e "$dir/data/postmaster.pid" ]]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true
  fi
  rm -rf "$dir" "$STATE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  run)
    shift
    [[ "${1:-}" == "--" ]] && shift
    (($#)) || { echo "usage: $0 run -- CMD..." >&2; exit 2; }
    STATE=$(mktemp -u "${TMPDIR:-/tmp}/openrft-test-postgres.XXXXXX.state")  # ours alone
    trap stop EXIT
    trap 'exit 143' TERM  # run the EXIT trap on SIGTERM / Ctrl-C too
    trap 'exit 130' INT
    line=$(start)
    eval "$line"
    export OPENRFT_TEST_DATABASE_URL
    status=0
    "$@" || status=$?
    exit "$status"
    ;;
  *) echo "usage: $0 start | stop | run -- CMD..." >&2; exit 2 ;;
esac
