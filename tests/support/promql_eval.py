#!/usr/bin/env python3
"""Evaluate every dashboard query, recording rule and alert expression against a live Prometheus
and report which return no data.

Meant for the live test: a real Prometheus (with alerts/novaload-rules.yml loaded and
--enable-feature=exemplar-storage) scraping a real `novaload run all --profile smoke` and
`novaload target`. Usage:

    python3 tests/support/promql_eval.py --prometheus http://127.0.0.1:9090 [--lookback 10m]
        [--var run_id=<id>] [--json report.json] [--strict-silent]

Each query runs as a range query over the last --lookback (step --step) and counts as having
data if any series has any point. Rules are read from Prometheus' /api/v1/rules (so the check
also proves the rule file was loaded); dashboards from dashboards/*.json.

alerts/silent-in-smoke.txt lists what is designed to be empty in a healthy smoke run. For a
listed alert the expression itself is expected to be empty, but every metric and recording
rule it reads must have data (unless listed too): an alert must not be silent because it
watches a name nobody exports. With --strict-silent, a listed alert whose condition holds is
also a failure (by default it is reported as a warning).

Exit status: 0 when everything not listed has data, 1 otherwise, 2 on usage/connection errors.
Standard library only.
"""
import argparse
import json
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

KEYWORDS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "by", "without", "on", "ignoring", "group_left", "group_right", "and",
    "or", "unless", "offset", "bool", "inf", "nan",
}
LABEL_CLAUSES = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def parse_duration(s):
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    m = re.fullmatch(r"(\d+)([smhd])", s)
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {s!r} (e.g. 30s, 10m, 1h)")
    return int(m.group(1)) * units[m.group(2)]


def metric_names(expr):
    """Metric / recording-rule names an expression selects (strings, ranges, grouping labels,
    functions and keywords removed)."""
    e = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\b(" + "|".join(LABEL_CLAUSES) + r")\s*\([^)]*\)", " ", e)
    names = []
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", e):
        name, call = m.group(1), m.group(2)
        if call or name in KEYWORDS or name.lower() in KEYWORDS:
            continue
        if name not in names:
            names.append(name)
    return names


class Prom:
    def __init__(self, base, lookback, step, at):
        self.base = base.rstrip("/")
        self.lookback, self.step, self.at = lookback, step, at

    def get(self, path, **params):
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        if body.get("status") != "success":
            raise RuntimeError(body.get("error", "unknown error"))
        return body["data"]

    def has_data(self, expr):
        end = self.at or time.time()
        data = self.get("/api/v1/query_range", query=expr, start=end - self.lookback,
                        end=end, step=self.step)
        return any(s.get("values") for s in data.get("result", []))


def substitute(expr, variables, rate_interval, range_s):
    e = (expr.replace("$__rate_interval", rate_interval)
         .replace("$__interval", "15s")
         .replace("$__range_s", str(range_s))
         .replace("$__range", f"{range_s}s"))

    def var(m):
        name = m.group(1) or m.group(2)
        return variables.get(name, ".*")
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", var, e)


def load_silent():
    silent = {"alert": set(), "record": set(), "panel": set()}
    for line in (ROOT / "alerts/silent-in-smoke.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            kind, name = line.split(" ", 1)
            silent[kind].add(name)
    return silent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prometheus", default="http://127.0.0.1:9090")
    ap.add_argument("--lookback", type=parse_duration, default=parse_duration("10m"))
    ap.add_argument("--step", default="5s")
    ap.add_argument("--time", type=float, help="end of the evaluation window (unix seconds; default now)")
    ap.add_argument("--rate-interval", default="1m", help="value for $__rate_interval")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                    help="dashboard variable value (default: .* for every variable)")
    ap.add_argument("--json", help="write the full report here")
    ap.add_argument("--strict-silent", action="store_true",
                    help="fail when a listed alert's condition holds")
    args = ap.parse_args()

    variables = dict(v.split("=", 1) for v in args.var)
    prom = Prom(args.prometheus, args.lookback, args.step, args.time)
    silent = load_silent()
    report = []
    failures = 0

    def record(kind, name, expr, status, detail=""):
        nonlocal failures
        if status in ("NO DATA", "ERROR") or (status == "CONDITION HOLDS" and args.strict_silent):
            failures += 1
        report.append({"kind": kind, "name": name, "expr": expr, "status": status, "detail": detail})
        print(f"{status:<16} {kind:<6} {name}" + (f"  -- {detail}" if detail else ""))

    def check(kind, name, expr, expect_silent):
        try:
            data = prom.has_data(expr)
        except (RuntimeError, OSError) as e:
            if isinstance(e, OSError) and not isinstance(e, urllib.error.HTTPError):
                print(f"cannot reach Prometheus at {args.prometheus}: {e}", file=sys.stderr)
                sys.exit(2)
            record(kind, name, expr, "ERROR", str(e))
            return None
        if expect_silent:
            if data:
                # Only an alert condition holding is a finding; a listed record or panel may
                # legitimately have data (e.g. a smoke run caught at its peak VU stage).
                record(kind, name, expr, "CONDITION HOLDS" if kind == "alert" else "DATA (listed)")
            else:
                record(kind, name, expr, "SILENT (listed)")
        else:
            record(kind, name, expr, "OK" if data else "NO DATA")
        return data

    # Rules as Prometheus loaded them.
    groups = prom.get("/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    if not rules:
        print("Prometheus has no rules loaded: start it with alerts/novaload-rules.yml in rule_files",
              file=sys.stderr)
        sys.exit(2)
    recorded = {r["name"] for r in rules if r["type"] == "recording"}

    for r in rules:
        if r["type"] == "recording":
            check("record", r["name"], r["name"], r["name"] in silent["record"])
    for r in rules:
        if r["type"] != "alerting":
            continue
        is_silent = r["name"] in silent["alert"]
        check("alert", r["name"], r["query"], is_silent)
        if is_silent:
            # The inputs of a silent alert must exist.
            for name in metric_names(r["query"]):
                if name in silent["record"]:
                    continue
                check("input", f"{r['name']} <- {name}", name, False)

    for path in sorted((ROOT / "dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        flat = []
        for p in dash.get("panels", []):
            flat.append(p)
            flat.extend(p.get("panels", []))
        for p in flat:
            pname = f"{dash['uid']}/{p.get('title', '')}"
            for t in p.get("targets", []):
                if "expr" not in t:
                    continue
                expr = substitute(t["expr"], variables, args.rate_interval, args.lookback)
                check("panel", f"{pname} [{t.get('refId', '?')}]", expr, pname in silent["panel"])

    # Loaded rules must be exactly the repository's (a stale mount would hide new rules).
    missing = sorted(silent["record"] - recorded)
    if missing:
        print(f"listed recording rules not loaded in Prometheus: {missing}", file=sys.stderr)
        failures += 1

    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    no_data = [r for r in report if r["status"] in ("NO DATA", "ERROR")]
    holds = [r for r in report if r["status"] == "CONDITION HOLDS"]
    print(f"\n{len(report)} queries: {len(no_data)} without data or failing, "
          f"{len(holds)} listed alert conditions holding")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
