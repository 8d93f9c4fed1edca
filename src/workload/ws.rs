//! `novaload run ws`: NovaCron's WebSocket realtime test (upstream
//! `tests/load/websocket_load_test.js`, spec §1.3), one session per iteration:
//!
//! 1. handshake to `<WS_URL>/realtime?token=<API_TOKEN>` with `Authorization: Bearer <token>`
//!    (no subprotocol, no compression, k6's fixed 60 s handshake timeout), `traceparent` of the
//!    `ws.session` span injected;
//! 2. on open: `ws_connections_established` +1 and three subscribe frames
//!    (`vm_status`, `system_metrics`, `alerts`);
//! 3. every inbound text frame: `ws_messages_received` +1, JSON-parsed and checked
//!    (`Message has type`, `Message has channel`, `Message has timestamp`,
//!    `Message timestamp is recent`), latency = receive time − `timestamp`;
//! 4. an app-level JSON ping every `ping_every` (5 s) and a random query every `query_every`
//!    (10 s), timers counted from the open;
//! 5. after a random `session_min..session_max` (30–60 s): `{"type":"disconnect"}`, close 1001;
//! 6. check `WebSocket connection established`, then sleep 1 s.
//!
//! Every frame we send carries a `"traceparent"` field when tracing is on.
//!
//! Upstream defects fixed (spec §5.B/§5.C):
//! - B1: `ws_errors` records `false` for each success as well as `true` for each failure, so its
//!   rate is a real rate. Samples: one per connection attempt (the handshake check), one per
//!   inbound text frame (parse + checks), and one `true` per post-open error event.
//! - B11: `ws_connections_failed` also counts failed handshakes (upstream counted only post-open
//!   error events), so established / (established + failed) is an honest success rate.
//! - B12: `Message timestamp is recent` passes when |latency| < 5000 ms (upstream used the signed
//!   latency, so any future timestamp passed); the Trend records |latency| as upstream.
//! - C3: `ws_connection_success` (Rate) is a real metric for the README's "> 95%": exactly one
//!   sample per connection attempt — `false` when the handshake fails (non-101 status, refused,
//!   reset, TLS failure, 60 s timeout), `false` when an opened connection later ends abnormally
//!   (a server close code other than 1000/1001, an empty close frame (1005), a drop without a
//!   close frame (1006), a failed send), `true` otherwise (we closed it, the server closed it
//!   with 1000/1001, or the run ended while it was open). Opened connections are decided when
//!   they end, so a drop late in a session still counts against success.
//!
//! Also recorded: `ws_connections_active` (Gauge, the number open in this process after each
//! open/close; its `max` is the peak concurrency), so "100,000 concurrent" is measured.
//!
//! Memory: one task per connection (the VU's own), a 4 KiB read buffer, eager writes, 64 KiB
//! message limit, timers polled in one `select!` loop; nothing else per connection.

use super::failure::record_failure;
use super::{Vu, Workload};
use crate::error::{ConfigError, ErrorKind};
use crate::metrics::{Contains, MetricId, MetricKind, Recorder, Registry, Sample, Tags, WsConnect};
use crate::net::stream::Stream;
use crate::telemetry::{AttrValue, LiveSeries, SpanKind, Telemetry};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Metric names (the upstream contract plus the fixed-mode additions).
pub mod metric {
    pub const ERRORS: &str = "ws_errors";
    pub const MESSAGE_LATENCY: &str = "ws_message_latency";
    pub const CONNECTION_TIME: &str = "ws_connection_time";
    pub const MESSAGES_RECEIVED: &str = "ws_messages_received";
    pub const MESSAGES_SENT: &str = "ws_messages_sent";
    pub const CONNECTIONS_ESTABLISHED: &str = "ws_connections_established";
    pub const CONNECTIONS_FAILED: &str = "ws_connections_failed";
    /// Fixed mode (§5.C3): one sample per connection attempt.
    pub const CONNECTION_SUCCESS: &str = "ws_connection_success";
    /// Fixed mode: connections open in this process (Gauge; `max` = peak concurrency).
    pub const CONNECTIONS_ACTIVE: &str = "ws_connections_active";
}

