//! The closed set of error kinds. Every failure a workload sees maps to one of these; the kind
//! is a low-cardinality label on metrics and a key in the summary's error table.

use serde::{Deserialize, Serialize};

/// Why an operation failed. Closed on purpose: it is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// TCP connect refused, reset before a response, DNS failure.
    Connect,
    /// No answer within the request timeout.
    Timeout,
    /// TLS handshake or certificate failure.
    Tls,
    /// A response arrived with an unexpected HTTP status (4xx/5xx, or not 101 on upgrade).
    Status,
    /// The body was not what the protocol promised (not JSON, missing fields).
    Body,
    /// A protocol-level failure after connecting (WebSocket closed abnormally, bad frame).
    Protocol,
    /// A database error (direct mode).
    Database,
    /// A redirect loop, or more hops than `--max-redirects` allows.
    Redirect,
    /// A check failed while the transport worked.
    Check,
    /// The operation was cut short by the end of the run.
    Interrupted,
    /// Anything else.
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Tls,
        ErrorKind::Status,
        ErrorKind::Body,
        ErrorKind::Protocol,
        ErrorKind::Database,
        ErrorKind::Redirect,
        ErrorKind::Check,
        ErrorKind::Interrupted,
        ErrorKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::Status => "status",
            ErrorKind::Body => "body",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Database => "database",
            ErrorKind::Redirect => "redirect",
            ErrorKind::Check => "check",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bad input: names the field and says how to fix it. Maps to exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("invalid {field}: {problem}\n  fix: {fix}")]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
    pub fix: String,
}

impl ConfigError {
    pub fn new(
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}
