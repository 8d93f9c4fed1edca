#!/usr/bin/env bash
# Coordinated omission, side by side: the reference target stalls the whole server for
# STALL_FOR every STALL_EVERY (`novaload target --stall-every 10s --stall-for 1s`) while each tool
# sends RATE req/s over CONNS connections (open model) to GET /api/v1/vms/1:
#   novaload run --url --rate   (raw http_req_duration and http_req_duration_corrected, measured
#                                from each iteration's intended start, from the same run)
#   oha -q RATE --latency-correction   (corrected) and oha -q RATE (raw)
# ROUNDS interleaved rounds. Every run starts at the same phase of the stall cycle (LEAD seconds
# after a stall ends) and lasts a whole number of cycles, so each run sees the same full stalls
# and none is cut by the end of a run. Prints p50/p99/p99.9/max raw and corrected per tool,
# novaload's late/dropped counts, the ratio novaload corrected p99 / oha corrected p99 per round,
# and what an ideal open-model client would measure.
#
#   bash bench/co.sh                  # RATE=1000 DURATION=30 CONNS=50 ROUNDS=3
#   NOVALOAD=path/to/novaload bash bench/co.sh   # skip the build
# Needs: oha (cargo install oha). Loopback only; every loop is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-1000}
DURATION=${DURATION:-30}
DURATION=${DURATION%s}
CONNS=${CONNS:-50}
ROUNDS=${ROUNDS:-3}
STALL_EVERY=${STALL_EVERY:-10}
STALL_FOR=${STALL_FOR:-1}
LEAD=${LEAD:-2}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
[ -x "$OHA" ] || { echo "missing oha (cargo install oha)" >&2; exit 1; }
if (( DURATION % STALL_EVERY != 0 || DURATION < STALL_EVERY )); then
  echo "DURATION ($DURATION) must be a multiple of STALL_EVERY ($STALL_EVERY) so every run sees the same stalls" >&2; exit 2
fi
if [ -z "${NOVALOAD:-}" ]; then
  cargo build --release --locked -q
  NOVALOAD=$PWD/target/release/novaload
fi
WORK=$(mktemp -d /tmp/novaload-co.XXXXXX)
TARGET=
trap '[ -n "$TARGET" ] && kill "$TARGET" 2>/dev/null; rm -rf "$WORK"' EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$NOVALOAD" target --listen "127.0.0.1:$PORT" --stall-every "${STALL_EVERY}s" --stall-for "${STALL_FOR}s" > "$WORK/target.log" 2>&1 &
TARGET=$!
for _ in $(seq 100); do curl -sf -m 5 "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
URL="http://127.0.0.1:$PORT/api/v1/vms/1"

# The stall windows are fixed multiples of STALL_EVERY after the target's start: find one stall's
# end (a /health probe held for more than half a stall) to learn the phase. Bounded: two cycles.
STALL_END=$(python3 - "$PORT" "$STALL_EVERY" "$STALL_FOR" <<'PY'
import sys, time, urllib.request
port, every, stall = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
deadline = time.time() + 2 * every + 2 * stall + 5
while time.time() < deadline:
    t0 = time.time()
    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=every).read()
    t1 = time.time()
    if t1 - t0 > stall / 2:
        print(f"{t1:.3f}"); sys.exit(0)
    time.sleep(0.02)
sys.exit("no stall seen: is the target running with --stall-every?")
PY
)
# Sleeps until LEAD seconds after the next stall end, so every run covers the same full stalls.
align() {
  python3 - "$STALL_END" "$STALL_EVERY" "$LEAD" <<'PY'
import sys, time
end, every, lead = map(float, sys.argv[1:4])
now = time.time()
phase = (now - end - lead) % every
wait = (every - phase) % every
time.sleep(wait if wait > 0.05 else wait + every)
PY
}

