#!/usr/bin/env bash
# Memory over a long run: novaload --url at constant VUs against the reference target (with a
# small injected latency so the run is long but cheap), sampling novaload's RSS every 10 s.
# Prints RSS at 1 minute and at the end, and their ratio (flat memory: ~1.0).
#
#   bash bench/memory.sh            # DURATION=10m VUS=10 LATENCY=5ms
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10m}
VUS=${VUS:-10}
LATENCY=${LATENCY:-5ms}
cargo build --release --locked -q
NOVALOAD=$PWD/target/release/novaload
WORK=$(mktemp -d /tmp/novaload-mem.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$NOVALOAD" target --listen "127.0.0.1:$PORT" --latency "$LATENCY" > "$WORK/target.log" 2>&1 &
TARGET=$!
trap 'kill $TARGET 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
"$NOVALOAD" run --url "http://127.0.0.1:$PORT/api/v1/vms/1" --vus "$VUS" --duration "$DURATION" -q --out "$WORK/results" > /dev/null 2>&1 &
RUN=$!
start=$(date +%s)
echo "elapsed_s rss_kib"
while kill -0 $RUN 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$RUN/status 2>/dev/null || true)
  [ -n "$rss" ] && echo "$(( $(date +%s) - start )) $rss" | tee -a "$WORK/rss"
  sleep 10
done
wait $RUN || true
python3 - "$WORK/rss" "$WORK/results" <<'PY'
import glob, json, sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
at_1m = min(rows, key=lambda r: abs(r[0] - 60))
last = rows[-1]
s = json.load(open(glob.glob(sys.argv[2] + "/*/url_summary.json")[0]))
reqs = s["metrics"]["http_reqs"]["values"]["count"]
print(f"requests: {reqs:.0f} over {s['duration_s']:.0f} s")
print(f"RSS at {at_1m[0]} s: {at_1m[1]} KiB; at {last[0]} s: {last[1]} KiB; ratio {last[1] / at_1m[1]:.3f}")
PY
