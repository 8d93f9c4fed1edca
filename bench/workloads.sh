#!/usr/bin/env bash
# The NovaCron workloads at scale on this machine, against `novaload target` in its own process
# (a process may open ~20,000 files, so client and server must not share one at 10k sockets).
# Prints, per workload: peak concurrency, throughput, latency, and novaload's peak RSS.
#
#   bash bench/workloads.sh            # API_VUS=1000 WS_CONNS=10000 DWCP_VUS=1500 DB_VUS=200
#   ONLY="dwcp db-api" bash bench/workloads.sh   # a subset
set -euo pipefail
cd "$(dirname "$0")/.."
API_VUS=${API_VUS:-1000}
WS_CONNS=${WS_CONNS:-10000}
DWCP_VUS=${DWCP_VUS:-1500}
DB_VUS=${DB_VUS:-200}
cargo build --release --locked -q
NOVALOAD=$PWD/target/release/novaload
WORK=$(mktemp -d /tmp/novaload-workloads.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# migrations take 20 s (±20 %: within the upstream 30 polls), so 1,500 VUs keep ~1,000 in flight
"$NOVALOAD" target --listen "127.0.0.1:$PORT" --migration-time 20s --seed-vms 1000 > "$WORK/target.log" 2>&1 &
TARGET=$!
trap 'kill $TARGET 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
API="http://127.0.0.1:$PORT"

run() { # name, args...
  local name=$1; shift
  case " ${ONLY:-api ws dwcp db-api} " in *" $name "*) ;; *) return 0 ;; esac
  /usr/bin/time -f '%M' -o "$WORK/$name.rss" "$NOVALOAD" run "$@" --api-url "$API" -q --no-telemetry --out "$WORK/$name" > "$WORK/$name.out" 2>&1 || true
  # GNU time prefixes "Command exited with non-zero status N" when the verdict is not PASS
  python3 - "$WORK/$name" "$(tail -n1 "$WORK/$name.rss")" "$name" <<'PY'
import glob, json, sys
d, rss, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for f in sorted(glob.glob(d + "/*/*_summary.json")):
    s = json.load(open(f)); m = s["metrics"]
    v = lambda k, x: m.get(k, {}).get("values", {}).get(x)
    print(f"{name}: verdict {s['verdict']}, {s['duration_s']:.0f} s, novaload peak RSS {rss/1024:.1f} MiB")
    for t in s["thresholds"]:
        if not t["ok"]:
            print(f"    missed: {t['metric']} {t['threshold']} (measured {t['measured']})")
    for k, x in [("vus", "max"), ("http_reqs", "rate"), ("http_reqs_per_second", "max"), ("http_req_duration", "p(95)"),
                 ("ws_connections_active", "max"), ("ws_connection_success", "rate"), ("ws_message_latency", "p(95)"),
                 ("dwcp_concurrent_migrations", "max"), ("migration_duration", "p(95)"), ("db_queries_per_second", "max"),
                 ("db_read_latency", "p(95)"), ("db_write_latency", "p(95)"), ("checks", "rate")]:
        if v(k, x) is not None:
            print(f"    {k} {x} = {v(k, x):.2f}")
    if name == "ws":
        print(f"    client RSS per connection ≈ {rss / max(v('ws_connections_active', 'max') or 1, 1):.1f} KiB")
PY
}
run api api --stage 20s:"$API_VUS" --stage 40s:"$API_VUS" --stage 10s:0
run ws ws --stage 40s:"$WS_CONNS" --stage 40s:"$WS_CONNS" --stage 10s:0
run dwcp dwcp --stage 20s:"$DWCP_VUS" --stage 60s:"$DWCP_VUS" --stage 10s:0
run db-api db --db-mode api --stage 10s:"$DB_VUS" --stage 30s:"$DB_VUS" --stage 5s:0
