//! The router and the two middlewares every route goes through: `observe` (stalls, server span,
//! request metrics) on everything but `/metrics`, and `guard` (auth, injected errors and
//! latency) on the authenticated REST and DWCP routes.
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use opentelemetry::KeyValue;
use serde_json::{Value, json};

use super::App;
use super::telemetry::{self, HeaderExtractor};

pub mod dwcp;
pub mod rest;
pub mod ws;

type AppState = State<Arc<App>>;

/// A JSON error: `{"error": ..., "field"?: ..., "fix"?: ...}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<String>,
    fix: Option<String>,
}

impl ApiError {
    pub fn bad_request(
        field: impl Into<String>,
        error: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: error.into(),
            field: Some(field.into()),
            fix: Some(fix.into()),
        }
    }
    pub fn not_found(what: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            error: format!("{what} not found"),
            field: None,
            fix: None,
        }
    }
    /// A database or internal failure: logged here, generic to the client.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "target request failed");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "internal server error".into(),
            field: None,
            fix: None,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error });
        if let Some(f) = self.field {
            body["field"] = Value::String(f);
        }
        if let Some(f) = self.fix {
            body["fix"] = Value::String(f);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

/// Epoch milliseconds, the timestamp every WebSocket frame carries.
pub fn epoch_ms() -> i64 {
    super::store::now_ms()
}

/// Builds the whole router.
pub fn router(app: Arc<App>) -> Router {
    let guarded = Router::new()
        .route("/api/v1/vms", get(rest::list_vms).post(rest::create_vm))
        // Literal routes are registered beside `/{id}`; axum prefers static segments.
        .route("/api/v1/vms/stats/aggregate", get(rest::aggregate))
        .route("/api/v1/vms/search", get(rest::search))
        .route("/api/v1/vms/batch", post(rest::batch))
        .route(
            "/api/v1/vms/{id}",
            get(rest::get_vm)
                .patch(rest::update_vm)
                .put(rest::update_vm)
                .delete(rest::delete_vm),
        )
        .route("/api/v1/vms/{id}/metrics", get(rest::vm_metrics))
        .route(
            "/api/v1/dwcp/migrations",
            get(dwcp::list).post(dwcp::create),
        )
        .route("/api/v1/dwcp/migrations/{job_id}", get(dwcp::get))
        .route("/api/v1/dwcp/stats", get(dwcp::stats))
        .route_layer(middleware::from_fn_with_state(app.clone(), guard));
    let open = Router::new()
        .route("/health", get(rest::health))
        .route("/api/v1/health", get(rest::health))
        .route("/api/v1/dwcp/version", get(dwcp::version))
        .route("/ws/realtime", get(ws::realtime))
        .route("/realtime", get(ws::realtime))
        .route("/dwcp/v3/stream", get(ws::dwcp_stream))
        .route("/ws/metrics", get(ws::metrics_stream))
        .route("/api/ws/metrics", get(ws::metrics_stream));
    guarded
        .merge(open)
        .route_layer(middleware::from_fn_with_state(app.clone(), observe))
        .route("/metrics", get(prometheus))
        .fallback(|| async { ApiError::not_found("route") })
        .with_state(app)
}

/// Stall gate, server span (child of the caller's `traceparent`) and request metrics.
async fn observe(
    State(app): AppState,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    // Requests arriving during a stall wait for its end.
    app.faults.wait_stall().await;
    let start = Instant::now();
    let endpoint: String = matched
        .as_ref()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let parent = telemetry::extract(&HeaderExtractor(req.headers()));
    let span = app.tracing.server_span(
        format!("{method} {endpoint}"),
        &parent,
        vec![
            KeyValue::new("http.request.method", method.clone()),
            KeyValue::new("http.route", endpoint.clone()),
            // The path only: query strings may carry `?token=`.
            KeyValue::new("url.path", req.uri().path().to_owned()),
            KeyValue::new("url.scheme", "http"),
        ],
    );
    let response = next.run(req).await;
    // Requests in flight when a stall begins are held too.
    app.faults.wait_stall().await;
    let status = response.status().as_u16();
    let trace_id = match span {
        Some(span) => telemetry::finish_span(span, status),
        None => telemetry::sampled_parent(&parent),
    };
    app.metrics.api_request(
        &method,
        &endpoint,
        status,
        start.elapsed().as_secs_f64(),
        trace_id,
    );
    response
}

/// Auth, then injected 500s and latency, for the authenticated routes.
async fn guard(State(app): AppState, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = app.auth.check(header, None) {
        return unauthorized(e);
    }
    let delay = app.faults.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if app.faults.inject_error() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": "injected fault", "fault": "error-rate"})),
        )
            .into_response();
    }
    next.run(req).await
}

/// 401 JSON: `error` is "unauthorized", `message` NovaCron's wording (spec §4.2) and `reason`
/// exactly what is wrong and how to fix it (e.g. a missing `exp`); never the token itself.
pub fn unauthorized(e: super::auth::AuthError) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        axum::Json(json!({
            "error": "unauthorized",
            "message": e.to_string(),
            "reason": e.reason(),
        })),
    )
        .into_response()
}

async fn prometheus(State(app): AppState, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let body = app.metrics.encode(openmetrics);
    let ct = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    ([(header::CONTENT_TYPE, ct)], body).into_response()
}
