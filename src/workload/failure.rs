//! How a workload records a failure that no operation counter already counted — a check that
//! failed on a response that arrived, a DWCP stream that broke, a WebSocket frame that was not
//! JSON — so that every error-rate increment has a kind in the summary's errors-by-kind table
//! and a reason ([`crate::metrics::ErrorReasons`]). Failed requests themselves are counted by
//! [`Vu::request`](super::Vu::request); these helpers never count them twice.

use super::{HttpResponse, Vu};
use crate::error::ErrorKind;
use crate::metrics::{MetricId, Tags};

/// Records a failure that no operation counter counted (a check failed on a response that
/// arrived, a DWCP stream broke, a WebSocket frame was not JSON): a `true` sample on the error
/// Rate `rate` tagged with `kind`, which the summary's errors-by-kind table counts (see
/// `report::summary::ERROR_RATES`), and `message` as the failure's reason.
pub(crate) fn record_failure(vu: &Vu, rate: MetricId, kind: ErrorKind, message: &str) {
    let tags = Tags {
        error_kind: Some(kind),
        ..vu.tags.clone()
    };
    vu.metric(rate, 1.0, Some(&tags));
    vu.rec.record_reason(kind, message);
}

/// True when [`Vu::request`] already counted the response as a failed operation (a transport
/// error, or a status outside 200–399): its kind and reason are recorded there, so a check
/// group that fails on it adds only the untagged Rate sample.
pub(crate) fn request_failed(r: &HttpResponse) -> bool {
    r.error.is_some() || !(200..400).contains(&r.status)
}

/// Records one check group's outcome on the error Rate `rate`: a pass; a failure its request
/// already counted ([`request_failed`]); or a failure of what came back, recorded with the kind
/// and message `why` gives. `why` runs on that path only, so a passing group allocates nothing.
pub(crate) fn record_group(
    vu: &Vu,
    rate: MetricId,
    r: &HttpResponse,
    ok: bool,
    why: impl FnOnce() -> (ErrorKind, String),
) {
    if ok || request_failed(r) {
        vu.rate(rate, !ok);
    } else {
        let (kind, message) = why();
        record_failure(vu, rate, kind, &message);
    }
}

/// A response with another status than the check wants (`check`): "POST /api/v1/vms answered
/// HTTP 200, expected 201".
pub(crate) fn wrong_status(operation: &str, status: u16, expected: &str) -> (ErrorKind, String) {
    (
        ErrorKind::Check,
        format!("{operation} answered HTTP {status}, expected {expected}"),
    )
}

/// A response without the field a check wants (`body`): not JSON at all, or JSON without it.
pub(crate) fn missing_field(
    operation: &str,
    r: &HttpResponse,
    wanted: &str,
) -> (ErrorKind, String) {
    let what = match r.json() {
        None if r.body.is_empty() => "the response body is empty".to_string(),
        None => format!("the response is not JSON ({} bytes)", r.body.len()),
        Some(_) => format!("the response has no {wanted}"),
    };
    (ErrorKind::Body, format!("{operation}: {what}"))
}
