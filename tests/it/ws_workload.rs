//! The ws workload against small real WebSocket servers written here: a well-behaved one, one
//! that sends a non-JSON frame, one that sends stale and future timestamps, one that drops the
//! connection without a close frame, one that closes with 1011, one that answers the upgrade
//! with HTTP 404, and a port nobody listens on. Failures carry their kind and reason. Each run goes through the real runner; assertions read the snapshot.

use crate::support::ports::refusing_port;
use crate::support::runs::Run;
use crate::support::spans::Keep;
use futures_util::{SinkExt, StreamExt};
use novaload::metrics::Registry;
use novaload::plan::{Executor, Scenario};
use novaload::report::Verdict;
use novaload::report::summary::{Summary, SummaryMeta};
use novaload::runner::{self, TestRun};
use novaload::telemetry::{Telemetry, TelemetryConfig};
use novaload::thresholds::{self, ThresholdSpec};
use novaload::workload::ws::{WsConfig, WsWorkload, check, metric, now_ms};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Replies to every client frame with a valid frame (timestamps alternate number / ISO),
    /// and sends a WebSocket ping once.
    Good,
    /// Good, plus one non-JSON text frame on open.
    NonJson,
    /// Good, plus one frame 60 s old and one 60 s in the future on open.
    StaleTimestamps,
    /// Reads the three subscribes, then drops the TCP connection (no close frame).
    DropAfterOpen,
    /// Answers the upgrade request with HTTP 404.
    NotFound,
    /// Never replies to a client frame and never closes: sessions end only by the client.
    Silent,
    /// Reads the three subscribes, then closes with 1011 "internal error".
    CloseAbnormally,
}

#[derive(Default)]
struct Conn {
    peer: Option<SocketAddr>,
    uri: String,
    authorization: Option<String>,
    traceparent: Option<String>,
    /// Text frames from the client, in order.
    frames: Vec<String>,
    /// Valid frames the server sent.
    sent_valid: usize,
    close_code: Option<u16>,
    got_pong: bool,
}

type Seen = Arc<Mutex<Vec<Conn>>>;

async fn server(mode: Mode) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                return;
            };
            let idx = {
                let mut v = s.lock().unwrap();
                v.push(Conn {
                    peer: Some(peer),
                    ..Conn::default()
                });
                v.len() - 1
            };
            tokio::spawn(serve(tcp, mode, s.clone(), idx));
        }
    });
    (addr, seen)
}

fn valid_frame(i: usize) -> String {
    let ts = if i.is_multiple_of(2) {
        serde_json::json!(now_ms() as u64)
    } else {
        serde_json::json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
    };
    serde_json::json!({"type": "vm_status", "channel": "vm_status", "timestamp": ts}).to_string()
}

