//! The one sample stream: a workload describes each thing it measured once, as a [`Sample`]
//! (`Vu::record`), and every output consumes it — the k6 recorder here
//! ([`Recorder::consume`]: k6 metric ids, milliseconds, [`Tags`]) and the live instruments
//! (`Telemetry::consume`: OTel names from `telemetry::names`, seconds, Prometheus labels,
//! exemplars). Neither output has a protocol-specific API of its own.
//!
//! A sample borrows everything it carries (it is built on the stack for each operation and
//! dropped after both outputs saw it), so recording allocates nothing. Where a workload counts
//! an operation on k6 metrics it declared itself (`ws_messages_sent`, `vm_migrations_total`),
//! the sample names those metrics' ids; the built-in k6 metrics are implied by the variant.

use super::{MetricId, Recorder, Tags, builtin};
use crate::error::ErrorKind;
use crate::net::http::Timings;
use std::time::Duration;

/// One measured thing, with its tags and values. The stream it is recorded on supplies the
/// common tags (k6: the VU's [`Tags`]; live: its run labels).
#[derive(Debug, Clone, Copy)]
pub enum Sample<'a> {
    /// Values of k6 metrics that have no live twin (a workload's own Counter, Gauge, Rate or
    /// Trend), under `tags` or, when None, the stream's own. Recorded under one lock.
    Metrics {
        values: &'a [(MetricId, f64)],
        tags: Option<&'a Tags>,
    },
    /// One HTTP request (each hop of a redirect chain is one).
    Http(&'a HttpSample<'a>),
    /// A check (k6 `check`): `checks` and `novaload.checks`.
    Check { name: &'static str, ok: bool },
    /// The outcome of one workload operation that no other sample counts as one (a session,
    /// a stream, a statement): `novaload.operations` and, when it failed, `novaload.errors`.
    /// The k6 side records failures on the workload's own error Rates.
    Operation {
        name: &'a str,
        error: Option<ErrorKind>,
    },
    /// A completed iteration: `iterations`, `iteration_duration` (and, for open-model
    /// iterations, `iteration_duration_corrected` from the intended start).
    Iteration {
        duration: Duration,
        corrected: Option<Duration>,
        trace: Option<&'a str>,
    },
    /// VUs active and allocated (the runner, once a second).
    Vus { active: i64, max: u64 },
    /// Iterations that did not start. `n = 0` only makes the live counter exist.
    DroppedIterations { n: u64 },
    /// A WebSocket handshake. Opened: `connect_ms` (k6 `time` Trend and `established`
    /// Counter). Failed: `status` (0 without a response) and `kind` on the `failed` Counter
    /// and a `false` on the `success` Rate; it is a failed `ws.connect` operation.
    WsConnect {
        outcome: WsConnect,
        trace: Option<&'a str>,
    },
    /// A WebSocket text frame sent or received, counted on the k6 Counter `counter`.
    WsMessage { counter: MetricId, sent: bool },
    /// Latency of a received frame (receive time − its timestamp), on the k6 Trend `trend`.
    WsLatency {
        trend: MetricId,
        ms: f64,
        trace: Option<&'a str>,
    },
    /// A WebSocket connection opened (`delta` 1) or closed (−1); `open`: how many are open
    /// now, the k6 Gauge `gauge`.
    WsOpen {
        gauge: MetricId,
        open: f64,
        delta: i64,
    },
    /// A migration started (`delta` 1) or ended (−1); `in_flight`: how many are running now,
    /// the k6 Gauge `gauge`.
    MigrationInFlight {
        gauge: MetricId,
        in_flight: f64,
        delta: i64,
    },
    /// A migration's result (`completed`, `failed`, `timeout`), one on the k6 Counter
    /// `counter`; a completed one's duration on the k6 Trend `duration.0`.
    Migration {
        result: &'static str,
        counter: MetricId,
        duration: Option<(MetricId, f64)>,
        trace: Option<&'a str>,
    },
    /// One database operation (live only: the workloads keep their own k6 query metrics).
    /// `operation`: also count it as this workload operation (see [`Sample::Operation`]).
    Db(&'a DbSample<'a>),
    /// A database pool acquire: its time on the k6 Trend `acquire`, and the pool's size.
    DbPool {
        acquire: MetricId,
        seconds: f64,
        idle: u64,
        in_use: u64,
    },
}

/// How a WebSocket handshake ended (see [`Sample::WsConnect`]).
#[derive(Debug, Clone, Copy)]
pub enum WsConnect {
    Opened {
        time: MetricId,
        established: MetricId,
        connect_ms: f64,
    },
    Failed {
        failed: MetricId,
        success: MetricId,
        status: u16,
        kind: ErrorKind,
    },
}

/// One HTTP request: k6's `http_*` metrics (under `tags`, which carry its name, method,
/// status, expected response and error kind), the data it moved, and
/// `http.client.request.duration` (with the trace exemplar) plus its operation outcome.
#[derive(Debug, Clone, Copy)]
pub struct HttpSample<'a> {
    pub tags: &'a Tags,
    /// Route template for the live `url_template` label.
    pub template: &'a str,
    pub timings: &'a Timings,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub body_truncated: bool,
    /// Open-model iterations' first request: from the intended start (ms).
    pub corrected_ms: Option<f64>,
    /// Sampled trace id (the exemplar).
    pub trace: Option<&'a str>,
}

