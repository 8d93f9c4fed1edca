//! Inbound text frames: each is counted, parsed as JSON and checked (`Message has type`, …,
//! `Message timestamp is recent`), and its latency is receive time − its `timestamp`, read as JS
//! `new Date(timestamp)` reads it. A frame that fails gets one failure reason per combination of
//! what is wrong (`bad_frame`), so the reasons stay few.

use super::{WsWorkload, check};
use crate::error::ErrorKind;
use crate::metrics::Sample;
use crate::workload::Vu;
use crate::workload::failure::record_failure;
use std::time::{SystemTime, UNIX_EPOCH};

/// A frame is "recent" when |receive time − timestamp| is below this (ms).
const RECENT_MS: f64 = 5000.0;

impl WsWorkload {
    /// One inbound text frame: count, parse, check, latency. `recv_ms` is taken on arrival.
    pub(super) fn on_text(&self, vu: &Vu, text: &str, recv_ms: f64, trace: Option<&str>) {
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
fn timestamp_ms(v: &serde_json::Value) -> Option<f64> {
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
}
