//! deploy/kubernetes: the Kustomize base renders (resources + common labels, done here since
//! the base uses nothing else) to manifests that pass `kubernetes-validate --strict`, and the
//! distributed-run wiring is consistent: Indexed Job, completions = parallelism =
//! --segment-count, shared results volume, merge Job over the shards' folders, OTLP env.

use crate::support::tools::tool;
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// The rendered base: every resource of kustomization.yaml with its common labels applied.
fn render() -> Vec<Value> {
    let k: Value =
        serde_yaml::from_str(&std::fs::read_to_string(base().join("kustomization.yaml")).unwrap())
            .unwrap();
    assert_eq!(k["kind"], "Kustomization");
    let mut labels = serde_yaml::Mapping::new();
    for l in k["labels"].as_sequence().into_iter().flatten() {
        for (key, v) in l["pairs"].as_mapping().unwrap() {
            labels.insert(key.clone(), v.clone());
        }
    }
    let resources = k["resources"].as_sequence().expect("resources");
    let mut out = Vec::new();
    for r in resources {
        let path = base().join(r.as_str().unwrap());
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let mut v = Value::deserialize(doc).unwrap();
            let meta = v["metadata"].as_mapping_mut().expect("metadata");
            let entry = meta
                .entry("labels".into())
                .or_insert(Value::Mapping(Default::default()));
            for (key, val) in &labels {
                entry
                    .as_mapping_mut()
                    .unwrap()
                    .insert(key.clone(), val.clone());
            }
            out.push(v);
        }
    }
    // every YAML file in the folder is part of the base
    for e in std::fs::read_dir(base()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            assert!(
                resources.iter().any(|r| r.as_str() == Some(name.as_str())),
                "{name} is not listed in kustomization.yaml"
            );
        }
    }
    out
}

use serde::Deserialize;

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} missing"))
}

#[test]
fn rendered_base_passes_kubernetes_validate_strict() {
    let docs = render();
    let Some(kv) = tool(
        "kubernetes-validate",
        "pip install kubernetes-validate==1.37.0",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("rendered.yaml");
    let text = docs
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    std::fs::write(&rendered, text).unwrap();
    let out = Command::new(kv)
        .arg("--strict")
        .arg(&rendered)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate --strict:\n{log}");
    assert_eq!(log.matches("passed").count(), docs.len(), "{log}");
}

#[test]
fn indexed_job_segments_match_and_merge_reads_every_shard() {
    let docs = render();
    let job = find(&docs, "Job", "novaload-shards");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let n = spec["completions"].as_u64().unwrap();
    assert_eq!(spec["parallelism"].as_u64(), Some(n));
    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    let script = c["args"][0].as_str().unwrap();
    assert!(script.contains(&format!("--segment-count {n}")), "{script}");
    assert!(script.contains("--results-dir \"/results/shards/${JOB_COMPLETION_INDEX}\""));
    let env: Vec<&str> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for v in [
        "JOB_COMPLETION_INDEX",
        "NOVALOAD_RUN_ID",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "API_URL",
    ] {
        assert!(env.contains(&v), "{v} not set on the shards");
    }
    // the shard args parse with the real CLI
    use clap::Parser;
    let line: Vec<&str> = script
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .chain(
            script
                .lines()
                .skip(1)
                .take_while(|l| l.trim_end().ends_with('\\') || l.contains("--quiet"))
                .flat_map(|l| l.split_whitespace()),
        )
        .filter(|w| *w != "\\")
        .map(|w| w.trim_matches('"'))
        .collect();
    novaload::cli::Cli::try_parse_from(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let merge = find(&docs, "Job", "novaload-merge");
    let mpod = &merge["spec"]["template"]["spec"];
    let margs = mpod["containers"][0]["args"][0].as_str().unwrap();
    assert!(margs.contains("novaload merge /results/shards/* -o /results/merged"));
    let wait = mpod["initContainers"][0]["args"][0].as_str().unwrap();
    assert!(wait.contains(&format!("want={n}")), "{wait}");
    // both use the shared volume and the ConfigMap exists with a scenario novaload reads
    for p in [pod, mpod] {
        assert_eq!(
            p["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|v| v["name"] == "results")
                .unwrap()["persistentVolumeClaim"]["claimName"],
            "novaload-results"
        );
    }
    let cm = find(&docs, "ConfigMap", "novaload-scenario");
    let scenario = cm["data"]["scenario.json"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("scenario.json");
    std::fs::write(&f, scenario).unwrap();
    let o = novaload::config::Options::from_file(&f).unwrap();
    assert!(!o.scenarios().unwrap().is_empty());
    find(&docs, "PersistentVolumeClaim", "novaload-results");
}
