//! VM REST routes under `/api/v1` (spec §1.1, §1.4, §6) and the health endpoints.
//!
//! Bodies are parsed by hand from bytes so a bad value is answered with a 400 that names the
//! field and the fix; the `Content-Type` header is not required (k6 sends it on bodiless
//! DELETEs too) and unknown fields are ignored.
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{ApiError, epoch_ms};
use crate::novacron::App;
use crate::novacron::store::{
    BatchError, BatchOp, BatchOutcome, NewVm, STATES, VmPatch, VmQuery, VmRow,
};

type AppState = State<Arc<App>>;

const MAX_LIMIT: i64 = 1000;
const SORTABLE: [&str; 9] = [
    "created_at",
    "updated_at",
    "name",
    "id",
    "state",
    "zone",
    "cpu_cores",
    "memory_mb",
    "disk_gb",
];

/// Query-string pairs (last value wins); never fails.
pub fn query_map(raw: Option<String>) -> HashMap<String, String> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

/// `limit`: default `default`, at least 1, clamped to 1000.
pub fn parse_limit(q: &HashMap<String, String>, default: i64) -> Result<i64, ApiError> {
    match q.get("limit").map(|s| s.trim()) {
        None | Some("") => Ok(default),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(n.min(MAX_LIMIT)),
            _ => Err(ApiError::bad_request(
                "limit",
                format!("limit must be a positive integer, got `{s}`"),
                "use limit=1..1000 (larger values are clamped to 1000)",
            )),
        },
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Cheap deterministic pseudo-random in [0, 1) from an id and a time bucket.
fn synth(id: &str, salt: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn synthetic_metrics(id: &str) -> Value {
    let bucket = (epoch_ms() / 5000) as u64;
    json!({
        "cpu_usage": (synth(id, bucket) * 1000.0).round() / 10.0,
        "memory_usage": (synth(id, bucket ^ 1) * 1000.0).round() / 10.0,
        "disk_usage": (synth(id, 7) * 1000.0).round() / 10.0,
        "network_rx_bytes": (synth(id, bucket ^ 2) * 1e9) as u64,
        "network_tx_bytes": (synth(id, bucket ^ 3) * 1e9) as u64,
        "iops": (synth(id, bucket ^ 4) * 5000.0) as u64,
    })
}

#[derive(Clone, Copy, Default)]
struct Include {
    metrics: bool,
    network: bool,
}

fn vm_json(v: &VmRow, inc: Include) -> Value {
    let tags: Value = serde_json::from_str(&v.tags).unwrap_or(Value::Array(vec![]));
    let mut o = json!({
        "id": v.id,
        "name": v.name,
        "state": v.state,
        "status": v.state,
        "zone": v.zone,
        "cpu_cores": v.cpu_cores,
        "memory_mb": v.memory_mb,
        "disk_gb": v.disk_gb,
        "image": v.image,
        "tags": tags,
        "created_at": rfc3339(v.created_at),
        "updated_at": rfc3339(v.updated_at),
    });
    if inc.metrics {
        o["metrics"] = synthetic_metrics(&v.id);
    }
    if inc.network {
        let n = (synth(&v.id, 11) * 65_000.0) as u32;
        o["network"] = json!({
            "ip_address": format!("10.{}.{}.{}", n >> 8 & 0xff, n & 0xff, 2 + (n % 250)),
            "mac_address": format!("52:54:00:{:02x}:{:02x}:{:02x}", n >> 16 & 0xff, n >> 8 & 0xff, n & 0xff),
            "network_id": "net-default",
        });
    }
    o
}

/// `GET /health`, `GET /api/v1/health` (no auth, no faults).
pub async fn health(State(app): AppState) -> Response {
    let db = app.store.vm_exists("1").await.is_ok();
    let body = json!({
        "status": if db { "healthy" } else { "unhealthy" },
        "timestamp": rfc3339(epoch_ms()),
        "version": "1.0.0",
        "service": "novacron-api",
        "checks": {"database": if db { "ok" } else { "error" }, "storage": "ok"},
        // which process answered: `--workers N` serves one port from N processes
        "pid": std::process::id(),
    });
    let code = if db {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// `GET /api/v1/vms?limit&offset&zone&status&sort&order&include`.
pub async fn list_vms(State(app): AppState, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = query_map(raw);
    let limit = parse_limit(&q, 50)?;
    let offset = match q.get("offset").map(|s| s.trim()) {
        None | Some("") => 0,
        Some(s) => s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request(
                "offset",
                format!("offset must be a non-negative integer, got `{s}`"),
                "use offset=0, 10, 20, ...",
            )
        })?,
    };
    let sort = match q.get("sort").map(|s| s.trim()) {
        None | Some("") => "created_at",
        Some(s) => SORTABLE.iter().copied().find(|c| *c == s).ok_or_else(|| {
            ApiError::bad_request(
                "sort",
                format!("cannot sort by `{s}`"),
                format!("use one of: {}", SORTABLE.join(", ")),
            )
        })?,
    };
    let descending = match q.get("order").map(|s| s.trim().to_ascii_lowercase()) {
        None => sort == "created_at" || sort == "updated_at",
        Some(o) if o.is_empty() => sort == "created_at" || sort == "updated_at",
        Some(o) if o == "asc" => false,
        Some(o) if o == "desc" => true,
        Some(o) => {
            return Err(ApiError::bad_request(
                "order",
                format!("order must be asc or desc, got `{o}`"),
                "use order=asc or order=desc",
            ));
        }
    };
    let mut inc = Include::default();
    if let Some(list) = q.get("include") {
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "metrics" => inc.metrics = true,
                "network" => inc.network = true,
                "tags" => {}
                other => {
                    return Err(ApiError::bad_request(
                        "include",
                        format!("unknown include `{other}`"),
                        "use a comma list of: metrics, tags, network",
                    ));
                }
            }
        }
    }
    let nonempty = |k: &str| {
        q.get(k)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let query = VmQuery {
        zone: nonempty("zone"),
        state: nonempty("status").or_else(|| nonempty("state")),
        sort,
        descending,
        limit,
        offset,
    };
    let (rows, total) = app.store.list_vms(&query).await?;
    let data: Vec<Value> = rows.iter().map(|v| vm_json(v, inc)).collect();
    Ok(
        axum::Json(json!({"data": data, "total": total, "limit": limit, "offset": offset}))
            .into_response(),
    )
}

/// `GET /api/v1/vms/{id}`.
pub async fn get_vm(State(app): AppState, Path(id): Path<String>) -> Result<Response, ApiError> {
    match app.store.get_vm(&id).await? {
        Some(v) => Ok(axum::Json(vm_json(&v, Include::default())).into_response()),
        None => Err(ApiError::not_found("vm")),
    }
}

/// `GET /api/v1/vms/{id}/metrics`: synthetic numbers for an existing VM.
pub async fn vm_metrics(
    State(app): AppState,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !app.store.vm_exists(&id).await? {
        return Err(ApiError::not_found("vm"));
    }
    let mut m = synthetic_metrics(&id);
    m["id"] = json!(id);
    m["vm_id"] = json!(id);
    m["timestamp"] = json!(rfc3339(epoch_ms()));
    Ok(axum::Json(m).into_response())
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "body",
            "request body is empty",
            "send a JSON object, e.g. {\"name\":\"vm-1\",\"cpu_cores\":2}",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "body",
            "request body must be a JSON object",
            "send a JSON object, e.g. {\"name\":\"vm-1\"}",
        )),
        Err(e) => Err(ApiError::bad_request(
            "body",
            format!("invalid JSON: {e}"),
            "send valid JSON with Content-Type: application/json",
        )),
    }
}

