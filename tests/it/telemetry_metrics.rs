//! `/metrics` on port 0: OpenMetrics with trace-id exemplars when asked, classic text otherwise.

use crate::support::telemetry::{http, labels};
use novaload::error::ErrorKind;
use novaload::metrics::{DbSample, MetricId, Sample};
use novaload::telemetry::{Telemetry, TelemetryConfig};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Plain HTTP/1.1 GET; returns (status line, headers, body).
async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> (String, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap();
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn started() -> Telemetry {
    let t = Telemetry::start(TelemetryConfig {
        run_id: "r1".into(),
        profile: "smoke".into(),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    let l = labels("r1");
    t.test_started(&l, "smoke");
    let vu = t.vu_series(&l);
    let k6 = MetricId(0); // the k6 side is not consumed here
    http(
        &t,
        &vu,
        "GET",
        "/api/vms/{id}",
        200,
        None,
        0.042,
        Some(TRACE),
    );
    http(&t, &vu, "GET", "/api/vms/{id}", 200, None, 0.003, None);
    let connect = Some(ErrorKind::Connect);
    http(&t, &vu, "POST", "/api/vms", 0, connect, 1.5, None);
    let samples = [
        Sample::Check {
            name: "status is 200",
            ok: true,
        },
        Sample::Check {
            name: "status is 200",
            ok: false,
        },
        Sample::Vus {
            active: 10,
            max: 20,
        },
        Sample::Iteration {
            duration: Duration::from_millis(250),
            corrected: None,
            trace: None,
        },
        Sample::WsOpen {
            gauge: k6,
            open: 3.0,
            delta: 3,
        },
        Sample::WsOpen {
            gauge: k6,
            open: 2.0,
            delta: -1,
        },
        Sample::Migration {
            result: "completed",
            counter: k6,
            duration: Some((k6, 12_000.0)),
            trace: None,
        },
        Sample::Db(&DbSample {
            system: "postgresql",
            operation: "SELECT",
            collection: "vms",
            error: None,
            seconds: 0.002,
            trace: None,
            counted_as: None,
        }),
        Sample::DbPool {
            acquire: k6,
            seconds: 0.0001,
            idle: 3,
            in_use: 2,
        },
    ];
    for s in &samples {
        t.consume(&vu, s);
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_scrape_has_labels_and_exemplar() {
    let t = started().await;
    let addr = t.metrics_addr().expect("bound address");
    assert_ne!(addr.port(), 0);
    let (status, headers, body) = get(
        addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    )
    .await;
    assert!(status.contains("200"), "{status}");
    assert!(
        headers.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    // The 0.042 s observation falls in the 0.05 bucket and carries the exemplar.
    let bucket = body
        .lines()
        .find(|l| {
            l.starts_with("http_client_request_duration_seconds_bucket{")
                && l.contains("le=\"0.05\"")
                && l.contains("http_request_method=\"GET\"")
        })
        .unwrap_or_else(|| panic!("no 0.05 bucket in\n{body}"));
    for label in [
        "run_id=\"r1\"",
        "test=\"api\"",
        "scenario=\"default\"",
        "url_template=\"/api/vms/{id}\"",
        "http_response_status_code=\"200\"",
        "status_class=\"2xx\"",
    ] {
        assert!(bucket.contains(label), "{label} missing in {bucket}");
    }
    assert!(
        !bucket.contains("error_kind"),
        "empty error_kind is omitted: {bucket}"
    );
    assert!(
        bucket.contains(&format!("# {{trace_id=\"{TRACE}\"}} 0.042")),
        "exemplar missing: {bucket}"
    );
    // Exactly one exemplar: the unsampled observation made none.
    assert_eq!(body.matches("trace_id=").count(), 1, "{body}");
    // Failed request: status 0, class error, error kind label, errors counter.
    assert!(
        body.contains(
            "http_response_status_code=\"0\",status_class=\"error\",error_kind=\"connect\""
        ),
        "{body}"
    );
    assert!(body.contains("novaload_errors_total{run_id=\"r1\",test=\"api\",scenario=\"default\",operation=\"/api/vms\",error_kind=\"connect\"} 1"), "{body}");
    assert!(body.contains("novaload_operations_total{run_id=\"r1\",test=\"api\",scenario=\"default\",operation=\"/api/vms/{id}\",result=\"success\"} 2"), "{body}");
    assert!(body.contains("novaload_checks_total{run_id=\"r1\",test=\"api\",scenario=\"default\",check=\"status is 200\",result=\"fail\"} 1"), "{body}");
    assert!(
        body.contains("novaload_vus{run_id=\"r1\",test=\"api\",scenario=\"default\"} 10"),
        "{body}"
    );
    assert!(
        body.contains("novaload_vus_max{run_id=\"r1\",test=\"api\",scenario=\"default\"} 20"),
        "{body}"
    );
    assert!(
        body.contains(
            "novaload_ws_connections_active{run_id=\"r1\",test=\"api\",scenario=\"default\"} 2"
        ),
        "{body}"
    );
    assert!(body.contains("novaload_migrations_total{run_id=\"r1\",test=\"api\",scenario=\"default\",result=\"completed\"} 1"), "{body}");
    assert!(body.contains("db_client_operation_duration_seconds_count{run_id=\"r1\",test=\"api\",scenario=\"default\",db_system_name=\"postgresql\",db_operation_name=\"SELECT\",db_collection_name=\"vms\"} 1"), "{body}");
    assert!(body.contains("novaload_db_pool_connections{run_id=\"r1\",test=\"api\",scenario=\"default\",state=\"in_use\"} 2"), "{body}");
    assert!(
        body.contains(&format!(
            "novaload_run_info{{run_id=\"r1\",test=\"api\",profile=\"smoke\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{body}"
    );
    assert!(
        body.contains("novaload_spans_dropped_total{run_id=\"r1\"} 0"),
        "{body}"
    );
    #[cfg(target_os = "linux")]
    {
        assert!(body.contains("\nprocess_cpu_seconds_total "), "{body}");
        assert!(body.contains("\nprocess_resident_memory_bytes "), "{body}");
    }

    // test_finished removes the run_info series.
    t.test_finished(&labels("r1"));
    let (_, _, body) = get(addr, "/metrics", Some("application/openmetrics-text")).await;
    assert!(!body.contains("novaload_run_info{"), "{body}");

    let (status, _, _) = get(addr, "/nope", None).await;
    assert!(status.contains("404"), "{status}");

    let report = t.shutdown().await;
    assert_eq!(report.metrics_addr, Some(addr.to_string()));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // Stopped: the port no longer answers.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Minimal parser of the classic text format: every non-comment line is
/// `name{labels} value`, every sample's family has a TYPE line first.
fn parse_classic(body: &str) -> Vec<(String, f64)> {
    let mut typed = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap().to_owned();
            let ty = it.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&ty), "{line}");
            typed.insert(name);
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            assert!(
                line.starts_with("# HELP ") || line.is_empty(),
                "unexpected comment: {line}"
            );
            continue;
        }
        assert!(!line.contains(" # "), "exemplar in classic text: {line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| typed.contains(*f))
            .unwrap_or(name);
        assert!(typed.contains(family), "sample before its TYPE: {line}");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        out.push((series.to_owned(), v));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_scrape_parses_without_exemplars() {
    let t = started().await;
    let addr = t.metrics_addr().unwrap();
    let (status, headers, body) = get(addr, "/metrics", None).await;
    assert!(status.contains("200"));
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    assert!(!body.contains("# EOF"));
    let samples = parse_classic(&body);
    let count = samples
        .iter()
        .filter(|(s, _)| s.starts_with("http_client_request_duration_seconds_count{"))
        .map(|(_, v)| v)
        .sum::<f64>();
    assert_eq!(count, 3.0);
    assert!(
        body.contains("# TYPE novaload_checks_total counter"),
        "{body}"
    );
    let inf = samples
        .iter()
        .find(|(s, _)| {
            s.starts_with("novaload_iteration_duration_seconds_bucket{")
                && s.contains("le=\"+Inf\"")
        })
        .unwrap();
    assert_eq!(inf.1, 1.0);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_address_is_a_start_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let r = Telemetry::start(TelemetryConfig {
        metrics_listen: Some(l.local_addr().unwrap()),
        ..Default::default()
    })
    .await;
    let err = r.err().expect("bind must fail").to_string();
    assert!(err.contains("--metrics-listen"), "{err}");
}
