#!/usr/bin/env bash
# Benchmark of the reference target (issue 6), loopback only, every step bounded in time:
#   1. wrk against GET /api/v1/vms/1 and GET /api/v1/vms (10 s each): req/s and p99;
#   2. seeding 100,000 VMs on SQLite (file) and PostgreSQL (throwaway cluster, if initdb exists);
#   3. RSS per idle WebSocket connection at 10,000 connections.
# Usage: bash bench/target.sh        (DURATION=10s CONNS=10000 to change the sizes)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-10000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
command -v wrk >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --example target_server --example ws_idle >/dev/null
BIN=$CARGO_TARGET_DIR/release/examples/target_server
WS=$CARGO_TARGET_DIR/release/examples/ws_idle
TMP=$(mktemp -d /tmp/novaload-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

# Starts the target with "$@", waits for its banner, sets URL and TPID.
start_target() {
  "$BIN" --listen 127.0.0.1:0 "$@" >"$TMP/out" 2>"$TMP/err" &
  TPID=$!; PIDS+=("$TPID")
  for _ in $(seq 1 600); do
    URL=$(grep -o 'http://[0-9.:]*' "$TMP/out" 2>/dev/null | head -1 || true)
    [ -n "$URL" ] && return 0
    kill -0 "$TPID" 2>/dev/null || { cat "$TMP/err"; return 1; }
    sleep 0.1
  done
  echo "target did not start in 60 s" >&2; return 1
}
stop_target() { kill "$TPID" 2>/dev/null || true; wait "$TPID" 2>/dev/null || true; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

echo "== throughput (wrk -t2 -c64 -d$DURATION --latency, in-memory SQLite, 1000 VMs)"
start_target
for path in /api/v1/vms/1 "/api/v1/vms" "/api/v1/vms?zone=us-west-1&status=running&limit=50"; do
  out=$(timeout 60 wrk -t2 -c64 -d"$DURATION" --latency -H 'Authorization: Bearer test-token-123' "$URL$path")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '  GET %-55s %10s req/s  p99 %s\n' "$path" "$rps" "$p99"
done
stop_target

echo "== seeding 100,000 VMs"
s=$(date +%s.%N); start_target --sqlite-file "$TMP/seed.db" --seed-vms 100000; e=$(date +%s.%N)
printf '  sqlite (file, WAL):  %.2f s to listening (migrate + seed)\n' "$(echo "$e - $s" | bc)"
stop_target
s=$(date +%s.%N); start_target --sqlite-file "$TMP/seed.db" --seed-vms 100000; e=$(date +%s.%N)
printf '  sqlite, again (idempotent, nothing inserted): %.2f s\n' "$(echo "$e - $s" | bc)"
stop_target
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ]; then
  PGDIR="$TMP/pg"; mkdir -p "$PGDIR"; chmod 755 "$TMP" "$PGDIR"
  PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
  [ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
  as_pg "$PGBIN/initdb -D $PGDIR/data -U postgres -A trust >/dev/null"
  as_pg "$PGBIN/pg_ctl -D $PGDIR/data -o '-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off' -l $PGDIR/log -w start >/dev/null"
  PGURL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
  s=$(date +%s.%N); start_target --database-url "$PGURL" --seed-vms 100000; e=$(date +%s.%N)
  printf '  postgresql:          %.2f s to listening (migrate + seed)\n' "$(echo "$e - $s" | bc)"
  stop_target
  s=$(date +%s.%N); start_target --database-url "$PGURL" --seed-vms 100000; e=$(date +%s.%N)
  printf '  postgresql, again:   %.2f s\n' "$(echo "$e - $s" | bc)"
  stop_target
  as_pg "$PGBIN/pg_ctl -D $PGDIR/data -m immediate stop >/dev/null" || true
else
  echo "  postgresql: skipped (no initdb)"
fi

echo "== memory per idle WebSocket connection ($CONNS connections)"
start_target
sleep 1
before=$(rss_kib "$TPID")
WSURL="${URL/http:/ws:}/ws/realtime"
timeout 120 "$WS" "$WSURL" "$CONNS" 8 >"$TMP/ws" &
WPID=$!; PIDS+=("$WPID")
for _ in $(seq 1 100); do grep -q open= "$TMP/ws" 2>/dev/null && break; sleep 0.5; done
sleep 3
after=$(rss_kib "$TPID")
opened=$(grep -o 'open=[0-9]*' "$TMP/ws" | cut -d= -f2)
echo "  $(cat "$TMP/ws")"
printf '  server RSS %d KiB -> %d KiB: %.1f KiB per connection\n' "$before" "$after" \
  "$(echo "($after - $before) / ${opened:-1}" | bc -l)"
wait "$WPID" 2>/dev/null || true
stop_target
