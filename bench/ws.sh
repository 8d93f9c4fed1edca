#!/usr/bin/env bash
# WebSocket connections at scale, all on loopback: the ws workload ramped to CONNS connections
# and held for HOLD against `novaload target --workers auto`. One process may open only
# ~20,000 files here, so the target spreads over SO_REUSEPORT worker processes and the client
# over local workers (automatic past ~19,000 connections), binding 127.0.0.x source addresses.
# Sessions outlast the run (--ws-session), so every connection stays open until the ramp-down.
#
# Prints per size: peak open connections (client side, summed over workers; and the target's
# established sockets), connection success %, ws_message_latency p95, client RSS summed over
# its processes and per connection, target RSS summed over its workers and per connection.
#
#   bash bench/ws.sh                          # CONNS="10000 100000" RAMP=120s HOLD=180s DOWN=60s
#   CONNS=100000 HOLD=180s bash bench/ws.sh   # one size
#   PUSH=30s bash bench/ws.sh                 # target --ws-push-interval (default auto)
#   NOVALOAD=path/to/novaload bash bench/ws.sh   # skip the release build
#   KEEP=1 bash bench/ws.sh                   # keep results, samples and logs
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${CONNS:-"10000 100000"}
# 100,000 handshakes in 120 s (833/s) and closes spread over 60 s: a 60 s ramp (1,667/s)
# saturated the 2 shared cores and left seconds of backlog in message latency (bench/README.md)
RAMP=${RAMP:-120s}
HOLD=${HOLD:-180s}
DOWN=${DOWN:-60s}
PUSH=${PUSH:-auto}
if [ -z "${NOVALOAD:-}" ]; then
  cargo build --release --locked -q
  NOVALOAD=${CARGO_TARGET_DIR:-$PWD/target}/release/novaload
fi
WORK=$(mktemp -d /tmp/novaload-ws.XXXXXX)
TARGET=""; SAMPLER=""
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  # SIGTERM: the target parent stops its workers itself
  [ -n "$TARGET" ] && kill "$TARGET" 2>/dev/null && wait "$TARGET" 2>/dev/null || true
  TARGET=""; SAMPLER=""
}
# KEEP=1 keeps the results folders, samples and logs (path printed at the end)
trap 'cleanup; if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi' EXIT

cpu_ticks() { # user + system clock ticks summed over the given pids
  local sum=0 pid v
  for pid in "$@"; do
    v=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || true)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

rss_kib() { # sum of VmRSS over the given pids, KiB
  local sum=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

for N in $SIZES; do
  echo "== ws: $N connections, ramp $RAMP, hold $HOLD, ramp-down $DOWN, target --ws-push-interval $PUSH"
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$NOVALOAD" target --listen "127.0.0.1:$PORT" --workers auto --ws-capacity "$N" \
    --seed-vms 1000 --ws-push-interval "$PUSH" > "$WORK/target-$N.out" 2> "$WORK/target-$N.err" &
  TARGET=$!
  for _ in $(seq 150); do grep -q "listening on" "$WORK/target-$N.out" 2>/dev/null && break; sleep 0.2; done
  if ! grep -q "listening on" "$WORK/target-$N.out"; then
    echo "the target did not start:"; cat "$WORK/target-$N.err"; exit 1
  fi
  # "(N worker processes, pids [a, b, ...]" with --workers > 1; else the target itself
  TPIDS=$(sed -n 's/.*pids \[\([0-9, ]*\)\].*/\1/p' "$WORK/target-$N.out" | tr -d ,)
  TPIDS=${TPIDS:-$TARGET}
  echo "   target: $(head -n1 "$WORK/target-$N.out")"

  # the scale profile of that size: upstream's ping (5 s) and query (10 s) periods, and its
  # thresholds (concurrency target 80 % of the peak); the stages below replace its stages
  if [ "$N" -ge 100000 ]; then PROFILE=100k; elif [ "$N" -ge 10000 ]; then PROFILE=10k; else PROFILE=1k; fi
  # every connection lives until the run stops it: sessions longer than ramp + hold. The
  # ramp-down takes DOWN (60 s): ramped-down VUs close at the end of gracefulRampDown (30 s),
  # which is also when gracefulStop ends, so the last closes must not all come at once
  "$NOVALOAD" run ws --profile "$PROFILE" --api-url "http://127.0.0.1:$PORT" -q --no-telemetry --out "$WORK/out-$N" \
    --stage "$RAMP:$N" --stage "$HOLD:$N" --stage "$DOWN:0" --ws-session 1h \
    > "$WORK/run-$N.out" 2>&1 &
  RUN=$!
  # samples every 2 s: client RSS (the run and its local workers), target RSS, CPU ticks of
  # client, target and the whole machine (/proc/stat: anything else running shows up as the
  # difference); every 30 s the target's established sockets (ss walks 100k sockets)
  (
    i=0
    while kill -0 "$RUN" 2>/dev/null; do
      # shellcheck disable=SC2086
      cpids="$RUN $(pgrep -P "$RUN" | tr '\n' ' ' || true)"
      est=""
      if [ $((i % 15)) -eq 0 ]; then
        est=$(ss -Htn state established "( sport = :$PORT )" 2>/dev/null | wc -l)
      fi
      busy=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)
      # shellcheck disable=SC2086
      echo "$(date +%s) $(rss_kib $cpids) $(echo $cpids | wc -w) $(rss_kib $TPIDS) ${est:--1} $(cpu_ticks $cpids) $(cpu_ticks $TPIDS) $busy"
      i=$((i + 1))
      sleep 2
    done
  ) > "$WORK/samples-$N.txt" &
  SAMPLER=$!
  code=0
  wait "$RUN" || code=$?
  wait "$SAMPLER" 2>/dev/null || true
  SAMPLER=""
  cleanup
  echo "   run exit code $code (0 PASS, 3 WARNING, 99 FAIL)"
  python3 - "$WORK/out-$N" "$WORK/samples-$N.txt" "$N" "$TPIDS" <<'PY' || { tail -n 30 "$WORK/run-$N.out"; }
