//! Hot-path cost per request (ignored by default; run it alone, ideally in release:
//! `cargo test --release --test it telemetry_overhead -- --ignored --nocapture`). Prints ns per HTTP sample consumed by the live instruments on a VU's series
//! (+ `child_span`/`end` with 100% sampling into a discarding exporter). At 50k req/s on 2 cores a request has 40 µs of CPU; 5% is 2 µs.

use crate::support::telemetry::{http, labels};
use novaload::telemetry::{AttrValue, SpanKind, Telemetry, TelemetryConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::time::Instant;

#[derive(Debug)]
struct Discard;
impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

fn per_op(t: &Telemetry, n: u32, spans: bool) -> f64 {
    let l = labels("bench");
    let vu = t.vu_series(&l);
    let iter = t.iteration_span(&l, 1, 1);
    let start = Instant::now();
    for i in 0..n {
        let trace = if spans {
            let mut s = t.child_span(
                &iter,
                "GET /api/vms",
                SpanKind::Client,
                &[
                    ("http.request.method", AttrValue::Static("GET")),
                    ("url.template", AttrValue::Static("/api/vms")),
                ],
            );
            let tp = s.traceparent();
            s.set_attribute("http.response.status_code", AttrValue::I64(200));
            let id = s.sampled_trace_id();
            s.end(None);
            std::hint::black_box(tp);
            id
        } else {
            None
        };
        let template = if i % 4 == 0 {
            "/api/vms"
        } else {
            "/api/vms/{id}"
        };
        http(
            t,
            &vu,
            "GET",
            template,
            200,
            None,
            0.001 * f64::from(i % 100),
            trace.as_deref(),
        );
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn hot_path_cost() {
    let n = 200_000;
    let off = Telemetry::disabled();
    let metrics = Telemetry::start(TelemetryConfig::default()).await.unwrap();
    let spans = Telemetry::start_with_span_exporter(
        TelemetryConfig {
            traces: true,
            sample_ratio: 1.0,
            ..Default::default()
        },
        Discard,
    )
    .await
    .unwrap();
    per_op(&metrics, 10_000, false); // warm caches
    println!(
        "disabled:          {:8.1} ns/request",
        per_op(&off, n, false)
    );
    println!(
        "metrics only:      {:8.1} ns/request",
        per_op(&metrics, n, false)
    );
    println!(
        "metrics + spans:   {:8.1} ns/request",
        per_op(&spans, n, true)
    );
    let r = spans.shutdown().await;
    println!(
        "spans exported {} dropped {}",
        r.spans_exported, r.spans_dropped
    );
}
