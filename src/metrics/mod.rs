//! k6-semantics metrics: Counter, Gauge, Rate and Trend, recorded as plain values with their
//! tags into per-thread shards (no shared lock on the hot path) and merged once for the summary.
//!
//! Every series is keyed by (metric, [`Tags`]); tags are a fixed, low-cardinality struct so a
//! series lookup is a cheap hash and sub-metric thresholds (`http_req_duration{status:200}`)
//! can be answered exactly by merging the matching series.

mod agg;
pub mod reasons;
mod recorder;
mod sample;
mod trend;

pub use agg::{Agg, MetricValues};
pub use reasons::ErrorReasons;
pub(crate) use recorder::FxHasher;
pub use recorder::{Recorder, SecondSink, SecondSnapshot, Snapshot};
pub use sample::{DbSample, HttpSample, Sample, WsConnect};
pub use trend::Trend;

use crate::error::ErrorKind;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

/// k6 metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    Counter,
    Gauge,
    Rate,
    Trend,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Rate => "rate",
            MetricKind::Trend => "trend",
        }
    }
}

/// What a metric's values are (k6 `contains`): time values are milliseconds, data values bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Contains {
    Default,
    Time,
    Data,
}

/// Index of a metric in the run's [`Registry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId(pub u16);

/// A declared metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricDef {
    pub name: String,
    pub kind: MetricKind,
    pub contains: Contains,
}

/// The built-in metrics every run declares, in this order (their ids are fixed).
pub mod builtin {
    use super::MetricId;
    pub const HTTP_REQS: MetricId = MetricId(0);
    pub const HTTP_REQ_DURATION: MetricId = MetricId(1);
    pub const HTTP_REQ_BLOCKED: MetricId = MetricId(2);
    pub const HTTP_REQ_CONNECTING: MetricId = MetricId(3);
    pub const HTTP_REQ_TLS_HANDSHAKING: MetricId = MetricId(4);
    pub const HTTP_REQ_SENDING: MetricId = MetricId(5);
    pub const HTTP_REQ_WAITING: MetricId = MetricId(6);
    pub const HTTP_REQ_RECEIVING: MetricId = MetricId(7);
    pub const HTTP_REQ_FAILED: MetricId = MetricId(8);
    pub const ITERATIONS: MetricId = MetricId(9);
    pub const ITERATION_DURATION: MetricId = MetricId(10);
    pub const VUS: MetricId = MetricId(11);
    pub const VUS_MAX: MetricId = MetricId(12);
    pub const DATA_SENT: MetricId = MetricId(13);
    pub const DATA_RECEIVED: MetricId = MetricId(14);
    pub const CHECKS: MetricId = MetricId(15);
    pub const DROPPED_ITERATIONS: MetricId = MetricId(16);
    /// Open-model iterations: intended start to end, so coordinated omission is corrected.
    pub const ITERATION_DURATION_CORRECTED: MetricId = MetricId(17);
    /// Open-model iterations that started later than intended (a VU was not free in time).
    pub const LATE_ITERATIONS: MetricId = MetricId(18);
    /// First request of an open-model iteration, measured from the intended start.
    pub const HTTP_REQ_DURATION_CORRECTED: MetricId = MetricId(19);
    /// Requests in each second (a gauge sampled once a second; its max is peak throughput).
    pub const HTTP_REQS_PER_SECOND: MetricId = MetricId(20);
    /// Responses whose body was longer than `--response-body-limit`: only a prefix was kept
    /// for checks (every byte is still counted in `data_received`).
    pub const HTTP_RESP_BODIES_TRUNCATED: MetricId = MetricId(21);
}

const BUILTINS: &[(&str, MetricKind, Contains)] = &[
    ("http_reqs", MetricKind::Counter, Contains::Default),
    ("http_req_duration", MetricKind::Trend, Contains::Time),
    ("http_req_blocked", MetricKind::Trend, Contains::Time),
    ("http_req_connecting", MetricKind::Trend, Contains::Time),
    (
        "http_req_tls_handshaking",
        MetricKind::Trend,
        Contains::Time,
    ),
    ("http_req_sending", MetricKind::Trend, Contains::Time),
    ("http_req_waiting", MetricKind::Trend, Contains::Time),
    ("http_req_receiving", MetricKind::Trend, Contains::Time),
    ("http_req_failed", MetricKind::Rate, Contains::Default),
    ("iterations", MetricKind::Counter, Contains::Default),
    ("iteration_duration", MetricKind::Trend, Contains::Time),
    ("vus", MetricKind::Gauge, Contains::Default),
    ("vus_max", MetricKind::Gauge, Contains::Default),
    ("data_sent", MetricKind::Counter, Contains::Data),
    ("data_received", MetricKind::Counter, Contains::Data),
    ("checks", MetricKind::Rate, Contains::Default),
    ("dropped_iterations", MetricKind::Counter, Contains::Default),
    (
        "iteration_duration_corrected",
        MetricKind::Trend,
        Contains::Time,
    ),
    ("late_iterations", MetricKind::Counter, Contains::Default),
    (
        "http_req_duration_corrected",
        MetricKind::Trend,
        Contains::Time,
    ),
    ("http_reqs_per_second", MetricKind::Gauge, Contains::Default),
    (
        "http_resp_bodies_truncated",
        MetricKind::Counter,
        Contains::Default,
    ),
];