/// Check names, exactly as upstream.
pub mod check {
    pub const HAS_TYPE: &str = "Message has type";
    pub const HAS_CHANNEL: &str = "Message has channel";
    pub const HAS_TIMESTAMP: &str = "Message has timestamp";
    pub const TIMESTAMP_RECENT: &str = "Message timestamp is recent";
    pub const ESTABLISHED: &str = "WebSocket connection established";
}

/// k6's fixed WebSocket handshake timeout (TCP connect + TLS + upgrade).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Think time after each session (upstream `sleep(1)`).
pub(crate) const SLEEP_AFTER_SESSION: Duration = Duration::from_secs(1);
/// How long to wait for the server's close reply after we send ours.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// A frame is "recent" when |receive time − timestamp| is below this (ms).
pub(crate) const RECENT_MS: f64 = 5000.0;
/// How much of a refused upgrade's response body goes into the failure's reason.
const UPGRADE_BODY_CHARS: usize = 120;

/// Per-connection buffers: small on purpose (target ≤ 16 KiB client memory per idle connection).
pub(crate) fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

/// What the ws test needs.
#[derive(Clone)]
pub struct WsConfig {
    /// Base URL (`WS_URL`), e.g. `ws://127.0.0.1:8080/ws`; `/realtime?token=...` is appended.
    pub ws_url: String,
    /// `API_TOKEN`: pasted unencoded into the query string (as upstream) and sent as Bearer.
    pub token: String,
    /// Source addresses to bind, round-robin (see `crate::capacity::plan_source_ips`); empty: don't bind.
    pub source_ips: Vec<IpAddr>,
    /// TLS client configuration for `wss://` (webpki roots when None).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Session length is uniform in `session_min..session_max` (upstream 30 s..60 s).
    pub session_min: Duration,
    pub session_max: Duration,
    /// App-level JSON ping period (upstream 5 s).
    pub ping_every: Duration,
    /// Random query period (upstream 10 s).
    pub query_every: Duration,
}

impl WsConfig {
    /// Upstream defaults (`WS_URL` `ws://localhost:8080/ws`, `API_TOKEN` `test-token-123`).
    pub fn upstream() -> Self {
        Self {
            ws_url: "ws://localhost:8080/ws".into(),
            token: "test-token-123".into(),
            source_ips: Vec::new(),
            tls: None,
            session_min: Duration::from_secs(30),
            session_max: Duration::from_secs(60),
            ping_every: Duration::from_secs(5),
            query_every: Duration::from_secs(10),
        }
    }

    /// The session URL, built as upstream does: string concatenation, token unencoded.
    pub fn realtime_url(&self) -> String {
        format!(
            "{}/realtime?token={}",
            self.ws_url.trim_end_matches('/'),
            self.token
        )
    }