impl HttpSample<'_> {
    pub fn status(&self) -> u16 {
        self.tags.status.unwrap_or(0)
    }
    pub fn method(&self) -> &str {
        self.tags.method.as_deref().unwrap_or("")
    }
    pub fn error(&self) -> Option<ErrorKind> {
        self.tags.error_kind
    }
}

/// One database operation (see [`Sample::Db`]).
#[derive(Debug, Clone, Copy)]
pub struct DbSample<'a> {
    /// `postgresql`, or `novacron-api` through the REST API.
    pub system: &'static str,
    pub operation: &'static str,
    pub collection: &'static str,
    pub error: Option<ErrorKind>,
    pub seconds: f64,
    pub trace: Option<&'a str>,
    /// Also one workload operation of this name (see [`Sample::Operation`]).
    pub counted_as: Option<&'a str>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Recorder {
    /// The k6 side of the sample stream: records `sample` on its k6 metrics, under `base` (the
    /// stream's tags) unless the sample carries its own.
    #[inline]
    pub fn consume(&self, base: &Tags, sample: &Sample<'_>) {
        match *sample {
            Sample::Metrics { values, tags } => self.record_many(tags.unwrap_or(base), values),
            Sample::Http(h) => self.consume_http(base, h),
            Sample::Check { name, ok } => {
                let tags = Tags {
                    check: Some(std::borrow::Cow::Borrowed(name)),
                    ..base.clone()
                };
                self.record(builtin::CHECKS, if ok { 1.0 } else { 0.0 }, &tags);
            }
            Sample::Operation { .. } | Sample::Db(_) => {}
            Sample::Iteration {
                duration,
                corrected,
                ..
            } => {
                self.record_many(
                    base,
                    &[
                        (builtin::ITERATIONS, 1.0),
                        (builtin::ITERATION_DURATION, ms(duration)),
                    ],
                );
                if let Some(c) = corrected {
                    self.record(builtin::ITERATION_DURATION_CORRECTED, ms(c), base);
                }
            }
            Sample::Vus { active, max } => self.record_many(
                base,
                &[
                    (builtin::VUS, active as f64),
                    (builtin::VUS_MAX, max as f64),
                ],
            ),
            Sample::DroppedIterations { n } => {
                if n > 0 {
                    self.record(builtin::DROPPED_ITERATIONS, n as f64, base);
                }
            }
            Sample::WsConnect { outcome, .. } => match outcome {
                WsConnect::Opened {
                    time,
                    established,
                    connect_ms,
                } => self.record_many(base, &[(time, connect_ms), (established, 1.0)]),
                WsConnect::Failed {
                    failed,
                    success,
                    status,
                    kind,
                } => {
                    let tags = Tags {
                        status: Some(status),
                        error_kind: Some(kind),
                        ..base.clone()
                    };
                    self.record_many(&tags, &[(failed, 1.0), (success, 0.0)]);
                }
            },
            Sample::WsMessage { counter, .. } => self.record(counter, 1.0, base),
            Sample::WsLatency { trend, ms, .. } => self.record(trend, ms, base),
            Sample::WsOpen { gauge, open, .. } => self.record(gauge, open, base),
            Sample::MigrationInFlight {
                gauge, in_flight, ..
            } => self.record(gauge, in_flight, base),
            Sample::Migration {
                counter, duration, ..
            } => match duration {
                Some((trend, ms)) => self.record_many(base, &[(trend, ms), (counter, 1.0)]),
                None => self.record(counter, 1.0, base),
            },
            Sample::DbPool {
                acquire, seconds, ..
            } => self.record(acquire, seconds * 1000.0, base),
        }
    }

    #[inline]
    fn consume_http(&self, base: &Tags, h: &HttpSample<'_>) {
        let t = h.timings;
        let failed = h.tags.expected_response != Some(true);
        self.record_many(
            h.tags,
            &[
                (builtin::HTTP_REQS, 1.0),
                (builtin::HTTP_REQ_DURATION, t.duration),
                (builtin::HTTP_REQ_BLOCKED, t.blocked),
                (builtin::HTTP_REQ_CONNECTING, t.connecting),
                (builtin::HTTP_REQ_TLS_HANDSHAKING, t.tls_handshaking),
                (builtin::HTTP_REQ_SENDING, t.sending),
                (builtin::HTTP_REQ_WAITING, t.waiting),
                (builtin::HTTP_REQ_RECEIVING, t.receiving),
                (builtin::HTTP_REQ_FAILED, if failed { 1.0 } else { 0.0 }),
            ],
        );
        self.record_many(
            base,
            &[
                (builtin::DATA_SENT, h.bytes_sent as f64),
                (builtin::DATA_RECEIVED, h.bytes_received as f64),
            ],
        );
        if h.body_truncated {
            self.record(builtin::HTTP_RESP_BODIES_TRUNCATED, 1.0, base);
        }
        if let Some(c) = h.corrected_ms {
            self.record(builtin::HTTP_REQ_DURATION_CORRECTED, c, h.tags);
        }
    }
}
