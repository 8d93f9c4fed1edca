//! The live side of the sample stream: [`Telemetry::consume`] turns each
//! [`Sample`] a workload or the runner recorded into the live instruments' series (Prometheus
//! `/metrics` and OTLP; seconds; the labels and OTel names of [`super::names`]; sampled trace
//! ids as exemplars).
//!
//! Hot path: a VU's [`LiveSeries`] keeps the series it records on every iteration resolved,
//! and the per-request ones (an HTTP request's histogram and counters, a check's counter) in a
//! short list scanned by value, so a request hashes no label value; everything else looks its
//! series up in the instruments' per-thread caches.

use super::instruments::{HistSeries, Instruments, ShardedCounter, status_class, status_str};
use super::{RunLabels, Telemetry};
use crate::error::ErrorKind;
use crate::metrics::{DbSample, HttpSample, Sample, WsConnect};
use std::sync::{Arc, Mutex};

/// The live series of one set of run labels — a VU's, or the runner's — as
/// [`Telemetry::consume`] needs them; empty when telemetry is off. Clone freely.
#[derive(Clone, Default)]
pub struct LiveSeries {
    inner: Option<Arc<SeriesInner>>,
}

struct SeriesInner {
    labels: RunLabels,
    /// What every iteration of a VU records on, resolved when the VU is made (so these series
    /// exist, at 0, from the VU's start); None for the runner's series.
    vu: Option<VuSeries>,
    /// Series this stream resolved for the label values that vary per request (only its own
    /// task locks it, so the lock is never contended).
    seen: Mutex<SeenSeries>,
}

struct VuSeries {
    iterations: ShardedCounter,
    iteration_duration: HistSeries,
    data_sent: ShardedCounter,
    data_received: ShardedCounter,
}

/// A VU's resolved per-request series: a handful of distinct label combinations each, found by
/// a short scan instead of hashing every label value per request.
#[derive(Default)]
struct SeenSeries {
    http: Vec<HttpSeries>,
    checks: Vec<(Box<str>, bool, ShardedCounter)>,
}

struct HttpSeries {
    method: Box<str>,
    template: Box<str>,
    status: u16,
    error: Option<ErrorKind>,
    duration: HistSeries,
    operations: ShardedCounter,
    errors: Option<ShardedCounter>,
}

/// Distinct label combinations a VU keeps resolved; beyond this, records look series up.
const SEEN_PER_VU: usize = 64;

impl Telemetry {
    /// A VU's live series: its run labels, and the series of every iteration resolved now.
    pub fn vu_series(&self, labels: &RunLabels) -> LiveSeries {
        self.series(labels, true)
    }

    /// The live series of samples that are not a VU's (the runner's VU counts and drops):
    /// nothing is resolved (or created) before a sample needs it.
    pub(crate) fn run_series(&self, labels: &RunLabels) -> LiveSeries {
        self.series(labels, false)
    }

    fn series(&self, labels: &RunLabels, vu: bool) -> LiveSeries {
        let Some(i) = &self.inner else {
            return LiveSeries::default();
        };
        let v = run_values(labels);
        let m = &i.instruments;
        LiveSeries {
            inner: Some(Arc::new(SeriesInner {
                labels: labels.clone(),
                vu: vu.then(|| VuSeries {
                    iterations: m.iterations.series(&v),
                    iteration_duration: m.iteration_duration.series(&v),
                    data_sent: m.data_sent.series(&v),
                    data_received: m.data_received.series(&v),
                }),
                seen: Mutex::default(),
            })),
        }
    }

    /// Records `sample` on the live instruments (nothing when telemetry is off).
    #[inline]
    pub fn consume(&self, series: &LiveSeries, sample: &Sample<'_>) {
        if let (Some(i), Some(s)) = (&self.inner, &series.inner) {
            consume(&i.instruments, s, sample);
        }
    }
}

