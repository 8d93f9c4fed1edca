//! WebSocket endpoints: the realtime protocol of the upstream WS test (`/ws/realtime`,
//! `/realtime`; spec §1.3), the DWCP migration stream (`/dwcp/v3/stream`; §1.2) and NovaCron's
//! canonical metrics stream (`/ws/metrics`, `/api/ws/metrics`; §4.6).
//!
//! One task per connection, no per-connection channels: the task `select!`s over the socket,
//! one push interval, a keepalive interval (a ping only to clients silent for 30 s), an
//! optional drop timer and server shutdown. Buffers
//! are small (4 KiB read buffer, eager writes) so idle connections cost little. Every text frame
//! the server sends carries `type`, `channel` and `timestamp` (epoch milliseconds).
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use opentelemetry::KeyValue;
use serde_json::{Value, json};
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use super::rest::query_map;
use super::{ApiError, epoch_ms, unauthorized};
use crate::novacron::App;
use crate::novacron::telemetry::{self, JsonExtractor};
use crate::novacron::vm_migration;

type AppState = State<Arc<App>>;

const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const KEEPALIVE: Duration = Duration::from_secs(30);
const DWCP_PUSH: Duration = Duration::from_millis(500);
const MAX_SUBSCRIPTIONS: usize = 32;

/// What a connection pushes on its own.
enum Push {
    /// Periodic events for each subscribed channel.
    Realtime { subs: Vec<String> },
    /// Migration progress of one job until it finishes.
    Dwcp { job_id: String, done: bool },
    /// Canonical `metrics_update` frames.
    Metrics,
}

fn check_auth(
    app: &App,
    headers: &HeaderMap,
    raw: &std::collections::HashMap<String, String>,
) -> Result<(), Box<Response>> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    app.auth
        .check(header, raw.get("token").map(String::as_str))
        .map_err(|e| Box::new(unauthorized(e)))
}

fn configure(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
}

/// `GET /ws/realtime`, `GET /realtime`.
pub async fn realtime(
    ws: WebSocketUpgrade,
    State(app): AppState,
    RawQuery(raw): RawQuery,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let q = query_map(raw);
    if let Err(r) = check_auth(&app, &headers, &q) {
        return *r;
    }
    let endpoint: &'static str = if uri.path().starts_with("/ws/") {
        "/ws/realtime"
    } else {
        "/realtime"
    };
    configure(ws).on_upgrade(move |socket| {
        session(
            app,
            socket,
            endpoint,
            Push::Realtime { subs: Vec::new() },
            // unused: the realtime period comes from `App::push_interval`
            crate::novacron::ws_push::BASE,
        )
    })
}

/// `GET /dwcp/v3/stream?job_id=X`.
pub async fn dwcp_stream(
    ws: WebSocketUpgrade,
    State(app): AppState,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = query_map(raw);
    if let Err(r) = check_auth(&app, &headers, &q) {
        return *r;
    }
    let job_id = q.get("job_id").cloned().unwrap_or_else(|| "test".into());
    configure(ws).on_upgrade(move |socket| {
        session(
            app,
            socket,
            "/dwcp/v3/stream",
            Push::Dwcp {
                job_id,
                done: false,
            },
            DWCP_PUSH,
        )
    })
}

/// `GET /ws/metrics?interval=N`, `GET /api/ws/metrics` (N seconds, 1..=300, default 5).
pub async fn metrics_stream(
    ws: WebSocketUpgrade,
    State(app): AppState,
    RawQuery(raw): RawQuery,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let q = query_map(raw);
    if let Err(r) = check_auth(&app, &headers, &q) {
        return *r;
    }
    let interval = match q.get("interval").map(|s| s.trim()) {
        None | Some("") => 5,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (1..=300).contains(&n) => n,
            _ => {
                return ApiError::bad_request(
                    "interval",
                    format!("interval must be 1..300 seconds, got `{s}`"),
                    "use ?interval=5",
                )
                .into_response();
            }
        },
    };
    let endpoint: &'static str = if uri.path().starts_with("/api/") {
        "/api/ws/metrics"
    } else {
        "/ws/metrics"
    };
    configure(ws).on_upgrade(move |socket| {
        session(
            app,
            socket,
            endpoint,
            Push::Metrics,
            Duration::from_secs(interval),
        )
    })
}