fn field_str(
    m: &Map<String, Value>,
    prefix: &str,
    key: &str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(ApiError::bad_request(
            format!("{prefix}{key}"),
            format!("{key} must be a non-empty string of at most {max} bytes"),
            format!("send \"{key}\": \"...\""),
        )),
        Some(other) => Err(ApiError::bad_request(
            format!("{prefix}{key}"),
            format!("{key} must be a string, got {}", type_name(other)),
            format!("send \"{key}\": \"...\""),
        )),
    }
}

fn field_int(
    m: &Map<String, Value>,
    prefix: &str,
    key: &str,
    max: i64,
) -> Result<Option<i64>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if (1..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_request(
                format!("{prefix}{key}"),
                format!(
                    "{key} must be an integer between 1 and {max}, got {}",
                    compact(v)
                ),
                format!("send \"{key}\": <integer 1..{max}>, e.g. \"{key}\": 4"),
            )),
        },
    }
}

fn field_tags(m: &Map<String, Value>, prefix: &str) -> Result<Option<String>, ApiError> {
    match m.get("tags") {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Array(items)) if items.iter().all(Value::is_string) => {
            Ok(Some(v.to_string()))
        }
        Some(v @ Value::Object(_)) => Ok(Some(v.to_string())),
        Some(other) => Err(ApiError::bad_request(
            format!("{prefix}tags"),
            format!(
                "tags must be an array of strings or an object, got {}",
                type_name(other)
            ),
            "send \"tags\": [\"a\",\"b\"] or \"tags\": {\"env\":\"test\"}",
        )),
    }
}