# Each prints one line: "p50 p99 p99.9 max count [late dropped]" in ms (corrected then raw for
# novaload).
run_novaload() {
  rm -rf "$WORK/nl"
  "$NOVALOAD" run --url "$URL" --rate "$RATE" --vus "$CONNS" --duration "${DURATION}s" \
    -q --no-html --no-junit --out "$WORK/nl" > "$WORK/nl.out" 2>&1 || true
  python3 - "$WORK/nl" <<'PY'
import glob, json, sys
s = json.load(open(glob.glob(sys.argv[1] + "/*/url_summary.json")[0])); m = s["metrics"]
def row(k):
    v = m[k]["values"]
    return f'{v["med"]:.3f} {v["p(99)"]:.3f} {v["p(99.9)"]:.3f} {v["max"]:.3f} {v["count"] if "count" in v else 0:.0f}'
c = lambda k: m.get(k, {}).get("values", {}).get("count", 0)
print(row("http_req_duration_corrected"), c("late_iterations"), c("dropped_iterations"), "|", row("http_req_duration"))
PY
}
run_oha() { # extra oha flags
  "$OHA" --no-tui --output-format json -c "$CONNS" -q "$RATE" -z "${DURATION}s" "$@" "$URL" > "$WORK/oha.json" 2> "$WORK/oha.err" || true
  python3 - "$WORK/oha.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); p = d["latencyPercentiles"]; ms = lambda x: x * 1000
ok = sum(d["statusCodeDistribution"].values()); err = sum(d["errorDistribution"].values())
print(f'{ms(p["p50"]):.3f} {ms(p["p99"]):.3f} {ms(p["p99.9"]):.3f} {ms(d["summary"]["slowest"]):.3f} {ok} {err}')
PY
}

echo "== target stalls ${STALL_FOR}s every ${STALL_EVERY}s (127.0.0.1:$PORT); $RATE req/s, $CONNS connections, ${DURATION}s runs starting ${LEAD}s after a stall ends; $ROUNDS rounds"
echo "   (ms: p50 p99 p99.9 max count)"
: > "$WORK/rows"
for r in $(seq "$ROUNDS"); do
  align; nl=$(run_novaload)
  align; oc=$(run_oha --latency-correction)
  align; oraw=$(run_oha)
  echo "  round $r novaload corrected: ${nl%%|*}(late, dropped)"
  echo "  round $r novaload raw:       ${nl##*|}"
  echo "  round $r oha corrected:      $oc (errors)"
  echo "  round $r oha raw:            $oraw (errors)"
  echo "$r ${nl%%|*} ${nl##*|} $oc $oraw" >> "$WORK/rows"
done

python3 - "$WORK/rows" "$RATE" "$DURATION" "$STALL_EVERY" "$STALL_FOR" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
rate, dur, every, stall = map(float, sys.argv[2:6])
# columns: round | nl corr p50 p99 p999 max count late dropped | nl raw p50 p99 p999 max count
#          | oha corr p50 p99 p999 max ok err | oha raw p50 p99 p999 max ok err
cols = {"novaload corrected": 1, "novaload raw": 8, "oha corrected": 13, "oha raw": 19}
med = lambda i: statistics.median(float(r[i]) for r in rows)
print(f"\n{'median of rounds (ms)':<22} {'p50':>8} {'p99':>9} {'p99.9':>9} {'max':>9} {'samples':>9}")
for name, i in cols.items():
    print(f"{name:<22} {med(i):8.2f} {med(i+1):9.1f} {med(i+2):9.1f} {med(i+3):9.1f} {med(i+4):9.0f}")
print(f"novaload late iterations {med(6):.0f}, dropped {med(7):.0f} (median per run)")
print(f"oha errors (deadline aborts etc.): corrected runs {med(18):.0f}, raw runs {med(24):.0f}")
for r in rows:
    print(f"round {r[0]}: novaload/oha corrected p99 = {float(r[2]) / float(r[14]):.3f}, "
          f"p99.9 = {float(r[3]) / float(r[15]):.3f}; raw p99 = {float(r[9]) / float(r[20]):.3f}")
ratios = [float(r[2]) / float(r[14]) for r in rows]
print(f"median novaload/oha corrected p99 = {statistics.median(ratios):.3f} (target: within 0.90..1.10)")
# An ideal open-model client: a request arriving x s into a stall waits stall - x, so a fraction
# (stall - L) / every of all requests wait at least L: p(q) = stall - (1 - q) * every (+ drain).
for q in (0.99, 0.999):
    print(f"ideal corrected p{q*100:g} = {max(0.0, stall - (1 - q) * every) * 1000:.0f} ms + the time to drain the backlog")
PY
