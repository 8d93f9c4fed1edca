//! `novaload target` against hostile or careless clients, over real sockets on 127.0.0.1:
//! connections that send nothing or half a request head (slowloris) are closed after
//! `--header-read-timeout`, idle keep-alive connections after `--idle-timeout`, while a normal
//! keep-alive client and WebSockets are left alone; JWTs need `exp`, honour `nbf`, and the
//! `Bearer` scheme is case-insensitive.
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::target::*;
use futures_util::{SinkExt, StreamExt};
use novaload::novacron::TargetArgs;
use novaload::novacron::auth::sign_hs256;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// The short timeouts the tests configure, and the slack allowed on top for a loaded machine.
const HEADER: Duration = Duration::from_millis(300);
const MARGIN: Duration = Duration::from_millis(1500);

/// A target with the given connection timeouts.
async fn target(header: Duration, idle: Duration) -> Running {
    let mut args = TargetArgs::embedded();
    args.seed_vms = 10;
    args.header_read_timeout = header;
    args.idle_timeout = idle;
    start(&Backend::Sqlite, args, None).await
}

fn addr(t: &Running) -> SocketAddr {
    t.handle.addr
}

/// Waits for the server to close `s` (end of file, or a reset when it closed with our bytes
/// unread) and returns how long that took; fails past `limit` or if the server sends data.
async fn closed_within(s: &mut TcpStream, since: Instant, limit: Duration) -> Duration {
    let mut buf = [0u8; 512];
    match tokio::time::timeout_at(since + limit, s.read(&mut buf)).await {
        Err(_) => panic!("the server kept the connection open for {limit:?}"),
        Ok(Ok(0)) => since.elapsed(),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => since.elapsed(),
        Ok(Err(e)) => panic!("unexpected read error: {e}"),
        Ok(Ok(n)) => panic!(
            "the server sent {n} bytes instead of closing: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
}

fn health_request(addr: SocketAddr) -> String {
    format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n")
}

/// Reads one response (head plus a Content-Length body) within 5 s; returns the status.
async fn read_response(s: &mut TcpStream) -> u16 {
    let mut buf = Vec::with_capacity(1024);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chunk = [0u8; 1024];
    // Bounded by the deadline and by a 64 KiB cap on what a /health answer may take.
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no content-length in {head}"));
            if buf.len() >= end + 4 + length {
                assert_eq!(buf.len(), end + 4 + length, "nothing after the body");
                let status = head.split(' ').nth(1).and_then(|c| c.parse().ok());
                return status.unwrap_or_else(|| panic!("no status in {head}"));
            }
        }
        assert!(buf.len() < 64 * 1024, "response too large");
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("a response within 5 s")
            .expect("read the response");
        assert!(n > 0, "the server closed before answering");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed_after_the_header_read_timeout() {
    let t = target(HEADER, Duration::from_secs(30)).await;
    let mut s = TcpStream::connect(addr(&t)).await.unwrap();
    let took = closed_within(&mut s, Instant::now(), HEADER + MARGIN).await;
    // not at once: it is the timeout that closes it (the idle timeout is 30 s)
    assert!(took >= HEADER - Duration::from_millis(50), "{took:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_head_is_closed_even_when_trickled() {
    let t = target(HEADER, Duration::from_secs(30)).await;

    // Half a head, then nothing.
    let mut s = TcpStream::connect(addr(&t)).await.unwrap();
    let since = Instant::now();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let took = closed_within(&mut s, since, HEADER + MARGIN).await;
    assert!(took >= HEADER - Duration::from_millis(50), "{took:?}");

    // Slowloris: one more header byte every 50 ms, never the blank line. The bytes keep
    // coming, but the head is not complete within the timeout, so it is closed all the same.
    let s = TcpStream::connect(addr(&t)).await.unwrap();
    let since = Instant::now();
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        let _ = wr.write_all(b"GET /health HTTP/1.1\r\n").await;
        // 80 × 50 ms = 4 s, well past the timeout plus the margin; ends early once refused.
        for _ in 0..80 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if wr.write_all(b"X").await.is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout_at(since + HEADER + MARGIN, rd.read(&mut buf)).await;
    match read {
        Err(_) => panic!("a trickled head kept the connection open"),
        Ok(Ok(0)) => {}
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(other) => panic!("expected a close, got {other:?}"),
    }
    trickle.abort();
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_client_is_unaffected_below_the_idle_timeout() {
    let idle = Duration::from_millis(1500);
    let t = target(HEADER, idle).await;
    let a = addr(&t);
    let mut s = TcpStream::connect(a).await.unwrap();
    // Requests 700 ms apart: longer than the header timeout, shorter than the idle timeout.
    for i in 0..3 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        s.write_all(health_request(a).as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut s).await, 200, "request {i}");
    }
    // Then silence: closed after the idle timeout, not before.
    let took = closed_within(&mut s, Instant::now(), idle + MARGIN).await;
    assert!(took >= idle - Duration::from_millis(50), "{took:?}");

    // The next request's head on a kept-alive connection gets the header timeout from its
    // first byte, not what is left of the idle timeout.
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(health_request(a).as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await, 200);
    let since = Instant::now();
    s.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let took = closed_within(&mut s, since, idle + MARGIN).await;
    assert!(
        took >= HEADER - Duration::from_millis(50) && took < idle,
        "closed after {took:?}: expected the header timeout ({HEADER:?}), not the idle one"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_outlives_the_http_timeouts() {
    let short = Duration::from_millis(200);
    let t = target(short, short).await;
    let url = format!("ws://{}/ws/realtime?token=test-token-123", addr(&t));
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("upgrade");
    // Silent for five times both timeouts, then still answered.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    ws.send(Message::Text(json!({"type":"ping"}).to_string().into()))
        .await
        .expect("the socket is still open");
    let pong = tokio::time::timeout(Duration::from_secs(5), async {
        // Bounded by the timeout; skips control frames.
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => break serde_json::from_str::<Value>(&t).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("the WebSocket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a pong within 5 s");
    assert_eq!(pong["type"], "pong", "{pong}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_slow_or_idle_clients() {
    // Production defaults: 10 s for a head, 60 s idle. Shutdown must not wait for either.
    let t = target(Duration::from_secs(10), Duration::from_secs(60)).await;
    let a = addr(&t);
    let mut silent = TcpStream::connect(a).await.unwrap();
    let mut half = TcpStream::connect(a).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let mut kept = TcpStream::connect(a).await.unwrap();
    kept.write_all(health_request(a).as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut kept).await, 200);
    // let the server read the half head before it is told to stop
    tokio::time::sleep(Duration::from_millis(100)).await;
    let since = Instant::now();
    t.stop().await;
    assert!(
        since.elapsed() < Duration::from_secs(3),
        "{:?}",
        since.elapsed()
    );
    for s in [&mut silent, &mut half, &mut kept] {
        closed_within(s, Instant::now(), Duration::from_secs(2)).await;
    }
}

/// A token signed with `secret`, with `claims` plus `sub`.
fn token(secret: &str, mut claims: Value) -> String {
    claims["sub"] = json!("user-1");
    sign_hs256(secret.as_bytes(), &claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_needs_exp_honours_nbf_and_takes_any_bearer_case() {
    let mut args = TargetArgs::embedded();
    args.seed_vms = 10;
    args.jwt_secret = Some("hardening-secret".into());
    let t = start(&Backend::Sqlite, args, None).await;
    let url = format!("{}/api/v1/vms/1", t.base);
    let now = chrono::Utc::now().timestamp();
    let get = |authorization: String| {
        let url = url.clone();
        async move { call("GET", &url, None, &[("authorization", &authorization)]).await }
    };
    let secret = "hardening-secret";

    let rejected = [
        ("no exp", token(secret, json!({})), "`exp`"),
        (
            "expired",
            token(secret, json!({"exp": now - 3600})),
            "expired",
        ),
        (
            "nbf in an hour",
            token(secret, json!({"exp": now + 7200, "nbf": now + 3600})),
            "`nbf`",
        ),
    ];
    for (case, jwt, reason) in rejected {
        let r = get(format!("Bearer {jwt}")).await;
        assert_eq!(r.status, 401, "{case}: {}", r.text());
        let body = r.json();
        assert_eq!(body["error"], "unauthorized", "{case}: {body}");
        assert_eq!(
            body["message"], "invalid or expired token",
            "{case}: {body}"
        );
        let why = body["reason"].as_str().unwrap_or_default();
        assert!(
            why.contains(reason),
            "{case}: reason `{why}` should mention {reason}"
        );
        assert!(
            !r.text().contains(&jwt),
            "{case}: the token is never echoed"
        );
    }

    let valid = token(secret, json!({"exp": now + 3600}));
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = get(format!("{scheme} {valid}")).await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.text());
    }
    let started = token(secret, json!({"exp": now + 3600, "nbf": now - 60}));
    assert_eq!(get(format!("Bearer {started}")).await.status, 200);
    let r = get(format!("Token {valid}")).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["message"],
        "authorization header must start with 'Bearer '"
    );
    t.stop().await;
}
