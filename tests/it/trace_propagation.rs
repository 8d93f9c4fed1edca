//! Observability end to end: novaload's client spans and the reference target's server spans
//! land in one trace — the server span's parent is novaload's client span — for REST (api),
//! DWCP (POST and polls under the migration span, plus the stream handshake).

use crate::support::spans::Keep;
use novaload::metrics::Registry;
use novaload::novacron::{self, TargetArgs};
use novaload::plan::{Executor, Scenario};
use novaload::runner::{self, TestRun};
use novaload::telemetry::{Telemetry, TelemetryConfig};
use novaload::workload::endpoints::Endpoints;
use novaload::workload::{ClientSettings, Workload};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::sync::Arc;
use std::time::Duration;

async fn client_telemetry(exporter: Keep) -> Telemetry {
    let cfg = TelemetryConfig {
        run_id: "trace-test".into(),
        profile: "test".into(),
        service_name: "novaload".into(),
        sample_ratio: 1.0,
        traces: true,
        ..TelemetryConfig::default()
    };
    Telemetry::start_with_span_exporter(cfg, exporter)
        .await
        .unwrap()
}

fn one_iteration(test: &str, registry: Registry, tel: &Telemetry) -> TestRun {
    let once = Executor::PerVuIterations {
        vus: 1,
        iterations: 1,
        max_duration: Duration::from_secs(60),
    };
    TestRun {
        settings: ClientSettings {
            tls: None,
            request_timeout: Duration::from_secs(10),
            ..Default::default()
        },
        ..TestRun::new(
            test,
            "trace-test",
            vec![Scenario::new("default", once)],
            registry,
            tel.clone(),
        )
    }
}

/// Runs one iteration of a workload against a fresh target; returns (client spans, server spans).
async fn traced_run<W: Workload>(
    test: &str,
    make: impl FnOnce(Endpoints, &mut Registry) -> W,
) -> (Vec<SpanData>, Vec<SpanData>) {
    let server_exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(server_exporter.clone())
        .build();
    let mut args = TargetArgs::embedded();
    args.migration_time = Duration::from_millis(1500);
    let target = novacron::spawn(args, Some(provider.clone())).await.unwrap();
    let client_exporter = Keep::default();
    let tel = client_telemetry(client_exporter.clone()).await;
    let mut registry = Registry::new();
    let w = make(
        Endpoints::new(&target.base_url(), None, None, Some("secret-token")),
        &mut registry,
    );
    let outcome = runner::run(Arc::new(w), one_iteration(test, registry, &tel)).await;
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let report = tel.shutdown().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let _ = provider.force_flush();
    target.shutdown().await.unwrap();
    (
        client_exporter.get_finished_spans().unwrap(),
        server_exporter.get_finished_spans().unwrap(),
    )
}

/// Asserts a server span named `server_name` whose parent is a client span named `client_name`.
fn assert_joined(client: &[SpanData], server: &[SpanData], client_name: &str, server_name: &str) {
    let c = client
        .iter()
        .find(|s| s.name == client_name)
        .unwrap_or_else(|| {
            panic!(
                "no client span {client_name}: {:?}",
                client.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    let joined = server.iter().any(|s| {
        s.name == server_name
            && s.span_context.trace_id() == c.span_context.trace_id()
            && s.parent_span_id == c.span_context.span_id()
    });
    assert!(
        joined,
        "no server span {server_name} under client span {client_name}; server spans: {:?}",
        server
            .iter()
            .map(|s| (&s.name, s.span_context.trace_id(), s.parent_span_id))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requests_join_the_targets_traces() {
    let (client, server) = traced_run("api", novaload::workload::api::ApiWorkload::new).await;
    let iteration = client
        .iter()
        .find(|s| s.name == "iteration")
        .expect("iteration span");
    let list = client.iter().find(|s| s.name == "GET /api/v1/vms").unwrap();
    assert_eq!(
        list.parent_span_id,
        iteration.span_context.span_id(),
        "requests are children of the iteration"
    );
    assert_eq!(list.span_kind, opentelemetry::trace::SpanKind::Client);
    assert!(
        list.attributes
            .iter()
            .any(|kv| kv.key.as_str() == "url.template" && kv.value.as_str() == "/api/v1/vms")
    );
    assert!(
        list.attributes
            .iter()
            .any(|kv| kv.key.as_str() == "http.response.status_code")
    );
    assert_joined(&client, &server, "GET /api/v1/vms", "GET /api/v1/vms");
    assert_joined(&client, &server, "POST /api/v1/vms", "POST /api/v1/vms");
    assert_joined(
        &client,
        &server,
        "DELETE /api/v1/vms/{id}",
        "DELETE /api/v1/vms/{id}",
    );
    // the token never lands in a span
    for s in client.iter().chain(server.iter()) {
        for kv in &s.attributes {
            assert!(
                !kv.value.as_str().contains("secret-token"),
                "token leaked into {}",
                s.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_is_one_span_with_phase_events_and_its_polls_as_children() {
    let (client, server) = traced_run("dwcp", |ep, reg| {
        let mut w = novaload::workload::dwcp::DwcpWorkload::new(ep, reg);
        w.stream_for = Duration::from_millis(500);
        w.poll_every = Duration::from_millis(250);
        w
    })
    .await;
    let migration = client
        .iter()
        .find(|s| s.name == "dwcp.migration")
        .expect("migration span");
    assert!(
        migration
            .events
            .iter()
            .filter(|e| e.name == "phase")
            .count()
            >= 2,
        "phase events: {:?}",
        migration.events
    );
    let polls: Vec<_> = client
        .iter()
        .filter(|s| s.name == "GET /api/v1/dwcp/migrations/{job_id}")
        .collect();
    assert!(!polls.is_empty());
    assert!(
        polls
            .iter()
            .all(|p| p.parent_span_id == migration.span_context.span_id())
    );
    assert_joined(
        &client,
        &server,
        "POST /api/v1/dwcp/migrations",
        "POST /api/v1/dwcp/migrations",
    );
    let stream = client
        .iter()
        .find(|s| s.name == "WS /dwcp/v3/stream")
        .expect("stream span");
    assert!(
        server.iter().any(
            |s| s.span_context.trace_id() == stream.span_context.trace_id()
                && s.parent_span_id == stream.span_context.span_id()
        ),
        "the stream handshake's server span joins the client's: {:?}",
        server.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
}
