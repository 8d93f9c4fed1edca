//! WebSocket endpoints of `novaload target` over real sockets: the realtime protocol of the
//! upstream WS test, the DWCP migration stream, the canonical metrics stream, auth, drops and
//! trace context in JSON messages.
use std::time::Duration;

use crate::support::target::*;
use futures_util::{SinkExt, StreamExt};
use novaload::novacron::TargetArgs;
use novaload::novacron::auth::sign_hs256;
use opentelemetry::trace::TraceId;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str, bearer: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = bearer {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

fn ws_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.replacen("http://", "ws://", 1))
}

/// Next text frame as JSON, checking the fields every frame must carry.
async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("frame ok");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("JSON frame");
            assert!(v["type"].is_string(), "type: {v}");
            assert!(v["channel"].is_string(), "channel: {v}");
            let ts = v["timestamp"]
                .as_i64()
                .unwrap_or_else(|| panic!("epoch-ms timestamp: {v}"));
            let age = chrono::Utc::now().timestamp_millis() - ts;
            assert!((0..5000).contains(&age), "recent timestamp: {v}");
            return v;
        }
    }
}

async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_protocol_answers_every_message_and_pushes_events() {
    let t = start(&Backend::Sqlite, TargetArgs::embedded(), None).await;
    for path in [
        "/ws/realtime?token=test-token-123",
        "/realtime?token=test-token-123",
    ] {
        let mut ws = connect(&ws_url(&t.base, path), Some("test-token-123"))
            .await
            .unwrap();
        for ch in ["vm_status", "system_metrics", "alerts"] {
            send_json(&mut ws, json!({"action":"subscribe","channel":ch})).await;
            let f = next_frame(&mut ws).await;
            assert_eq!(
                (f["type"].as_str(), f["channel"].as_str()),
                (Some("subscribed"), Some(ch))
            );
        }
        send_json(&mut ws, json!({"type":"ping","timestamp":chrono::Utc::now().timestamp_millis(),"client_id":"client-1-abcdefgh"})).await;
        let f = next_frame(&mut ws).await;
        assert_eq!(
            (f["type"].as_str(), f["channel"].as_str()),
            (Some("pong"), Some("system"))
        );
        assert_eq!(f["client_id"], "client-1-abcdefgh");
        for (msg, reply) in [
            (
                json!({"type":"vm_query","action":"get_status","vm_id":"vm-7"}),
                "vm_query_response",
            ),
            (
                json!({"type":"metric_query","action":"get_metrics","resource":"cpu"}),
                "metric_query_response",
            ),
            (
                json!({"type":"event_subscribe","filters":{"severity":"high"}}),
                "event_subscribe_response",
            ),
        ] {
            send_json(&mut ws, msg).await;
            // Pushed events may interleave with the reply.
            let mut got = next_frame(&mut ws).await;
            while got["type"] != reply
                && ["vm_status", "metrics_update", "alert"].contains(&got["type"].as_str().unwrap())
            {
                got = next_frame(&mut ws).await;
            }
            assert_eq!(got["type"], reply);
        }
        ws.send(Message::Text("not json".into())).await.unwrap();
        let mut got = next_frame(&mut ws).await;
        while got["type"] != "error" {
            got = next_frame(&mut ws).await;
        }
        // Pushed events for all three channels within a few seconds.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..12 {
            let f = next_frame(&mut ws).await;
            seen.insert((
                f["type"].as_str().unwrap().to_owned(),
                f["channel"].as_str().unwrap().to_owned(),
            ));
            if seen.len() >= 3 {
                break;
            }
        }
        for want in [
            ("vm_status", "vm_status"),
            ("metrics_update", "system_metrics"),
            ("alert", "alerts"),
        ] {
            assert!(
                seen.contains(&(want.0.to_owned(), want.1.to_owned())),
                "{seen:?}"
            );
        }
        // disconnect → close 1000.
        send_json(&mut ws, json!({"type":"disconnect"})).await;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()
            {
                Some(Ok(Message::Close(Some(cf)))) => {
                    assert_eq!(u16::from(cf.code), 1000);
                    break;
                }
                Some(Ok(Message::Text(_))) => continue,
                other => panic!("expected close 1000, got {other:?}"),
            }
        }
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_secret_guards_the_handshake_by_header_or_query() {
    let mut args = TargetArgs::embedded();
    args.jwt_secret = Some("ws-secret".into());
    let t = start(&Backend::Sqlite, args, None).await;
    let url = ws_url(&t.base, "/ws/realtime");
    match connect(&url, None).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    match connect(&format!("{url}?token=test-token-123"), None).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    let exp = chrono::Utc::now().timestamp() + 3600;
    let good = sign_hs256(b"ws-secret", &json!({"sub":"u1","exp": exp}));
    let mut ws = connect(&url, Some(&good))
        .await
        .expect("header token accepted");
    send_json(&mut ws, json!({"action":"subscribe","channel":"alerts"})).await;
    assert_eq!(next_frame(&mut ws).await["type"], "subscribed");
    let mut ws2 = connect(&format!("{url}?token={good}"), None)
        .await
        .expect("query token accepted");
    send_json(&mut ws2, json!({"type":"ping"})).await;
    assert_eq!(next_frame(&mut ws2).await["type"], "pong");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_drop_rate_drops_connections_without_a_close_frame() {
    let mut args = TargetArgs::embedded();
    args.ws_drop_rate = 1.0;
    let t = start(&Backend::Sqlite, args, None).await;
    let mut ws = connect(&ws_url(&t.base, "/ws/realtime"), None)
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(12), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) => return "close frame",
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return "dropped",
            }
        }
    })
    .await
    .expect("dropped within 10 s");
    assert_eq!(end, "dropped");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dwcp_stream_pushes_migration_progress_on_every_backend() {
    for backend in backends() {
        let mut args = TargetArgs::embedded();
        args.migration_time = Duration::from_secs(1);
        let t = start(&backend, args, None).await;
        let r = send(
            "POST",
            &t.base,
            "/api/v1/dwcp/migrations",
            r#"{"vm_id":"test-vm-x","source_zone":"eu-west-1","target_zone":"us-west-1"}"#,
        )
        .await;
        let job = r.json()["job_id"].as_str().unwrap().to_owned();
        let mut ws = connect(
            &ws_url(&t.base, &format!("/dwcp/v3/stream?job_id={job}")),
            Some("test-token-123"),
        )
        .await
        .unwrap();
        send_json(
            &mut ws,
            json!({"action":"subscribe","channel":"migrations"}),
        )
        .await;
        let mut statuses = vec![];
        let mut subscribed = false;
        for _ in 0..20 {
            let f = next_frame(&mut ws).await;
            match f["type"].as_str().unwrap() {
                "subscribed" => subscribed = true,
                "migration_progress" => {
                    assert_eq!(f["job_id"], json!(job));
                    assert!(f["phase"].is_string() && f["progress"].is_number());
                    let s = f["status"].as_str().unwrap().to_owned();
                    let done = s == "completed";
                    statuses.push(s);
                    if done {
                        break;
                    }
                }
                other => panic!("unexpected frame {other}"),
            }
        }
        assert!(subscribed);
        assert_eq!(
            statuses.last().map(String::as_str),
            Some("completed"),
            "{statuses:?}"
        );
        // Unknown job (k6 sends job_id=test when the POST failed): one error frame, still valid.
        let mut ws = connect(&ws_url(&t.base, "/dwcp/v3/stream?job_id=test"), None)
            .await
            .unwrap();
        let f = next_frame(&mut ws).await;
        assert_eq!(f["type"], "error");
        t.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canonical_metrics_stream_and_interval_validation() {
    let t = start(&Backend::Sqlite, TargetArgs::embedded(), None).await;
    for path in ["/ws/metrics?interval=1", "/api/ws/metrics?interval=1"] {
        let mut ws = connect(&ws_url(&t.base, path), Some("t")).await.unwrap();
        let f = next_frame(&mut ws).await;
        assert_eq!(f["type"], "metrics_update");
        assert!(f["metrics"]["cpu_usage"].is_number());
    }
    for bad in ["0", "301", "x"] {
        match connect(
            &ws_url(&t.base, &format!("/ws/metrics?interval={bad}")),
            None,
        )
        .await
        {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
            other => panic!("expected 400, got {:?}", other.map(|_| ())),
        }
    }
    // Oversized messages are refused (64 KiB limit).
    let mut ws = connect(&ws_url(&t.base, "/ws/realtime"), None)
        .await
        .unwrap();
    let _ = ws.send(Message::Text("x".repeat(70 * 1024).into())).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .unwrap();
    assert!(closed);
    let m = call("GET", &format!("{}/metrics", t.base), None, &[])
        .await
        .text();
    assert!(m.contains(r#"novacron_websocket_messages_sent_total{endpoint="/ws/metrics",message_type="metrics_update"}"#), "{m}");
    assert!(
        m.contains("novacron_websocket_connection_duration_seconds_count"),
        "{m}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_in_ws_messages_and_handshake_parents_server_spans() {
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
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let mut req = ws_url(&t.base, "/ws/realtime")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "traceparent",
        format!("00-{trace}-b7ad6b7169203331-01").parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let msg_trace = "11111111111111111111111111111111";
    send_json(
        &mut ws,
        json!({"type":"ping","traceparent": format!("00-{msg_trace}-2222222222222222-01")}),
    )
    .await;
    assert_eq!(next_frame(&mut ws).await["type"], "pong");
    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().unwrap();
    let hs = spans
        .iter()
        .find(|s| s.name == "GET /ws/realtime")
        .expect("handshake span");
    assert_eq!(
        hs.span_context.trace_id(),
        TraceId::from_hex(trace).unwrap()
    );
    let ping = spans
        .iter()
        .find(|s| s.name == "WS ping")
        .expect("message span");
    assert_eq!(
        ping.span_context.trace_id(),
        TraceId::from_hex(msg_trace).unwrap()
    );
    assert_eq!(ping.parent_span_id.to_string(), "2222222222222222");
    t.stop().await;
}
