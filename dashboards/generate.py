#!/usr/bin/env python3
"""Generates the Grafana dashboards in this folder (novaload-*.json).

The JSON files are the product (Grafana provisions them as they are); this script is how they
are written, so that every panel uses the same datasource uids, variables and label filters.
Edit here, run `python3 dashboards/generate.py`, commit both. `--check` exits 1 when a JSON
file differs from what this script writes (tests/it/observability_files.rs runs it).

Only metric names and labels from src/telemetry/names.rs, plus the recording rules of
alerts/novaload-rules.yml, may appear in queries (the test checks that too).
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROM = {"type": "prometheus", "uid": "prometheus"}

# Label filters driven by the template variables.
RUN = 'run_id=~"$run_id"'
CLIENT = 'run_id=~"$run_id",test=~"$test",scenario=~"$scenario",instance=~"$instance"'
RUNTEST = 'run_id=~"$run_id",test=~"$test"'
TARGET = 'instance=~"$target"'
RI = "$__rate_interval"


class Board:
    def __init__(self, uid, title, description, test=None):
        self.uid, self.title, self.description, self.test = uid, title, description, test
        self.panels = []
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_h = 0

    def _pos(self, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title):
        if self.x:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        self.panels.append({
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
            "id": self._id(),
            "panels": [],
            "title": title,
            "type": "row",
        })
        self.y += 1

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def panel(self, kind, title, targets, w=12, h=8, unit=None, description=None,
              thresholds=None, min_=None, max_=None, options=None, custom=None,
              transformations=None):
        """thresholds: list of (value, color) for the steps after the base step, or a full
        step list; shown as lines on time series (the seed targets)."""
        defaults = {}
        if unit:
            defaults["unit"] = unit
        if min_ is not None:
            defaults["min"] = min_
        if max_ is not None:
            defaults["max"] = max_
        cust = dict(custom or {})
        if thresholds is not None:
            base_color, steps = thresholds
            defaults["thresholds"] = {
                "mode": "absolute",
                "steps": [{"color": base_color, "value": None}]
                + [{"color": c, "value": v} for v, c in steps],
            }
            if kind == "timeseries":
                cust.setdefault("thresholdsStyle", {"mode": "dashed"})
        if kind == "timeseries":
            cust.setdefault("drawStyle", "line")
            cust.setdefault("lineWidth", 1)
            cust.setdefault("fillOpacity", 10)
            cust.setdefault("showPoints", "never")
            cust.setdefault("spanNulls", False)
        if cust:
            defaults["custom"] = cust
        refs = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        tlist = []
        for i, t in enumerate(targets):
            t = dict(t)
            t.setdefault("datasource", PROM)
            t.setdefault("refId", refs[i])
            t.setdefault("editorMode", "code")
            t.setdefault("range", not t.get("instant", False))
            tlist.append(t)
        p = {
            "datasource": PROM,
            "description": description or "",
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "gridPos": self._pos(w, h),
            "id": self._id(),
            "options": options or default_options(kind),
            "targets": tlist,
            "title": title,
            "type": kind,
        }
        if transformations:
            p["transformations"] = transformations
        self.panels.append(p)
        return p

    def json(self, variables, extra_tags=()):
        return {
            "annotations": {"list": [{
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            }]},
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": None,
            "links": [{
                "asDropdown": True,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": ["novaload"],
                "targetBlank": False,
                "title": "novaload dashboards",
                "tooltip": "",
                "type": "dashboards",
            }],
            "liveNow": False,
            "panels": self.panels,
            "refresh": "10s",
            "schemaVersion": 39,
            "tags": ["novaload", *extra_tags],
            "templating": {"list": variables},
            "time": {"from": "now-1h", "to": "now"},
            "timepicker": {},
            "timezone": "browser",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }


def default_options(kind):
    legend = {"calcs": ["lastNotNull", "max"], "displayMode": "table", "placement": "bottom", "showLegend": True}
    if kind == "timeseries":
        return {"legend": legend, "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "stat":
        return {"colorMode": "background", "graphMode": "area", "justifyMode": "auto",
                "orientation": "auto", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "textMode": "auto"}
    if kind == "heatmap":
        return {"calculate": False, "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                "exemplars": {"color": "rgba(255,0,255,0.7)"}, "filterValues": {"le": 1e-9},
                "legend": {"show": True}, "rowsFrame": {"layout": "auto"},
                "tooltip": {"mode": "single", "yHistogram": True}, "yAxis": {"axisPlacement": "left", "unit": "s"}}
    if kind == "table":
        return {"cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}, "showHeader": True}
    return {}


def q(expr, legend="__auto", exemplar=False, **kw):
    t = {"expr": expr, "legendFormat": legend, "exemplar": exemplar}
    t.update(kw)
    return t


def hq(quantile, metric, sel, by="", legend=None):
    """histogram_quantile over a raw _bucket series (exemplars come from the raw buckets,
    never from recording rules)."""
    grp = f"{by}, le" if by else "le"
    e = f"histogram_quantile({quantile}, sum by ({grp}) (rate({metric}_bucket{{{sel}}}[{RI}])))"
    return q(e, legend or (f"p{int(quantile * 100)} {{{{{by}}}}}" if by else f"p{int(quantile * 100)}"), exemplar=True)


def heat(metric, sel):
    return q(f"sum by (le) (increase({metric}_bucket{{{sel}}}[{RI}]))", "{{le}}",
             exemplar=True, format="heatmap")


def zero_or(expr, by, sel=RUNTEST):
    """`expr` per group, or 0 while the run is live: a labelled counter only appears once it is
    first incremented, and a healthy run must show 0, not "No data"."""
    return f"({expr}) or (sum by ({by}) (novaload_vus{{{sel}}}) * 0)"


def variables(test=None, run_multi=True, with_target=True):
    def query_var(name, label, query, multi=True, include_all=True, hide=0):
        return {
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {},
            "datasource": PROM,
            "hide": hide,
            "includeAll": include_all,
            "label": label,
            "multi": multi,
            "name": name,
            "options": [],
            "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2,
            "regex": "",
            "skipUrlSync": False,
            "sort": 2,
            "type": "query",
        }
    vs = [query_var("run_id", "Run", "label_values(novaload_run_info, run_id)", multi=run_multi)]
    if test:
        vs.append({
            "hide": 2,
            "label": "Test",
            "name": "test",
            "query": test,
            "skipUrlSync": False,
            "type": "constant",
            "current": {"selected": False, "text": test, "value": test},
            "options": [{"selected": True, "text": test, "value": test}],
        })
    else:
        vs.append(query_var("test", "Test", 'label_values(novaload_run_info{run_id=~"$run_id"}, test)'))
    vs.append(query_var("scenario", "Scenario", 'label_values(novaload_vus{run_id=~"$run_id",test=~"$test"}, scenario)'))
    vs.append(query_var("instance", "novaload instance", 'label_values(novaload_run_info{run_id=~"$run_id"}, instance)'))
    if with_target:
        vs.append(query_var("target", "Target instance", "label_values(novacron_api_requests_total, instance)"))
    return vs


def generator_row(b):
    b.row("Load generator")
    b.panel("timeseries", "VUs", [
        q(f"sum by (test) (novaload_vus{{{CLIENT}}})", "{{test}} active"),
        q(f"sum by (test) (novaload_vus_max{{{CLIENT}}})", "{{test}} allocated"),
    ], w=8)
    b.panel("timeseries", "Dropped iterations /s", [
        q(zero_or(f"sum by (test) (rate(novaload_dropped_iterations_total{{{CLIENT}}}[{RI}]))", "test", CLIENT), "{{test}}"),
    ], w=8, unit="ops", thresholds=("green", [(0.000001, "orange")]),
        description="Iterations an arrival-rate executor could not start. Anything above 0: the target rate is not met.")
    b.panel("timeseries", "novaload CPU (cores used)", [
        q(f'sum by (instance) (rate(process_cpu_seconds_total{{instance=~"$instance"}}[{RI}]) '
          f'and on (instance) group by (instance) (novaload_run_info{{{RUN}}}))', "{{instance}}"),
        q("novaload:generator_cpu:cores", "cores available"),
    ], w=8, unit="short", min_=0,
        description="Near the core count, the generator's own queueing shows up as latency.")
    b.panel("timeseries", "novaload resident memory", [
        q(f'process_resident_memory_bytes{{instance=~"$instance"}} '
          f'and on (instance) group by (instance) (novaload_run_info{{{RUN}}})', "{{instance}}"),
    ], w=8, unit="bytes", min_=0)
    b.panel("timeseries", "Spans dropped /s", [
        q(f"(sum by (run_id) (rate(novaload_spans_dropped_total{{{RUN}}}[{RI}]))) "
          f"or (sum by (run_id) (novaload_run_info{{{RUN}}}) * 0)", "{{run_id}}"),
    ], w=8, unit="short", thresholds=("green", [(0.000001, "orange")]),
        description="Spans lost because the OTLP export queue was full (collector slow or down).")
    b.panel("timeseries", "Data sent / received", [
        q(f"sum by (test) (rate(novaload_data_sent_bytes_total{{{CLIENT}}}[{RI}]))", "{{test}} sent"),
        q(f"sum by (test) (rate(novaload_data_received_bytes_total{{{CLIENT}}}[{RI}]))", "{{test}} received"),
    ], w=8, unit="Bps")


def checks_panels(b):
    b.panel("timeseries", "Check failure ratio", [
        q(f"novaload:checks:failure_ratio_5m{{{RUNTEST}}}", "{{test}}"),
    ], w=12, unit="percentunit", min_=0, thresholds=("green", [(0.01, "orange")]))
    b.panel("table", "Check failures by name (time range)", [
        q(f'sum by (test, check) (increase(novaload_checks_total{{{CLIENT},result="fail"}}[$__range])) '
          f'or sum by (test, check) (increase(novaload_checks_total{{{CLIENT}}}[$__range])) * 0',
          "", instant=True, format="table"),
    ], w=12)


# --------------------------------------------------------------------------------------
def overview():
    b = Board("novaload-overview", "novaload / Overview",
              "The seed's performance targets (dashed lines) against live measurements, per run.")
    b.row("API: 10,000 req/s · p95 < 500 ms · errors < 1%")
    b.panel("timeseries", "API throughput", [
        q(f'novaload:http_client_requests:rate1m{{run_id=~"$run_id",test="api"}}', "{{run_id}}"),
    ], w=8, unit="reqps", min_=0, thresholds=("red", [(10000, "green")]),
        description="Target 10,000 req/s at the peak stage of a full-scale run (WARNING).")
    b.panel("timeseries", "API p95 latency", [
        hq(0.95, "http_client_request_duration_seconds", f'run_id=~"$run_id",test="api",scenario=~"$scenario",instance=~"$instance"', "run_id", "p95 {{run_id}}"),
    ], w=8, unit="s", min_=0, thresholds=("green", [(0.5, "red")]),
        description="Target p95 < 500 ms (WARNING). Dots are exemplars: click one to open its trace.")
    b.panel("timeseries", "API error rate", [
        q(f'novaload:operations:failure_ratio_1m{{run_id=~"$run_id",test="api"}}', "{{run_id}}"),
    ], w=8, unit="percentunit", min_=0, thresholds=("green", [(0.01, "red")]),
        description="Failed / all operations. Target < 1% (FAIL).")

    b.row("DWCP: migration p95 < 30 s · ≥ 500 concurrent (of 1,000 VUs) · errors < 2%")
    b.panel("timeseries", "Migrations in flight", [
        q(f'novaload:novaload_migrations_in_flight:sum{{run_id=~"$run_id",test="dwcp"}}', "{{run_id}}"),
    ], w=8, unit="short", min_=0, thresholds=("red", [(1000, "green")]),
        description="Target ≥ 1,000 at the peak stage of a full-scale run (WARNING).")
    b.panel("timeseries", "Migration p95", [
        hq(0.95, "novaload_migration_duration_seconds", f'run_id=~"$run_id",test="dwcp",scenario=~"$scenario",instance=~"$instance"', "run_id", "p95 {{run_id}}"),
    ], w=8, unit="s", min_=0, thresholds=("green", [(30, "red")]))
    b.panel("timeseries", "DWCP error rate", [
        q(f'novaload:operations:failure_ratio_1m{{run_id=~"$run_id",test="dwcp"}}', "{{run_id}}"),
    ], w=8, unit="percentunit", min_=0, thresholds=("green", [(0.02, "red")]))

    b.row("WebSocket: 100,000 connections · message p95 < 500 ms · success > 95%")
    b.panel("timeseries", "WebSocket connections open", [
        q(f'novaload:novaload_ws_connections_active:sum{{run_id=~"$run_id",test="ws"}}', "{{run_id}}"),
    ], w=8, unit="short", min_=0, thresholds=("red", [(100000, "green")]))
    b.panel("timeseries", "WebSocket message latency p95", [
        hq(0.95, "novaload_ws_message_latency_seconds", f'run_id=~"$run_id",test="ws",scenario=~"$scenario",instance=~"$instance"', "run_id", "p95 {{run_id}}"),
    ], w=8, unit="s", min_=0, thresholds=("green", [(0.5, "red")]))
    b.panel("timeseries", "WebSocket connection success", [
        q(f'novaload:novaload_ws_connections:success_ratio_5m{{run_id=~"$run_id",test="ws"}}', "{{run_id}}"),
    ], w=8, unit="percentunit", min_=0, max_=1, thresholds=("red", [(0.95, "green")]))

    b.row("Database: 5,000 queries/s · read p95 < 200 ms · write p95 < 500 ms · errors < 1%")
    b.panel("timeseries", "Queries /s", [
        q(f'novaload:db_client_operations:rate1m{{run_id=~"$run_id",test="db"}}', "{{run_id}}"),
    ], w=6, unit="short", min_=0, thresholds=("red", [(5000, "green")]))
    b.panel("timeseries", "Read (SELECT) p95", [
        hq(0.95, "db_client_operation_duration_seconds", f'run_id=~"$run_id",test="db",scenario=~"$scenario",instance=~"$instance",db_operation_name="SELECT"', "run_id", "read p95 {{run_id}}"),
    ], w=6, unit="s", min_=0, thresholds=("green", [(0.2, "red")]))
    b.panel("timeseries", "Write p95", [
        hq(0.95, "db_client_operation_duration_seconds", f'run_id=~"$run_id",test="db",scenario=~"$scenario",instance=~"$instance",db_operation_name!="SELECT"', "run_id", "write p95 {{run_id}}"),
    ], w=6, unit="s", min_=0, thresholds=("green", [(0.5, "red")]))
    b.panel("timeseries", "Database error rate", [
        q(f'novaload:operations:failure_ratio_1m{{run_id=~"$run_id",test="db"}}', "{{run_id}}"),
    ], w=6, unit="percentunit", min_=0, thresholds=("green", [(0.01, "red")]))

    b.row("Checks and alerts")
    checks_panels(b)
    b.panel("stat", "Firing alerts", [
        q('sum by (severity) (ALERTS{alertstate="firing",alertname=~"Novaload.*"}) '
          'or label_replace(vector(0), "severity", "critical", "", "") '
          'or label_replace(vector(0), "severity", "warning", "", "")', "{{severity}}"),
    ], w=24, h=4, unit="short", thresholds=("green", [(1, "red")]),
        description="critical = the run would FAIL, warning = WARNING. Details in Alertmanager (port 9093).")
    generator_row(b)
    return b.json(variables(), ["overview"])


def api():
    b = Board("novaload-api", "novaload / API", "REST API workload: client view beside NovaCron's own server metrics.", "api")
    h = "http_client_request_duration_seconds"
    b.row("Client (novaload)")
    b.panel("timeseries", "Requests /s by route", [
        q(f"sum by (url_template) (rate({h}_count{{{CLIENT}}}[{RI}]))", "{{url_template}}"),
        q(f"sum(rate({h}_count{{{CLIENT}}}[{RI}]))", "total"),
    ], unit="reqps", min_=0, thresholds=("red", [(10000, "green")]))
    b.panel("timeseries", "Responses by status class", [
        q(f"sum by (status_class) (rate({h}_count{{{CLIENT}}}[{RI}]))", "{{status_class}}"),
    ], unit="reqps", min_=0)
    b.panel("timeseries", "Latency p50 / p95 / p99", [
        hq(0.5, h, CLIENT), hq(0.95, h, CLIENT), hq(0.99, h, CLIENT),
    ], unit="s", min_=0, thresholds=("green", [(0.5, "red")]),
        description="Dots are exemplars (trace ids of requests in that bucket): click one, then 'Query with Tempo'.")
    b.panel("heatmap", "Latency heatmap", [heat(h, CLIENT)],
            description="Request duration distribution from the histogram buckets, with exemplars.")
    b.panel("timeseries", "p95 by route", [hq(0.95, h, CLIENT, "url_template", "{{url_template}}")],
            unit="s", min_=0, thresholds=("green", [(0.5, "red")]))
    b.panel("timeseries", "Errors by kind /s", [
        q(zero_or(f"sum by (error_kind) (rate(novaload_errors_total{{{CLIENT}}}[{RI}]))", "test", CLIENT), "{{error_kind}}"),
    ], unit="ops", min_=0)
    b.panel("timeseries", "Error rate (failed / all operations)", [
        q(f"novaload:operations:failure_ratio_1m{{{RUNTEST}}}", "{{run_id}}"),
    ], unit="percentunit", min_=0, thresholds=("green", [(0.01, "red")]))
    checks_panels(b)
    b.row("Server (novacron_* from the target's /metrics)")
    b.panel("timeseries", "Server requests /s by endpoint", [
        q(f"sum by (endpoint) (rate(novacron_api_requests_total{{{TARGET}}}[{RI}]))", "{{endpoint}}"),
    ], unit="reqps", min_=0)
    b.panel("timeseries", "Server p95 by endpoint", [
        hq(0.95, "novacron_api_request_duration_seconds", TARGET, "endpoint", "{{endpoint}}"),
    ], unit="s", min_=0,
        description="Server-side time; the gap to the client p95 is network + queueing. Exemplars link to the server span.")
    b.panel("heatmap", "Server latency heatmap", [heat("novacron_api_request_duration_seconds", TARGET)])
    b.panel("timeseries", "Server errors /s by status", [
        q(f"(sum by (status) (rate(novacron_api_errors_total{{{TARGET}}}[{RI}]))) "
          f"or (sum by (status) (rate(novacron_api_requests_total{{{TARGET}}}[{RI}])) * 0)", "{{status}}"),
    ], unit="reqps", min_=0)
    generator_row(b)
    return b.json(variables("api"), ["api"])


def dwcp():
    b = Board("novaload-dwcp", "novaload / DWCP", "DWCP v3 migrations: client view beside NovaCron's own server metrics.", "dwcp")
    m = "novaload_migration_duration_seconds"
    h = "http_client_request_duration_seconds"
    b.row("Client (novaload)")
    b.panel("timeseries", "Migrations in flight", [
        q(f"sum(novaload_migrations_in_flight{{{CLIENT}}})", "in flight"),
    ], unit="short", min_=0, thresholds=("red", [(1000, "green")]))
    b.panel("timeseries", "Finished migrations /s by result", [
        q(f"sum by (result) (rate(novaload_migrations_total{{{CLIENT}}}[{RI}]))", "{{result}}"),
    ], unit="ops", min_=0)
    b.panel("timeseries", "Migration duration p50 / p95 / p99", [hq(0.5, m, CLIENT), hq(0.95, m, CLIENT), hq(0.99, m, CLIENT)],
            unit="s", min_=0, thresholds=("green", [(30, "red")]),
            description="POST to the poll that first sees completed. Exemplars link to the migration span.")
    b.panel("heatmap", "Migration duration heatmap", [heat(m, CLIENT)])
    b.panel("timeseries", "DWCP request p95 by route", [hq(0.95, h, CLIENT, "url_template", "{{url_template}}")],
            unit="s", min_=0)
    b.panel("timeseries", "Error rate (failed / all operations)", [
        q(f"novaload:operations:failure_ratio_1m{{{RUNTEST}}}", "{{run_id}}"),
    ], unit="percentunit", min_=0, thresholds=("green", [(0.02, "red")]))
    b.panel("timeseries", "Errors by kind /s", [
        q(zero_or(f"sum by (error_kind) (rate(novaload_errors_total{{{CLIENT}}}[{RI}]))", "test", CLIENT), "{{error_kind}}"),
    ], unit="ops", min_=0)
    checks_panels(b)
    b.row("Server (novacron_* from the target's /metrics)")
    b.panel("timeseries", "Server migrations active", [
        q(f"sum(novacron_dwcp_migrations_active{{{TARGET}}})", "active"),
    ], unit="short", min_=0)
    b.panel("timeseries", "Server migrations /s by status", [
        q(f"sum by (status) (rate(novacron_dwcp_migrations_total{{{TARGET}}}[{RI}]))", "{{status}}"),
    ], unit="ops", min_=0)
    b.panel("timeseries", "Server migration duration p95", [
        hq(0.95, "novacron_dwcp_migration_duration_seconds", TARGET),
    ], unit="s", min_=0, thresholds=("green", [(30, "red")]))
    generator_row(b)
    return b.json(variables("dwcp"), ["dwcp"])


def ws():
    b = Board("novaload-ws", "novaload / WebSocket", "WebSocket realtime: client view beside NovaCron's own server metrics.", "ws")
    b.row("Client (novaload)")
    b.panel("timeseries", "Connections open", [
        q(f"sum(novaload_ws_connections_active{{{CLIENT}}})", "open"),
    ], unit="short", min_=0, thresholds=("red", [(100000, "green")]))
    b.panel("timeseries", "Connection attempts /s by result", [
        q(f"sum by (result) (rate(novaload_ws_connections_total{{{CLIENT}}}[{RI}]))", "{{result}}"),
    ], unit="ops", min_=0)
    b.panel("timeseries", "Connection success", [
        q(f"novaload:novaload_ws_connections:success_ratio_5m{{{RUNTEST}}}", "{{run_id}}"),
    ], unit="percentunit", min_=0, max_=1, thresholds=("red", [(0.95, "green")]))
    b.panel("timeseries", "Handshake p95", [hq(0.95, "novaload_ws_connect_duration_seconds", CLIENT)], unit="s", min_=0)
    b.panel("timeseries", "Message latency p50 / p95 / p99", [
        hq(0.5, "novaload_ws_message_latency_seconds", CLIENT),
        hq(0.95, "novaload_ws_message_latency_seconds", CLIENT),
        hq(0.99, "novaload_ws_message_latency_seconds", CLIENT),
    ], unit="s", min_=0, thresholds=("green", [(0.5, "red")]))
    b.panel("heatmap", "Message latency heatmap", [heat("novaload_ws_message_latency_seconds", CLIENT)])
    b.panel("timeseries", "Messages /s by direction", [
        q(f"sum by (direction) (rate(novaload_ws_messages_total{{{CLIENT}}}[{RI}]))", "{{direction}}"),
    ], unit="short", min_=0)
    b.panel("heatmap", "Handshake heatmap", [heat("novaload_ws_connect_duration_seconds", CLIENT)])
    checks_panels(b)
    b.row("Server (novacron_* from the target's /metrics)")
    b.panel("timeseries", "Server connections open by endpoint", [
        q(f"sum by (endpoint) (novacron_websocket_connections_active{{{TARGET}}})", "{{endpoint}}"),
    ], unit="short", min_=0)
    b.panel("timeseries", "Server frames /s", [
        q(f"sum(rate(novacron_websocket_messages_sent_total{{{TARGET}}}[{RI}]))", "sent"),
        q(f"sum(rate(novacron_websocket_messages_received_total{{{TARGET}}}[{RI}]))", "received"),
    ], unit="short", min_=0)
    b.panel("timeseries", "Server connection lifetime p95", [
        hq(0.95, "novacron_websocket_connection_duration_seconds", TARGET, "endpoint", "{{endpoint}}"),
    ], unit="s", min_=0, description="Only closed connections are observed.")
    generator_row(b)
    return b.json(variables("ws"), ["ws"])


def db():
    b = Board("novaload-db", "novaload / Database", "Database workload: query latency, throughput and pool, client beside server.", "db")
    h = "db_client_operation_duration_seconds"
    b.row("Client (novaload)")
    b.panel("timeseries", "Queries /s by operation", [
        q(f"sum by (db_operation_name) (rate({h}_count{{{CLIENT}}}[{RI}]))", "{{db_operation_name}}"),
        q(f"sum(rate({h}_count{{{CLIENT}}}[{RI}]))", "total"),
    ], unit="short", min_=0, thresholds=("red", [(5000, "green")]))
    b.panel("timeseries", "Read vs write p95", [
        hq(0.95, h, CLIENT + ',db_operation_name="SELECT"', legend="read p95"),
        hq(0.95, h, CLIENT + ',db_operation_name!="SELECT"', legend="write p95"),
    ], unit="s", min_=0, thresholds=("green", [(0.2, "orange"), (0.5, "red")]),
        description="Targets: read p95 < 200 ms, write p95 < 500 ms (WARNING).")
    b.panel("heatmap", "Query latency heatmap", [heat(h, CLIENT)])
    b.panel("timeseries", "p95 by table", [hq(0.95, h, CLIENT, "db_collection_name", "{{db_collection_name}}")], unit="s", min_=0)
    b.panel("timeseries", "Pool acquire p95", [hq(0.95, "novaload_db_pool_acquire_duration_seconds", CLIENT)], unit="s", min_=0,
            description="--db-mode direct: time waiting for a pooled connection, separate from query time.")
    b.panel("timeseries", "Pool connections by state", [
        q(f"sum by (state) (novaload_db_pool_connections{{{CLIENT}}})", "{{state}}"),
    ], unit="short", min_=0)
    b.panel("timeseries", "Error rate (failed / all operations)", [
        q(f"novaload:operations:failure_ratio_1m{{{RUNTEST}}}", "{{run_id}}"),
    ], unit="percentunit", min_=0, thresholds=("green", [(0.01, "red")]))
    b.panel("timeseries", "Errors by kind /s", [
        q(zero_or(f"sum by (error_kind) (rate(novaload_errors_total{{{CLIENT}}}[{RI}]))", "test", CLIENT), "{{error_kind}}"),
    ], unit="ops", min_=0)
    checks_panels(b)
    b.row("Server (novacron_* from the target's /metrics)")
    b.panel("timeseries", "Server queries /s by operation and status", [
        q(f"sum by (operation, status) (rate(novacron_database_queries_total{{{TARGET}}}[{RI}]))", "{{operation}} {{status}}"),
    ], unit="short", min_=0)
    b.panel("timeseries", "Server query p95 by operation", [
        hq(0.95, "novacron_database_query_duration_seconds", TARGET, "operation", "{{operation}}"),
    ], unit="s", min_=0)
    b.panel("timeseries", "Server pool", [
        q(f"sum(novacron_database_connections_active{{{TARGET}}})", "in use"),
        q(f"sum(novacron_database_connection_pool_size{{{TARGET}}})", "open"),
    ], unit="short", min_=0)
    b.panel("timeseries", "VMs stored by state", [
        q(f"sum by (state) (novacron_vms_total{{{TARGET}}})", "{{state}}"),
    ], unit="short", min_=0)
    generator_row(b)
    return b.json(variables("db"), ["db"])


def compare():
    b = Board("novaload-run-compare", "novaload / Run comparison",
              "Compare runs by run_id: whole-range figures per run and test (set the time range to cover the runs).")
    rng = "$__range"
    sel = 'run_id=~"$run_id",test=~"$test"'
    b.row("Per run and test, over the dashboard's time range")
    merge = [{"id": "merge", "options": {}},
             {"id": "organize", "options": {"excludeByName": {"Time": True},
                                             "renameByName": {"Value #A": "req/s", "Value #B": "p95 (s)",
                                                              "Value #C": "p99 (s)", "Value #D": "error ratio",
                                                              "Value #E": "peak VUs"}}}]
    b.panel("table", "Run summary", [
        q(f"sum by (run_id, test) (increase(http_client_request_duration_seconds_count{{{sel}}}[{rng}])) / $__range_s",
          "", instant=True, format="table"),
        q(f"histogram_quantile(0.95, sum by (run_id, test, le) (increase(http_client_request_duration_seconds_bucket{{{sel}}}[{rng}])))",
          "", instant=True, format="table"),
        q(f"histogram_quantile(0.99, sum by (run_id, test, le) (increase(http_client_request_duration_seconds_bucket{{{sel}}}[{rng}])))",
          "", instant=True, format="table"),
        q(f'(sum by (run_id, test) (increase(novaload_operations_total{{{sel},result="failure"}}[{rng}])) '
          f"or sum by (run_id, test) (increase(novaload_operations_total{{{sel}}}[{rng}])) * 0) "
          f"/ sum by (run_id, test) (increase(novaload_operations_total{{{sel}}}[{rng}]))",
          "", instant=True, format="table"),
        q(f"max_over_time(sum by (run_id, test) (novaload_vus{{{sel}}})[{rng}:])", "", instant=True, format="table"),
    ], w=24, h=10, transformations=merge,
        description="HTTP throughput and latency over the whole range, failure ratio of all operations, peak VUs.")
    b.row("Over time, one line per run")
    b.panel("timeseries", "HTTP p95 by run", [
        q(f"novaload:http_client_request_duration_seconds:p95_1m{{{sel}}}", "{{run_id}} {{test}}"),
    ], unit="s", min_=0, thresholds=("green", [(0.5, "red")]))
    b.panel("timeseries", "HTTP requests /s by run", [
        q(f"novaload:http_client_requests:rate1m{{{sel}}}", "{{run_id}} {{test}}"),
    ], unit="reqps", min_=0)
    b.panel("timeseries", "Error rate by run", [
        q(f"novaload:operations:failure_ratio_1m{{{sel}}}", "{{run_id}} {{test}}"),
    ], unit="percentunit", min_=0)
    b.panel("timeseries", "Operations /s by run", [
        q(f"novaload:operations:rate1m{{{sel}}}", "{{run_id}} {{test}}"),
    ], unit="ops", min_=0)
    b.panel("timeseries", "Migration p95 by run", [
        q(f"novaload:novaload_migration_duration_seconds:p95_5m{{{sel}}}", "{{run_id}}"),
    ], unit="s", min_=0, thresholds=("green", [(30, "red")]))
    b.panel("timeseries", "WebSocket message p95 by run", [
        q(f"novaload:novaload_ws_message_latency_seconds:p95_1m{{{sel}}}", "{{run_id}}"),
    ], unit="s", min_=0, thresholds=("green", [(0.5, "red")]))
    b.panel("timeseries", "DB read p95 by run", [
        q(f"novaload:db_client_operation_duration_seconds:p95_read_1m{{{sel}}}", "{{run_id}}"),
    ], unit="s", min_=0, thresholds=("green", [(0.2, "red")]))
    b.panel("timeseries", "DB write p95 by run", [
        q(f"novaload:db_client_operation_duration_seconds:p95_write_1m{{{sel}}}", "{{run_id}}"),
    ], unit="s", min_=0, thresholds=("green", [(0.5, "red")]))
    return b.json(variables(with_target=False), ["compare"])


BOARDS = {
    "novaload-overview.json": overview,
    "novaload-api.json": api,
    "novaload-dwcp.json": dwcp,
    "novaload-ws.json": ws,
    "novaload-db.json": db,
    "novaload-run-compare.json": compare,
}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, build in BOARDS.items():
        text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        path = HERE / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale dashboards (run python3 dashboards/generate.py): " + ", ".join(stale), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
