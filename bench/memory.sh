#!/usr/bin/env bash
# Memory over a long run: novaload --url at constant VUs against the reference target (with a
# small injected latency so the run is long but cheap), live /metrics on as a soak would have
# it, sampling novaload's RSS every 10 s.
# Prints RSS at 1 minute and at the end, and their ratio (flat memory: ~1.0); then, per WINDOW
# seconds, RSS, requests/s and the latency drift: the median over the window of each second's
# p50/p99 of http_req_duration (from the run's per-second NDJSON export, <test>.json).
#
#   bash bench/memory.sh            # DURATION=10m VUS=10 LATENCY=5ms WINDOW=300
#   DURATION=1h bash bench/memory.sh   # the soak of issue 8
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10m}
VUS=${VUS:-10}
LATENCY=${LATENCY:-5ms}
WINDOW=${WINDOW:-300}
if [ -z "${NOVALOAD:-}" ]; then
  cargo build --release --locked -q
  NOVALOAD=$PWD/target/release/novaload
fi
WORK=$(mktemp -d /tmp/novaload-mem.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$NOVALOAD" target --listen "127.0.0.1:$PORT" --latency "$LATENCY" > "$WORK/target.log" 2>&1 &
TARGET=$!
trap 'kill $TARGET 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
"$NOVALOAD" run --url "http://127.0.0.1:$PORT/api/v1/vms/1" --vus "$VUS" --duration "$DURATION" -q --out "$WORK/results" \
  --metrics-listen 127.0.0.1:0 > /dev/null 2>&1 &
RUN=$!
start=$(date +%s)
echo "elapsed_s rss_kib"
while kill -0 $RUN 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$RUN/status 2>/dev/null || true)
  [ -n "$rss" ] && echo "$(( $(date +%s) - start )) $rss" | tee -a "$WORK/rss"
  sleep 10
done
wait $RUN || true
python3 - "$WORK/rss" "$WORK/results" "$WINDOW" <<'PY'
import glob, json, statistics, sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
at_1m = min(rows, key=lambda r: abs(r[0] - 60))
last = rows[-1]
s = json.load(open(glob.glob(sys.argv[2] + "/*/url_summary.json")[0]))
reqs = s["metrics"]["http_reqs"]["values"]["count"]
print(f"requests: {reqs:.0f} over {s['duration_s']:.0f} s")
print(f"RSS at {at_1m[0]} s: {at_1m[1]} KiB; at {last[0]} s: {last[1]} KiB; ratio {last[1] / at_1m[1]:.3f}")
window = int(sys.argv[3])
per = {}
series = [f for f in glob.glob(sys.argv[2] + "/*/*.json") if not f.endswith("_summary.json")]
for line in open(series[0]) if series else []:
    d = json.loads(line)
    if d.get("type") != "Second":
        continue
    w = int(d["data"]["elapsed_s"] // window)
    v = d["data"]["values"]
    if d["metric"] == "http_req_duration" and v.get("count"):
        per.setdefault(w, {"p50": [], "p99": [], "n": 0})
        per[w]["p50"].append(v["med"]); per[w]["p99"].append(v["p(99)"])
    if d["metric"] == "http_reqs":
        per.setdefault(w, {"p50": [], "p99": [], "n": 0})["n"] += v.get("count", 0)
print(f"{'window':>12} {'RSS KiB':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  (median of per-second values)")
for w in sorted(per):
    lo, hi = w * window, (w + 1) * window
    rss = [r[1] for r in rows if lo <= r[0] < hi]
    p = per[w]
    if len(p["p99"]) < window / 2:
        continue  # the run's last, partial second
    print(f"{lo:>5}-{hi:<5}s {max(rss) if rss else 0:>9} {p['n'] / window:>8.0f} {statistics.median(p['p50']):>8.2f} {statistics.median(p['p99']):>8.2f}")
PY
