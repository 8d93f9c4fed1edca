//! `novaload compare` on two real runs against the reference target, the second with 50 ms of
//! injected latency (`TargetArgs::latency`): the p95 regression is reported, and
//! `--fail-on-regression 20` exits 99 — through the library and through the binary.

use novaload::cli::RunArgs;
use novaload::novacron::{self, TargetArgs};
use novaload::session::{self, Stops};
use std::path::{Path, PathBuf};
use std::time::Duration;

async fn run_against(latency: Duration, out: &Path) -> PathBuf {
    let mut t = TargetArgs::embedded();
    t.latency = latency;
    t.seed_vms = 10;
    let handle = novacron::spawn(t, None).await.unwrap();
    let a = RunArgs {
        url: Some(format!("{}/api/v1/vms/1", handle.base_url())),
        method: "GET".into(),
        out: out.to_path_buf(),
        quiet: true,
        timeout: "10s".into(),
        otlp_protocol: "grpc".into(),
        service_name: "novaload".into(),
        vus: Some(4),
        duration: Some("2s".into()),
        no_traces: true,
        ..RunArgs::default()
    };
    let o = session::run(a, Stops::default()).await.unwrap();
    handle.shutdown().await.unwrap();
    o.results_dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_latency_is_a_p95_regression() {
    let base = tempfile::tempdir().unwrap();
    let a = run_against(Duration::ZERO, &base.path().join("a")).await;
    let b = run_against(Duration::from_millis(50), &base.path().join("b")).await;

    let c = novaload::compare::compare_dirs(&a, &b, 10.0).unwrap();
    assert_eq!(c.tests.len(), 1);
    let p95 = c.tests[0]
        .rows
        .iter()
        .find(|r| r.metric == "http_req_duration" && r.stat == "p(95)")
        .expect("p95 compared");
    assert!(p95.b >= 50.0, "B's p95 {} includes the 50 ms", p95.b);
    assert!(p95.regression, "{p95:?}");
    assert!(p95.worse_pct.unwrap() > 100.0);
    // throughput with 4 closed-model VUs drops too
    let rate = c.tests[0]
        .rows
        .iter()
        .find(|r| r.metric == "http_reqs" && r.stat == "rate")
        .unwrap();
    assert!(rate.regression, "{rate:?}");
    assert!(c.exceeds(20.0));
    // the other direction is an improvement, not a regression
    let back = novaload::compare::compare_dirs(&b, &a, 10.0).unwrap();
    assert!(
        !back.exceeds(20.0),
        "B->A is faster: {}",
        novaload::compare::render_text(&back)
    );
    assert!(
        back.tests[0]
            .rows
            .iter()
            .any(|r| r.metric == "http_req_duration" && r.stat == "p(95)" && r.improvement)
    );

    let text = novaload::compare::render_text(&c);
    assert!(
        text.lines()
            .any(|l| l.contains("http_req_duration.p(95)") && l.contains("REGRESSION")),
        "{text}"
    );
    let md = novaload::compare::render_markdown(&c);
    assert!(md.contains("| `http_req_duration` p(95) |") && md.contains("**regression**"));

    // the binary: exit 99 with --fail-on-regression 20, 0 without it
    let bin = env!("CARGO_BIN_EXE_novaload");
    let out = std::process::Command::new(bin)
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .args(["--fail-on-regression", "20"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(99),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("REGRESSION"));
    let out = std::process::Command::new(bin)
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .args(["--format", "markdown"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("# novaload compare"));
    let out = std::process::Command::new(bin)
        .arg("compare")
        .arg(&b)
        .arg(&a)
        .args(["--fail-on-regression", "20"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "faster run is no regression");
}