import glob, json, os, sys
out, samples, n, tpids = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split()
summ = glob.glob(out + "/*/websocket_summary.json")
if not summ:
    sys.exit("no websocket_summary.json")
s = json.load(open(summ[0])); m = s["metrics"]
v = lambda k, x: m.get(k, {}).get("values", {}).get(x)

def open_per_second(files):
    # per-second gauge lines of each process, the last value carried over seconds without a
    # change, summed over processes: the connections open at once, second by second
    per = []
    for f in files:
        series = {}
        for line in open(f):
            d = json.loads(line)
            if d.get("type") == "Second" and d.get("metric") == "ws_connections_active":
                series[round(d["data"]["elapsed_s"])] = d["data"]["values"]["max"]
        per.append(series)
    end = max((max(x) for x in per if x), default=0)
    sums, last = [], [0] * len(per)
    for t in range(end + 1):
        for i, x in enumerate(per):
            if t in x:
                last[i] = x[t]
        sums.append(sum(last))
    return sums

shards = sorted(glob.glob(os.path.dirname(summ[0]) + "/shards/*/websocket.json"))
files = shards or [os.path.dirname(summ[0]) + "/websocket.json"]
sums = open_per_second(files)
peak = int(max(sums, default=0))
held = sum(1 for x in sums if x >= n)
held99 = sum(1 for x in sums if x >= 0.99 * n)
rows = [l.split() for l in open(samples) if l.strip()]
client_peak = max(rows, key=lambda r: int(r[1]))
target_peak = max(int(r[3]) for r in rows)
est = max(int(r[4]) for r in rows)
# CPU over the run: ticks of the client and target processes (the last sample that still saw
# every process) and of the whole machine
hz = os.sysconf("SC_CLK_TCK")
first, last = rows[0], max(rows, key=lambda r: int(r[5]) + int(r[6]))
wall = max(int(last[0]) - int(first[0]), 1)
cores = lambda a, b: (int(b) - int(a)) / hz / wall
est_ok = v("ws_connections_established", "count") or 0
failed = v("ws_connections_failed", "count") or 0
print(f"   verdict {s['verdict']}; missed: {[t['metric'] + ' ' + t['threshold'] for t in s['thresholds'] if not t['ok']]}")
print(f"   peak open connections: {peak} (client, summed over {len(files)} processes); target established sockets at peak: {est}")
print(f"   held: all {n} open for {held} s, at least 99 % of them for {held99} s")
print(f"   connection success {100 * (v('ws_connection_success', 'rate') or 0):.3f} % ({int(est_ok)} established, {int(failed)} failed)")
print(f"   ws_message_latency p95 {v('ws_message_latency', 'p(95)'):.2f} ms, p99 {v('ws_message_latency', 'p(99)'):.2f} ms; "
      f"ws_connection_time p95 {v('ws_connection_time', 'p(95)'):.2f} ms; messages received {int(v('ws_messages_received', 'count') or 0)}")
c, t, m = cores(first[5], last[5]), cores(first[6], last[6]), cores(first[7], last[7])
print(f"   CPU over {wall} s (cores of 2): client {c:.2f}, target {t:.2f}, everything else on the machine {max(m - c - t, 0):.2f}")
print(f"   client RSS at peak {int(client_peak[1]) / 1024:.0f} MiB over {client_peak[2]} processes = {int(client_peak[1]) / max(peak, 1):.2f} KiB per connection")
print(f"   target RSS at peak {target_peak / 1024:.0f} MiB over {len(tpids)} processes = {target_peak / max(est or peak, 1):.2f} KiB per connection")
PY
done