fn consume(m: &Instruments, s: &SeriesInner, sample: &Sample<'_>) {
    let l = &s.labels;
    match *sample {
        Sample::Metrics { .. } => {}
        Sample::Http(h) => http(m, s, h),
        Sample::Check { name, ok } => check(m, s, name, ok),
        Sample::Operation { name, error } => operation(m, l, name, error),
        Sample::Iteration {
            duration, trace, ..
        } => {
            let d = duration.as_secs_f64();
            match &s.vu {
                Some(vu) => {
                    vu.iterations.inc_by(1);
                    m.iteration_duration
                        .observe_series(&vu.iteration_duration, d, trace);
                }
                None => {
                    let v = run_values(l);
                    m.iterations.inc_by(&v, 1);
                    m.iteration_duration.observe(&v, d, trace);
                }
            }
        }
        Sample::Vus { active, max } => {
            let v = run_values(l);
            m.vus.set(&v, active.max(0));
            m.vus_max.set(&v, max as i64);
        }
        Sample::DroppedIterations { n } => m.dropped_iterations.inc_by(&run_values(l), n),
        Sample::WsConnect { outcome, trace } => {
            let [run, test, scenario] = run_values(l);
            match outcome {
                WsConnect::Opened { connect_ms, .. } => {
                    m.ws_connections
                        .inc_by(&[run, test, scenario, result_str(true)], 1);
                    m.ws_connect_duration.observe(
                        &[run, test, scenario],
                        connect_ms / 1000.0,
                        trace,
                    );
                }
                WsConnect::Failed { kind, .. } => {
                    m.ws_connections
                        .inc_by(&[run, test, scenario, result_str(false)], 1);
                    operation(m, l, "ws.connect", Some(kind));
                }
            }
        }
        Sample::WsMessage { sent, .. } => {
            let [run, test, scenario] = run_values(l);
            let dir = if sent { "sent" } else { "received" };
            m.ws_messages.inc_by(&[run, test, scenario, dir], 1);
        }
        Sample::WsLatency { ms, trace, .. } => {
            m.ws_latency.observe(&run_values(l), ms / 1000.0, trace);
        }
        Sample::WsOpen { delta, .. } => m.ws_active.add(&run_values(l), delta),
        Sample::MigrationInFlight { delta, .. } => {
            m.migrations_in_flight.add(&run_values(l), delta);
        }
        Sample::Migration {
            result,
            duration,
            trace,
            ..
        } => {
            let [run, test, scenario] = run_values(l);
            m.migrations.inc_by(&[run, test, scenario, result], 1);
            if let Some((_, ms)) = duration {
                m.migration_duration
                    .observe(&[run, test, scenario], ms / 1000.0, trace);
            }
        }
        Sample::Db(d) => db(m, l, d),
        Sample::DbPool {
            seconds,
            idle,
            in_use,
            ..
        } => {
            let [run, test, scenario] = run_values(l);
            m.db_pool_acquire
                .observe(&[run, test, scenario], seconds, None);
            m.db_pool_connections
                .set(&[run, test, scenario, "idle"], idle as i64);
            m.db_pool_connections
                .set(&[run, test, scenario, "in_use"], in_use as i64);
        }
    }
}

/// An HTTP request: its duration histogram and operation outcome on series this stream keeps
/// per (method, template, status, error), and the bytes it moved.
#[inline]
fn http(m: &Instruments, s: &SeriesInner, h: &HttpSample<'_>) {
    let (method, template, status, error) = (h.method(), h.template, h.status(), h.error());
    let duration_s = h.timings.duration / 1000.0;
    let mut seen = s.seen.lock().unwrap_or_else(|e| e.into_inner());
    let found = seen.http.iter().position(|x| {
        x.status == status && x.error == error && *x.method == *method && *x.template == *template
    });
    let idx = match found {
        Some(idx) => Some(idx),
        None if seen.http.len() < SEEN_PER_VU => {
            let v = http_values(&s.labels, method, template, status, error);
            seen.http.push(HttpSeries {
                method: method.into(),
                template: template.into(),
                status,
                error,
                duration: m.http_duration.series(&v.duration),
                operations: m.operations.series(&v.operation.outcome),
                errors: v.operation.error.map(|e| m.errors.series(&e)),
            });
            Some(seen.http.len() - 1)
        }
        None => None,
    };
    match idx {
        Some(idx) => {
            let x = &seen.http[idx];
            m.http_duration
                .observe_series(&x.duration, duration_s, h.trace);
            x.operations.inc_by(1);
            if let Some(e) = &x.errors {
                e.inc_by(1);
            }
        }
        None => {
            drop(seen);
            let v = http_values(&s.labels, method, template, status, error);
            m.http_duration.observe(&v.duration, duration_s, h.trace);
            m.operations.inc_by(&v.operation.outcome, 1);
            if let Some(e) = &v.operation.error {
                m.errors.inc_by(e, 1);
            }
        }
    }
    data(m, s, h.bytes_sent, h.bytes_received);
}

