#!/usr/bin/env bash
# novaload's direct database mode vs pgbench on one throwaway PostgreSQL cluster: the same
# statements, the same number of clients (pgbench clients = novaload VUs = --pool-size, so each
# novaload VU keeps one connection as each pgbench client does), the same threads (pgbench
# -j JOBS = novaload --vu-threads JOBS: JOBS event loops, the clients dealt out among them),
# prepared statements, no think time, for two mixes and a sweep of client counts:
#
#   select-only  novaload --db-mix select-only   one primary-key SELECT of a seed VM
#                pgbench -f (the same SELECT)    and, for reference, pgbench -S (pgbench_accounts)
#   read-write   novaload --db-mix read-write    that SELECT, then an UPDATE of the same VM
#                pgbench -f (the same two statements)
#
# Prints, per mix and client count: TPS (transactions = novaload iterations), p95 of a
# transaction (pgbench: its per-transaction log; novaload: iteration_duration, which includes
# its own recording), the novaload/pgbench TPS ratio of each round, and each side's CPU per
# transaction (the client process; the PostgreSQL backends). Medians over ROUNDS; the side that
# goes first alternates between rounds, since the machine's background load drifts.
#   CLIENTS="4 8 16" DURATION=10 ROUNDS=1 JOBS=2 bash bench/db.sh  (NOVALOAD=path skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-4 8 16}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-1}
MIXES=${MIXES:-select-only read-write}
JOBS=${JOBS:-2}
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
# 100,000 more VMs, as pgbench -s 1 has 100,000 accounts: the planner then looks seed VMs up
# through the primary key on both sides, as pgbench -S does its accounts.
psql $PG -q bench -c "INSERT INTO vms (id, name, created_at, updated_at)
  SELECT 'bench-vm-' || i, 'bench-vm-' || i, 0, 0 FROM generate_series(1, 100000) AS i
  ON CONFLICT (id) DO NOTHING" -c 'VACUUM ANALYZE vms'

# The pgbench side of each mix: novaload's statements (src/workload/db_direct.rs, sql::POINT
# and sql::POINT_UPDATE) with pgbench's variables in the same places.
cat > "$TMP/select.sql" <<'EOF'
\set n random(0, 99)
SELECT id, name, state FROM vms WHERE id = 'seed-vm-' || :n;
EOF
cat > "$TMP/read-write.sql" <<'EOF'
\set n random(0, 99)
\set cpu random(1, 16)
\set mem :cpu * 2048
SELECT id, name, state FROM vms WHERE id = 'seed-vm-' || :n;
UPDATE vms SET cpu_cores = :cpu, memory_mb = :mem WHERE id = 'seed-vm-' || :n;
EOF

# CPU seconds (user + system) of the whole cluster, reaped backends included.
server_cpu() {
  python3 - <<'EOF'
import os
hz, total = os.sysconf("SC_CLK_TCK"), 0
for p in filter(str.isdigit, os.listdir("/proc")):
    try:
        st = open(f"/proc/{p}/stat").read()
    except OSError:
        continue
    if st[st.index("(") + 1:st.rindex(")")] == "postgres":
        f = st[st.rindex(")") + 2:].split()
        total += sum(int(x) for x in f[11:15])
print(total / hz)
EOF
}

RESULTS=$TMP/results.tsv
# round tool mix clients tps p95_ms client_cpu_s server_cpu_s transactions
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$@" >> "$RESULTS"; }

# pgbench_run LABEL MIX CLIENTS ARGS...
pgbench_run() {
  local label=$1 mix=$2 c=$3; shift 3
  local dir="$TMP/pgb-$label-$c"
  rm -rf "$dir"; mkdir -p "$dir"
  local s0; s0=$(server_cpu)
  (cd "$dir" && /usr/bin/time -f '%U %S' -o time pgbench $PG "$@" -M prepared -c "$c" -j "$JOBS" \
    -T "$DURATION" -l --sampling-rate 0.05 --log-prefix log bench > out 2>&1)
  local s1; s1=$(server_cpu)
  local tps n p95
  tps=$(grep -oP 'tps = \K[0-9.]+' "$dir/out" | head -1)
  n=$(grep -oP 'number of transactions actually processed: \K[0-9]+' "$dir/out")
  # per-transaction log (a 5 % sample: logging every transaction would slow pgbench down):
  # the 3rd column is the latency in microseconds
  p95=$(cat "$dir"/log.* | awk '{print $3}' | sort -n | awk '{v[NR]=$1} END {i=int(NR*0.95); if (i<1) i=1; printf "%.3f", v[i]/1000}')
  record "$label" "$mix" "$c" "$tps" "$p95" "$(awk '{print $1+$2}' "$dir/time")" \
    "$(python3 -c "print($s1-$s0)")" "$n"
}

