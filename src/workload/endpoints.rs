//! Where the NovaCron workloads send traffic and how they authenticate: the upstream env vars
//! (`API_URL`, `WS_URL`, `DWCP_WS_URL`, `API_TOKEN`) resolved into URLs and header sets.

use http::{HeaderName, HeaderValue};

/// Upstream default token (spec §1.1); used only when none is given.
pub(crate) const DEFAULT_TOKEN: &str = "test-token-123";

/// Resolved endpoints of one NovaCron deployment (or of the built-in target).
#[derive(Clone)]
pub struct Endpoints {
    /// REST base, e.g. `http://127.0.0.1:8080` (no trailing slash).
    pub api_url: String,
    /// WebSocket base; the ws test appends `/realtime`.
    pub ws_url: String,
    /// DWCP stream base; the dwcp test appends `/stream?job_id=...`.
    pub dwcp_ws_url: String,
    token: String,
}

impl std::fmt::Debug for Endpoints {
    // never print the token
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("api_url", &self.api_url)
            .field("ws_url", &self.ws_url)
            .field("dwcp_ws_url", &self.dwcp_ws_url)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Endpoints {
    pub fn new(
        api_url: &str,
        ws_url: Option<&str>,
        dwcp_ws_url: Option<&str>,
        token: Option<&str>,
    ) -> Self {
        let api_url = api_url.trim_end_matches('/').to_string();
        let ws_base = api_url
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        Self {
            ws_url: ws_url
                .map(|s| s.trim_end_matches('/').to_string())
                .unwrap_or_else(|| format!("{ws_base}/ws")),
            dwcp_ws_url: dwcp_ws_url
                .map(|s| s.trim_end_matches('/').to_string())
                .unwrap_or_else(|| format!("{ws_base}/dwcp/v3")),
            token: token.unwrap_or(DEFAULT_TOKEN).to_string(),
            api_url,
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// `Content-Type: application/json` and `Authorization: Bearer <token>` (marked sensitive
    /// so it is never logged by the HTTP stack).
    pub fn json_auth_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.token))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-token-characters"));
        auth.set_sensitive(true);
        vec![
            (
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (http::header::AUTHORIZATION, auth),
        ]
    }

    pub fn url(&self, path: &str) -> url::Url {
        // The base was validated when the endpoints were built; a bad path is a programming error
        // in a workload, so fall back to the base rather than panic.
        super::join_url(&self.api_url, path)
            .unwrap_or_else(|_| url::Url::parse(&self.api_url).expect("validated base URL"))
    }
}

/// Reads a JSON field like k6's `res.json('field')`: None when the body isn't JSON or the key
/// is missing; Some(Null) for an explicit null.
pub fn field<'a>(v: &'a Option<serde_json::Value>, key: &str) -> Option<&'a serde_json::Value> {
    v.as_ref().and_then(|v| v.get(key))
}

/// JavaScript truthiness of a JSON value (for `if (newVmId)`).
pub fn truthy(v: Option<&serde_json::Value>) -> bool {
    match v {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Some(serde_json::Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// A JSON id as it would be pasted into a path by JavaScript string concatenation.
pub(crate) fn id_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