// tungstenite's callback type fixes the large error response
#[allow(clippy::result_large_err)]
async fn serve(mut tcp: TcpStream, mode: Mode, seen: Seen, idx: usize) {
    if mode == Mode::NotFound {
        let mut buf = vec![0u8; 4096];
        let mut n = 0;
        while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut buf[n..]).await {
                Ok(0) | Err(_) => return,
                Ok(k) => n += k,
            }
        }
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        seen.lock().unwrap()[idx].uri = head.lines().next().unwrap_or("").to_string();
        let _ = tcp
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found")
            .await;
        return;
    }
    let s2 = seen.clone();
    let cb = move |req: &Request, resp: Response| {
        let h = |k: &str| {
            req.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mut v = s2.lock().unwrap();
        v[idx].uri = req.uri().to_string();
        v[idx].authorization = h("authorization");
        v[idx].traceparent = h("traceparent");
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else {
        return;
    };
    let mut sent_valid = 0;
    match mode {
        Mode::NonJson => {
            let _ = ws.send(Message::text("this is not json")).await;
        }
        Mode::StaleTimestamps => {
            for offset in [-60_000.0, 60_000.0] {
                let f = serde_json::json!({"type": "t", "channel": "c", "timestamp": now_ms() + offset});
                let _ = ws.send(Message::text(f.to_string())).await;
            }
        }
        Mode::Good => {
            let _ = ws.send(Message::Ping("hi".into())).await;
        }
        _ => {}
    }
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => {
                seen.lock().unwrap()[idx].frames.push(t.to_string());
                let n = seen.lock().unwrap()[idx].frames.len();
                if mode == Mode::DropAfterOpen && n == 3 {
                    // no close frame: the client must see an abnormal end (1006)
                    return;
                }
                if mode == Mode::CloseAbnormally && n == 3 {
                    let frame = CloseFrame {
                        code: CloseCode::Error,
                        reason: "internal error".into(),
                    };
                    let _ = ws.send(Message::Close(Some(frame))).await;
                    // read the client's echo (bounded: the client answers at once)
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
                    return;
                }
                if matches!(
                    mode,
                    Mode::Silent | Mode::DropAfterOpen | Mode::CloseAbnormally
                ) || t.contains("\"disconnect\"")
                {
                    continue;
                }
                if ws
                    .send(Message::text(valid_frame(sent_valid)))
                    .await
                    .is_ok()
                {
                    sent_valid += 1;
                    seen.lock().unwrap()[idx].sent_valid = sent_valid;
                }
            }
            Ok(Message::Pong(_)) => seen.lock().unwrap()[idx].got_pong = true,
            Ok(Message::Close(f)) => {
                seen.lock().unwrap()[idx].close_code = f.map(|f| u16::from(f.code));
                // tungstenite answers the close on the next poll
                let _ = ws.next().await;
                return;
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

fn config(addr: SocketAddr) -> WsConfig {
    WsConfig {
        ws_url: format!("ws://{addr}/ws"),
        token: "tok-123".into(),
        source_ips: Vec::new(),
        tls: None,
        session_min: Duration::from_millis(1000),
        session_max: Duration::from_millis(1500),
        ping_every: Duration::from_millis(200),
        query_every: Duration::from_millis(400),
    }
}

/// What the ws tests read from a run besides the shared accessors.
impl Run {
    /// How often `message` was recorded as a failure reason of `kind`.
    fn reason(&self, kind: &str, message: &str) -> u64 {
        self.snap
            .reasons
            .kinds
            .get(kind)
            .and_then(|k| k.messages.get(message))
            .copied()
            .unwrap_or(0)
    }
    /// All reasons of `kind` (messages and the ones not kept).
    fn reasons_total(&self, kind: &str) -> u64 {
        self.snap
            .reasons
            .kinds
            .get(kind)
            .map(|k| k.messages.values().sum::<u64>() + k.other_messages)
            .unwrap_or(0)
    }
    /// `ws_errors` failures tagged with `kind` (what the summary's errors-by-kind counts).
    fn errors_of_kind(&self, kind: &str) -> f64 {
        let id = self.snap.registry.lookup(metric::ERRORS).unwrap();
        self.snap
            .submetric(id, &[("error_kind".into(), kind.into())])
            .values(1.0)
            .get("passes")
            .unwrap_or(0.0)
    }
    /// The run as a summary (verdict, errors-by-kind), with no thresholds.
    fn summary(&self) -> Summary {
        Summary::build(
            &self.snap,
            SummaryMeta {
                run_id: "t".into(),
                run_id_generated: false,
                test: "ws".into(),
                profile: "smoke".into(),
                target: String::new(),
                started_at: chrono::Utc::now(),
                duration_s: self.outcome.duration.as_secs_f64(),
                partial_reason: None,
                segment: String::new(),
                scenarios: Vec::new(),
                thresholds: Vec::new(),
                interrupted_iterations: self.outcome.interrupted_iterations,
                run_errors: Vec::new(),
                notes: Vec::new(),
                telemetry: Default::default(),
            },
        )
    }
}

async fn run_ws(cfg: WsConfig, executor: Executor, graceful_stop: Duration) -> Run {
    run_ws_with(cfg, executor, graceful_stop, Telemetry::disabled()).await
}

async fn run_ws_with(
    cfg: WsConfig,
    executor: Executor,
    graceful_stop: Duration,
    telemetry: Telemetry,
) -> Run {
    cfg.validate().expect("valid config");
    let mut registry = Registry::new();
    let workload = WsWorkload::new(cfg, &mut registry);
    let params = TestRun {
        setup_timeout: Duration::from_secs(10),
        teardown_timeout: Duration::from_secs(10),
        ..TestRun::new(
            "ws",
            "test",
            vec![Scenario {
                graceful_stop,
                ..Scenario::new("default", executor)
            }],
            registry,
            telemetry,
        )
    };
    Run::from(runner::run(Arc::new(workload), params).await)
}

fn per_vu(vus: u64, iterations: u64) -> Executor {
    Executor::PerVuIterations {
        vus,
        iterations,
        max_duration: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_server_sessions_follow_the_upstream_flow() {
    let (addr, seen) = server(Mode::Good).await;
    let mut cfg = config(addr);
    // round-robin over two loopback source addresses
    cfg.source_ips = vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
    let r = run_ws(cfg, per_vu(2, 2), Duration::from_secs(30)).await;
    assert!(r.outcome.errors.is_empty(), "{:?}", r.outcome.errors);
    let conns = seen.lock().unwrap();
    assert_eq!(conns.len(), 4);

    assert_eq!(r.count(metric::CONNECTIONS_ESTABLISHED), 4.0);
    assert_eq!(r.count(metric::CONNECTIONS_FAILED), 0.0);
    assert_eq!(r.rate(metric::CONNECTION_SUCCESS), (4.0, 0.0));
    assert_eq!(r.check(check::ESTABLISHED), (4, 0));
    assert_eq!(r.values(metric::CONNECTION_TIME).get("count"), Some(4.0));

    // sent: what the server received, frame for frame
    let server_got: usize = conns.iter().map(|c| c.frames.len()).sum();
    assert_eq!(r.count(metric::MESSAGES_SENT), server_got as f64);
    for c in conns.iter() {
        let types: Vec<serde_json::Value> = c
            .frames
            .iter()
            .map(|f| serde_json::from_str(f).unwrap())
            .collect();
        for (i, ch) in ["vm_status", "system_metrics", "alerts"].iter().enumerate() {
            assert_eq!(types[i]["action"], "subscribe");
            assert_eq!(types[i]["channel"], *ch);
        }
        assert_eq!(types.last().unwrap()["type"], "disconnect");
        let pings = types.iter().filter(|t| t["type"] == "ping").count();
        let queries = types
            .iter()
            .filter(|t| {
                matches!(
                    t["type"].as_str(),
                    Some("vm_query" | "metric_query" | "event_subscribe")
                )
            })
            .count();
        // frames = 3 + pings + queries + 1, nothing else
        assert_eq!(c.frames.len(), 3 + pings + queries + 1);
        // a 1.0–1.5 s session at 200 ms / 400 ms
        assert!((4..=8).contains(&pings), "pings {pings}");
        assert!((2..=4).contains(&queries), "queries {queries}");
        for t in &types {
            if t["type"] == "ping" {
                assert!(t["timestamp"].is_u64());
                let id = t["client_id"].as_str().unwrap();
                let suffix = id.rsplit('-').next().unwrap();
                assert!(id.starts_with("client-") && suffix.len() == 8);
            }
            if t["type"] == "vm_query" {
                let n: u32 = t["vm_id"].as_str().unwrap()[3..].parse().unwrap();
                assert!(n < 1000);
            }
            // telemetry disabled: no trace context to propagate
            assert!(t.get("traceparent").is_none());
        }
        assert_eq!(c.close_code, Some(1001), "k6 closes with 1001");
        assert_eq!(c.uri, "/ws/realtime?token=tok-123");
        assert_eq!(c.authorization.as_deref(), Some("Bearer tok-123"));
        assert_eq!(c.traceparent, None);
        assert!(c.got_pong, "server ping frames are answered");
    }
    let peers: std::collections::BTreeSet<IpAddr> =
        conns.iter().map(|c| c.peer.unwrap().ip()).collect();
    assert_eq!(
        peers,
        ["127.0.0.2", "127.0.0.3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect()
    );

    // every received frame valid: checks pass, ws_errors records successes (B1)
    let received = r.count(metric::MESSAGES_RECEIVED);
    assert!(received >= 20.0, "received {received}");
    let server_sent: usize = conns.iter().map(|c| c.sent_valid).sum();
    assert!(received <= server_sent as f64);
    for name in [
        check::HAS_TYPE,
        check::HAS_CHANNEL,
        check::HAS_TIMESTAMP,
        check::TIMESTAMP_RECENT,
    ] {
        assert_eq!(r.check(name), (received as u64, 0), "{name}");
    }
    assert_eq!(r.rate(metric::ERRORS), (0.0, 4.0 + received));
    let lat = r.values(metric::MESSAGE_LATENCY);
    assert_eq!(lat.get("count"), Some(received));
    assert!(lat.get("max").unwrap() < 1000.0, "{lat:?}");
    // every connection was closed again
    assert_eq!(r.get(metric::CONNECTIONS_ACTIVE, "value"), 0.0);
    assert!(r.get(metric::CONNECTIONS_ACTIVE, "max") >= 1.0);

    // the README's "connection success > 95%" as a threshold on a real metric
    let t = thresholds::build(
        metric::CONNECTION_SUCCESS,
        &ThresholdSpec::Plain("rate>0.95".into()),
        &r.snap.registry,
    )
    .unwrap();
    assert!(t.evaluate(&r.snap, 1.0).ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_of_the_session_span_reaches_handshake_and_every_message() {
    let (addr, seen) = server(Mode::Good).await;
    let exporter = Keep::default();
    let tel = Telemetry::start_with_span_exporter(
        TelemetryConfig {
            run_id: "test".into(),
            traces: true,
            sample_ratio: 1.0,
            ..Default::default()
        },
        exporter.clone(),
    )
    .await
    .unwrap();
    let r = run_ws_with(
        config(addr),
        per_vu(1, 2),
        Duration::from_secs(30),
        tel.clone(),
    )
    .await;
    let report = tel.shutdown().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(r.count(metric::CONNECTIONS_ESTABLISHED), 2.0);
    let spans = exporter.get_finished_spans().unwrap();
    let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
    let sessions: Vec<_> = spans.iter().filter(|s| s.name == "ws.session").collect();
    assert_eq!(sessions.len(), 2, "{names:?}");
    let conns = seen.lock().unwrap();
    assert_eq!(conns.len(), 2);
    for c in conns.iter() {
        let tp = c
            .traceparent
            .clone()
            .expect("traceparent header on the handshake");
        let parts: Vec<&str> = tp.split('-').collect();
        let span = sessions
            .iter()
            .find(|s| s.span_context.span_id().to_string() == parts[2])
            .expect("the header names a ws.session span");
        assert_eq!(span.span_context.trace_id().to_string(), parts[1]);
        // a child of the iteration span
        assert!(
            spans
                .iter()
                .any(|p| p.span_context.span_id() == span.parent_span_id && p.name != "ws.session")
        );
        assert!(c.frames.len() >= 5);
        for f in &c.frames {
            let v: serde_json::Value = serde_json::from_str(f).unwrap();
            assert_eq!(v["traceparent"].as_str(), Some(tp.as_str()), "{f}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_frame_is_an_error_without_check_samples() {
    let (addr, _seen) = server(Mode::NonJson).await;
    let r = run_ws(config(addr), per_vu(1, 1), Duration::from_secs(30)).await;
    let received = r.count(metric::MESSAGES_RECEIVED);
    assert!(received >= 2.0);
    // the non-JSON frame is counted as received, gets no check samples, and is one error
    assert_eq!(r.check(check::HAS_TYPE), (received as u64 - 1, 0));
    assert_eq!(r.rate(metric::ERRORS), (1.0, 1.0 + received - 1.0));
    assert_eq!(r.rate(metric::CONNECTION_SUCCESS), (1.0, 0.0));
    // the error has a kind in errors-by-kind and a reason
    assert_eq!(r.errors_of_kind("body"), 1.0);
    assert_eq!(r.reason("body", "WebSocket frame is not a JSON object"), 1);
    let s = r.summary();
    assert_eq!(
        s.errors_by_kind.get("body"),
        Some(&1),
        "{:?}",
        s.errors_by_kind
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_future_timestamps_fail_the_recent_check() {
    let (addr, _seen) = server(Mode::StaleTimestamps).await;
    let r = run_ws(config(addr), per_vu(1, 1), Duration::from_secs(30)).await;
    let received = r.count(metric::MESSAGES_RECEIVED) as u64;
    // B12: the future timestamp fails too (upstream's signed comparison passed it)
    assert_eq!(r.check(check::TIMESTAMP_RECENT), (received - 2, 2));
    assert_eq!(r.check(check::HAS_TIMESTAMP), (received, 0));
    assert_eq!(r.rate(metric::ERRORS).0, 2.0);
    assert_eq!(r.errors_of_kind("check"), 2.0);
    assert_eq!(
        r.reason(
            "check",
            "WebSocket frame timestamp is 5 s or more from the receive time"
        ),
        2
    );
    let lat = r.values(metric::MESSAGE_LATENCY);
    assert_eq!(lat.get("count"), Some(received as f64));
    // |latency| of both is ~60 s
    assert!(lat.get("max").unwrap() >= 59_000.0, "{lat:?}");
    assert!(lat.get("max").unwrap() < 61_000.0, "{lat:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_counts_against_connection_success() {
    let (addr, seen) = server(Mode::DropAfterOpen).await;
    let r = run_ws(config(addr), per_vu(1, 2), Duration::from_secs(30)).await;
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(r.count(metric::CONNECTIONS_ESTABLISHED), 2.0);
    // the k6 error event: failed +1, ws_errors true
    assert_eq!(r.count(metric::CONNECTIONS_FAILED), 2.0);
    assert_eq!(r.rate(metric::CONNECTION_SUCCESS), (0.0, 2.0));
    // handshakes succeeded (check passes, ws_errors false), the sessions failed (ws_errors true)
    assert_eq!(r.check(check::ESTABLISHED), (2, 0));
    assert_eq!(r.rate(metric::ERRORS), (2.0, 2.0));
    // counted once, on ws_connections_failed (kind protocol), with the session's end as reason
    assert_eq!(r.errors_of_kind("protocol"), 0.0);
    assert_eq!(r.summary().errors_by_kind.get("protocol"), Some(&2));
    assert_eq!(r.reasons_total("protocol"), 2);
    let kinds = &r.snap.reasons.kinds["protocol"];
    assert!(
        kinds
            .messages
            .keys()
            .all(|m| m.starts_with(&format!("WebSocket session with {addr}: "))),
        "{kinds:?}"
    );
    assert!(r.count(metric::MESSAGES_SENT) >= 6.0);
    assert_eq!(r.count(metric::MESSAGES_RECEIVED), 0.0);
    assert_eq!(r.get(metric::CONNECTIONS_ACTIVE, "value"), 0.0);
    // each session ended at once, not after its 1–1.5 s
    assert!(
        r.outcome.duration < Duration::from_millis(2 * 1000 + 900),
        "{:?}",
        r.outcome.duration
    );
    let t = thresholds::build(
        metric::CONNECTION_SUCCESS,
        &ThresholdSpec::Plain("rate>0.95".into()),
        &r.snap.registry,
    )
    .unwrap();
    assert!(!t.evaluate(&r.snap, 1.0).ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_404_is_a_failed_connection() {
    let (addr, seen) = server(Mode::NotFound).await;
    let r = run_ws(config(addr), per_vu(1, 2), Duration::from_secs(30)).await;
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert!(
        seen.lock().unwrap()[0]
            .uri
            .starts_with("GET /ws/realtime?token=tok-123 ")
    );
    assert_eq!(r.count(metric::CONNECTIONS_ESTABLISHED), 0.0);
    // B11: handshake failures are failed connections
    assert_eq!(r.count(metric::CONNECTIONS_FAILED), 2.0);
    let failed = r.snap.registry.lookup(metric::CONNECTIONS_FAILED).unwrap();
    let by_404 = r
        .snap
        .submetric(failed, &[("status".into(), "404".into())])
        .values(1.0);
    assert_eq!(by_404.get("count"), Some(2.0));
    assert_eq!(r.rate(metric::CONNECTION_SUCCESS), (0.0, 2.0));
    assert_eq!(r.check(check::ESTABLISHED), (0, 2));
    assert_eq!(r.rate(metric::ERRORS), (2.0, 0.0));
    assert_eq!(r.values(metric::CONNECTION_TIME).get("count"), Some(0.0));
    assert_eq!(r.count(metric::MESSAGES_SENT), 0.0);
    // the refused upgrade's status and the server's words
    let why = format!("WebSocket upgrade refused by {addr}: HTTP 404 Not Found: not found");
    assert_eq!(r.reason("status", &why), 2, "{:?}", r.snap.reasons);
    // nothing established, but two attempts were measured: a FAIL of its own, not "nothing"
    assert!(!r.summary().measured_nothing());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abnormal_close_carries_its_code_and_reason() {
    let (addr, _seen) = server(Mode::CloseAbnormally).await;
    let r = run_ws(config(addr), per_vu(1, 1), Duration::from_secs(30)).await;
    assert_eq!(r.count(metric::CONNECTIONS_FAILED), 1.0);
    assert_eq!(r.rate(metric::CONNECTION_SUCCESS), (0.0, 1.0));
    let why = format!(
        "WebSocket session with {addr}: closed by the server with code 1011 (internal error)"
    );
    assert_eq!(r.reason("protocol", &why), 1, "{:?}", r.snap.reasons);
    assert_eq!(r.summary().errors_by_kind.get("protocol"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_a_failed_connection_with_status_0() {
    let (_refusing, port) = refusing_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = run_ws(config(addr), per_vu(1, 1), Duration::from_secs(30)).await;
    let failed = r.snap.registry.lookup(metric::CONNECTIONS_FAILED).unwrap();
    let v = r
        .snap
        .submetric(
            failed,
            &[
                ("status".into(), "0".into()),
                ("error_kind".into(), "connect".into()),
            ],
        )
        .values(1.0);
    assert_eq!(v.get("count"), Some(1.0));
    assert_eq!(r.rate(metric::CONNECTION_SUCCESS), (0.0, 1.0));
    assert_eq!(r.rate(metric::ERRORS), (1.0, 0.0));
    let kinds = &r.snap.reasons.kinds["connect"];
    assert_eq!(kinds.messages.len(), 1, "{kinds:?}");
    let (why, n) = kinds.messages.iter().next().unwrap();
    assert_eq!(*n, 1);
    assert!(why.starts_with(&format!("connect to {addr}: ")), "{why}");
    assert!(why.to_lowercase().contains("refused"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ending_mid_session_is_not_a_connection_failure() {
    let (addr, seen) = server(Mode::Silent).await;
    let mut cfg = config(addr);
    cfg.session_min = Duration::from_secs(30);
    cfg.session_max = Duration::from_secs(31);
    let r = run_ws(
        cfg,
        Executor::ConstantVus {
            vus: 2,
            duration: Duration::from_millis(700),
        },
        Duration::ZERO,
    )
    .await;
    assert!(r.outcome.duration < Duration::from_secs(5));
    assert_eq!(r.count(metric::CONNECTIONS_ESTABLISHED), 2.0);
    assert_eq!(r.rate(metric::CONNECTION_SUCCESS), (2.0, 0.0));
    assert_eq!(r.count(metric::CONNECTIONS_FAILED), 0.0);
    assert_eq!(r.get(metric::CONNECTIONS_ACTIVE, "value"), 0.0);
    assert_eq!(r.get(metric::CONNECTIONS_ACTIVE, "max"), 2.0);
    assert_eq!(r.outcome.interrupted_iterations, 2);
    assert_eq!(seen.lock().unwrap().len(), 2);
    // no iteration completed, yet connections were measured: not "measured nothing"
    let s = r.summary();
    assert!(!s.measured_nothing());
    assert_eq!(s.verdict, Verdict::Pass, "{:?}", s.thresholds);
}

/// Child-process half of [`memory_per_idle_connection`]: a silent WebSocket server in its own
/// process, so the client's RSS is measured alone. Does nothing unless the parent asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "helper process for memory_per_idle_connection"]
async fn memory_server_process() {
    if std::env::var_os("NOVALOAD_WS_MEM_SERVER").is_none() {
        return;
    }
    let (addr, _seen) = server(Mode::Silent).await;
    println!("PORT {}", addr.port());
    // exit with the parent: it holds our stdin
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
    std::future::pending::<()>().await;
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Opens `NOVALOAD_WS_MEM_CONNS` (default 2,000) idle sessions against a server in another
/// process and reports client RSS per connection. Run:
/// `cargo test --test it ws_workload::memory_per_idle_connection -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: opens thousands of connections"]
async fn memory_per_idle_connection() {
    use std::io::BufRead;
    let n: u64 = std::env::var("NOVALOAD_WS_MEM_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "ws_workload::memory_server_process",
            "--nocapture",
        ])
        .env("NOVALOAD_WS_MEM_SERVER", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next().expect("server output").unwrap();
        if let Some(p) = line.strip_prefix("PORT ") {
            break p.trim().parse().unwrap();
        }
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cfg = config(addr);
    cfg.session_min = Duration::from_secs(120);
    cfg.session_max = Duration::from_secs(121);
    cfg.ping_every = Duration::from_secs(5);
    cfg.query_every = Duration::from_secs(10);
    let mut registry = Registry::new();
    let wl = Arc::new(WsWorkload::new(cfg, &mut registry));
    let kill = CancellationToken::new();
    let params = TestRun {
        interrupt: kill.clone(),
        kill: kill.clone(),
        setup_timeout: Duration::from_secs(10),
        teardown_timeout: Duration::from_secs(10),
        ..TestRun::new(
            "ws",
            "mem",
            vec![Scenario {
                graceful_stop: Duration::ZERO,
                ..Scenario::new(
                    "default",
                    Executor::ConstantVus {
                        vus: n,
                        duration: Duration::from_secs(300),
                    },
                )
            }],
            registry,
            Telemetry::disabled(),
        )
    };
    let before = rss_kib();
    let started = std::time::Instant::now();
    let run = tokio::spawn(runner::run(wl.clone(), params));
    while wl.active_connections() < n as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "only {} of {n} open",
            wl.active_connections()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp = started.elapsed();
    // let the first pings/queries go out so their buffers are counted
    tokio::time::sleep(Duration::from_secs(11)).await;
    let during = rss_kib();
    let per_conn = (during.saturating_sub(before)) as f64 / n as f64;
    println!(
        "ws memory: {n} connections open in {ramp:.1?}; client RSS {before} KiB before, {during} KiB open: {per_conn:.1} KiB per connection (VU, task and socket included)"
    );
    kill.cancel();
    let out = run.await.unwrap();
    let r = Run::from(out);
    assert_eq!(r.count(metric::CONNECTIONS_ESTABLISHED), n as f64);
    assert_eq!(r.count(metric::CONNECTIONS_FAILED), 0.0);
    drop(child.stdin.take());
    let _ = child.wait();
    assert!(per_conn < 64.0, "{per_conn} KiB per connection");
}

/// Against the built-in reference target (`novaload target`, `/ws/realtime`): every frame it
/// sends passes the upstream checks and every connection succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_reference_target_every_check_passes() {
    let handle = novaload::novacron::spawn(novaload::novacron::TargetArgs::embedded(), None)
        .await
        .expect("target starts");
    let cfg = config(handle.addr);
    let r = run_ws(cfg, per_vu(2, 1), Duration::from_secs(30)).await;
    handle.shutdown().await.unwrap();
    assert_eq!(r.count(metric::CONNECTIONS_ESTABLISHED), 2.0);
    assert_eq!(r.count(metric::CONNECTIONS_FAILED), 0.0);
    assert_eq!(r.rate(metric::CONNECTION_SUCCESS), (2.0, 0.0));
    let received = r.count(metric::MESSAGES_RECEIVED);
    assert!(received > 0.0);
    for name in [
        check::HAS_TYPE,
        check::HAS_CHANNEL,
        check::HAS_TIMESTAMP,
        check::TIMESTAMP_RECENT,
        check::ESTABLISHED,
    ] {
        assert_eq!(r.check(name).1, 0, "{name} failed");
    }
    assert_eq!(r.rate(metric::ERRORS).0, 0.0);
    assert!(r.count(metric::MESSAGES_SENT) >= 2.0 * (3.0 + 4.0 + 2.0 + 1.0));
}
