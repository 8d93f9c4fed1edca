//! The DWCP v3 migration workload: spec §1.2, request for request, with the upstream defects
//! fixed: `dwcp_errors` counts successes too (B1), a failed stream handshake counts as an
//! error, a non-JSON frame is an error rather than an aborted iteration (B10), and the number
//! of migrations in flight is measured (`dwcp_concurrent_migrations`) so "1,000 concurrent"
//! is a threshold, not an assumption. One span covers each migration, POST to completion,
//! with a `phase` event whenever the polled phase changes.
//!
//! Every `dwcp_errors` failure is explained. A failed request is counted (with its kind and
//! reason) by [`Vu::request`]; every other failure — a response without what the checks want,
//! a migration that failed, lost data or never completed, a `/stream` handshake refused
//! (`status`, with the HTTP status), unreachable (`connect`), untrusted (`tls`) or timed out,
//! a stream frame that is not JSON or lacks a field, an abnormal close — tags its `true`
//! sample with a kind for the summary's errors-by-kind table and records its message
//! ([`super::failure::record_failure`]).

use super::endpoints::{Endpoints, field, id_string, truthy};
use super::failure::{missing_field, record_failure, record_group, wrong_status};
use super::{Req, Vu, Workload};
use crate::error::ErrorKind;
use crate::metrics::{Contains, MetricId, MetricKind, Registry, Sample};
use crate::telemetry::{AttrValue, SpanKind};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Method;
use rand::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const ZONES: [&str; 3] = ["us-west-1", "us-east-1", "eu-west-1"];