    /// Rejects what would make every session fail the same way, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.realtime_url();
        let uri: Uri = url.parse().map_err(|e| {
            ConfigError::new(
                "WS_URL",
                format!("'{url}' is not a valid URL ({e})"),
                "give a base like ws://127.0.0.1:8080/ws and a token of URL-safe characters",
            )
        })?;
        if !matches!(uri.scheme_str(), Some("ws" | "wss")) || uri.host().is_none() {
            return Err(ConfigError::new(
                "WS_URL",
                format!("'{}' is not a ws:// or wss:// URL", self.ws_url),
                "give a base like ws://127.0.0.1:8080/ws",
            ));
        }
        if HeaderValue::from_str(&format!("Bearer {}", self.token)).is_err() {
            return Err(ConfigError::new(
                "API_TOKEN",
                "the token cannot be sent in a header",
                "use visible ASCII",
            ));
        }
        if self.session_min > self.session_max {
            return Err(ConfigError::new(
                "session",
                "session_min is longer than session_max",
                "give session_min <= session_max",
            ));
        }
        if self.ping_every.is_zero() || self.query_every.is_zero() {
            return Err(ConfigError::new(
                "ping/query interval",
                "an interval is zero",
                "give positive intervals (upstream: 5s and 10s)",
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Metrics {
    errors: MetricId,
    latency: MetricId,
    conn_time: MetricId,
    received: MetricId,
    sent: MetricId,
    established: MetricId,
    failed: MetricId,
    success: MetricId,
    active: MetricId,
}

/// The ws test. Shared by all VUs.
pub struct WsWorkload {
    cfg: WsConfig,
    url: String,
    host: String,
    port: u16,
    secure: bool,
    tls: Option<tokio_rustls::TlsConnector>,
    m: Metrics,
    next_ip: AtomicUsize,
    /// Open connections. A mutex rather than an atomic: the gauge sample is recorded while it
    /// is held, so samples' timestamps follow the count's order (with an atomic, a thread
    /// preempted between its update and its sample could publish a stale count as the newest).
    active: std::sync::Mutex<i64>,
    /// The open-file limit after raising (0 if unknown), for notes.
    pub fd_limit: u64,
}

impl WsWorkload {
    /// Declares the metrics and raises the soft fd limit to the hard one. The config should have
    /// passed [`WsConfig::validate`]; if not, every session fails its handshake (counted).
    pub fn new(cfg: WsConfig, registry: &mut Registry) -> Self {
        let m = Metrics {
            errors: registry.declare(metric::ERRORS, MetricKind::Rate, Contains::Default),
            // upstream declares these with `new Trend(name)`; values are milliseconds
            latency: registry.declare(metric::MESSAGE_LATENCY, MetricKind::Trend, Contains::Time),
            conn_time: registry.declare(metric::CONNECTION_TIME, MetricKind::Trend, Contains::Time),
            received: registry.declare(
                metric::MESSAGES_RECEIVED,
                MetricKind::Counter,
                Contains::Default,
            ),
            sent: registry.declare(
                metric::MESSAGES_SENT,
                MetricKind::Counter,
                Contains::Default,
            ),
            established: registry.declare(
                metric::CONNECTIONS_ESTABLISHED,
                MetricKind::Counter,
                Contains::Default,
            ),
            failed: registry.declare(
                metric::CONNECTIONS_FAILED,
                MetricKind::Counter,
                Contains::Default,
            ),
            success: registry.declare(
                metric::CONNECTION_SUCCESS,
                MetricKind::Rate,
                Contains::Default,
            ),
            active: registry.declare(
                metric::CONNECTIONS_ACTIVE,
                MetricKind::Gauge,
                Contains::Default,
            ),
        };
        let fd_limit = crate::capacity::raise_nofile_limit().unwrap_or(0);
        let url = cfg.realtime_url();
        let uri: Option<Uri> = url.parse().ok();
        let secure = uri.as_ref().and_then(|u| u.scheme_str()) == Some("wss");
        let host = uri
            .as_ref()
            .and_then(|u| u.host())
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri
            .as_ref()
            .and_then(|u| u.port_u16())
            .unwrap_or(if secure { 443 } else { 80 });
        let tls = secure.then(|| {
            let config = cfg.tls.clone().unwrap_or_else(default_tls);
            tokio_rustls::TlsConnector::from(config)
        });
        Self {
            cfg,
            url,
            host,
            port,
            secure,
            tls,
            m,
            next_ip: AtomicUsize::new(0),
            active: std::sync::Mutex::new(0),
            fd_limit,
        }
    }

    pub fn config(&self) -> &WsConfig {
        &self.cfg
    }

    /// Connections open right now in this process.
    pub fn active_connections(&self) -> i64 {
        *self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn tcp(&self) -> io::Result<TcpStream> {
        let source = if self.cfg.source_ips.is_empty() {
            None
        } else {
            let i = self.next_ip.fetch_add(1, Ordering::Relaxed) % self.cfg.source_ips.len();
            Some(self.cfg.source_ips[i])
        };
        let mut last_err = None;
        for addr in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
            let res = match source {
                None => TcpStream::connect(addr).await,
                Some(ip) if ip.is_ipv4() != addr.is_ipv4() => continue,
                Some(ip) => {
                    let sock = if ip.is_ipv4() {
                        TcpSocket::new_v4()?
                    } else {
                        TcpSocket::new_v6()?
                    };
                    sock.bind(SocketAddr::new(ip, 0))?;
                    sock.connect(addr).await
                }
            };
            match res {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "no address of {} matches the source address family",
                    self.host
                ),
            )
        }))
    }

    /// TCP (+TLS) + upgrade. Errors carry the HTTP status (0 when no response came back).
    async fn connect(
        &self,
        traceparent: Option<&str>,
    ) -> Result<WebSocketStream<Stream>, (u16, ErrorKind, String)> {
        let mut req = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| (0, ErrorKind::Other, format!("bad request: {e}")))?;
        let h = req.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", self.cfg.token)) {
            h.insert("authorization", v);
        }
        h.insert(
            "user-agent",
            HeaderValue::from_static(concat!("novaload/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(v) = traceparent.and_then(|t| HeaderValue::from_str(t).ok()) {
            h.insert("traceparent", v);
        }
        // messages name host:port, never the URL (its query carries the token)
        let peer = format!("{}:{}", self.host, self.port);
        let tcp = self
            .tcp()
            .await
            .map_err(|e| (0, ErrorKind::Connect, format!("connect to {peer}: {e}")))?;
        let stream = match &self.tls {
            Some(tls) if self.secure => {
                let name =
                    rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(|e| {
                        (
                            0,
                            ErrorKind::Tls,
                            format!("TLS server name {}: {e}", self.host),
                        )
                    })?;
                let s = tls.connect(name, tcp).await.map_err(|e| {
                    let why = crate::net::http::describe_handshake_error(&e);
                    (
                        0,
                        ErrorKind::Tls,
                        format!("TLS handshake with {peer}: {why}"),
                    )
                })?;
                Stream::Tls(Box::new(s))
            }
            _ => Stream::Plain(tcp),
        };
        match tokio_tungstenite::client_async_with_config(req, stream, Some(websocket_config()))
            .await
        {
            Ok((ws, _resp)) => Ok(ws),
            Err(WsError::Http(resp)) => {
                let status = resp.status();
                let mut msg = format!(
                    "WebSocket upgrade refused by {peer}: HTTP {} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                );
                // the server's own words, when it sent some ("invalid token")
                if let Some(body) = resp.body().as_deref().map(String::from_utf8_lossy) {
                    let body = body.trim();
                    if !body.is_empty() {
                        msg.push_str(": ");
                        msg.extend(body.chars().take(UPGRADE_BODY_CHARS));
                    }
                }
                Err((status.as_u16(), ErrorKind::Status, msg))
            }
            Err(WsError::Io(e)) => Err((
                0,
                ErrorKind::Connect,
                format!("WebSocket handshake with {peer}: {e}"),
            )),
            Err(WsError::Tls(e)) => {
                Err((0, ErrorKind::Tls, format!("TLS handshake with {peer}: {e}")))
            }
            Err(e) => Err((
                0,
                ErrorKind::Protocol,
                format!("WebSocket handshake with {peer}: {e}"),
            )),
        }
    }

    fn sent(&self, vu: &Vu) {
        vu.record(Sample::WsMessage {
            counter: self.m.sent,
            sent: true,
        });
    }

    /// One inbound text frame: count, parse, check, latency. `recv_ms` is taken on arrival.
    fn on_text(&self, vu: &Vu, text: &str, recv_ms: f64, trace: Option<&str>) {
        vu.record(Sample::WsMessage {
            counter: self.m.received,
            sent: false,
        });
        let v: serde_json::Value = match serde_json::from_str(text) {
            // JSON.parse throws, or the checks throw on `null.type`: ws_errors, no check samples
            Ok(serde_json::Value::Null) | Err(_) => {
                record_failure(
                    vu,
                    self.m.errors,
                    ErrorKind::Body,
                    "WebSocket frame is not a JSON object",
                );
                vu.error("ws.message", ErrorKind::Body);
                return;
            }
            Ok(v) => v,
        };
        // `msg.x !== undefined`: the key is present (JSON null counts as present). Non-object
        // JSON (a number, a string, an array) has no keys, so every check fails, as in JS.
        let ok_type = vu.check(check::HAS_TYPE, v.get("type").is_some());
        let ok_channel = vu.check(check::HAS_CHANNEL, v.get("channel").is_some());
        let ts = v.get("timestamp");
        let ok_has_ts = vu.check(check::HAS_TIMESTAMP, ts.is_some());
        let recent = match ts.and_then(timestamp_ms) {
            Some(ts_ms) => {
                let latency = recv_ms - ts_ms;
                vu.record(Sample::WsLatency {
                    trend: self.m.latency,
                    ms: latency.abs(),
                    trace,
                });
                latency.abs() < RECENT_MS
            }
            None => false,
        };
        let ok_recent = vu.check(check::TIMESTAMP_RECENT, recent);
        let all = ok_type && ok_channel && ok_has_ts && ok_recent;
        if all {
            vu.rate(self.m.errors, false);
        } else {
            let message = bad_frame(&v, ok_has_ts);
            record_failure(vu, self.m.errors, ErrorKind::Check, &message);
            vu.error("ws.message", ErrorKind::Check);
        }
    }

    fn random_query(&self, vu: &mut Vu) -> serde_json::Value {
        match vu.rng.random_range(0..3u8) {
            0 => serde_json::json!({
                "type": "vm_query",
                "action": "get_status",
                "vm_id": format!("vm-{}", vu.rng.random_range(0..1000u32)),
            }),
            1 => serde_json::json!({
                "type": "metric_query",
                "action": "get_metrics",
                "resource": "cpu",
            }),
            _ => serde_json::json!({
                "type": "event_subscribe",
                "filters": {"severity": "high"},
            }),
        }
    }

    /// The open part of a session, until we close, the server closes, or the connection fails.
    async fn session(
        &self,
        vu: &mut Vu,
        ws: &mut WebSocketStream<Stream>,
        traceparent: Option<&str>,
        trace: Option<&str>,
    ) -> SessionEnd {
        let send = |v: serde_json::Value| Message::text(with_traceparent(v, traceparent));
        for channel in ["vm_status", "system_metrics", "alerts"] {
            let msg = send(serde_json::json!({"action": "subscribe", "channel": channel}));
            if let Err(e) = ws.send(msg).await {
                return SessionEnd::Error(1006, format!("send: {e}"));
            }
            self.sent(vu);
        }
        let opened = tokio::time::Instant::now();
        let min = self.cfg.session_min.as_millis() as u64;
        let max = self.cfg.session_max.as_millis() as u64;
        let length = if max > min {
            vu.rng.random_range(min..max)
        } else {
            min
        };
        let deadline = tokio::time::sleep_until(opened + Duration::from_millis(length));
        tokio::pin!(deadline);
        let mut ping = tokio::time::interval_at(opened + self.cfg.ping_every, self.cfg.ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut query =
            tokio::time::interval_at(opened + self.cfg.query_every, self.cfg.query_every);
        query.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = vu.stop.clone();
        loop {
            // biased: the session end wins over a timer tick due at the same instant
            let out = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    close(ws).await;
                    return SessionEnd::Closed;
                }
                _ = &mut deadline => {
                    let msg = send(serde_json::json!({"type": "disconnect"}));
                    if let Err(e) = ws.send(msg).await {
                        return SessionEnd::Error(1006, format!("send: {e}"));
                    }
                    self.sent(vu);
                    close(ws).await;
                    return SessionEnd::Closed;
                }
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => {
                        self.on_text(vu, t.as_str(), now_ms(), trace);
                        None
                    }
                    Some(Ok(Message::Close(frame))) => {
                        // tungstenite queued the echo of the server's code; flush it out
                        let _ = ws.flush().await;
                        let reason = frame.as_ref().map(|f| f.reason.as_str()).unwrap_or("");
                        let code = frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(1005);
                        return if matches!(code, 1000 | 1001) {
                            SessionEnd::ServerClosed(code)
                        } else if reason.is_empty() {
                            SessionEnd::Error(code, format!("closed by the server with code {code}"))
                        } else {
                            SessionEnd::Error(
                                code,
                                format!("closed by the server with code {code} ({reason})"),
                            )
                        };
                    }
                    // binary frames have no handler upstream; pings are answered by tungstenite
                    Some(Ok(_)) => None,
                    Some(Err(e)) => return SessionEnd::Error(1006, format!("read: {e}")),
                    None => return SessionEnd::Error(1006, "connection dropped without a close frame".into()),
                },
                _ = ping.tick() => Some(serde_json::json!({
                    "type": "ping",
                    "timestamp": now_ms() as u64,
                    "client_id": format!("client-{}-{}", vu.id, random_lowercase(&mut vu.rng, 8)),
                })),
                _ = query.tick() => Some(self.random_query(vu)),
            };
            if let Some(v) = out {
                if let Err(e) = ws.send(send(v)).await {
                    return SessionEnd::Error(1006, format!("send: {e}"));
                }
                self.sent(vu);
            }
        }
    }

