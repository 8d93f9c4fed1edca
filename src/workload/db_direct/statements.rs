//! The statements: their SQL, a statement's span and text (traceparent comment when traced),
//! running it on the VU's connection, and recording it (live histogram and operation, the k6
//! query metrics of its check group).

use super::{DbDirectWorkload, Lease, Vu, driver_reason, error_kind};
use crate::error::ErrorKind;
use crate::metrics::{DbSample, Sample, Tags};
use crate::telemetry::{AttrValue, Span, SpanKind};
use sqlx::{AssertSqlSafe, Postgres, Row};
use std::borrow::Cow;
use std::time::Instant;

/// The parameterized statements (also the `db.query.text` of their spans).
pub mod sql {
    pub const READ: &str = "SELECT id, name, state, zone, cpu_cores, memory_mb, disk_gb, image, tags, created_at, updated_at FROM vms ORDER BY created_at DESC, id DESC LIMIT 50";
    pub const COMPLEX: &str = "SELECT id, name, state, zone, cpu_cores, memory_mb, disk_gb, image, tags, created_at, updated_at FROM vms WHERE zone = $1 AND state = $2 ORDER BY created_at DESC LIMIT 100";
    pub const INSERT: &str = "INSERT INTO vms (id, name, state, zone, cpu_cores, memory_mb, disk_gb, image, tags, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id";
    pub const UPDATE: &str =
        "UPDATE vms SET cpu_cores = $1, memory_mb = $2, tags = $3, updated_at = $4 WHERE id = $5";
    pub const AGGREGATE: &str =
        "SELECT state, COUNT(*) AS n FROM vms GROUP BY ROLLUP (state) ORDER BY state NULLS FIRST";
    pub const SEARCH: &str = "SELECT id, name, state, zone, cpu_cores, memory_mb, disk_gb, image, tags, created_at, updated_at FROM vms WHERE name LIKE $1 ORDER BY created_at DESC LIMIT 50";
    pub const PAGE: &str = "SELECT id, name, state, zone, cpu_cores, memory_mb, disk_gb, image, tags, created_at, updated_at FROM vms ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 10";
    /// `--db-mix select-only` and `read-write`: seed VM `$1` by primary key, as `pgbench -S`
    /// reads an account. The id is built server-side from the number so that a pgbench script
    /// (which can only bind numbers) sends this very statement (bench/db.sh).
    pub const POINT: &str = "SELECT id, name, state FROM vms WHERE id = 'seed-vm-' || $1";
    /// `--db-mix read-write`: resize seed VM `$3` (bench/db.sh's pgbench script sends it too).
    pub const POINT_UPDATE: &str =
        "UPDATE vms SET cpu_cores = $1, memory_mb = $2 WHERE id = 'seed-vm-' || $3";
    pub const SEED: &str = "INSERT INTO vms (id, name, state, zone, cpu_cores, memory_mb, disk_gb, image, tags, created_at, updated_at) \
        SELECT 'seed-vm-' || i, 'seed-vm-' || i, 'running', 'us-west-1', 2, 4096, 50, 'ubuntu-22.04', '[]', $2 - i, $2 - i \
        FROM generate_series(0, $1 - 1) AS i ON CONFLICT (id) DO NOTHING";
}

/// "updated 0 rows, expected 1" for an UPDATE that did not change exactly its one row.
pub(super) fn rows_not_one(rows: Option<&u64>) -> String {
    match rows {
        Some(n) => format!("updated {n} rows, expected 1"),
        None => "failed".into(),
    }
}

/// What kind of database work an operation stands for.
#[derive(Clone, Copy)]
pub(super) enum Op {
    Read,
    Query,
    Write,
}

/// The statement verbs: `db.operation.name` and the live `operation` label.
#[derive(Clone, Copy)]
pub(super) enum Verb {
    Select,
    Insert,
    Update,
}

impl Verb {
    pub(super) fn name(self) -> &'static str {
        match self {
            Verb::Select => "SELECT",
            Verb::Insert => "INSERT",
            Verb::Update => "UPDATE",
        }
    }
    /// Span name and `operation` label (low cardinality: verb and table).
    pub(super) fn label(self) -> &'static str {
        match self {
            Verb::Select => "SELECT vms",
            Verb::Insert => "INSERT vms",
            Verb::Update => "UPDATE vms",
        }
    }
}