fn data(m: &Instruments, s: &SeriesInner, sent: u64, received: u64) {
    match &s.vu {
        Some(vu) => {
            if sent > 0 {
                vu.data_sent.inc_by(sent);
            }
            if received > 0 {
                vu.data_received.inc_by(received);
            }
        }
        None => {
            let v = run_values(&s.labels);
            if sent > 0 {
                m.data_sent.inc_by(&v, sent);
            }
            if received > 0 {
                m.data_received.inc_by(&v, received);
            }
        }
    }
}

/// A check, its series resolved once per check name and outcome.
fn check(m: &Instruments, s: &SeriesInner, name: &str, ok: bool) {
    let mut seen = s.seen.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, c)) = seen
        .checks
        .iter()
        .find(|(n, o, _)| *o == ok && **n == *name)
    {
        c.inc_by(1);
    } else if seen.checks.len() < SEEN_PER_VU {
        let c = m.checks.series(&check_values(&s.labels, name, ok));
        c.inc_by(1);
        seen.checks.push((name.into(), ok, c));
    } else {
        drop(seen);
        m.checks.inc_by(&check_values(&s.labels, name, ok), 1);
    }
}

/// One workload operation (request, query, migration, session) and its outcome.
fn operation(m: &Instruments, l: &RunLabels, name: &str, error: Option<ErrorKind>) {
    let v = operation_values(l, name, error);
    m.operations.inc_by(&v.outcome, 1);
    if let Some(e) = &v.error {
        m.errors.inc_by(e, 1);
    }
}

fn db(m: &Instruments, l: &RunLabels, d: &DbSample<'_>) {
    let [run, test, scenario] = run_values(l);
    m.db_duration.observe(
        &[
            run,
            test,
            scenario,
            d.system,
            d.operation,
            d.collection,
            d.error.map_or("", ErrorKind::as_str),
        ],
        d.seconds,
        d.trace,
    );
    if let Some(name) = d.counted_as {
        operation(m, l, name, d.error);
    }
}

/// The run labels' values (`Arc<str>` fields of [`RunLabels`]).
pub(super) fn run_values(l: &RunLabels) -> [&str; 3] {
    [&l.run_id, &l.test, &l.scenario]
}

fn result_str(ok: bool) -> &'static str {
    if ok { "success" } else { "failure" }
}

/// Label values of an operation's outcome counter and, when it failed, its error counter.
struct OperationValues<'a> {
    outcome: [&'a str; 5],
    error: Option<[&'a str; 5]>,
}

fn operation_values<'a>(
    l: &'a RunLabels,
    operation: &'a str,
    error: Option<ErrorKind>,
) -> OperationValues<'a> {
    let [run, test, scenario] = run_values(l);
    OperationValues {
        outcome: [run, test, scenario, operation, result_str(error.is_none())],
        error: error.map(|e| [run, test, scenario, operation, e.as_str()]),
    }
}

/// Label values of the series one HTTP request records on: its duration histogram, and its
/// operation (named by the URL template) as in [`operation_values`].
struct HttpValues<'a> {
    duration: [&'a str; 8],
    operation: OperationValues<'a>,
}

fn http_values<'a>(
    l: &'a RunLabels,
    method: &'a str,
    url_template: &'a str,
    status: u16,
    error: Option<ErrorKind>,
) -> HttpValues<'a> {
    let [run, test, scenario] = run_values(l);
    HttpValues {
        duration: [
            run,
            test,
            scenario,
            method,
            url_template,
            status_str(status),
            status_class(status),
            error.map_or("", ErrorKind::as_str),
        ],
        operation: operation_values(l, url_template, error),
    }
}

fn check_values<'a>(l: &'a RunLabels, check: &'a str, ok: bool) -> [&'a str; 5] {
    let [run, test, scenario] = run_values(l);
    [run, test, scenario, check, if ok { "pass" } else { "fail" }]
}
