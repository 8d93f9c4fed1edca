//! A collector that accepts connections and never answers (a "black hole"), or accepts and
//! resets them, over gRPC and HTTP/protobuf: `novaload run` (the real binary, so its stderr can
//! be read) still passes, prints no panic, ends within its duration plus the telemetry shutdown
//! budget, and its summary's telemetry section reports what failed and was dropped.

use crate::support::dead_collector::{Behaviour, DeadCollector};
use crate::support::http_server;
use crate::support::runs::results_folder;

use std::path::Path;
use std::time::{Duration, Instant};

/// The run's `--duration`.
const DURATION_S: u64 = 2;
/// Duration + the 2 s telemetry shutdown budget and its grace + process start and results
/// writing on a loaded 2-core debug build. Before the fix such a run took ~8 s.
const WALL_LIMIT: Duration = Duration::from_secs(7);
/// The subprocess is killed after this, so a hang fails the test instead of stalling it.
const KILL_AFTER: Duration = Duration::from_secs(60);

/// One of these novaload processes at a time: the wall-time bound is about novaload, not about
/// these runs competing with each other for the two cores (other modules' tests of this binary
/// still run alongside).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Run {
    code: Option<i32>,
    took: Duration,
    stderr: String,
    summary: serde_json::Value,
}

async fn run_against(collector: &DeadCollector, protocol: &str) -> Run {
    let _one = SERIAL.lock().await;
    let target = http_server::start(None).await;
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_novaload"))
        .args(["run", "--url", &format!("http://{}/", target.addr)])
        .args(["--vus", "2", "--duration", &format!("{DURATION_S}s")])
        .args(["--otlp-endpoint", &collector.endpoint()])
        .args(["--otlp-protocol", protocol, "--quiet", "--out"])
        .arg(out.path())
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_TRACES_SAMPLER")
        .env_remove("OTEL_TRACES_SAMPLER_ARG")
        .env_remove("NOVALOAD_RUN_ID")
        .env_remove("NOVALOAD_METRICS_LISTEN")
        .env("RUST_BACKTRACE", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(KILL_AFTER, child)
        .await
        .unwrap_or_else(|_| panic!("novaload did not end within {KILL_AFTER:?}"))
        .expect("run novaload");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let summary = read_summary(out.path()).unwrap_or_else(|e| panic!("{e}; stderr:\n{stderr}"));
    Run {
        code: output.status.code(),
        took,
        stderr,
        summary,
    }
}

/// The `*_summary.json` of the one results folder under `out`.
fn read_summary(out: &Path) -> Result<serde_json::Value, String> {
    let folder = results_folder(out)?;
    let file = std::fs::read_dir(&folder)
        .map_err(|e| format!("reading {}: {e}", folder.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("_summary.json"))
        .ok_or_else(|| format!("no *_summary.json in {}", folder.display()))?;
    let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))
}

async fn dead_collector_run(behaviour: Behaviour, protocol: &str) {
    let collector = DeadCollector::start(behaviour);
    let r = run_against(&collector, protocol).await;
    let what = format!("{behaviour:?} collector over {protocol}");
    assert!(
        !r.stderr.to_lowercase().contains("panic"),
        "{what}: panic text on stderr:\n{}",
        r.stderr
    );
    assert_eq!(
        r.code,
        Some(0),
        "{what}: the load itself passes:\n{}",
        r.stderr
    );
    assert!(
        r.took < WALL_LIMIT,
        "{what}: a {DURATION_S}s run took {:?} (limit {WALL_LIMIT:?})",
        r.took
    );
    assert!(
        collector
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "{what}: the exporters never even connected"
    );
    let tel = &r.summary["telemetry"];
    let errors: Vec<&str> = tel["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no telemetry errors in {tel}"))
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert_eq!(tel["spans_exported"], 0, "{what}: {tel}");
    let has = |needle: &str| errors.iter().any(|e| e.contains(needle));
    assert!(has("trace export failed"), "{what}: {errors:?}");
    assert!(
        has("spans failed to export") || tel["spans_dropped"].as_u64().unwrap_or(0) > 0,
        "{what}: the report says no span was lost: {tel}"
    );
    assert!(
        has("metric export failed") && has("histogram export failed"),
        "{what}: both metric exports report failing: {errors:?}"
    );
    eprintln!("{what}: {:?}, telemetry {tel}", r.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_collector_grpc() {
    dead_collector_run(Behaviour::BlackHole, "grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_collector_http_protobuf() {
    dead_collector_run(Behaviour::BlackHole, "http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resetting_collector_grpc() {
    dead_collector_run(Behaviour::Reset, "grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resetting_collector_http_protobuf() {
    dead_collector_run(Behaviour::Reset, "http/protobuf").await;
}
