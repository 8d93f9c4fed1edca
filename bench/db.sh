#!/usr/bin/env bash
# pgbench -S vs `novaload run db --db-mode direct --db-mix select-only` on one throwaway
# PostgreSQL cluster, same number of clients (pgbench clients = novaload VUs = pool size), both
# with prepared statements: one primary-key SELECT per transaction/iteration, no think time.
# Prints each side's TPS and p95 and the novaload/pgbench TPS ratio.
#   CLIENTS=8 DURATION=10 bash bench/db.sh      (NOVALOAD=path skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-8}
DURATION=${DURATION:-10}
TMP=$(mktemp -d /tmp/novaload-bench-db.XXXXXX)
chmod 755 "$TMP"

if [ -z "${NOVALOAD:-}" ]; then
  cargo build --release --quiet
  NOVALOAD=${CARGO_TARGET_DIR:-target}/release/novaload
fi
# a private copy: a shared CARGO_TARGET_DIR may be rebuilt underneath us
cp "$NOVALOAD" "$TMP/novaload"

# Throwaway PostgreSQL on a free loopback port, removed on exit (as scripts/test.sh).
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGDIR=$TMP/pg
mkdir -p "$PGDIR"
PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
as_pg "$PGBIN/initdb -D $PGDIR/data -U postgres -A trust >/dev/null"
as_pg "$PGBIN/pg_ctl -D $PGDIR/data -o '-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off' -l $PGDIR/log -w start >/dev/null"
cleanup() { as_pg "$PGBIN/pg_ctl -D $PGDIR/data -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$TMP"; }
trap cleanup EXIT

PG="-h 127.0.0.1 -p $PGPORT -U postgres"
psql $PG -q -c 'CREATE DATABASE bench' postgres
pgbench $PG -i -s 1 -q bench >/dev/null 2>&1
URL="postgres://postgres@127.0.0.1:$PGPORT/bench"
# schema + 100 seed VMs (novaload's setup), outside the measurement
"$TMP/novaload" run db --db-mode direct --database-url "$URL" --db-mix select-only \
  --vus 1 --iterations 1 -q --out "$TMP/warm" >/dev/null 2>&1 || true  # a WARNING exit: too short

echo "== pgbench -S -M prepared -c $CLIENTS -j 2 -T $DURATION"
(cd "$TMP" && pgbench $PG -S -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" -l --log-prefix pgb bench) > "$TMP/pgbench.out" 2>&1
PGB_TPS=$(grep -oP 'tps = \K[0-9.]+' "$TMP/pgbench.out" | head -1)
# per-transaction log: 3rd column is the latency in microseconds
PGB_P95=$(cat "$TMP"/pgb.* | awk '{print $3}' | sort -n | awk '{v[NR]=$1} END {i=int(NR*0.95); if (i<1) i=1; printf "%.3f", v[i]/1000}')

echo "== novaload run db --db-mode direct --db-mix select-only --vus $CLIENTS --pool-size $CLIENTS --duration ${DURATION}s"
"$TMP/novaload" run db --db-mode direct --database-url "$URL" --db-mix select-only \
  --vus "$CLIENTS" --pool-size "$CLIENTS" --duration "${DURATION}s" -q --out "$TMP/nl" >/dev/null 2>&1 || true
SUMMARY=$(ls "$TMP"/nl/*/database_summary.json)
read -r NL_TPS NL_P95 NL_ACQ <<<"$(python3 - "$SUMMARY" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
print(m["db_queries_total"]["values"]["rate"],
      m["db_read_latency"]["values"]["p(95)"],
      m["db_pool_acquire_time"]["values"]["p(95)"])
EOF
)"

printf '\n%-34s %12s %12s\n' "" "TPS" "p95 (ms)"
printf '%-34s %12.0f %12.3f\n' "pgbench -S (prepared)" "$PGB_TPS" "$PGB_P95"
printf '%-34s %12.0f %12.3f   (pool acquire p95 %.3f ms)\n' "novaload direct select-only" "$NL_TPS" "$NL_P95" "$NL_ACQ"
python3 -c "print(f'novaload / pgbench TPS: {$NL_TPS / $PGB_TPS:.2f}')"
