//! Spans through the real pipeline (queue processor → exporter) into the SDK's in-memory
//! exporter: parent/child links, attributes, status, W3C headers, sampling.

use crate::support::spans::{Keep, attr};
use novaload::telemetry::{AttrValue, RunLabels, SpanKind, Telemetry, TelemetryConfig};
use opentelemetry::trace::{SpanKind as OtelKind, Status};

fn labels() -> RunLabels {
    RunLabels {
        scenario: "smoke load".into(),
        ..crate::support::telemetry::labels("run-42")
    }
}

fn cfg(ratio: f64) -> TelemetryConfig {
    TelemetryConfig {
        run_id: "run-42".into(),
        profile: "smoke".into(),
        traces: true,
        sample_ratio: ratio,
        ..Default::default()
    }
}

/// Parses `00-<32 hex>-<16 hex>-<2 hex>` strictly.
fn parse_traceparent(tp: &str) -> (String, String, u8) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00");
    let hex = |s: &str, n: usize| {
        assert_eq!(s.len(), n, "{tp}");
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{tp}"
        );
        assert!(s.bytes().any(|b| b != b'0'), "all-zero id in {tp}");
    };
    hex(parts[1], 32);
    hex(parts[2], 16);
    assert_eq!(parts[3].len(), 2);
    (
        parts[1].to_owned(),
        parts[2].to_owned(),
        u8::from_str_radix(parts[3], 16).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iteration_and_client_span_link_and_carry_attributes() {
    let exporter = Keep::default();
    let t = Telemetry::start_with_span_exporter(cfg(1.0), exporter.clone())
        .await
        .unwrap();
    let l = labels();
    let iter = t.iteration_span(&l, 7, 3);
    let mut req = t.child_span(
        &iter,
        "GET /api/vms/{id}",
        SpanKind::Client,
        &[
            ("http.request.method", AttrValue::Static("GET")),
            ("url.template", AttrValue::Static("/api/vms/{id}")),
            ("server.address", AttrValue::Str("127.0.0.1".into())),
            ("server.port", AttrValue::I64(8090)),
        ],
    );
    req.set_attribute("http.response.status_code", AttrValue::I64(500));
    req.set_attribute("error.type", AttrValue::Static("500"));
    req.add_event("retry", &[("attempt", AttrValue::I64(1))]);

    let tp = req.traceparent().expect("traceparent when tracing is on");
    let (tid, sid, flags) = parse_traceparent(&tp);
    assert_eq!(flags, 1, "sampled flag");
    assert_eq!(req.sampled_trace_id().as_deref(), Some(tid.as_str()));
    assert_eq!(iter.sampled_trace_id().as_deref(), Some(tid.as_str()));
    assert_eq!(req.tracestate(), None);
    assert_eq!(
        req.baggage().unwrap(),
        "novaload.run_id=run-42,novaload.test=api,novaload.scenario=smoke%20load"
    );
    req.end(Some("status 500"));
    iter.end(None);

    let report = t.shutdown().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.spans_exported, report.spans_dropped), (2, 0));

    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 2);
    let root = spans.iter().find(|s| s.name == "iteration").unwrap();
    let child = spans
        .iter()
        .find(|s| s.name == "GET /api/vms/{id}")
        .unwrap();
    // Links: same trace, child's parent is the iteration span; the root has no parent.
    assert_eq!(root.span_context.trace_id(), child.span_context.trace_id());
    assert_eq!(child.parent_span_id, root.span_context.span_id());
    assert_eq!(root.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    assert!(!child.parent_span_is_remote);
    // The traceparent names exactly the exported client span.
    assert_eq!(child.span_context.trace_id().to_string(), tid);
    assert_eq!(child.span_context.span_id().to_string(), sid);
    // Kinds, attributes, status.
    assert_eq!(root.span_kind, OtelKind::Internal);
    assert_eq!(child.span_kind, OtelKind::Client);
    assert_eq!(attr(root, "novaload.test").as_deref(), Some("api"));
    assert_eq!(
        attr(root, "novaload.scenario").as_deref(),
        Some("smoke load")
    );
    assert_eq!(attr(root, "novaload.vu").as_deref(), Some("7"));
    assert_eq!(attr(root, "novaload.iteration").as_deref(), Some("3"));
    assert_eq!(attr(root, "novaload.run_id").as_deref(), Some("run-42"));
    assert_eq!(attr(child, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        attr(child, "url.template").as_deref(),
        Some("/api/vms/{id}")
    );
    assert_eq!(attr(child, "server.port").as_deref(), Some("8090"));
    assert_eq!(
        attr(child, "http.response.status_code").as_deref(),
        Some("500")
    );
    assert_eq!(child.status, Status::error("status 500"));
    assert_eq!(root.status, Status::Unset);
    assert_eq!(child.events.events.len(), 1);
    // The resource carries the run metadata.
    let res = exporter.resource().expect("resource set");
    let get = |k: &'static str| {
        res.get(&opentelemetry::Key::from_static_str(k))
            .map(|v| v.to_string())
    };
    assert_eq!(get("service.name").as_deref(), Some("novaload"));
    assert_eq!(get("novaload.run_id").as_deref(), Some("run-42"));
    assert_eq!(get("novaload.profile").as_deref(), Some("smoke"));
    assert_eq!(
        get("service.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratio_zero_exports_nothing_and_never_offers_an_exemplar() {
    let exporter = Keep::default();
    let t = Telemetry::start_with_span_exporter(cfg(0.0), exporter.clone())
        .await
        .unwrap();
    let l = labels();
    for i in 0..50 {
        let iter = t.iteration_span(&l, 1, i);
        let req = t.child_span(&iter, "GET /x", SpanKind::Client, &[]);
        assert!(req.sampled_trace_id().is_none());
        // Still propagated (so the server can join or decide), but with the sampled flag off.
        let (_, _, flags) = parse_traceparent(&req.traceparent().unwrap());
        assert_eq!(flags, 0);
        req.end(None);
        iter.end(None);
    }
    let report = t.shutdown().await;
    assert_eq!(report.spans_exported, 0);
    assert!(exporter.get_finished_spans().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_off_means_no_op_spans() {
    let exporter = Keep::default();
    let mut c = cfg(1.0);
    c.traces = false;
    let t = Telemetry::start_with_span_exporter(c, exporter.clone())
        .await
        .unwrap();
    let s = t.iteration_span(&labels(), 1, 1);
    let c = t.child_span(&s, "x", SpanKind::Internal, &[]);
    assert!(c.traceparent().is_none() && c.baggage().is_none() && c.sampled_trace_id().is_none());
    c.end(Some("x"));
    s.end(None);
    t.shutdown().await;
    assert!(exporter.get_finished_spans().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_queue_counts_drops() {
    let exporter = Keep::default();
    let mut c = cfg(1.0);
    c.span_queue_size = 16;
    c.span_batch_size = 16;
    let t = Telemetry::start_with_span_exporter(c, exporter.clone())
        .await
        .unwrap();
    let l = labels();
    for i in 0..5_000 {
        t.iteration_span(&l, 1, i).end(None);
    }
    let scrape = t.render_metrics();
    let report = t.shutdown().await;
    let exported = exporter.get_finished_spans().unwrap().len() as u64;
    assert_eq!(report.spans_exported, exported);
    assert!(report.spans_dropped > 0, "{report:?}");
    assert_eq!(report.spans_exported + report.spans_dropped, 5_000);
    assert!(
        scrape.contains("novaload_spans_dropped_total{run_id=\"run-42\"}"),
        "{scrape}"
    );
}