    fn handshake_failed(
        &self,
        vu: &Vu,
        status: u16,
        kind: ErrorKind,
        message: &str,
        trace: Option<&str>,
    ) {
        vu.record(Sample::WsConnect {
            outcome: WsConnect::Failed {
                failed: self.m.failed,
                success: self.m.success,
                status,
                kind,
            },
            trace,
        });
        vu.rate(self.m.errors, true);
        vu.rec.record_reason(kind, message);
    }
}

impl Workload for WsWorkload {
    async fn iteration(&self, vu: &mut Vu) {
        let mut span = vu.span(
            "ws.session",
            SpanKind::Client,
            &[
                ("url.template", AttrValue::Static("/realtime")),
                ("server.address", AttrValue::Str(self.host.clone())),
                ("server.port", AttrValue::I64(i64::from(self.port))),
            ],
        );
        let traceparent = span.traceparent();
        let trace = span.sampled_trace_id();
        let started = Instant::now();
        let conn =
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.connect(traceparent.as_deref()))
                .await
            {
                Ok(r) => r,
                Err(_) => Err((
                    0,
                    ErrorKind::Timeout,
                    format!(
                        "WebSocket handshake with {}:{}: no answer within {}s",
                        self.host,
                        self.port,
                        HANDSHAKE_TIMEOUT.as_secs()
                    ),
                )),
            };
        match conn {
            Err((status, kind, msg)) => {
                vu.check(check::ESTABLISHED, false);
                self.handshake_failed(vu, status, kind, &msg, trace.as_deref());
                span.set_attribute("error.type", AttrValue::Static(kind.as_str()));
                if status != 0 {
                    span.set_attribute(
                        "http.response.status_code",
                        AttrValue::I64(i64::from(status)),
                    );
                }
                span.end(Some(&msg));
            }
            Ok(mut ws) => {
                let connect_ms = started.elapsed().as_secs_f64() * 1000.0;
                vu.record(Sample::WsConnect {
                    outcome: WsConnect::Opened {
                        time: self.m.conn_time,
                        established: self.m.established,
                        connect_ms,
                    },
                    trace: trace.as_deref(),
                });
                let mut guard = OpenGuard::new(self, vu);
                let end = self
                    .session(vu, &mut ws, traceparent.as_deref(), trace.as_deref())
                    .await;
                drop(ws);
                let code = match &end {
                    SessionEnd::Closed => 1001,
                    SessionEnd::ServerClosed(c) | SessionEnd::Error(c, _) => *c,
                };
                span.set_attribute("websocket.close_code", AttrValue::I64(i64::from(code)));
                match end {
                    SessionEnd::Error(_, msg) => {
                        // the k6 `error` event
                        guard.failed = true;
                        let tags = Tags {
                            error_kind: Some(ErrorKind::Protocol),
                            ..vu.tags.clone()
                        };
                        vu.metric(self.m.failed, 1.0, Some(&tags));
                        vu.rate(self.m.errors, true);
                        vu.error("ws.session", ErrorKind::Protocol);
                        vu.rec.record_reason(
                            ErrorKind::Protocol,
                            &format!("WebSocket session with {}:{}: {msg}", self.host, self.port),
                        );
                        drop(guard);
                        span.set_attribute("error.type", AttrValue::Static("protocol"));
                        span.end(Some(&msg));
                    }
                    SessionEnd::Closed | SessionEnd::ServerClosed(_) => {
                        drop(guard);
                        vu.record(Sample::Operation {
                            name: "ws.session",
                            error: None,
                        });
                        span.end(None);
                    }
                }
                vu.check(check::ESTABLISHED, true);
                vu.rate(self.m.errors, false);
            }
        }
        vu.sleep(SLEEP_AFTER_SESSION).await;
    }
}

