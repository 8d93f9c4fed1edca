//! Every metric and label name novaload and its reference target export.
//!
//! This is the one place names live: instruments, dashboards, alert rules and the README's
//! metric reference (`novaload metrics-reference`) are all built from these constants, so a
//! rename here is a rename everywhere. Prometheus names are the OpenTelemetry names with dots
//! replaced by underscores and the unit appended, as the OTel→Prometheus convention does.

/// One exported metric: its Prometheus name, OTel name, type, unit and labels.
#[derive(Debug, Clone, Copy)]
pub struct MetricName {
    /// Name as scraped from `/metrics` (without `_bucket`/`_count`/`_sum`/`_total` suffixes
    /// added by the exposition format for histograms; counters include `_total`).
    pub prometheus: &'static str,
    /// Name as pushed over OTLP.
    pub otel: &'static str,
    pub kind: Kind,
    pub unit: &'static str,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// Instrument type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

// ---- label names (low cardinality only: never ids or raw URLs) ----
pub const L_RUN_ID: &str = "run_id";
pub const L_TEST: &str = "test";
pub const L_SCENARIO: &str = "scenario";
pub const L_SEGMENT: &str = "segment";
pub const L_OPERATION: &str = "operation";
pub const L_METHOD: &str = "http_request_method";
pub const L_URL_TEMPLATE: &str = "url_template";
pub const L_STATUS_CODE: &str = "http_response_status_code";
pub const L_STATUS_CLASS: &str = "status_class";
pub const L_ERROR_KIND: &str = "error_kind";
pub const L_CHECK: &str = "check";
pub const L_RESULT: &str = "result";
pub const L_DB_SYSTEM: &str = "db_system_name";
pub const L_DB_OPERATION: &str = "db_operation_name";
pub const L_DB_COLLECTION: &str = "db_collection_name";
pub const L_PROFILE: &str = "profile";
pub const L_VERSION: &str = "version";
pub const L_DIRECTION: &str = "direction";

const RUN: &[&str] = &[L_RUN_ID, L_TEST, L_SCENARIO];

// ---- client (novaload) metrics ----
pub const HTTP_CLIENT_REQUEST_DURATION: MetricName = MetricName {
    prometheus: "http_client_request_duration_seconds",
    otel: "http.client.request.duration",
    kind: Kind::Histogram,
    unit: "s",
    labels: &[
        L_RUN_ID,
        L_TEST,
        L_SCENARIO,
        L_METHOD,
        L_URL_TEMPLATE,
        L_STATUS_CODE,
        L_STATUS_CLASS,
        L_ERROR_KIND,
    ],
    help: "Duration of HTTP client requests (sending + waiting + receiving), with trace exemplars.",
};
pub const DB_CLIENT_OPERATION_DURATION: MetricName = MetricName {
    prometheus: "db_client_operation_duration_seconds",
    otel: "db.client.operation.duration",
    kind: Kind::Histogram,
    unit: "s",
    labels: &[
        L_RUN_ID,
        L_TEST,
        L_SCENARIO,
        L_DB_SYSTEM,
        L_DB_OPERATION,
        L_DB_COLLECTION,
        L_ERROR_KIND,
    ],
    help: "Duration of database operations (direct SQL or through the REST API), with trace exemplars.",
};
pub const VUS: MetricName = MetricName {
    prometheus: "novaload_vus",
    otel: "novaload.vus",
    kind: Kind::Gauge,
    unit: "{vu}",
    labels: RUN,
    help: "Virtual users currently active.",
};
pub const VUS_MAX: MetricName = MetricName {
    prometheus: "novaload_vus_max",
    otel: "novaload.vus.max",
    kind: Kind::Gauge,
    unit: "{vu}",
    labels: RUN,
    help: "Virtual users allocated (active or idle).",
};
pub const ITERATIONS: MetricName = MetricName {
    prometheus: "novaload_iterations_total",
    otel: "novaload.iterations",
    kind: Kind::Counter,
    unit: "{iteration}",
    labels: RUN,
    help: "Completed VU iterations.",
};
pub const ITERATION_DURATION: MetricName = MetricName {
    prometheus: "novaload_iteration_duration_seconds",
    otel: "novaload.iteration.duration",
    kind: Kind::Histogram,
    unit: "s",
    labels: RUN,
    help: "Duration of one VU iteration, think time included.",
};
pub const DROPPED_ITERATIONS: MetricName = MetricName {
    prometheus: "novaload_dropped_iterations_total",
    otel: "novaload.dropped_iterations",
    kind: Kind::Counter,
    unit: "{iteration}",
    labels: RUN,
    help: "Iterations an arrival-rate executor could not start (no free VU and maxVUs reached).",
};
pub const CHECKS: MetricName = MetricName {
    prometheus: "novaload_checks_total",
    otel: "novaload.checks",
    kind: Kind::Counter,
    unit: "{check}",
    labels: &[L_RUN_ID, L_TEST, L_SCENARIO, L_CHECK, L_RESULT],
    help: "Check evaluations by check name and result (pass|fail).",
};
pub const ERRORS: MetricName = MetricName {
    prometheus: "novaload_errors_total",
    otel: "novaload.errors",
    kind: Kind::Counter,
    unit: "{error}",
    labels: &[L_RUN_ID, L_TEST, L_SCENARIO, L_OPERATION, L_ERROR_KIND],
    help: "Failed operations by closed error kind (connect, timeout, tls, status, body, protocol, ...).",
};
pub const OPERATIONS: MetricName = MetricName {
    prometheus: "novaload_operations_total",
    otel: "novaload.operations",
    kind: Kind::Counter,
    unit: "{operation}",
    labels: &[L_RUN_ID, L_TEST, L_SCENARIO, L_OPERATION, L_RESULT],
    help: "Workload operations (requests, queries, migrations, sessions) by result (success|failure); the error-rate denominator.",
};
pub const DATA_SENT: MetricName = MetricName {
    prometheus: "novaload_data_sent_bytes_total",
    otel: "novaload.data.sent",
    kind: Kind::Counter,
    unit: "By",
    labels: RUN,
    help: "Bytes sent on the wire (request lines, headers, bodies, WebSocket frames).",
};
pub const DATA_RECEIVED: MetricName = MetricName {
    prometheus: "novaload_data_received_bytes_total",
    otel: "novaload.data.received",
    kind: Kind::Counter,
    unit: "By",
    labels: RUN,
    help: "Bytes received on the wire.",
};
pub const WS_CONNECTIONS_ACTIVE: MetricName = MetricName {
    prometheus: "novaload_ws_connections_active",
    otel: "novaload.ws.connections.active",
    kind: Kind::Gauge,
    unit: "{connection}",
    labels: RUN,
    help: "WebSocket connections currently open.",
};
pub const WS_CONNECTIONS: MetricName = MetricName {
    prometheus: "novaload_ws_connections_total",
    otel: "novaload.ws.connections",
    kind: Kind::Counter,
    unit: "{connection}",
    labels: &[L_RUN_ID, L_TEST, L_SCENARIO, L_RESULT],
    help: "WebSocket connection attempts by result (success|failure); success rate = success / all.",
};
pub const WS_CONNECT_DURATION: MetricName = MetricName {
    prometheus: "novaload_ws_connect_duration_seconds",
    otel: "novaload.ws.connect.duration",
    kind: Kind::Histogram,
    unit: "s",
    labels: RUN,
    help: "WebSocket handshake time (TCP connect + upgrade).",
};
pub const WS_MESSAGES: MetricName = MetricName {
    prometheus: "novaload_ws_messages_total",
    otel: "novaload.ws.messages",
    kind: Kind::Counter,
    unit: "{message}",
    labels: &[L_RUN_ID, L_TEST, L_SCENARIO, L_DIRECTION],
    help: "WebSocket text frames by direction (sent|received).",
};
pub const WS_MESSAGE_LATENCY: MetricName = MetricName {
    prometheus: "novaload_ws_message_latency_seconds",
    otel: "novaload.ws.message.latency",
    kind: Kind::Histogram,
    unit: "s",
    labels: RUN,
    help: "Age of a server frame on receipt (receive time minus the frame's timestamp).",
};
pub const MIGRATIONS_IN_FLIGHT: MetricName = MetricName {
    prometheus: "novaload_migrations_in_flight",
    otel: "novaload.migrations.in_flight",
    kind: Kind::Gauge,
    unit: "{migration}",
    labels: RUN,
    help: "DWCP migrations started and not yet completed, failed or timed out.",
};
pub const MIGRATIONS: MetricName = MetricName {
    prometheus: "novaload_migrations_total",
    otel: "novaload.migrations",
    kind: Kind::Counter,
    unit: "{migration}",
    labels: &[L_RUN_ID, L_TEST, L_SCENARIO, L_RESULT],
    help: "Finished DWCP migrations by result (completed|failed|timeout).",
};
pub const MIGRATION_DURATION: MetricName = MetricName {
    prometheus: "novaload_migration_duration_seconds",
    otel: "novaload.migration.duration",
    kind: Kind::Histogram,
    unit: "s",
    labels: RUN,
    help: "DWCP migration wall time, POST to the poll that first sees completed.",
};
pub const DB_POOL_ACQUIRE_DURATION: MetricName = MetricName {
    prometheus: "novaload_db_pool_acquire_duration_seconds",
    otel: "novaload.db.pool.acquire.duration",
    kind: Kind::Histogram,
    unit: "s",
    labels: RUN,
    help: "Time to acquire a connection from the sqlx pool (--db-mode direct).",
};
pub const DB_POOL_CONNECTIONS: MetricName = MetricName {
    prometheus: "novaload_db_pool_connections",
    otel: "novaload.db.pool.connections",
    kind: Kind::Gauge,
    unit: "{connection}",
    labels: &[L_RUN_ID, L_TEST, L_SCENARIO, "state"],
    help: "sqlx pool connections by state (idle|in_use).",
};
pub const SPANS_DROPPED: MetricName = MetricName {
    prometheus: "novaload_spans_dropped_total",
    otel: "novaload.spans.dropped",
    kind: Kind::Counter,
    unit: "{span}",
    labels: &[L_RUN_ID],
    help: "Spans dropped because the export queue was full (collector slow or down).",
};
pub const RUN_INFO: MetricName = MetricName {
    prometheus: "novaload_run_info",
    otel: "novaload.run.info",
    kind: Kind::Gauge,
    unit: "1",
    labels: &[L_RUN_ID, L_TEST, L_PROFILE, L_SEGMENT, L_VERSION],
    help: "Always 1 while a run is live; labels carry the run's metadata.",
};
pub const PROCESS_CPU: MetricName = MetricName {
    prometheus: "process_cpu_seconds_total",
    otel: "process.cpu.time",
    kind: Kind::Counter,
    unit: "s",
    labels: &[],
    help: "CPU time of the novaload process (load-generator saturation).",
};
pub const PROCESS_RSS: MetricName = MetricName {
    prometheus: "process_resident_memory_bytes",
    otel: "process.memory.usage",
    kind: Kind::Gauge,
    unit: "By",
    labels: &[],
    help: "Resident memory of the novaload process.",
};

/// Every client-side metric, in reference order.
pub const CLIENT_METRICS: &[MetricName] = &[
    HTTP_CLIENT_REQUEST_DURATION,
    DB_CLIENT_OPERATION_DURATION,
    VUS,
    VUS_MAX,
    ITERATIONS,
    ITERATION_DURATION,
    DROPPED_ITERATIONS,
    CHECKS,
    ERRORS,
    OPERATIONS,
    DATA_SENT,
    DATA_RECEIVED,
    WS_CONNECTIONS_ACTIVE,
    WS_CONNECTIONS,
    WS_CONNECT_DURATION,
    WS_MESSAGES,
    WS_MESSAGE_LATENCY,
    MIGRATIONS_IN_FLIGHT,
    MIGRATIONS,
    MIGRATION_DURATION,
    DB_POOL_ACQUIRE_DURATION,
    DB_POOL_CONNECTIONS,
    SPANS_DROPPED,
    RUN_INFO,
    PROCESS_CPU,
    PROCESS_RSS,
];

// ---- reference target (NovaCron's own names, spec §4.6/§4.8) ----
pub const NOVACRON_API_REQUESTS: MetricName = MetricName {
    prometheus: "novacron_api_requests_total",
    otel: "novacron.api.requests",
    kind: Kind::Counter,
    unit: "{request}",
    labels: &["method", "endpoint", "status"],
    help: "Requests served by the target, by route template and status code.",
};
pub const NOVACRON_API_REQUEST_DURATION: MetricName = MetricName {
    prometheus: "novacron_api_request_duration_seconds",
    otel: "novacron.api.request.duration",
    kind: Kind::Histogram,
    unit: "s",
    labels: &["method", "endpoint"],
    help: "Server-side request duration, with exemplars of the server span's trace id.",
};
pub const NOVACRON_API_ERRORS: MetricName = MetricName {
    prometheus: "novacron_api_errors_total",
    otel: "novacron.api.errors",
    kind: Kind::Counter,
    unit: "{error}",
    labels: &["method", "endpoint", "status"],
    help: "Requests answered with a 4xx/5xx status (injected faults included).",
};
pub const NOVACRON_DWCP_MIGRATIONS: MetricName = MetricName {
    prometheus: "novacron_dwcp_migrations_total",
    otel: "novacron.dwcp.migrations",
    kind: Kind::Counter,
    unit: "{migration}",
    labels: &["source", "destination", "status"],
    help: "DWCP migrations by source zone, destination zone and final status (completed|failed), plus status=started.",
};
pub const NOVACRON_DWCP_MIGRATION_DURATION: MetricName = MetricName {
    prometheus: "novacron_dwcp_migration_duration_seconds",
    otel: "novacron.dwcp.migration.duration",
    kind: Kind::Histogram,
    unit: "s",
    labels: &[],
    help: "Simulated migration time from creation to completion.",
};
pub const NOVACRON_DWCP_MIGRATIONS_ACTIVE: MetricName = MetricName {
    prometheus: "novacron_dwcp_migrations_active",
    otel: "novacron.dwcp.migrations.active",
    kind: Kind::Gauge,
    unit: "{migration}",
    labels: &[],
    help: "Migrations currently in flight on the target.",
};
pub const NOVACRON_WS_CONNECTIONS_ACTIVE: MetricName = MetricName {
    prometheus: "novacron_websocket_connections_active",
    otel: "novacron.websocket.connections.active",
    kind: Kind::Gauge,
    unit: "{connection}",
    labels: &["endpoint", "client_type"],
    help: "Open WebSocket connections on the target.",
};
pub const NOVACRON_WS_MESSAGES_SENT: MetricName = MetricName {
    prometheus: "novacron_websocket_messages_sent_total",
    otel: "novacron.websocket.messages.sent",
    kind: Kind::Counter,
    unit: "{message}",
    labels: &["endpoint", "message_type"],
    help: "Frames the target sent.",
};
pub const NOVACRON_WS_MESSAGES_RECEIVED: MetricName = MetricName {
    prometheus: "novacron_websocket_messages_received_total",
    otel: "novacron.websocket.messages.received",
    kind: Kind::Counter,
    unit: "{message}",
    labels: &["endpoint", "message_type"],
    help: "Frames the target received.",
};
pub const NOVACRON_WS_CONNECTION_DURATION: MetricName = MetricName {
    prometheus: "novacron_websocket_connection_duration_seconds",
    otel: "novacron.websocket.connection.duration",
    kind: Kind::Histogram,
    unit: "s",
    labels: &["endpoint"],
    help: "Lifetime of closed WebSocket connections (buckets 1,2,4..512 s).",
};
pub const NOVACRON_DB_QUERIES: MetricName = MetricName {
    prometheus: "novacron_database_queries_total",
    otel: "novacron.database.queries",
    kind: Kind::Counter,
    unit: "{query}",
    labels: &["operation", "table", "status"],
    help: "Queries the target ran, by operation, table and status (ok|error).",
};
pub const NOVACRON_DB_QUERY_DURATION: MetricName = MetricName {
    prometheus: "novacron_database_query_duration_seconds",
    otel: "novacron.database.query.duration",
    kind: Kind::Histogram,
    unit: "s",
    labels: &["operation", "table"],
    help: "Query duration inside the target.",
};
pub const NOVACRON_DB_CONNECTIONS_ACTIVE: MetricName = MetricName {
    prometheus: "novacron_database_connections_active",
    otel: "novacron.database.connections.active",
    kind: Kind::Gauge,
    unit: "{connection}",
    labels: &[],
    help: "Pool connections in use.",
};
pub const NOVACRON_DB_POOL_SIZE: MetricName = MetricName {
    prometheus: "novacron_database_connection_pool_size",
    otel: "novacron.database.connection.pool.size",
    kind: Kind::Gauge,
    unit: "{connection}",
    labels: &[],
    help: "Pool connections open (idle + in use).",
};
pub const NOVACRON_VMS: MetricName = MetricName {
    prometheus: "novacron_vms_total",
    otel: "novacron.vms",
    kind: Kind::Gauge,
    unit: "{vm}",
    labels: &["state"],
    help: "VMs stored in the target, by state (refreshed every few seconds).",
};

/// Every target-side metric, in reference order.
pub const TARGET_METRICS: &[MetricName] = &[
    NOVACRON_API_REQUESTS,
    NOVACRON_API_REQUEST_DURATION,
    NOVACRON_API_ERRORS,
    NOVACRON_DWCP_MIGRATIONS,
    NOVACRON_DWCP_MIGRATION_DURATION,
    NOVACRON_DWCP_MIGRATIONS_ACTIVE,
    NOVACRON_WS_CONNECTIONS_ACTIVE,
    NOVACRON_WS_MESSAGES_SENT,
    NOVACRON_WS_MESSAGES_RECEIVED,
    NOVACRON_WS_CONNECTION_DURATION,
    NOVACRON_DB_QUERIES,
    NOVACRON_DB_QUERY_DURATION,
    NOVACRON_DB_CONNECTIONS_ACTIVE,
    NOVACRON_DB_POOL_SIZE,
    NOVACRON_VMS,
];