/// One statement in flight: its text (with the traceparent comment when traced) and span.
pub(super) struct Stmt {
    text: Cow<'static, str>,
    persistent: bool,
    verb: Verb,
    span: Span,
    started: Instant,
}

impl Stmt {
    pub(super) fn sql(&self) -> AssertSqlSafe<Cow<'static, str>> {
        // a `'static` text is handed over as is: no copy per execution
        AssertSqlSafe(self.text.clone())
    }
}

/// The latency of a statement that never ran (no connection): not recorded.
pub(super) const NOT_RUN: f64 = f64::NAN;

pub(super) type PgQuery = sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>;

impl DbDirectWorkload {
    /// Opens the statement's client span and builds its text.
    pub(super) fn stmt(&self, vu: &Vu, verb: Verb, sql: &'static str) -> Stmt {
        let span = if vu.tel.tracing() {
            vu.span(
                verb.label(),
                SpanKind::Client,
                &[
                    ("db.system.name", AttrValue::Static("postgresql")),
                    ("db.operation.name", AttrValue::Static(verb.name())),
                    ("db.collection.name", AttrValue::Static("vms")),
                    ("db.query.text", AttrValue::Static(sql)),
                    (
                        "db.namespace",
                        AttrValue::Str(self.options.get_database().unwrap_or("").to_string()),
                    ),
                    (
                        "server.address",
                        AttrValue::Str(self.options.get_host().to_string()),
                    ),
                    (
                        "server.port",
                        AttrValue::I64(i64::from(self.options.get_port())),
                    ),
                ],
            )
        } else {
            Span::default()
        };
        let (text, persistent) = match span.traceparent() {
            Some(tp) => (Cow::Owned(format!("{sql} /*traceparent='{tp}'*/")), false),
            None => (Cow::Borrowed(sql), true),
        };
        Stmt {
            text,
            persistent,
            verb,
            span,
            started: Instant::now(),
        }
    }

    /// Ends a statement: live histogram and operation count, span status. Returns its latency
    /// in ms.
    pub(super) fn done(&self, vu: &Vu, st: Stmt, error: Option<&sqlx::Error>) -> f64 {
        let s = st.started.elapsed().as_secs_f64();
        let trace = st.span.sampled_trace_id();
        let kind = error.map(error_kind);
        vu.record(Sample::Db(&DbSample {
            system: "postgresql",
            operation: st.verb.name(),
            collection: "vms",
            error: kind,
            seconds: s,
            trace: trace.as_deref(),
            counted_as: Some(st.verb.label()),
        }));
        let mut span = st.span;
        match error {
            Some(e) => {
                let code = e
                    .as_database_error()
                    .and_then(|d| d.code().map(|c| c.into_owned()))
                    .unwrap_or_else(|| error_kind(e).as_str().into());
                span.set_attribute("error.type", AttrValue::Str(code.clone()));
                if let Some(d) = e.as_database_error() {
                    span.set_attribute("db.response.status_code", AttrValue::Str(code));
                    span.end(Some(&self.redact(d.message())));
                } else {
                    span.end(Some(&self.redact(&e.to_string())));
                }
            }
            None => span.end(None),
        }
        s * 1000.0
    }

    /// Records one check group's outcome: `db_errors`, the query counters (`n` statements
    /// attempted) and the latency when the statements ran (not after a failed acquire, which
    /// `db_pool_acquire_time` already shows). A failed group (`failure`: kind and reason, from
    /// [`Self::failure`]) counts one of its statements on `db_queries_total` tagged with the
    /// kind — the summary's errors-by-kind table — and records the reason.
    pub(super) fn account(
        &self,
        vu: &Vu,
        op: Op,
        ms: f64,
        n: f64,
        failure: Option<(ErrorKind, String)>,
    ) {
        let (trend, counter) = match op {
            Op::Read => (self.read_latency, self.reads),
            Op::Query => (self.query_latency, self.reads),
            Op::Write => (self.write_latency, self.writes),
        };
        let clean = if failure.is_some() { n - 1.0 } else { n };
        // one lock and one hash for the group's samples
        let mut values = [
            (self.db_errors, if failure.is_some() { 1.0 } else { 0.0 }),
            (counter, n),
            (trend, ms),
            (self.queries, clean),
        ];
        let mut len = 2;
        if ms.is_finite() {
            values[len] = (trend, ms);
            len += 1;
        }
        if clean > 0.0 {
            values[len] = (self.queries, clean);
            len += 1;
        }
        vu.record(Sample::Metrics {
            values: &values[..len],
            tags: None,
        });
        if let Some((kind, reason)) = failure {
            let tags = Tags {
                error_kind: Some(kind),
                ..vu.tags.clone()
            };
            vu.metric(self.queries, 1.0, Some(&tags));
            vu.rec.record_reason(kind, &reason);
        }
    }