/// All metrics of one run: built-ins first, then the workload's own. Frozen before VUs start.
#[derive(Debug, Clone)]
/// Invariant: the first entries are [`builtin`]'s ids, in order (checked by a unit test).
pub struct Registry {
    defs: Vec<MetricDef>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let defs = BUILTINS
            .iter()
            .map(|(name, kind, contains)| MetricDef {
                name: (*name).to_string(),
                kind: *kind,
                contains: *contains,
            })
            .collect();
        Self { defs }
    }

    /// Declares a custom metric (or returns the existing id if already declared with the same type).
    pub fn declare(&mut self, name: &str, kind: MetricKind, contains: Contains) -> MetricId {
        if let Some(id) = self.lookup(name) {
            return id;
        }
        self.defs.push(MetricDef {
            name: name.to_string(),
            kind,
            contains,
        });
        MetricId((self.defs.len() - 1) as u16)
    }

    pub fn lookup(&self, name: &str) -> Option<MetricId> {
        self.defs
            .iter()
            .position(|d| d.name == name)
            .map(|i| MetricId(i as u16))
    }

    pub fn def(&self, id: MetricId) -> &MetricDef {
        &self.defs[id.0 as usize]
    }

    pub fn defs(&self) -> impl Iterator<Item = (MetricId, &MetricDef)> {
        self.defs
            .iter()
            .enumerate()
            .map(|(i, d)| (MetricId(i as u16), d))
    }

    pub fn len(&self) -> usize {
        self.defs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }
}

/// The tags a sample may carry. A fixed struct rather than a map: cheap to hash and compare on
/// the hot path, and bounded in cardinality by construction (no ids, no raw URLs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tags {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<Arc<str>>,
    /// Operation name: the URL template for HTTP (`GET /api/v1/vms/{id}`), the query name for DB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Arc<str>>,
    /// HTTP status; 0 when no response arrived (k6 convention).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_response: Option<bool>,
    /// The check's name: a workload's `&'static str` borrowed as is (a check is recorded on
    /// every response, so it must not allocate); owned when read back from a summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
}

impl Tags {
    pub fn scenario(scenario: &Arc<str>) -> Self {
        Tags {
            scenario: Some(scenario.clone()),
            ..Tags::default()
        }
    }

    /// Value of a tag by its k6 name, for sub-metric filters.
    pub fn get(&self, key: &str) -> Option<String> {
        match key {
            "scenario" => self.scenario.as_deref().map(str::to_string),
            "name" | "url" | "operation" => self.name.as_deref().map(str::to_string),
            "method" => self.method.as_deref().map(str::to_string),
            "status" => self.status.map(|s| s.to_string()),
            "expected_response" => self.expected_response.map(|b| b.to_string()),
            "check" => self.check.as_deref().map(str::to_string),
            "error_kind" | "error_code" | "error" => {
                self.error_kind.map(|k| k.as_str().to_string())
            }
            _ => None,
        }
    }

    /// The tag names [`Tags::get`] understands, for error messages.
    pub const KNOWN: &'static [&'static str] = &[
        "scenario",
        "name",
        "method",
        "status",
        "expected_response",
        "check",
        "error_kind",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_ids_match_their_names() {
        let r = Registry::new();
        assert_eq!(r.def(builtin::HTTP_REQS).name, "http_reqs");
        assert_eq!(r.def(builtin::CHECKS).name, "checks");
        assert_eq!(
            r.def(builtin::DROPPED_ITERATIONS).name,
            "dropped_iterations"
        );
        assert_eq!(
            r.def(builtin::HTTP_REQ_DURATION_CORRECTED).name,
            "http_req_duration_corrected"
        );
        assert_eq!(
            r.def(builtin::HTTP_REQS_PER_SECOND).name,
            "http_reqs_per_second"
        );
        assert_eq!(
            r.def(builtin::HTTP_RESP_BODIES_TRUNCATED).name,
            "http_resp_bodies_truncated"
        );
        assert_eq!(r.len(), builtin::HTTP_RESP_BODIES_TRUNCATED.0 as usize + 1);
    }
}
