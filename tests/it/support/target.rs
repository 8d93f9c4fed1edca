//! Helpers shared by the `target_*` integration tests: database backends (SQLite, and a fresh
//! PostgreSQL database per test from `NOVALOAD_TEST_POSTGRES_URL`), server start-up and a
//! tiny HTTP client (`use crate::support::target::*`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use novaload::novacron::{self, TargetArgs, TargetHandle};
use serde_json::Value;

pub use super::postgres::TestDb;
use super::postgres::admin_url;

/// Which database a test run uses.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

/// The backends to run: SQLite always, PostgreSQL when `NOVALOAD_TEST_POSTGRES_URL` is set.
/// Unset under `CI` is a failure (the test command starts a server); locally it is a skip.
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    v.extend(admin_url("PostgreSQL half of this test").map(Backend::Postgres));
    v
}

/// A running target plus the database it owns.
pub struct Running {
    pub handle: TargetHandle,
    pub base: String,
    pg: Option<TestDb>,
}

impl Running {
    pub async fn stop(self) {
        self.handle.shutdown().await.expect("graceful shutdown");
        if let Some(pg) = self.pg {
            pg.drop_db().await;
        }
    }
}

/// Starts a target on port 0 with `args` on `backend`.
pub async fn start(
    backend: &Backend,
    mut args: TargetArgs,
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
) -> Running {
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres(admin) => Some(TestDb::create(admin, None).await),
    };
    args.database_url = pg.as_ref().map(|p| p.url.clone());
    args.db_max_connections = 8;
    let handle = novacron::spawn(args, provider)
        .await
        .expect("target starts");
    let base = handle.base_url();
    Running { handle, base, pg }
}

/// A response: status, headers, body.
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one request the way k6 does: JSON content type and a bearer token on every request.
pub async fn call(method: &str, url: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Resp {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .unwrap();
    let res = client().request(req).await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

pub const K6: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("authorization", "Bearer test-token-123"),
];

pub async fn get(base: &str, path: &str) -> Resp {
    call("GET", &format!("{base}{path}"), None, K6).await
}

pub async fn send(method: &str, base: &str, path: &str, body: &str) -> Resp {
    call(method, &format!("{base}{path}"), Some(body), K6).await
}