async fn send(
    app: &App,
    socket: &mut WebSocket,
    endpoint: &'static str,
    kind: &'static str,
    frame: Value,
) -> bool {
    app.metrics.ws_sent(endpoint, kind);
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .is_ok()
}

enum End {
    Gone,
    Dropped,
}

async fn session(
    app: Arc<App>,
    mut socket: WebSocket,
    endpoint: &'static str,
    mut push: Push,
    every: Duration,
) {
    app.metrics.ws_opened(endpoint);
    let opened = Instant::now();
    let client_id = format!("srv-{}", uuid::Uuid::new_v4().simple());
    let drop_after = app.faults.ws_drop_after();
    let drop_timer = async move {
        match drop_after {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(drop_timer);
    let shutdown = app.shutdown.clone();
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let realtime = matches!(push, Push::Realtime { .. });
    if realtime {
        app.ws_open.fetch_add(1, Ordering::Relaxed);
    }
    // The realtime period is asked for again after every push: under `auto` it stretches as
    // the process fills up, so connections opened early in a ramp slow down too.
    let period = |push: &Push| match push {
        Push::Realtime { subs } => app.push_interval(subs.len().max(1)),
        _ => every,
    };
    let first = if matches!(push, Push::Dwcp { .. }) {
        // The stream answers at once, so a 5 s client sees several frames.
        Instant::now()
    } else {
        Instant::now() + period(&push)
    };
    let ticks = tokio::time::sleep_until(first);
    tokio::pin!(ticks);
    let mut keepalive = interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // A client that spoke within the keepalive period is alive: pinging it anyway would cost
    // a frame each way per connection (6,600 a second at 100,000 connections) for nothing.
    let mut last_heard = Instant::now();

    let end = loop {
        tokio::select! {
            msg = socket.recv() => match msg.inspect(|_| last_heard = Instant::now()) {
                None | Some(Err(_)) => break End::Gone,
                Some(Ok(Message::Text(text))) => {
                    match handle_text(&app, endpoint, text.as_str(), &mut push, &client_id) {
                        Reply::Frame(kind, frame) => {
                            if !send(&app, &mut socket, endpoint, kind, frame).await {
                                break End::Gone;
                            }
                        }
                        Reply::Disconnect => {
                            let _ = socket.send(Message::Close(Some(CloseFrame {
                                code: 1000,
                                reason: "disconnect requested".into(),
                            }))).await;
                            break End::Gone;
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    app.metrics.ws_received(endpoint, "binary");
                    let frame = json!({"type": "error", "channel": "system", "timestamp": epoch_ms(),
                        "error": "binary frames are not supported; send JSON text frames"});
                    if !send(&app, &mut socket, endpoint, "error", frame).await {
                        break End::Gone;
                    }
                }
                Some(Ok(Message::Close(_))) => break End::Gone,
                // Pings are answered by the protocol layer; pongs only prove liveness.
                Some(Ok(_)) => {}
            },
            _ = &mut ticks => {
                if !push_frames(&app, &mut socket, endpoint, &mut push).await {
                    break End::Gone;
                }
                // from now, not from the due instant: a late push delays the next (as Delay)
                ticks.as_mut().reset(Instant::now() + period(&push));
            }
            _ = keepalive.tick() => {
                if last_heard.elapsed() >= KEEPALIVE
                    && socket.send(Message::Ping(Default::default())).await.is_err()
                {
                    break End::Gone;
                }
            }
            _ = &mut drop_timer => break End::Dropped,
            _ = &mut cancelled => {
                let _ = socket.send(Message::Close(Some(CloseFrame {
                    code: 1001,
                    reason: "server shutting down".into(),
                }))).await;
                break End::Gone;
            }
        }
    };
    // Dropped: the socket goes away without a close frame (the client sees 1006).
    if matches!(end, End::Dropped) {
        tracing::debug!(endpoint, "dropped a WebSocket connection (--ws-drop-rate)");
    }
    drop(socket);
    if realtime {
        app.ws_open.fetch_sub(1, Ordering::Relaxed);
    }
    app.metrics
        .ws_closed(endpoint, opened.elapsed().as_secs_f64());
}

async fn push_frames(
    app: &App,
    socket: &mut WebSocket,
    endpoint: &'static str,
    push: &mut Push,
) -> bool {
    let now = epoch_ms();
    match push {
        Push::Realtime { subs } => {
            for ch in subs.clone() {
                let (kind, frame) = event_frame(&ch, now);
                if !send(app, socket, endpoint, kind, frame).await {
                    return false;
                }
            }
            true
        }
        Push::Metrics => {
            let frame = json!({
                "type": "metrics_update",
                "channel": "system_metrics",
                "source": "system",
                "timestamp": now,
                "metrics": system_metrics(now),
            });
            send(app, socket, endpoint, "metrics_update", frame).await
        }
        Push::Dwcp { job_id, done } => {
            if *done {
                return true;
            }
            let frame = match app.store.get_migration(job_id).await {
                Ok(Some(m)) => {
                    let p = vm_migration::progress_at(&m, now);
                    *done = p.status == "completed" || p.status == "failed";
                    json!({
                        "type": "migration_progress",
                        "channel": "migrations",
                        "timestamp": now,
                        "job_id": m.job_id,
                        "vm_id": m.vm_id,
                        "status": p.status,
                        "phase": p.phase,
                        "progress": p.progress,
                        "data_loss": m.data_loss,
                    })
                }
                Ok(None) => {
                    *done = true;
                    json!({"type": "error", "channel": "migrations", "timestamp": now,
                        "job_id": job_id, "error": "migration not found"})
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading a migration for the DWCP stream");
                    json!({"type": "error", "channel": "migrations", "timestamp": now,
                        "job_id": job_id, "error": "migration state unavailable"})
                }
            };
            send(app, socket, endpoint, "migration_progress", frame).await
        }
    }
}

fn system_metrics(now: i64) -> Value {
    let phase = (now / 1000) as f64;
    json!({
        "timestamp": now,
        "cpu_usage": ((phase / 7.0).sin() * 20.0 + 45.0 * 10.0).round() / 10.0,
        "memory_usage": ((phase / 11.0).cos() * 10.0 + 60.0 * 10.0).round() / 10.0,
        "disk_usage": 52.3,
        "network_io": ((phase / 5.0).sin().abs() * 1e6) as u64,
        "status": "ok",
    })
}

fn event_frame(channel: &str, now: i64) -> (&'static str, Value) {
    let n = (now / 1000) as u64;
    match channel {
        "vm_status" => (
            "vm_status",
            json!({"type": "vm_status", "channel": channel, "timestamp": now,
                "data": {"vm_id": (n % 1000 + 1).to_string(), "state": if n.is_multiple_of(7) { "stopped" } else { "running" }}}),
        ),
        "system_metrics" | "metrics" => (
            "metrics_update",
            json!({"type": "metrics_update", "channel": channel, "timestamp": now, "data": system_metrics(now)}),
        ),
        "alerts" => (
            "alert",
            json!({"type": "alert", "channel": channel, "timestamp": now,
                "data": {"alert_id": format!("alert-{n}"), "severity": if n.is_multiple_of(5) { "high" } else { "low" },
                         "title": "synthetic alert", "source": "novaload-target"}}),
        ),
        _ => (
            "event",
            json!({"type": "event", "channel": channel, "timestamp": now, "data": {}}),
        ),
    }
}

enum Reply {
    Frame(&'static str, Value),
    Disconnect,
}

fn error_frame(msg: &str) -> Reply {
    Reply::Frame(
        "error",
        json!({"type": "error", "channel": "system", "timestamp": epoch_ms(), "error": msg}),
    )
}

fn handle_text(
    app: &App,
    endpoint: &'static str,
    text: &str,
    push: &mut Push,
    client_id: &str,
) -> Reply {
    let Ok(msg) = serde_json::from_str::<Value>(text) else {
        app.metrics.ws_received(endpoint, "invalid");
        return error_frame("message is not valid JSON");
    };
    if !msg.is_object() {
        app.metrics.ws_received(endpoint, "invalid");
        return error_frame("message must be a JSON object");
    }
    let action = msg.get("action").and_then(Value::as_str);
    let kind = msg.get("type").and_then(Value::as_str);
    let label: &'static str = match (action, kind) {
        (Some("subscribe"), _) | (None, Some("subscribe")) => "subscribe",
        (Some("unsubscribe"), _) | (None, Some("unsubscribe")) => "unsubscribe",
        (_, Some("ping")) => "ping",
        (_, Some("vm_query")) => "vm_query",
        (_, Some("metric_query")) => "metric_query",
        (_, Some("event_subscribe")) => "event_subscribe",
        (_, Some("disconnect")) | (Some("disconnect"), _) => "disconnect",
        _ => "other",
    };
    app.metrics.ws_received(endpoint, label);
    // A `traceparent` in the message makes its handling a server span of the caller's trace.
    let span = msg.get("traceparent").and_then(|_| {
        let parent = telemetry::extract(&JsonExtractor(&msg));
        app.tracing.server_span(
            format!("WS {label}"),
            &parent,
            vec![
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("ws.endpoint", endpoint),
            ],
        )
    });
    let now = epoch_ms();
    let reply = match label {
        "subscribe" | "unsubscribe" => {
            let channel = msg
                .get("channel")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty() && c.len() <= 64);
            match channel {
                None => error_frame("subscribe needs \"channel\": a string of 1..64 bytes"),
                Some(ch) => {
                    if let Push::Realtime { subs } = push {
                        if label == "subscribe" {
                            if !subs.iter().any(|s| s == ch) && subs.len() < MAX_SUBSCRIPTIONS {
                                subs.push(ch.to_owned());
                            }
                        } else {
                            subs.retain(|s| s != ch);
                        }
                    }
                    let t = if label == "subscribe" {
                        "subscribed"
                    } else {
                        "unsubscribed"
                    };
                    Reply::Frame(t, json!({"type": t, "channel": ch, "timestamp": now}))
                }
            }
        }
        "ping" => Reply::Frame(
            "pong",
            json!({"type": "pong", "channel": "system", "timestamp": now,
                "client_id": msg.get("client_id").and_then(Value::as_str).unwrap_or(client_id),
                "client_timestamp": msg.get("timestamp")}),
        ),
        "vm_query" => {
            let vm_id = msg.get("vm_id").and_then(Value::as_str).unwrap_or("");
            Reply::Frame(
                "vm_query_response",
                json!({"type": "vm_query_response", "channel": "vm_status", "timestamp": now,
                    "vm_id": vm_id, "action": msg.get("action"),
                    "data": {"vm_id": vm_id, "state": "running"}}),
            )
        }
        "metric_query" => Reply::Frame(
            "metric_query_response",
            json!({"type": "metric_query_response", "channel": "system_metrics", "timestamp": now,
                "resource": msg.get("resource"), "data": system_metrics(now)}),
        ),
        "event_subscribe" => Reply::Frame(
            "event_subscribe_response",
            json!({"type": "event_subscribe_response", "channel": "alerts", "timestamp": now,
                "status": "subscribed", "filters": msg.get("filters")}),
        ),
        "disconnect" => Reply::Disconnect,
        _ => error_frame(
            "unknown message: send action subscribe/unsubscribe or type ping, vm_query, metric_query, event_subscribe, disconnect",
        ),
    };
    if let Some(span) = span {
        telemetry::finish_span(span, 200);
    }
    reply
}
