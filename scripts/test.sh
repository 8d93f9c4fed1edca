#!/usr/bin/env bash
# The test command (README). Makes sure the real services the tests use exist — PostgreSQL
# (a throwaway cluster), Prometheus' promtool, an OTLP receiver — then runs the whole suite.
# Tests that need a service read its address from NOVALOAD_TEST_* variables set here.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v pg_ctlcluster >/dev/null || [ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing: ${need_apt[*]} (install them, e.g. sudo apt-get install ${need_apt[*]})" >&2; exit 1
  fi
fi

# OTLP receiver for tests/telemetry_otlp.rs: PyPI rotel ships the rotel-agent binary.
python3 -c 'import rotel' 2>/dev/null || python3 -m pip install -q rotel==0.0.1a15 >/dev/null \
  || { echo "missing: rotel (python3 -m pip install rotel==0.0.1a15)" >&2; exit 1; }
NOVALOAD_TEST_ROTEL=${NOVALOAD_TEST_ROTEL:-$(python3 -c 'import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')}
export NOVALOAD_TEST_ROTEL

# Throwaway PostgreSQL on a free loopback port, removed on exit.
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGDIR=$(mktemp -d /tmp/novaload-pg.XXXXXX)
chmod 755 "$PGDIR"
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
as_pg "$PGBIN/initdb -D $PGDIR/data -U postgres -A trust >/dev/null"
as_pg "$PGBIN/pg_ctl -D $PGDIR/data -o '-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off' -l $PGDIR/log -w start >/dev/null"
cleanup() { as_pg "$PGBIN/pg_ctl -D $PGDIR/data -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$PGDIR"; }
trap cleanup EXIT
export NOVALOAD_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"

cargo test --locked "$@"
