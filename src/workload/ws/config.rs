//! [`WsConfig`]: what a ws run is given (URL, token, source addresses, TLS, session length and
//! timers), the session URL built from it as upstream builds it, and the checks that reject a
//! config every session would fail on the same way.

use crate::error::ConfigError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
