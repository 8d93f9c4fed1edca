//! DWCP v3 REST routes (spec §1.2, §4.5, §6): the k6 suite's invented migration API, backed by
//! rows whose status and phase are derived at read time (see [`crate::novacron::vm_migration`]).
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::ApiError;
use super::rest::{parse_limit, query_map};
use crate::novacron::App;
use crate::novacron::store::{MigrationRow, migration_status_sql, now_ms};
use crate::novacron::vm_migration::{self, PHASES};

type AppState = State<Arc<App>>;

/// `GET /api/v1/dwcp/version` (no auth: upstream setup() sends no headers).
pub async fn version() -> Response {
    axum::Json(json!({
        "version": "v3",
        "protocol": "dwcp",
        "api_version": "v1",
        "server": "novaload-target",
        "phases": PHASES.iter().map(|(p, _)| *p).chain([vm_migration::PHASE_COMPLETE]).collect::<Vec<_>>(),
        "features": ["live_migration", "compression", "encryption", "bandwidth_limit"],
    }))
    .into_response()
}

fn req_str(m: &Map<String, Value>, key: &str, example: &str) -> Result<String, ApiError> {
    match m.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 255 => Ok(s.clone()),
        Some(_) => Err(ApiError::bad_request(
            key,
            format!("{key} must be a non-empty string of at most 255 bytes"),
            format!("send \"{key}\": \"{example}\""),
        )),
        None => Err(ApiError::bad_request(
            key,
            format!("{key} is required"),
            format!("send \"{key}\": \"{example}\""),
        )),
    }
}

fn opt_bool(m: &Map<String, Value>, key: &str, default: bool) -> Result<bool, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::bad_request(
            key,
            format!("{key} must be a boolean"),
            format!("send \"{key}\": true or false"),
        )),
    }
}

/// `POST /api/v1/dwcp/migrations` → 202 `{job_id, status:"pending", ...}`.
pub async fn create(State(app): AppState, body: Bytes) -> Result<Response, ApiError> {
    let m = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return Err(ApiError::bad_request(
                "body",
                "request body must be a JSON object",
                "send {\"vm_id\":\"vm-1\",\"source_zone\":\"us-west-1\",\"target_zone\":\"us-east-1\"}",
            ));
        }
        Err(e) => {
            return Err(ApiError::bad_request(
                "body",
                format!("invalid JSON: {e}"),
                "send valid JSON with Content-Type: application/json",
            ));
        }
    };
    let vm_id = req_str(&m, "vm_id", "vm-1")?;
    let source_zone = req_str(&m, "source_zone", "us-west-1")?;
    let target_zone = req_str(&m, "target_zone", "us-east-1")?;
    let protocol = match m.get("protocol") {
        None | Some(Value::Null) => "dwcp-v3".to_owned(),
        Some(_) => req_str(&m, "protocol", "dwcp-v3")?,
    };
    let live_migration = opt_bool(&m, "live_migration", true)?;
    opt_bool(&m, "compression", true)?;
    opt_bool(&m, "encryption", true)?;
    if let Some(b) = m.get("bandwidth_limit_mbps")
        && !b.is_null()
        && !b.as_f64().is_some_and(|x| x > 0.0)
    {
        return Err(ApiError::bad_request(
            "bandwidth_limit_mbps",
            "bandwidth_limit_mbps must be a positive number",
            "send \"bandwidth_limit_mbps\": 1000",
        ));
    }
    let (duration, fails) = app.faults.plan_migration();
    let now = now_ms();
    let total_ms = duration.as_millis().max(1) as i64;
    // A failing job stops 60 % of the way in (during convergence).
    let span_ms = if fails { total_ms * 6 / 10 } else { total_ms }.max(1);
    let row = MigrationRow {
        job_id: format!("mig-{}", uuid::Uuid::new_v4().simple()),
        vm_id,
        source_zone,
        target_zone,
        protocol,
        live_migration,
        data_loss: false,
        started_at: now,
        // Queued for the first 5 % (at most 500 ms) so pollers can see `pending`.
        pending_until: now + (total_ms / 20).min(500),
        completes_at: now + span_ms,
        fails,
        error_message: fails
            .then(|| "convergence failed: dirty page rate exceeded available bandwidth".into()),
    };
    app.store.insert_migration(&row).await?;
    app.metrics
        .migration_started(&row.source_zone, &row.target_zone);
    let mut body = vm_migration::to_json(&row, now);
    body["status"] = json!("pending");
    body["message"] = json!("migration accepted");
    let location = format!("/api/v1/dwcp/migrations/{}", row.job_id);
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::LOCATION, location)],
        axum::Json(body),
    )
        .into_response())
}

/// `GET /api/v1/dwcp/migrations/{job_id}`.
pub async fn get(State(app): AppState, Path(job_id): Path<String>) -> Result<Response, ApiError> {
    match app.store.get_migration(&job_id).await? {
        Some(m) => Ok(axum::Json(vm_migration::to_json(&m, now_ms())).into_response()),
        None => Err(ApiError::not_found("migration")),
    }
}

/// `GET /api/v1/dwcp/migrations?status=&limit=` → `{migrations:[...]}`.
pub async fn list(State(app): AppState, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = query_map(raw);
    let limit = parse_limit(&q, 100)?;
    let status = match q.get("status").map(|s| s.trim()) {
        None | Some("") => None,
        Some(s) if migration_status_sql(s).is_some() => Some(s.to_owned()),
        Some(s) => {
            return Err(ApiError::bad_request(
                "status",
                format!("unknown migration status `{s}`"),
                "use status=pending, in_progress, completed or failed",
            ));
        }
    };
    let now = now_ms();
    let rows = app
        .store
        .list_migrations(status.as_deref(), now, limit)
        .await?;
    let migrations: Vec<Value> = rows.iter().map(|m| vm_migration::to_json(m, now)).collect();
    Ok(axum::Json(json!({
        "migrations": migrations,
        "count": migrations.len(),
        "status": status,
        "limit": limit,
    }))
    .into_response())
}

/// `GET /api/v1/dwcp/stats` → `{active_migrations, completed, failed, total, ...}`.
pub async fn stats(State(app): AppState) -> Result<Response, ApiError> {
    let s = app.store.migration_stats(now_ms()).await?;
    let finished = s.completed + s.failed;
    Ok(axum::Json(json!({
        "active_migrations": s.pending + s.in_progress,
        "pending": s.pending,
        "in_progress": s.in_progress,
        "completed": s.completed,
        "failed": s.failed,
        "total": s.total,
        "success_rate": if finished > 0 { s.completed as f64 / finished as f64 } else { 1.0 },
        "protocol_version": "v3",
        "timestamp": super::epoch_ms(),
    }))
    .into_response())
}