    /// Why a check group failed, as (kind, reason): the statement's error (its kind; the
    /// SQLSTATE code and the server's message, see [`Self::reason`]), or — the statement
    /// worked but its result did not — `check` with what was wrong (`wrong` is called only
    /// then). `step` names the group, e.g. `DB write (INSERT vms)`.
    pub(super) fn failure(
        &self,
        step: &str,
        error: Option<&sqlx::Error>,
        wrong: impl FnOnce() -> String,
    ) -> (ErrorKind, String) {
        match error {
            Some(e) => (error_kind(e), format!("{step}: {}", self.reason(e))),
            None => (ErrorKind::Check, format!("{step}: {}", wrong())),
        }
    }

    /// A failed statement's reason: the SQLSTATE code and the server's message (`23505
    /// duplicate key value violates unique constraint "vms_pkey"`), or the driver's text for
    /// errors without one (connection, pool); the URL's password cut out.
    pub(super) fn reason(&self, e: &sqlx::Error) -> String {
        driver_reason(e, self.password.as_deref())
    }

    /// Logs a failed statement (redacted; never the URL).
    pub(super) fn warn(&self, what: &str, e: &sqlx::Error) {
        tracing::debug!(what, error = %self.redact(&e.to_string()), "database statement failed");
    }

    /// A SELECT returning rows: (rows or error, statement ms; [`NOT_RUN`] when the acquire
    /// failed).
    pub(super) async fn select(
        &self,
        vu: &Vu,
        lease: &mut Lease,
        sql: &'static str,
        bind: impl FnOnce(PgQuery) -> PgQuery,
    ) -> (Result<Vec<sqlx::postgres::PgRow>, sqlx::Error>, f64) {
        let conn = match self.conn(vu, lease).await {
            Ok(c) => c,
            Err(e) => return (Err(e), NOT_RUN),
        };
        let st = self.stmt(vu, Verb::Select, sql);
        let q = bind(sqlx::query(st.sql()).persistent(st.persistent));
        let r = q.fetch_all(&mut **conn).await;
        let ms = self.done(vu, st, r.as_ref().err());
        self.settle(lease, r.as_ref().err());
        if let Err(e) = &r {
            self.warn(sql, e);
        }
        (r, ms)
    }

    /// An UPDATE/INSERT without rows back: (rows affected or error, statement ms).
    pub(super) async fn execute(
        &self,
        vu: &Vu,
        lease: &mut Lease,
        verb: Verb,
        sql: &'static str,
        bind: impl FnOnce(PgQuery) -> PgQuery,
    ) -> (Result<u64, sqlx::Error>, f64) {
        let conn = match self.conn(vu, lease).await {
            Ok(c) => c,
            Err(e) => return (Err(e), NOT_RUN),
        };
        let st = self.stmt(vu, verb, sql);
        let q = bind(sqlx::query(st.sql()).persistent(st.persistent));
        let r = q.execute(&mut **conn).await.map(|d| d.rows_affected());
        let ms = self.done(vu, st, r.as_ref().err());
        self.settle(lease, r.as_ref().err());
        if let Err(e) = &r {
            self.warn(sql, e);
        }
        (r, ms)
    }

    /// One `INSERT … RETURNING id` of a VM with (cpu cores, memory MB, disk GB) on `conn`.
    pub(super) async fn insert_vm(
        &self,
        vu: &Vu,
        conn: &mut sqlx::PgConnection,
        name: &str,
        (cpu, mem, disk): (i64, i64, i64),
        tags: &str,
    ) -> Result<String, sqlx::Error> {
        let st = self.stmt(vu, Verb::Insert, sql::INSERT);
        let r = sqlx::query(st.sql())
            .persistent(st.persistent)
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(name)
            .bind("running")
            .bind("us-west-1")
            .bind(cpu)
            .bind(mem)
            .bind(disk)
            .bind("ubuntu-22.04")
            .bind(tags)
            .bind(chrono::Utc::now().timestamp_millis())
            .fetch_one(&mut *conn)
            .await
            .and_then(|row| row.try_get::<String, _>(0));
        self.done(vu, st, r.as_ref().err());
        r
    }
}