/// How an opened session ended.
enum SessionEnd {
    /// We closed it (session timer or end of run), code 1001.
    Closed,
    /// The server closed it with 1000 or 1001.
    ServerClosed(u16),
    /// k6's `error` event: abnormal close code, drop without close frame (1006), failed send.
    Error(u16, String),
}

/// Keeps the open-connection count and records the connection's `ws_connection_success` sample
/// exactly once, also when the run ends mid-session and the iteration future is dropped.
struct OpenGuard<'a> {
    wl: &'a WsWorkload,
    rec: Arc<Recorder>,
    tags: Tags,
    tel: Telemetry,
    live: LiveSeries,
    failed: bool,
}

impl<'a> OpenGuard<'a> {
    fn new(wl: &'a WsWorkload, vu: &Vu) -> Self {
        {
            let mut active = wl.active.lock().unwrap_or_else(|e| e.into_inner());
            *active += 1;
            vu.record(Sample::WsOpen {
                gauge: wl.m.active,
                open: *active as f64,
                delta: 1,
            });
        }
        Self {
            wl,
            rec: vu.rec.clone(),
            tags: vu.tags.clone(),
            tel: vu.tel.clone(),
            live: vu.live.clone(),
            failed: false,
        }
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        let record = |s: Sample<'_>| {
            super::record(&self.rec, &self.tags, &self.tel, &self.live, &s);
        };
        {
            let mut active = self.wl.active.lock().unwrap_or_else(|e| e.into_inner());
            *active -= 1;
            record(Sample::WsOpen {
                gauge: self.wl.m.active,
                open: *active as f64,
                delta: -1,
            });
        }
        let tags = if self.failed {
            Tags {
                error_kind: Some(ErrorKind::Protocol),
                ..self.tags.clone()
            }
        } else {
            self.tags.clone()
        };
        record(Sample::Metrics {
            values: &[(self.wl.m.success, if self.failed { 0.0 } else { 1.0 })],
            tags: Some(&tags),
        });
    }
}