fn field_state(m: &Map<String, Value>, prefix: &str) -> Result<Option<String>, ApiError> {
    let key = if m.contains_key("state") {
        "state"
    } else {
        "status"
    };
    match field_str(m, prefix, key, 32)? {
        None => Ok(None),
        Some(s) if STATES.contains(&s.as_str()) => Ok(Some(s)),
        Some(s) => Err(ApiError::bad_request(
            format!("{prefix}{key}"),
            format!("unknown state `{s}`"),
            format!("use one of: {}", STATES.join(", ")),
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}…", &s[..s.floor_char_boundary(40)])
    } else {
        s
    }
}

fn new_vm(m: &Map<String, Value>, prefix: &str) -> Result<NewVm, ApiError> {
    let name = field_str(m, prefix, "name", 255)?.ok_or_else(|| {
        ApiError::bad_request(
            format!("{prefix}name"),
            "name is required",
            "send \"name\": \"my-vm\"",
        )
    })?;
    Ok(NewVm {
        name,
        state: field_state(m, prefix)?.unwrap_or_else(|| "running".into()),
        zone: field_str(m, prefix, "zone", 64)?.unwrap_or_else(|| "us-west-1".into()),
        cpu_cores: field_int(m, prefix, "cpu_cores", 1024)?.unwrap_or(2),
        memory_mb: field_int(m, prefix, "memory_mb", 16 * 1024 * 1024)?.unwrap_or(4096),
        disk_gb: field_int(m, prefix, "disk_gb", 1024 * 1024)?.unwrap_or(50),
        image: field_str(m, prefix, "image", 255)?.unwrap_or_else(|| "ubuntu-22.04".into()),
        tags: field_tags(m, prefix)?.unwrap_or_else(|| "[]".into()),
    })
}

fn vm_patch(m: &Map<String, Value>, prefix: &str) -> Result<VmPatch, ApiError> {
    Ok(VmPatch {
        name: field_str(m, prefix, "name", 255)?,
        state: field_state(m, prefix)?,
        zone: field_str(m, prefix, "zone", 64)?,
        cpu_cores: field_int(m, prefix, "cpu_cores", 1024)?,
        memory_mb: field_int(m, prefix, "memory_mb", 16 * 1024 * 1024)?,
        disk_gb: field_int(m, prefix, "disk_gb", 1024 * 1024)?,
        image: field_str(m, prefix, "image", 255)?,
        tags: field_tags(m, prefix)?,
    })
}

/// `POST /api/v1/vms` → 201 with the VM (its `id` a fresh UUID).
pub async fn create_vm(State(app): AppState, body: Bytes) -> Result<Response, ApiError> {
    let vm = new_vm(&parse_object(&body)?, "")?;
    let row = app.store.create_vm(&vm).await?;
    let location = format!("/api/v1/vms/{}", row.id);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        axum::Json(vm_json(&row, Include::default())),
    )
        .into_response())
}

/// `PATCH /api/v1/vms/{id}` (and PUT) → 200 with the updated VM.
pub async fn update_vm(
    State(app): AppState,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch = vm_patch(&parse_object(&body)?, "")?;
    match app.store.update_vm(&id, &patch).await? {
        Some(v) => Ok(axum::Json(vm_json(&v, Include::default())).into_response()),
        None => Err(ApiError::not_found("vm")),
    }
}

/// `DELETE /api/v1/vms/{id}` → 204 (any body and Content-Type are ignored).
pub async fn delete_vm(State(app): AppState, Path(id): Path<String>) -> Result<Response, ApiError> {
    if app.store.delete_vm(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("vm"))
    }
}

/// `GET /api/v1/vms/stats/aggregate`.
pub async fn aggregate(State(app): AppState) -> Result<Response, ApiError> {
    let a = app.store.aggregate().await?;
    let by_state: Map<String, Value> = a
        .by_state
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let by_zone: Map<String, Value> = a
        .by_zone
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let avg = |sum: i64| {
        if a.total > 0 {
            (sum as f64 / a.total as f64 * 100.0).round() / 100.0
        } else {
            0.0
        }
    };
    Ok(axum::Json(json!({
        "total_vms": a.total,
        "by_state": by_state,
        "by_zone": by_zone,
        "total_cpu_cores": a.total_cpu_cores,
        "total_memory_mb": a.total_memory_mb,
        "total_disk_gb": a.total_disk_gb,
        "avg_cpu_cores": avg(a.total_cpu_cores),
        "avg_memory_mb": avg(a.total_memory_mb),
        "timestamp": rfc3339(epoch_ms()),
    }))
    .into_response())
}