/// k6's fixed WebSocket handshake timeout, for the `/stream` socket.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The kind and reason of a failed `/stream` handshake: a refused upgrade is `status` with the
/// HTTP status, an unreachable server `connect`, a certificate problem `tls`, the rest
/// `protocol`.
fn handshake_failure(e: &WsError) -> (ErrorKind, String) {
    match e {
        WsError::Http(resp) => {
            let status = resp.status();
            (
                ErrorKind::Status,
                format!(
                    "DWCP stream handshake: HTTP {} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                )
                .trim_end()
                .to_string(),
            )
        }
        WsError::Io(io) => (ErrorKind::Connect, format!("DWCP stream handshake: {io}")),
        WsError::Tls(tls) => (ErrorKind::Tls, format!("DWCP stream handshake: TLS: {tls}")),
        other => (
            ErrorKind::Protocol,
            format!("DWCP stream handshake: {other}"),
        ),
    }
}

/// The kind and reason of a stream frame that failed its checks: not a JSON object (`body`),
/// or an object without `type`/`timestamp` (`check`).
fn bad_frame(v: Option<&serde_json::Value>) -> (ErrorKind, String) {
    let Some(v) = v else {
        return (
            ErrorKind::Body,
            "DWCP stream frame is not a JSON object".into(),
        );
    };
    let missing: Vec<&str> = ["type", "timestamp"]
        .into_iter()
        .filter(|k| v.get(k).is_none())
        .collect();
    (
        ErrorKind::Check,
        format!("DWCP stream frame has no \"{}\"", missing.join("\", \"")),
    )
}

/// `: reason` of a close frame, or nothing when the server gave none.
fn close_reason(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

pub struct DwcpWorkload {
    ep: Endpoints,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// How often to poll a migration (upstream: 1 s) and how many times (30).
    pub poll_every: Duration,
    pub max_polls: u32,
    /// How long the stream socket stays open (upstream: 5 s).
    pub stream_for: Duration,
    in_flight: Arc<AtomicI64>,
    dwcp_errors: MetricId,
    migration_duration: MetricId,
    dwcp_protocol_latency: MetricId,
    vm_migrations_total: MetricId,
    failed_migrations: MetricId,
    concurrent: MetricId,
}

impl DwcpWorkload {
    pub fn new(ep: Endpoints, registry: &mut Registry) -> Self {
        Self {
            headers: ep.json_auth_headers(),
            ep,
            poll_every: Duration::from_secs(1),
            max_polls: 30,
            stream_for: Duration::from_secs(5),
            in_flight: Arc::new(AtomicI64::new(0)),
            dwcp_errors: registry.declare("dwcp_errors", MetricKind::Rate, Contains::Default),
            migration_duration: registry.declare(
                "migration_duration",
                MetricKind::Trend,
                Contains::Time,
            ),
            dwcp_protocol_latency: registry.declare(
                "dwcp_protocol_latency",
                MetricKind::Trend,
                Contains::Time,
            ),
            vm_migrations_total: registry.declare(
                "vm_migrations_total",
                MetricKind::Counter,
                Contains::Default,
            ),
            failed_migrations: registry.declare(
                "failed_migrations",
                MetricKind::Counter,
                Contains::Default,
            ),
            concurrent: registry.declare(
                "dwcp_concurrent_migrations",
                MetricKind::Gauge,
                Contains::Default,
            ),
        }
    }

    fn migration_started(&self, vu: &Vu) {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        vu.record(Sample::MigrationInFlight {
            gauge: self.concurrent,
            in_flight: now as f64,
            delta: 1,
        });
    }

    fn migration_ended(&self, vu: &Vu) {
        let now = self.in_flight.fetch_sub(1, Ordering::Relaxed) - 1;
        vu.record(Sample::MigrationInFlight {
            gauge: self.concurrent,
            in_flight: now as f64,
            delta: -1,
        });
    }

    /// Step 6: the `/stream` socket for `stream_for`, checking each frame.
    async fn stream(&self, vu: &mut Vu, job_id: &str) {
        let url = format!("{}/stream?job_id={job_id}", self.ep.dwcp_ws_url);
        let mut span = vu.span(
            "WS /dwcp/v3/stream",
            SpanKind::Client,
            &[("url.template", AttrValue::Static("/dwcp/v3/stream"))],
        );
        let mut req = match url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => {
                let message = format!("DWCP stream: bad URL: {e}");
                record_failure(vu, self.dwcp_errors, ErrorKind::Other, &message);
                vu.error("dwcp stream", ErrorKind::Other);
                span.end(Some(&message));
                return;
            }
        };
        for (k, v) in &self.headers {
            if k == http::header::AUTHORIZATION {
                req.headers_mut().insert(k.clone(), v.clone());
            }
        }
        if let Some(tp) = span
            .traceparent()
            .and_then(|v| http::HeaderValue::from_str(&v).ok())
        {
            req.headers_mut().insert("traceparent", tp);
        }
        let connect =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::connect_async(req)).await;
        let mut socket = match connect {
            Ok(Ok((s, _))) => s,
            Ok(Err(e)) => {
                // upstream silently ignores a failed handshake; an unreachable stream is an error
                let (kind, message) = handshake_failure(&e);
                record_failure(vu, self.dwcp_errors, kind, &message);
                vu.error("dwcp stream", kind);
                span.set_attribute("error.type", AttrValue::Static(kind.as_str()));
                span.end(Some(&message));
                return;
            }
            Err(_) => {
                let message = format!(
                    "DWCP stream handshake timed out after {}s",
                    HANDSHAKE_TIMEOUT.as_secs()
                );
                record_failure(vu, self.dwcp_errors, ErrorKind::Timeout, &message);
                vu.error("dwcp stream", ErrorKind::Timeout);
                span.set_attribute("error.type", AttrValue::Static("timeout"));
                span.end(Some(&message));
                return;
            }
        };
        let sub = match span.traceparent() {
            Some(tp) => {
                format!(r#"{{"action":"subscribe","channel":"migrations","traceparent":"{tp}"}}"#)
            }
            None => r#"{"action":"subscribe","channel":"migrations"}"#.to_string(),
        };
        let _ = socket.send(Message::text(sub)).await;
        let until = tokio::time::Instant::now() + self.stream_for;
        let mut frames = 0u64;
        let mut error: Option<String> = None;
        loop {
            let next = tokio::select! {
                m = socket.next() => m,
                _ = tokio::time::sleep_until(until) => break,
                _ = vu.stop.cancelled() => break,
            };
            match next {
                Some(Ok(Message::Text(t))) => {
                    frames += 1;
                    let v: Option<serde_json::Value> = serde_json::from_str(t.as_str())
                        .ok()
                        .filter(|v: &serde_json::Value| v.is_object());
                    let ok = [
                        vu.check(
                            "WS message has type",
                            v.as_ref().and_then(|v| v.get("type")).is_some(),
                        ),
                        vu.check(
                            "WS message has timestamp",
                            v.as_ref().and_then(|v| v.get("timestamp")).is_some(),
                        ),
                    ]
                    .iter()
                    .all(|b| *b);
                    if ok {
                        vu.rate(self.dwcp_errors, false);
                    } else {
                        let (kind, message) = bad_frame(v.as_ref());
                        record_failure(vu, self.dwcp_errors, kind, &message);
                    }
                }
                Some(Ok(Message::Close(Some(frame))))
                    if !matches!(u16::from(frame.code), 1000 | 1001) =>
                {
                    // the server ended the stream abnormally before our 5 s were up
                    let message = format!(
                        "DWCP stream closed by the server with code {}{}",
                        u16::from(frame.code),
                        close_reason(&frame.reason)
                    );
                    record_failure(vu, self.dwcp_errors, ErrorKind::Protocol, &message);
                    vu.error("dwcp stream", ErrorKind::Protocol);
                    error = Some(message);
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let message = format!("DWCP stream: {e}");
                    record_failure(vu, self.dwcp_errors, ErrorKind::Protocol, &message);
                    vu.error("dwcp stream", ErrorKind::Protocol);
                    error = Some(message);
                    break;
                }
                None => break,
            }
        }
        let _ = socket.close(None).await;
        span.set_attribute("novaload.ws.frames_received", AttrValue::I64(frames as i64));
        if error.is_some() {
            span.set_attribute("error.type", AttrValue::Static("protocol"));
        }
        span.end(error.as_deref());
    }
}

impl Workload for DwcpWorkload {
    async fn setup(&self, vu: &mut Vu) -> anyhow::Result<()> {
        let r = vu
            .request(Req {
                method: Method::GET,
                url: self.ep.url("/api/v1/dwcp/version"),
                name: "GET /api/v1/dwcp/version",
                template: "/api/v1/dwcp/version",
                headers: &[],
                body: None,
            })
            .await;
        let version = if r.status == 200 {
            field(&r.json(), "version")
                .map(id_string)
                .unwrap_or_else(|| "undefined".into())
        } else {
            "unknown".into()
        };
        tracing::info!(%version, "DWCP version");
        Ok(())
    }

    async fn iteration(&self, vu: &mut Vu) {
        // 1. zones
        let source = ZONES[vu.rng.random_range(0..ZONES.len())];
        let target = if source == "us-west-1" {
            "us-east-1"
        } else {
            "us-west-1"
        };
        let vm: String = (0..8)
            .map(|_| vu.rng.random_range(b'a'..=b'z') as char)
            .collect();
        let body = format!(
            r#"{{"vm_id":"test-vm-{vm}","source_zone":"{source}","target_zone":"{target}","protocol":"dwcp-v3","live_migration":true,"bandwidth_limit_mbps":1000,"compression":true,"encryption":true}}"#
        );

        // 2. start the migration (one span over POST → completion)
        let mut migration = vu.span(
            "dwcp.migration",
            SpanKind::Internal,
            &[
                ("dwcp.source_zone", AttrValue::Static(source)),
                ("dwcp.target_zone", AttrValue::Static(target)),
            ],
        );
        let started = Instant::now();
        let r = vu
            .request_under(
                Some(&migration),
                Req {
                    method: Method::POST,
                    url: self.ep.url("/api/v1/dwcp/migrations"),
                    name: "POST /api/v1/dwcp/migrations",
                    template: "/api/v1/dwcp/migrations",
                    headers: &self.headers,
                    body: Some(Bytes::from(body)),
                },
            )
            .await;
        let json = r.json();
        let ok = [
            vu.check("Migration initiated (202)", r.status == 202),
            vu.check("Migration has job ID", field(&json, "job_id").is_some()),
            vu.latency_check("Protocol latency < 1s", r.timings.duration < 1000.0),
        ]
        .iter()
        .all(|b| *b);
        record_group(vu, self.dwcp_errors, &r, ok, || match r.status {
            202 => missing_field("POST /api/v1/dwcp/migrations", &r, "\"job_id\""),
            other => wrong_status("POST /api/v1/dwcp/migrations", other, "202"),
        });
        if !ok {
            vu.add(self.failed_migrations, 1.0);
        }
        vu.trend(self.dwcp_protocol_latency, r.timings.duration);
        let job_id = field(&json, "job_id")
            .filter(|v| truthy(Some(v)))
            .map(id_string);
        vu.sleep(Duration::from_secs(1)).await;

        // 3. poll to completion
        if let Some(job) = &job_id {
            self.migration_started(vu);
            migration.set_attribute("dwcp.job_id", AttrValue::Str(job.clone()));
            let mut last_phase = String::new();
            let mut outcome: Option<&'static str> = None;
            for _ in 0..self.max_polls {
                if vu.stop.is_cancelled() {
                    break;
                }
                let r = vu
                    .request_under(
                        Some(&migration),
                        Req {
                            method: Method::GET,
                            url: self.ep.url(&format!("/api/v1/dwcp/migrations/{job}")),
                            name: "GET /api/v1/dwcp/migrations/{job_id}",
                            template: "/api/v1/dwcp/migrations/{job_id}",
                            headers: &self.headers,
                            body: None,
                        },
                    )
                    .await;
                if r.status == 200 {
                    let v = r.json();
                    if let Some(phase) = field(&v, "phase").and_then(|p| p.as_str())
                        && phase != last_phase
                    {
                        last_phase = phase.to_string();
                        migration.add_event(
                            "phase",
                            &[("dwcp.phase", AttrValue::Str(last_phase.clone()))],
                        );
                    }
                    match field(&v, "status").and_then(|s| s.as_str()) {
                        Some("completed") => {
                            let ms = started.elapsed().as_secs_f64() * 1000.0;
                            let trace = migration.sampled_trace_id();
                            vu.record(Sample::Migration {
                                result: "completed",
                                counter: self.vm_migrations_total,
                                duration: Some((self.migration_duration, ms)),
                                trace: trace.as_deref(),
                            });
                            let ok = [
                                vu.check("Migration completed successfully", true),
                                vu.latency_check("Migration duration < 30s", ms < 30_000.0),
                                vu.check(
                                    "No data loss",
                                    field(&v, "data_loss") == Some(&serde_json::Value::Bool(false)),
                                ),
                            ]
                            .iter()
                            .all(|b| *b);
                            if ok {
                                vu.rate(self.dwcp_errors, false);
                            } else {
                                let data_loss = field(&v, "data_loss")
                                    .map(|d| d.to_string())
                                    .unwrap_or_else(|| "missing".into());
                                let message = format!(
                                    "DWCP migration completed with data_loss {data_loss} \
                                     (expected false)"
                                );
                                record_failure(vu, self.dwcp_errors, ErrorKind::Check, &message);
                            }
                            outcome = Some("completed");
                            vu.sleep(self.poll_every).await;
                            break;
                        }
                        Some("failed") => {
                            let message = match field(&v, "error").and_then(|e| e.as_str()) {
                                Some(e) => format!("DWCP migration failed: {e}"),
                                None => "DWCP migration failed (status \"failed\")".to_string(),
                            };
                            record_failure(vu, self.dwcp_errors, ErrorKind::Check, &message);
                            vu.record(Sample::Migration {
                                result: "failed",
                                counter: self.failed_migrations,
                                duration: None,
                                trace: None,
                            });
                            outcome = Some("failed");
                            break;
                        }
                        _ => {}
                    }
                }
                vu.sleep(self.poll_every).await;
            }
            if outcome.is_none() && !vu.stop.is_cancelled() {
                let phase = if last_phase.is_empty() {
                    "none reported".to_string()
                } else {
                    last_phase.clone()
                };
                let message = format!(
                    "DWCP migration not completed after {} polls {:.0?} apart (last phase: {phase})",
                    self.max_polls, self.poll_every
                );
                record_failure(vu, self.dwcp_errors, ErrorKind::Timeout, &message);
                vu.record(Sample::Migration {
                    result: "timeout",
                    counter: self.failed_migrations,
                    duration: None,
                    trace: None,
                });
                outcome = Some("timeout");
            }
            self.migration_ended(vu);
            match outcome {
                Some("completed") => migration.end(None),
                Some(o) => migration.end(Some(&format!("migration {o}"))),
                None => migration.end(Some("interrupted")),
            }
        } else {
            migration.end(Some("no job id"));
        }

        // 4.
        vu.sleep(Duration::from_secs(2)).await;

        // 5. stats
        let r = vu
            .request(Req {
                method: Method::GET,
                url: self.ep.url("/api/v1/dwcp/stats"),
                name: "GET /api/v1/dwcp/stats",
                template: "/api/v1/dwcp/stats",
                headers: &self.headers,
                body: None,
            })
            .await;
        let v = r.json();
        let ok = [
            vu.check("DWCP stats available", r.status == 200),
            vu.check(
                "Stats have active migrations",
                field(&v, "active_migrations").is_some(),
            ),
        ]
        .iter()
        .all(|b| *b);
        record_group(vu, self.dwcp_errors, &r, ok, || match r.status {
            200 => missing_field("GET /api/v1/dwcp/stats", &r, "\"active_migrations\""),
            other => wrong_status("GET /api/v1/dwcp/stats", other, "200"),
        });
        vu.sleep(Duration::from_secs(1)).await;

        // 6. the progress stream
        let job = job_id.as_deref().unwrap_or("test").to_string();
        self.stream(vu, &job).await;
        vu.sleep(Duration::from_secs(2)).await;

        // 7. batch status
        let r = vu
            .request(Req {
                method: Method::GET,
                url: self
                    .ep
                    .url("/api/v1/dwcp/migrations?status=in_progress&limit=100"),
                name: "GET /api/v1/dwcp/migrations?status",
                template: "/api/v1/dwcp/migrations",
                headers: &self.headers,
                body: None,
            })
            .await;
        let v = r.json();
        let ok = [
            vu.check("Batch status check OK", r.status == 200),
            vu.check(
                "Batch response has migrations",
                field(&v, "migrations").is_some_and(|m| m.is_array()),
            ),
        ]
        .iter()
        .all(|b| *b);
        record_group(vu, self.dwcp_errors, &r, ok, || match r.status {
            200 => missing_field(
                "GET /api/v1/dwcp/migrations?status",
                &r,
                "\"migrations\" array",
            ),
            other => wrong_status("GET /api/v1/dwcp/migrations?status", other, "200"),
        });
        vu.sleep(Duration::from_secs(1)).await;
    }
}