/// Sends close 1001 (k6's `socket.close()`), then waits briefly for the server's reply.
async fn close(ws: &mut WebSocketStream<Stream>) {
    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: "".into(),
    };
    if ws.close(Some(frame)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Why a parsed frame failed its checks (one message per combination, so the reasons stay few):
/// the fields it lacks, or a timestamp that is unreadable or not recent.
fn bad_frame(v: &serde_json::Value, has_timestamp: bool) -> String {
    let missing: Vec<&str> = ["type", "channel", "timestamp"]
        .into_iter()
        .filter(|k| v.get(k).is_none())
        .collect();
    if !missing.is_empty() {
        format!("WebSocket frame has no \"{}\"", missing.join("\", \""))
    } else if has_timestamp && v.get("timestamp").and_then(timestamp_ms).is_none() {
        "WebSocket frame timestamp is not a date (epoch ms or ISO-8601)".into()
    } else {
        format!(
            "WebSocket frame timestamp is {} s or more from the receive time",
            RECENT_MS / 1000.0
        )
    }
}

/// Adds `"traceparent"` to a JSON object when tracing is on; serializes.
fn with_traceparent(mut v: serde_json::Value, traceparent: Option<&str>) -> String {
    if let (Some(tp), Some(obj)) = (traceparent, v.as_object_mut()) {
        obj.insert("traceparent".into(), serde_json::Value::from(tp));
    }
    v.to_string()
}

/// Epoch milliseconds now (JS `Date.now()`), as f64.
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// JS `new Date(timestamp)` for the values servers send: an epoch-ms number or an ISO-8601
/// string (RFC 3339 with offset; without an offset taken as UTC; a bare date as UTC midnight).
/// None for falsy values (absent, null, 0, "", false) and for what does not parse (JS NaN):
/// then the recent-check fails and no latency is recorded, as in k6.
pub(crate) fn timestamp_ms(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().filter(|x| *x != 0.0 && x.is_finite()),
        serde_json::Value::String(s) if !s.is_empty() => {
            let s = s.trim();
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                return Some(t.timestamp_millis() as f64);
            }
            for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
                if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
                    return Some(t.and_utc().timestamp_millis() as f64);
                }
            }
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_millis() as f64)
        }
        _ => None,
    }
}

