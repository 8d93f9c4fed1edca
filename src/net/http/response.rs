//! What a request gives back: [`HttpResponse`] with k6's [`Timings`], and how the client
//! builds a failed one. [`Failure`] is the client's and the codec's internal error: an error
//! kind for the metrics, a message for people, and whether the request may be retried.

use crate::error::ErrorKind;
use bytes::Bytes;
use std::io;
use std::time::{Duration, Instant};

/// k6's timing breakdown of one request, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Waiting for a connection (always 0: a VU owns its connection).
    pub blocked: f64,
    /// TCP connect.
    pub connecting: f64,
    /// TLS handshake.
    pub tls_handshaking: f64,
    /// Writing the request.
    pub sending: f64,
    /// From the request written to the first response byte.
    pub waiting: f64,
    /// From the first response byte to the last.
    pub receiving: f64,
    /// sending + waiting + receiving
    pub duration: f64,
}

/// The outcome of one request. Transport failures have status 0 and an error.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The HTTP status; 0 when the request failed before a complete response.
    pub status: u16,
    /// The body, or its first [`HttpClient::body_limit`](super::HttpClient::body_limit) bytes
    /// (see `body_truncated`).
    pub body: Bytes,
    /// True when body bytes beyond [`HttpClient::body_limit`](super::HttpClient::body_limit)
    /// were read and dropped (they are still counted in `bytes_received`).
    pub body_truncated: bool,
    /// The `Location` header of a 301, 302, 303, 307 or 308 response (as sent, possibly
    /// relative); None for any other status. The client does not follow redirects itself.
    pub location: Option<String>,
    /// k6's timing breakdown.
    pub timings: Timings,
    /// Why the request failed: the kind (a metric label) and a message for people (never
    /// containing the URL's credentials).
    pub error: Option<(ErrorKind, String)>,
    /// Request bytes written (head and body).
    pub bytes_sent: u64,
    /// Response bytes read, including body bytes dropped by the body limit.
    pub bytes_received: u64,
    /// When the response ended (or failed).
    pub finished_at: Instant,
}

impl HttpResponse {
    /// The body as JSON; None when it is not JSON (k6's `res.json()` with a selector gives
    /// undefined in that case). A truncated body is usually not valid JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// How an exchange failed, and whether it is safe to retry on a new connection.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) kind: ErrorKind,
    pub(super) message: String,
    /// Nothing of a response arrived (a reused connection the server had closed).
    pub(super) before_response: bool,
}

impl Failure {
    pub(super) fn io(what: &str, e: io::Error, before_response: bool) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            io::ErrorKind::InvalidData => ErrorKind::Protocol,
            _ => ErrorKind::Connect,
        };
        Self {
            kind,
            message: format!("{what}: {e}"),
            before_response,
        }
    }
    pub(super) fn protocol(message: String) -> Self {
        Self {
            kind: ErrorKind::Protocol,
            message,
            before_response: false,
        }
    }
}

/// A response for a request that failed: status 0, no body, the error, and whatever timings
/// and byte counts the request got to.
pub(super) fn failed(
    e: (ErrorKind, String),
    timings: Timings,
    sent: u64,
    received: u64,
) -> HttpResponse {
    HttpResponse {
        status: 0,
        body: Bytes::new(),
        body_truncated: false,
        location: None,
        timings,
        error: Some(e),
        bytes_sent: sent,
        bytes_received: received,
        finished_at: Instant::now(),
    }
}

/// A duration in milliseconds, the unit of [`Timings`].
pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
