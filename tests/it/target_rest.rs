//! REST surface of `novaload target` over real HTTP, on SQLite and PostgreSQL: every route the
//! upstream API and DB tests call, the 400/404/204 contract, JWT auth, faults, `/metrics` and
//! server spans.
use std::time::{Duration, Instant};

use crate::support::spans::attr;
use crate::support::target::*;
use novaload::novacron::{TargetArgs, Workers, auth::sign_hs256};
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::json;

fn assert_field(r: &Resp, field: &str) {
    assert_eq!(r.status, 400, "expected 400 for {field}: {}", r.text());
    let j = r.json();
    assert_eq!(j["field"], json!(field), "{j}");
    assert!(j["error"].is_string() && j["fix"].is_string(), "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_routes_on_every_backend() {
    for backend in backends() {
        let t = start(&backend, TargetArgs::embedded(), None).await;
        vm_routes(&t.base).await;
        t.stop().await;
        eprintln!("ok: {backend:?}");
    }
}

async fn vm_routes(base: &str) {
    // Health, without any header (k6 setup() sends none).
    for path in ["/health", "/api/v1/health"] {
        let r = call("GET", &format!("{base}{path}"), None, &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["status"], "healthy");
    }

    // List: {"data": [...]} with paging and totals.
    let r = get(base, "/api/v1/vms").await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["data"].as_array().unwrap().len(), 50);
    assert_eq!(j["total"], 1000);
    assert_eq!(
        (j["limit"].clone(), j["offset"].clone()),
        (json!(50), json!(0))
    );

    let r = get(base, "/api/v1/vms?offset=20&limit=10").await;
    let page = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(page.len(), 10);
    let r = get(base, "/api/v1/vms?limit=30").await;
    assert_eq!(r.json()["data"][20], page[0], "offset 20 is item 20");
    assert_eq!(
        get(base, "/api/v1/vms?limit=5000").await.json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1000
    );

    let r = get(
        base,
        "/api/v1/vms?include=metrics,tags,network&zone=us-west-1&status=running&sort=created_at&order=desc&limit=100",
    )
    .await;
    assert_eq!(r.status, 200);
    let data = r.json()["data"].as_array().unwrap().clone();
    assert!(!data.is_empty());
    let mut last = String::from("~");
    for vm in &data {
        assert_eq!(vm["zone"], "us-west-1");
        assert_eq!(vm["state"], "running");
        assert!(vm["metrics"]["cpu_usage"].is_number() && vm["network"]["ip_address"].is_string());
        assert!(vm["tags"].is_array());
        let c = vm["created_at"].as_str().unwrap().to_owned();
        assert!(c <= last, "created_at descending");
        last = c;
    }
    let names: Vec<String> = get(base, "/api/v1/vms?sort=name&order=asc&limit=20")
        .await
        .json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_field(&get(base, "/api/v1/vms?sort=password;drop").await, "sort");
    assert_field(&get(base, "/api/v1/vms?order=sideways").await, "order");
    assert_field(&get(base, "/api/v1/vms?limit=abc").await, "limit");
    assert_field(&get(base, "/api/v1/vms?offset=-1").await, "offset");
    assert_field(&get(base, "/api/v1/vms?include=secrets").await, "include");

    // Seeded ids 1..1000 resolve; others 404 JSON.
    let r = get(base, "/api/v1/vms/1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], "1");
    let r = get(base, "/api/v1/vms/1001").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "vm not found");
    let r = get(base, "/api/v1/vms/777/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.json()["cpu_usage"].is_number());
    assert_eq!(get(base, "/api/v1/vms/nope/metrics").await.status, 404);

    // Create (API test body), update, delete.
    let r = send(
        "POST",
        base,
        "/api/v1/vms",
        r#"{"name":"test-vm-1700000000000-1","cpu_cores":4,"memory_mb":8192,"disk_gb":100,"image":"ubuntu-22.04","zone":"us-west-1","unknown_field":{"x":1}}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let vm = r.json();
    let id = vm["id"].as_str().unwrap().to_owned();
    assert!(
        id.parse::<u64>().is_err(),
        "new ids never collide with seeded numeric ids"
    );
    assert_eq!(
        (vm["cpu_cores"].clone(), vm["zone"].clone()),
        (json!(4), json!("us-west-1"))
    );
    assert_eq!(
        get(base, &format!("/api/v1/vms/{id}")).await.json()["name"],
        "test-vm-1700000000000-1"
    );

    let r = send(
        "PATCH",
        base,
        &format!("/api/v1/vms/{id}"),
        r#"{"cpu_cores":8,"memory_mb":16384}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.json()["cpu_cores"].clone(), r.json()["memory_mb"].clone()),
        (json!(8), json!(16384))
    );
    assert_eq!(
        r.json()["name"],
        "test-vm-1700000000000-1",
        "PATCH keeps unnamed fields"
    );
    assert_eq!(
        send("PATCH", base, "/api/v1/vms/nope", r#"{"cpu_cores":8}"#)
            .await
            .status,
        404
    );

    // DELETE exactly as k6 sends it: JSON content type, no body.
    let r = call("DELETE", &format!("{base}/api/v1/vms/{id}"), None, K6).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(
        call("DELETE", &format!("{base}/api/v1/vms/{id}"), None, K6)
            .await
            .status,
        404
    );

    // DB test body: tags as an array, then as an object; both round-trip.
    let r = send(
        "POST",
        base,
        "/api/v1/vms",
        r#"{"name":"load-test-vm-1-2","cpu_cores":4,"memory_mb":8192,"disk_gb":100,"image":"ubuntu-22.04","zone":"us-west-1","tags":["load-test","automated"]}"#,
    )
    .await;
    assert_eq!(r.status, 201);
    let lt_id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["tags"], json!(["load-test", "automated"]));
    let r = send(
        "PATCH",
        base,
        &format!("/api/v1/vms/{lt_id}"),
        r#"{"cpu_cores":8,"memory_mb":16384,"tags":["load-test","automated","updated"]}"#,
    )
    .await;
    assert_eq!(
        r.json()["tags"],
        json!(["load-test", "automated", "updated"])
    );
    let r = send(
        "POST",
        base,
        "/api/v1/vms",
        r#"{"name":"obj","tags":{"env":"test"}}"#,
    )
    .await;
    assert_eq!(r.json()["tags"], json!({"env":"test"}));
    // DB test setup() body: no image or zone.
    let r = send(
        "POST",
        base,
        "/api/v1/vms",
        r#"{"name":"seed-vm-0","cpu_cores":2,"memory_mb":4096,"disk_gb":50}"#,
    )
    .await;
    assert_eq!(r.status, 201);

    // 400s name the field.
    assert_field(
        &send("POST", base, "/api/v1/vms", "{not json").await,
        "body",
    );
    assert_field(&send("POST", base, "/api/v1/vms", "").await, "body");
    assert_field(&send("POST", base, "/api/v1/vms", "[1,2]").await, "body");
    assert_field(
        &send(
            "POST",
            base,
            "/api/v1/vms",
            r#"{"name":"x","cpu_cores":"four"}"#,
        )
        .await,
        "cpu_cores",
    );
    assert_field(
        &send("POST", base, "/api/v1/vms", r#"{"name":"x","cpu_cores":0}"#).await,
        "cpu_cores",
    );
    assert_field(
        &send(
            "POST",
            base,
            "/api/v1/vms",
            r#"{"name":"x","memory_mb":1.5}"#,
        )
        .await,
        "memory_mb",
    );
    assert_field(
        &send("POST", base, "/api/v1/vms", r#"{"name":"x","tags":5}"#).await,
        "tags",
    );
    assert_field(
        &send("POST", base, "/api/v1/vms", r#"{"name":"x","tags":[1]}"#).await,
        "tags",
    );
    assert_field(
        &send("POST", base, "/api/v1/vms", r#"{"cpu_cores":2}"#).await,
        "name",
    );
    assert_field(
        &send(
            "POST",
            base,
            "/api/v1/vms",
            r#"{"name":"x","state":"exploded"}"#,
        )
        .await,
        "state",
    );
    assert_field(
        &send("PATCH", base, "/api/v1/vms/1", r#"{"disk_gb":"big"}"#).await,
        "disk_gb",
    );

    // Aggregate and search.
    let r = get(base, "/api/v1/vms/stats/aggregate").await;
    assert_eq!(r.status, 200);
    let a = r.json();
    assert_eq!(a["total_vms"], 1003);
    let by_state: i64 = a["by_state"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    let by_zone: i64 = a["by_zone"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!((by_state, by_zone), (1003, 1003));
    assert!(a["by_zone"]["eu-west-1"].as_i64().unwrap() > 300);
    let r = get(base, "/api/v1/vms/search?q=load-test&limit=50").await;
    assert_eq!(r.status, 200);
    let hits = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["id"], json!(lt_id));
    // LIKE wildcards in q are literal.
    assert_eq!(
        get(base, "/api/v1/vms/search?q=%25").await.json()["data"],
        json!([])
    );

    // Batch: the DB test's fixed names, twice (names are not unique).
    let body = r#"{"operations":[{"action":"create","data":{"name":"batch-vm-1","cpu_cores":2,"memory_mb":4096}},{"action":"create","data":{"name":"batch-vm-2","cpu_cores":2,"memory_mb":4096}},{"action":"create","data":{"name":"batch-vm-3","cpu_cores":2,"memory_mb":4096}}]}"#;
    for _ in 0..2 {
        let r = send("POST", base, "/api/v1/vms/batch", body).await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["results"].as_array().unwrap().len(), 3);
    }
    assert_eq!(
        get(base, "/api/v1/vms/search?q=batch-vm-2").await.json()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Update + delete only → 200.
    let r = send(
        "POST",
        base,
        "/api/v1/vms/batch",
        &json!({"operations":[{"action":"update","id":"5","data":{"cpu_cores":16}},{"action":"delete","id":"6"}]}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(base, "/api/v1/vms/5").await.json()["cpu_cores"], 16);
    assert_eq!(get(base, "/api/v1/vms/6").await.status, 404);
    // A missing id rolls back the whole batch, including its create.
    let r = send(
        "POST",
        base,
        "/api/v1/vms",
        &json!({"operations":[{"action":"create","data":{"name":"rolled-back-vm"}},{"action":"delete","id":"does-not-exist"}]}).to_string(),
    )
    .await;
    assert_eq!(r.status, 400, "operations is not a VM body: name missing");
    let r = send(
        "POST",
        base,
        "/api/v1/vms/batch",
        &json!({"operations":[{"action":"create","data":{"name":"rolled-back-vm"}},{"action":"delete","id":"does-not-exist"}]}).to_string(),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["field"], "operations[1].id");
    assert_eq!(
        get(base, "/api/v1/vms/search?q=rolled-back").await.json()["data"],
        json!([])
    );
    assert_field(
        &send("POST", base, "/api/v1/vms/batch", r#"{"operations":[]}"#).await,
        "operations",
    );
    assert_field(
        &send(
            "POST",
            base,
            "/api/v1/vms/batch",
            r#"{"operations":[{"action":"create","data":{"name":"a","cpu_cores":"x"}}]}"#,
        )
        .await,
        "operations[0].data.cpu_cores",
    );
    assert_field(
        &send(
            "POST",
            base,
            "/api/v1/vms/batch",
            r#"{"operations":[{"action":"explode"}]}"#,
        )
        .await,
        "operations[0].action",
    );
    assert_field(
        &send(
            "POST",
            base,
            "/api/v1/vms/batch",
            r#"{"operations":[{"action":"delete"}]}"#,
        )
        .await,
        "operations[0].id",
    );

    // Unknown routes: JSON 404.
    let r = get(base, "/api/v1/nothing").await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_is_idempotent_and_grows_on_every_backend() {
    for backend in backends() {
        // Same database twice: a SQLite file, or one PostgreSQL database.
        let dir = tempfile::tempdir().unwrap();
        let pg = match &backend {
            Backend::Postgres(admin) => Some(TestDb::create(admin, None).await),
            Backend::Sqlite => None,
        };
        let args = |n: u64| {
            let mut a = TargetArgs::embedded();
            a.seed_vms = n;
            match &pg {
                Some(pg) => a.database_url = Some(pg.url.clone()),
                None => a.sqlite_file = Some(dir.path().join("t.db")),
            }
            a
        };
        for n in [1000, 1000, 2500] {
            let h = novaload::novacron::spawn(args(n), None).await.unwrap();
            let r = get(&h.base_url(), "/api/v1/vms/stats/aggregate").await;
            assert_eq!(r.json()["total_vms"], n, "{backend:?}");
            h.shutdown().await.unwrap();
        }
        if let Some(pg) = pg {
            pg.drop_db().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_secret_requires_valid_hs256_tokens() {
    let mut args = TargetArgs::embedded();
    args.jwt_secret = Some("top-secret".into());
    let t = start(&Backend::Sqlite, args, None).await;
    let url = format!("{}/api/v1/vms/1", t.base);
    let r = call("GET", &url, None, &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "unauthorized");
    assert_eq!(
        call("GET", &url, None, K6).await.status,
        401,
        "test-token-123 is not a JWT"
    );
    let wrong = sign_hs256(b"other-secret", &json!({"sub":"u"}));
    let r = call(
        "GET",
        &url,
        None,
        &[("authorization", &format!("Bearer {wrong}"))],
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(!r.text().contains(&wrong), "tokens are never echoed");
    let expired = sign_hs256(b"top-secret", &json!({"sub":"u","exp": 1_000_000}));
    assert_eq!(
        call(
            "GET",
            &url,
            None,
            &[("authorization", &format!("Bearer {expired}"))]
        )
        .await
        .status,
        401
    );
    let good = sign_hs256(b"top-secret", &json!({"sub":"u","exp": 4_000_000_000u64}));
    assert_eq!(
        call(
            "GET",
            &url,
            None,
            &[("authorization", &format!("Bearer {good}"))]
        )
        .await
        .status,
        200
    );
    // Health never needs auth.
    assert_eq!(
        call("GET", &format!("{}/health", t.base), None, &[])
            .await
            .status,
        200
    );
    // /metrics carries no token or secret.
    let m = call("GET", &format!("{}/metrics", t.base), None, &[])
        .await
        .text();
    assert!(!m.contains("top-secret") && !m.contains(&good));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_latency_errors_and_stalls() {
    // Error rate 1.0: every REST call is a 500 JSON, counted as an API error.
    let mut args = TargetArgs::embedded();
    args.error_rate = 1.0;
    let t = start(&Backend::Sqlite, args, None).await;
    let r = get(&t.base, "/api/v1/vms/1").await;
    assert_eq!(r.status, 500);
    assert!(r.json()["error"].is_string());
    assert_eq!(
        call("GET", &format!("{}/health", t.base), None, &[])
            .await
            .status,
        200
    );
    let m = call("GET", &format!("{}/metrics", t.base), None, &[])
        .await
        .text();
    assert!(
        m.contains(
            r#"novacron_api_errors_total{method="GET",endpoint="/api/v1/vms/{id}",status="500"} 1"#
        ),
        "{m}"
    );
    t.stop().await;

    // Latency 150ms ± 0.
    let mut args = TargetArgs::embedded();
    args.latency = Duration::from_millis(150);
    let t = start(&Backend::Sqlite, args, None).await;
    let s = Instant::now();
    assert_eq!(get(&t.base, "/api/v1/vms/1").await.status, 200);
    assert!(s.elapsed() >= Duration::from_millis(150));
    t.stop().await;

    // Stall 400ms every 1s: some request lands in a stall and waits it out; all succeed.
    let mut args = TargetArgs::embedded();
    args.stall_every = Some(Duration::from_secs(1));
    args.stall_for = Duration::from_millis(400);
    let t = start(&Backend::Sqlite, args, None).await;
    let mut worst = Duration::ZERO;
    let begin = Instant::now();
    while begin.elapsed() < Duration::from_millis(1600) {
        let s = Instant::now();
        assert_eq!(get(&t.base, "/api/v1/vms/1").await.status, 200);
        worst = worst.max(s.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(worst >= Duration::from_millis(250), "worst {worst:?}");
    t.stop().await;
}

#[tokio::test]
async fn invalid_arguments_are_rejected_with_the_flag_named() {
    // several workers without a database share a temporary SQLite file (tests/it/target_workers.rs)
    let mut a = TargetArgs::embedded();
    a.workers = Workers::Count(2);
    assert!(a.validate().is_ok());
    let mut a = TargetArgs::embedded();
    a.stall_every = Some(Duration::from_secs(1));
    a.stall_for = Duration::from_secs(2);
    assert!(
        a.validate()
            .unwrap_err()
            .to_string()
            .contains("--stall-for")
    );
    let mut a = TargetArgs::embedded();
    a.error_rate = 1.5;
    assert!(
        a.validate()
            .unwrap_err()
            .to_string()
            .contains("--error-rate")
    );
    let mut a = TargetArgs::embedded();
    a.database_url = Some("mysql://x".into());
    assert!(
        a.validate()
            .unwrap_err()
            .to_string()
            .contains("--database-url")
    );
    // Secrets never show in Debug output of the auth policy.
    let auth = novaload::novacron::auth::Auth::new(Some("hunter2"));
    assert!(!format!("{auth:?}").contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_spans_join_the_callers_trace_and_exemplars_link_them() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let t = start(
        &Backend::Sqlite,
        TargetArgs::embedded(),
        Some(provider.clone()),
    )
    .await;
    // No traceparent: a new root trace. (First, so the traced request's exemplar is the
    // bucket's latest.)
    get(&t.base, "/api/v1/vms/1").await;
    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().unwrap();
    assert!(
        spans
            .iter()
            .any(|s| s.name == "GET /api/v1/vms/{id}" && s.parent_span_id == SpanId::INVALID)
    );
    exporter.reset();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let tp = format!("00-{trace}-{parent}-01");
    let mut headers = K6.to_vec();
    headers.push(("traceparent", &tp));
    let r = call(
        "GET",
        &format!("{}/api/v1/vms/42?token=abc", t.base),
        None,
        &headers,
    )
    .await;
    assert_eq!(r.status, 200);
    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().unwrap();
    let span = spans
        .iter()
        .find(|s| s.name == "GET /api/v1/vms/{id}")
        .unwrap_or_else(|| {
            panic!(
                "server span missing: {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(trace).unwrap()
    );
    assert_eq!(span.parent_span_id.to_string(), parent);
    assert_eq!(
        attr(span, "http.route").as_deref(),
        Some("/api/v1/vms/{id}")
    );
    assert_eq!(attr(span, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        attr(span, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(span, "url.path").as_deref(),
        Some("/api/v1/vms/42"),
        "no query string (tokens) on spans"
    );

    // OpenMetrics with the exemplar; classic text without.
    let om = call(
        "GET",
        &format!("{}/metrics", t.base),
        None,
        &[("accept", "application/openmetrics-text; version=1.0.0")],
    )
    .await;
    assert!(
        om.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let body = om.text();
    assert!(
        body.contains(&format!("# {{trace_id=\"{trace}\"}}")),
        "{body}"
    );
    assert!(
        body.lines().any(
            |l| l.starts_with("novacron_api_request_duration_seconds_bucket{le=")
                && l.contains(r#"method="GET",endpoint="/api/v1/vms/{id}"} "#)
                && l.contains(&format!("# {{trace_id=\"{trace}\"}}"))
        ),
        "{body}"
    );
    assert!(body.contains(r#"novacron_api_requests_total{method="GET",endpoint="/api/v1/vms/{id}",status="200"} 2"#), "{body}");
    assert!(body.contains(
        "novacron_database_queries_total{operation=\"SELECT\",table=\"vms\",status=\"ok\"}"
    ));
    assert!(body.trim_end().ends_with("# EOF"));
    assert!(
        !body.contains("/api/v1/vms/42"),
        "endpoint label is the template, never the raw path"
    );
    let classic = call("GET", &format!("{}/metrics", t.base), None, &[]).await;
    assert!(
        classic.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = classic.text();
    assert!(
        text.contains("novacron_api_request_duration_seconds_bucket")
            && !text.contains("# {")
            && !text.contains("# EOF")
    );
    t.stop().await;
}