/// k6-utils `randomString(n)`: lowercase a–z.
fn random_lowercase(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

fn default_tls() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_as_js_date_reads_them() {
        assert_eq!(
            timestamp_ms(&json!(1_700_000_000_123u64)),
            Some(1_700_000_000_123.0)
        );
        assert_eq!(
            timestamp_ms(&json!("2023-11-14T22:13:20.123Z")),
            Some(1_700_000_000_123.0)
        );
        // Go's RFC3339Nano with an offset
        assert_eq!(
            timestamp_ms(&json!("2023-11-14T23:13:20.123456789+01:00")),
            Some(1_700_000_000_123.0)
        );
        assert_eq!(
            timestamp_ms(&json!("2023-11-14T22:13:20")),
            Some(1_700_000_000_000.0)
        );
        assert_eq!(
            timestamp_ms(&json!("2023-11-14")),
            Some(1_699_920_000_000.0)
        );
        // falsy or unparseable: no latency, check fails
        for v in [
            json!(0),
            json!(""),
            json!(null),
            json!(false),
            json!("yesterday"),
            json!({}),
        ] {
            assert_eq!(timestamp_ms(&v), None, "{v}");
        }
    }

    #[test]
    fn url_is_concatenated_like_upstream() {
        let mut c = WsConfig::upstream();
        assert_eq!(
            c.realtime_url(),
            "ws://localhost:8080/ws/realtime?token=test-token-123"
        );
        c.ws_url = "ws://127.0.0.1:9/".into();
        assert_eq!(
            c.realtime_url(),
            "ws://127.0.0.1:9/realtime?token=test-token-123"
        );
        assert!(c.validate().is_ok());
        c.ws_url = "http://127.0.0.1:9".into();
        assert!(c.validate().is_err());
        c.ws_url = "ws://127.0.0.1:9".into();
        c.token = "bad token".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn traceparent_goes_into_json_objects_only_when_present() {
        let v = json!({"type": "ping"});
        assert_eq!(with_traceparent(v.clone(), None), r#"{"type":"ping"}"#);
        let s = with_traceparent(
            v,
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            back["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }

    #[test]
    fn random_strings_are_lowercase() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let s = random_lowercase(&mut rng, 8);
        assert_eq!(s.len(), 8);
        assert!(s.bytes().all(|b| b.is_ascii_lowercase()));
    }
}