/// `GET /api/v1/vms/search?q=&limit=`: name contains `q`.
pub async fn search(State(app): AppState, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let q = query_map(raw);
    let limit = parse_limit(&q, 50)?;
    let term = q.get("q").map(|s| s.trim().to_owned()).unwrap_or_default();
    if term.len() > 255 {
        return Err(ApiError::bad_request(
            "q",
            "q is longer than 255 bytes",
            "search with a shorter name fragment",
        ));
    }
    let rows = app.store.search(&term, limit).await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|v| vm_json(v, Include::default()))
        .collect();
    Ok(
        axum::Json(json!({"data": data, "total": data.len(), "query": term, "limit": limit}))
            .into_response(),
    )
}

/// `POST /api/v1/vms/batch` `{operations:[{action, id?, data?}]}`: one transaction; 201 when
/// anything was created, else 200; 404 (rolled back) when an update/delete target is missing.
pub async fn batch(State(app): AppState, body: Bytes) -> Result<Response, ApiError> {
    let m = parse_object(&body)?;
    let ops = match m.get("operations") {
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= 1000 => a,
        _ => {
            return Err(ApiError::bad_request(
                "operations",
                "operations must be an array of 1..1000 operations",
                "send {\"operations\":[{\"action\":\"create\",\"data\":{\"name\":\"vm\"}}]}",
            ));
        }
    };
    let mut parsed = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let p = format!("operations[{i}].");
        let Value::Object(op) = op else {
            return Err(ApiError::bad_request(
                format!("operations[{i}]"),
                "each operation must be an object",
                "use {\"action\":\"create\"|\"update\"|\"delete\", \"id\"?: ..., \"data\"?: {...}}",
            ));
        };
        let empty = Map::new();
        let data = match op.get("data") {
            Some(Value::Object(d)) => d,
            None | Some(Value::Null) => &empty,
            Some(_) => {
                return Err(ApiError::bad_request(
                    format!("{p}data"),
                    "data must be an object",
                    "send \"data\": {\"name\":\"vm\", ...}",
                ));
            }
        };
        let id = || {
            field_str(op, &p, "id", 255)?.ok_or_else(|| {
                ApiError::bad_request(
                    format!("{p}id"),
                    "id is required for update and delete",
                    "send \"id\": \"<vm id>\"",
                )
            })
        };
        parsed.push(match op.get("action").and_then(Value::as_str) {
            Some("create") => BatchOp::Create(new_vm(data, &format!("{p}data."))?),
            Some("update") => BatchOp::Update(id()?, vm_patch(data, &format!("{p}data."))?),
            Some("delete") => BatchOp::Delete(id()?),
            _ => {
                return Err(ApiError::bad_request(
                    format!("{p}action"),
                    "action must be create, update or delete",
                    "send \"action\": \"create\"",
                ));
            }
        });
    }
    let outcomes = match app.store.batch(&parsed).await {
        Ok(o) => o,
        Err(BatchError::NotFound { index, id }) => {
            return Ok((
                StatusCode::NOT_FOUND,
                axum::Json(json!({
                    "error": format!("vm {id} not found; the batch was rolled back"),
                    "field": format!("operations[{index}].id"),
                    "fix": "update or delete only existing VM ids",
                })),
            )
                .into_response());
        }
        Err(BatchError::Db(e)) => return Err(e.into()),
    };
    let mut created = false;
    let results: Vec<Value> = outcomes
        .iter()
        .map(|o| match o {
            BatchOutcome::Created(v) => {
                created = true;
                json!({"action": "create", "status": 201, "id": v.id, "vm": vm_json(v, Include::default())})
            }
            BatchOutcome::Updated(v) => {
                json!({"action": "update", "status": 200, "id": v.id, "vm": vm_json(v, Include::default())})
            }
            BatchOutcome::Deleted(id) => json!({"action": "delete", "status": 204, "id": id}),
        })
        .collect();
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        code,
        axum::Json(json!({"results": results, "count": results.len(), "transaction": "committed"})),
    )
        .into_response())
}