novaload_run() {
  local mix=$1 c=$2
  local dir="$TMP/nl-$mix-$c"
  rm -rf "$dir"; mkdir -p "$dir"
  local s0; s0=$(server_cpu)
  /usr/bin/time -f '%U %S' -o "$dir/time" "$TMP/novaload" run db --db-mode direct \
    --database-url "$URL" --db-mix "$mix" --vus "$c" --pool-size "$c" --vu-threads "$JOBS" \
    --duration "${DURATION}s" -q --out "$dir" >/dev/null 2>&1 || true   # exit 3 (WARNING): the profile's throughput target
  local s1; s1=$(server_cpu)
  local v
  v=$(python3 - "$(ls "$dir"/*/database_summary.json)" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
it = m["iterations"]["values"]
print(it["rate"], m["iteration_duration"]["values"]["p(95)"], int(it["count"]))
EOF
)
  read -r tps p95 n <<<"$v"
  record novaload "$mix" "$c" "$tps" "$p95" "$(awk '{print $1+$2}' "$dir/time")" \
    "$(python3 -c "print($s1-$s0)")" "$n"
}

# Each run starts on the same table: no dead rows left by the previous run's updates.
pgbench_side() {
  psql $PG -q bench -c 'VACUUM ANALYZE vms'
  if [ "$1" = select-only ]; then
    pgbench_run pgbench "$1" "$2" -f "$TMP/select.sql"
    pgbench_run pgbench-S "$1" "$2" -S
  else
    pgbench_run pgbench "$1" "$2" -f "$TMP/read-write.sql"
  fi
}
novaload_side() {
  psql $PG -q bench -c 'VACUUM ANALYZE vms'
  novaload_run "$1" "$2"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
  for mix in $MIXES; do
    for c in $CLIENTS; do
      echo "== round $round, $mix, $c clients" >&2
      # alternate who goes first: the machine's background load drifts
      if [ $((round % 2)) = 0 ]; then novaload_side "$mix" "$c"; pgbench_side "$mix" "$c"
      else pgbench_side "$mix" "$c"; novaload_side "$mix" "$c"; fi
    done
  done
done

# other work on the machine skews both sides: say how busy it was
echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
python3 - "$RESULTS" "$ROUNDS" "$DURATION" <<'EOF'
import statistics, sys
med = statistics.median
runs = {}  # (mix, clients, tool) -> {round: (tps, p95 ms, client µs/txn, server µs/txn)}
for line in open(sys.argv[1]):
    rnd, tool, mix, c, tps, p95, ccpu, scpu, n = line.rstrip("\n").split("\t")
    n = max(int(n), 1)
    runs.setdefault((mix, int(c), tool), {})[rnd] = (
        float(tps), float(p95), float(ccpu) / n * 1e6, float(scpu) / n * 1e6)

def col(key, i):
    return med(v[i] for v in runs[key].values())

def ratio(a, b):
    """Median over rounds of a's TPS / b's TPS in the same round."""
    return med(runs[a][r][0] / runs[b][r][0] for r in runs[a] if r in runs[b])

print(f"\nmedians of {sys.argv[2]} round(s) of {sys.argv[3]} s; ratio = novaload TPS / pgbench TPS "
      "in the same round; CPU = µs per transaction, client process / PostgreSQL backends")
for mix in dict.fromkeys(m for m, _, _ in runs):
    print(f"\n{mix}")
    head = (f"{'clients':>7} | {'pgbench TPS':>11} {'p95 ms':>7} {'CPU':>11} | "
            f"{'novaload TPS':>12} {'p95 ms':>7} {'CPU':>11} | {'ratio':>5}")
    if mix == "select-only":
        head += f" | {'pgbench -S TPS':>14} {'p95 ms':>7} {'ratio':>5}"
    print(head)
    for c in sorted({c for m, c, _ in runs if m == mix}):
        p, n = (mix, c, "pgbench"), (mix, c, "novaload")
        line = (f"{c:>7} | {col(p, 0):>11,.0f} {col(p, 1):>7.3f} "
                f"{col(p, 2):>5.1f}/{col(p, 3):<5.1f} | {col(n, 0):>12,.0f} {col(n, 1):>7.3f} "
                f"{col(n, 2):>5.1f}/{col(n, 3):<5.1f} | {ratio(n, p):>5.2f}")
        s = (mix, c, "pgbench-S")
        if s in runs:
            line += f" | {col(s, 0):>14,.0f} {col(s, 1):>7.3f} {ratio(n, s):>5.2f}"
        print(line)
    # every round's ratio, so a median over a noisy spread is visible as such
    for c in sorted({c for m, c, _ in runs if m == mix}):
        p, n = runs[(mix, c, "pgbench")], runs[(mix, c, "novaload")]
        each = ", ".join(f"{n[r][0] / p[r][0]:.2f}" for r in sorted(n, key=int) if r in p)
        print(f"{'':>7}   {c} clients, ratio per round: {each}")
EOF
