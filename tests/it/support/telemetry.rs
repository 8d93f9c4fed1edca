//! Feeding the live telemetry (Prometheus/OTLP instruments) by hand.

use novaload::error::ErrorKind;
use novaload::metrics::{HttpSample, Sample, Tags};
use novaload::net::http::Timings;
use novaload::telemetry::{LiveSeries, RunLabels, Telemetry};

/// The labels of run `run_id`'s `api` test, `default` scenario.
pub fn labels(run_id: &str) -> RunLabels {
    RunLabels {
        run_id: run_id.into(),
        test: "api".into(),
        scenario: "default".into(),
    }
}

/// One HTTP request as `Vu::request` records it on the sample stream (the live side only:
/// `Telemetry::consume`).
#[allow(clippy::too_many_arguments)]
pub fn http(
    t: &Telemetry,
    live: &LiveSeries,
    method: &str,
    template: &str,
    status: u16,
    error: Option<ErrorKind>,
    seconds: f64,
    trace: Option<&str>,
) {
    let tags = Tags {
        method: Some(method.into()),
        status: Some(status),
        expected_response: Some((200..400).contains(&status) && error.is_none()),
        error_kind: error,
        ..Tags::default()
    };
    let timings = Timings {
        duration: seconds * 1000.0,
        ..Timings::default()
    };
    let sample = HttpSample {
        tags: &tags,
        template,
        timings: &timings,
        bytes_sent: 0,
        bytes_received: 0,
        body_truncated: false,
        corrected_ms: None,
        trace,
    };
    t.consume(live, &Sample::Http(&sample));
}
