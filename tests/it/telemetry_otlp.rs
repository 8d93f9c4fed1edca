//! OTLP export against a real receiver (PyPI `rotel`, its agent binary printing what it gets),
//! over gRPC and HTTP/protobuf; and with the receiver down (every connection reset): recording
//! stays non-blocking, shutdown is bounded, drops and errors are reported. A receiver that
//! accepts and never answers is in `telemetry_dead_collector.rs`.
//!
//! The rotel binary: `$NOVALOAD_TEST_ROTEL`, else `rotel-agent` on PATH, else inside the
//! installed Python package. Missing: the test fails under CI (`CI` set), else it is skipped.

use crate::support::dead_collector::{Behaviour, DeadCollector};
use crate::support::ports::start_on_free_ports;
use crate::support::telemetry::{http, labels};
use crate::support::tools;
use novaload::error::ErrorKind;
use novaload::metrics::Sample;
use novaload::telemetry::{AttrValue, SpanKind, Telemetry, TelemetryConfig};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

struct Rotel {
    child: tokio::process::Child,
    out: tempfile::NamedTempFile,
    grpc: u16,
    http: u16,
}

impl Rotel {
    /// Starts rotel on two free ports (it cannot listen on port 0) and returns once it
    /// listens on both (`start_on_free_ports` starts it again elsewhere if a port was taken).
    async fn start(bin: &Path) -> Self {
        let out = tempfile::NamedTempFile::new().unwrap();
        let dir = tempfile::tempdir().unwrap().keep();
        let (child, ports) = start_on_free_ports("rotel", 2, Duration::from_secs(15), |ports| {
            tokio::process::Command::new(bin)
                .args(["start", "--exporter", "blackhole"])
                .args(["--debug-log", "traces", "--debug-log", "metrics"])
                .args(["--debug-log-verbosity", "detailed"])
                .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{}", ports[0])])
                .args(["--otlp-http-endpoint", &format!("127.0.0.1:{}", ports[1])])
                .arg("--pid-file")
                .arg(dir.join("rotel.pid"))
                .arg("--log-file")
                .arg(dir.join("rotel.log"))
                .env("NO_COLOR", "1")
                .stdout(Stdio::from(out.reopen().unwrap()))
                .stderr(Stdio::from(out.reopen().unwrap()))
                .kill_on_drop(true)
                .spawn()
                .expect("spawn rotel")
        });
        Self {
            child,
            out,
            grpc: ports[0],
            http: ports[1],
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    /// Waits until every needle appears in rotel's output.
    async fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = self.output();
            if needles.iter().all(|n| out.contains(n)) {
                return out;
            }
            if Instant::now() > deadline {
                let missing: Vec<_> = needles.iter().filter(|n| !out.contains(**n)).collect();
                panic!(
                    "rotel never printed {missing:?}; output:\n{}",
                    &out[out.len().saturating_sub(6000)..]
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn exercise(
    endpoint: String,
    protocol: &str,
) -> (novaload::telemetry::TelemetryReport, Vec<String>) {
    let t = Telemetry::start(TelemetryConfig {
        run_id: "otlp-run".into(),
        profile: "smoke".into(),
        otlp_endpoint: Some(endpoint),
        otlp_protocol: protocol.into(),
        traces: true,
        sample_ratio: 1.0,
        metrics_interval: Duration::from_millis(300),
        ..Default::default()
    })
    .await
    .unwrap();
    let l = labels("otlp-run");
    let vu = t.vu_series(&l);
    let mut trace_ids = Vec::new();
    for i in 0..20 {
        let iter = t.iteration_span(&l, 1, i);
        let req = t.child_span(
            &iter,
            "GET /api/vms",
            SpanKind::Client,
            &[("url.template", AttrValue::Static("/api/vms"))],
        );
        let trace = req.sampled_trace_id();
        http(
            &t,
            &vu,
            "GET",
            "/api/vms",
            200,
            None,
            0.01,
            trace.as_deref(),
        );
        trace_ids.extend(trace.map(|t| t.to_string()));
        req.end(None);
        iter.end(None);
    }
    let check = Sample::Check {
        name: "status is 200",
        ok: true,
    };
    t.consume(&vu, &check);
    // Let at least one periodic metric export happen before shutdown's final one.
    tokio::time::sleep(Duration::from_millis(700)).await;
    (t.shutdown().await, trace_ids)
}

async fn roundtrip(protocol: &str) {
    let Some(bin) = tools::rotel() else { return };
    let rotel = Rotel::start(&bin).await;
    let endpoint = match protocol {
        "grpc" => format!("http://127.0.0.1:{}", rotel.grpc),
        _ => format!("http://127.0.0.1:{}", rotel.http),
    };
    let (report, trace_ids) = exercise(endpoint, protocol).await;
    assert!(report.errors.is_empty(), "{protocol}: {:?}", report.errors);
    assert_eq!(report.spans_exported, 40, "{protocol}: {report:?}");
    assert_eq!(report.spans_dropped, 0);
    let out = rotel
        .wait_for(&[
            "GET /api/vms",
            "iteration",
            "http.client.request.duration",
            "novaload.checks",
            "otlp-run",
            trace_ids[0].as_str(),
        ])
        .await;
    drop(rotel.child);
    let _ = out;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_spans_and_metrics_arrive() {
    roundtrip("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_protobuf_spans_and_metrics_arrive() {
    roundtrip("http/protobuf").await;
}

async fn dead_collector(protocol: &str) {
    // every connection is reset at once: a collector that is down
    let collector = DeadCollector::start(Behaviour::Reset);
    let t = Telemetry::start(TelemetryConfig {
        run_id: "dead".into(),
        otlp_endpoint: Some(collector.endpoint()),
        otlp_protocol: protocol.into(),
        traces: true,
        sample_ratio: 1.0,
        metrics_interval: Duration::from_millis(200),
        span_queue_size: 512,
        span_batch_size: 128,
        export_timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .await
    .unwrap();
    let l = labels("otlp-run");
    let vu = t.vu_series(&l);
    let t0 = Instant::now();
    for i in 0..20_000u64 {
        let iter = t.iteration_span(&l, 1, i);
        let req = t.child_span(&iter, "GET /api/vms", SpanKind::Client, &[]);
        let err = (i % 10 == 0).then_some(ErrorKind::Connect);
        http(
            &t,
            &vu,
            "GET",
            "/api/vms",
            200,
            err,
            0.01,
            req.sampled_trace_id().as_deref(),
        );
        req.end(None);
        iter.end(None);
    }
    let recording = t0.elapsed();
    // Liveness bound (debug build, 2 cores), not a performance assertion.
    assert!(
        recording < Duration::from_secs(10),
        "recording blocked: {recording:?}"
    );
    assert!(
        t.spans_dropped() > 0,
        "a 512-span queue must overflow with 40,000 spans"
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // a periodic metric export fails
    let t1 = Instant::now();
    let report = t.shutdown().await;
    let took = t1.elapsed();
    // the default shutdown budget (2 s) and its grace, with slack for a loaded debug build
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    assert!(report.spans_dropped > 0, "{report:?}");
    assert_eq!(report.spans_exported, 0, "{report:?}");
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("trace export failed")),
        "{:?}",
        report.errors
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("metric export failed") || e.contains("metric shutdown")),
        "{:?}",
        report.errors
    );
    eprintln!("{protocol}: recorded in {recording:?}, shutdown in {took:?}, report {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_collector_grpc_never_blocks() {
    dead_collector("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_collector_http_never_blocks() {
    dead_collector("http/protobuf").await;
}
