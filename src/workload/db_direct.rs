//! The database workload, `--db-mode direct`: spec §1.4's operation mix as SQL on the reference
//! target's PostgreSQL schema (`src/novacron/schema`, after NovaCron's §4.7 `vms` table) through
//! a sqlx pool of `--pool-size` connections, so query performance and connection pooling are
//! measured apart: getting a connection from the pool is timed as `db_pool_acquire_time`, each
//! statement on the acquired connection as `db_read_latency` / `db_query_latency` /
//! `db_write_latency` (client-side: from handing the statement to sqlx to the last row decoded,
//! pool wait excluded).
//!
//! One iteration, with upstream's think times (5.5 s):
//!
//! | step | SQL | latency | checks |
//! |---|---|---|---|
//! | 1 read | `SELECT … FROM vms ORDER BY created_at DESC, id DESC LIMIT 50` | read | `DB read ok`, `DB read has results`, `DB read < 200ms` |
//! | 2 complex | `SELECT … WHERE zone = $1 AND state = $2 ORDER BY created_at DESC LIMIT 100` | query | `Complex query ok`, `Complex query < 300ms` |
//! | 3 write | `INSERT … RETURNING id` (tags a JSON array) | write | `DB write ok`, `DB write has ID`, `DB write < 500ms` |
//! | 4 update | `UPDATE vms SET … WHERE id = $5` (only when 3 returned an id) | write | `DB update ok`, `DB update < 400ms` |
//! | 5 aggregate | `SELECT state, COUNT(*) … GROUP BY ROLLUP (state)` (total + per state) | query | `Aggregation query ok`, `Aggregation has totals`, `Aggregation < 500ms` |
//! | 6 search | `SELECT … WHERE name LIKE $1 … LIMIT 50` | query | `Search query ok`, `Search query < 400ms` |
//! | 7 batch | 3 × `INSERT` in one transaction | write (×3) | `Transaction ok`, `Transaction < 1000ms` |
//! | 8 rapid reads | 5 × `SELECT … OFFSET $1 LIMIT 10` | read | `Rapid query OK` |
//!
//! Check names are upstream's with "status 200/201" replaced by "ok" (there is no HTTP status).
//! The `< Nms` checks are latency checks as in api mode ([`Vu::latency_check`]): recorded, but a
//! slow statement does not fail its group — latency is judged by the latency thresholds.
//! Counters follow upstream: 13 queries per iteration, 14 when the update runs; 9 reads; 4 or 5
//! writes. `db_errors` records false on success and true on failure (defect B1 fixed), once per
//! check group; a database error fails the group's checks, never the run.
//!
//! Two back-to-back mixes (no think time) compare novaload with pgbench on the same server:
//! `--db-mix select-only` (one primary-key `SELECT` of a seed VM per iteration, against
//! `pgbench -S`) and `--db-mix read-write` (that `SELECT`, then an `UPDATE` of the same VM; the
//! same two statements as bench/db.sh's pgbench script).
//!
//! Connections ([`ConnHold`]): in the upstream mix every statement acquires a connection and
//! gives it back before its think time, as an application server's handlers share its pool. In
//! the back-to-back mixes a VU keeps its connection for its whole life when `--pool-size` is at
//! least the planned VUs — pgbench's model, where each client holds one connection for the run —
//! so `db_pool_acquire_time` then has one sample per VU (opening the connection); when VUs
//! outnumber the pool, a VU holds a connection for one iteration and returns it at the end.
//! Returning a connection costs sqlx a round trip to the server (it pings every connection on
//! release), which is why holding matters for the comparison.
//!
//! Failed statements: every failure is counted on `db_queries_total` with an `error_kind` tag
//! (`database` for SQL errors, `timeout` for a pool that had no connection within 30 s,
//! `connect`/`tls`/`protocol` for a broken connection, which is then dropped; `check` for a
//! statement that worked but returned the wrong thing, e.g. no rows), so the summary's
//! errors-by-kind table shows them as it shows failed HTTP requests; a failed three-insert
//! transaction is one failure. Each failure's reason is recorded too: the step, the SQLSTATE
//! code and the server's message (`DB write (INSERT vms): 23505 duplicate key value violates
//! unique constraint "vms_pkey"`), redacted. Live, each statement is one `novaload_operations_total`
//! (`SELECT vms`, `INSERT vms`, `UPDATE vms`; `ACQUIRE vms` for a failed acquire) and each
//! failure one `novaload_errors_total`.
//!
//! Setup: when the `vms` table is missing, the target's migrations (`src/novacron/schema`, the
//! same `_sqlx_migrations` bookkeeping as `novaload target --database-url`) are applied; an
//! existing `vms` table is never touched. Then 100 VMs `seed-vm-0..99` (upstream's seed bodies)
//! are inserted unless present. No connection or no schema fails the setup (a run error, with
//! the password cut out); a failed seed is a warning, as in api mode.
//!
//! Tracing: every statement is a client span (`db.system.name=postgresql`, `db.operation.name`,
//! `db.collection.name=vms`, `db.query.text` = the parameterized SQL, never values). When the span
//! exists, its W3C `traceparent` is appended as a sqlcommenter comment
//! (`… /*traceparent='00-…-…-01'*/`) so server-side logs and `pg_stat_activity` tie back to the
//! trace. That makes every statement text unique, which defeats sqlx's per-connection
//! prepared-statement cache, so traced statements run unprepared (`persistent(false)`: one
//! unnamed parse per execution); untraced statements are prepared once per connection and the
//! text is never rebuilt.
//!
//! The database URL is a secret (it may hold a password): it is never logged, exported or shown;
//! every error text that leaves this module goes through [`redact_url`].

use super::{Vu, Workload};
use crate::error::ErrorKind;
use crate::metrics::{Contains, DbSample, MetricId, MetricKind, Registry, Sample, Tags};
use crate::telemetry::{AttrValue, Span, SpanKind};
use anyhow::Context;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, PgPool, Postgres, Row};
use std::borrow::Cow;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/novacron/schema");

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

/// Which statements an iteration runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DbMix {
    /// Spec §1.4's mix with its think times.
    #[default]
    Upstream,
    /// One primary-key `SELECT` per iteration, no think time (compare with `pgbench -S`).
    SelectOnly,
    /// A primary-key `SELECT` and an `UPDATE` of the same row per iteration, no think time
    /// (compare with bench/db.sh's pgbench script of the same two statements).
    ReadWrite,
}

/// How long a VU keeps a connection it took from the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnHold {
    /// Given back after every statement: the upstream mix thinks between statements, and an
    /// application server's handlers share its pool the same way.
    Statement,
    /// Kept for one iteration's statements, given back at its end: back-to-back mixes when the
    /// VUs outnumber `--pool-size` (a VU that kept one would starve the others).
    Iteration,
    /// Kept for the VU's life: back-to-back mixes when every VU can have one, as each pgbench
    /// client holds its one connection for the whole run.
    Vu,
}

pub struct DbDirectWorkload {
    options: PgConnectOptions,
    pool_size: u32,
    pool: OnceLock<PgPool>,
    /// The URL's password (redacted from every error text), if any.
    password: Option<String>,
    /// Database host:port/name without credentials (the results' target).
    pub target: String,
    /// VMs created by setup (upstream: 100).
    pub seed_vms: u32,
    /// Multiplies every think time (1.0 = upstream's; tests shorten them).
    pub think_scale: f64,
    pub mix: DbMix,
    /// The most VUs the run may have at once (0: unknown), set by [`Self::plan_vus`].
    planned_vus: AtomicU64,
    db_errors: MetricId,
    query_latency: MetricId,
    write_latency: MetricId,
    read_latency: MetricId,
    acquire_time: MetricId,
    queries: MetricId,
    writes: MetricId,
    reads: MetricId,
}

/// Replaces the password of every `scheme://user:password@host` in `s` with `***`.
pub(crate) fn redact_url(s: &str) -> String {
    crate::metrics::reasons::redact_userinfo(s)
}

/// `postgresql://host:port/dbname` of a database URL, without credentials or query.
pub(crate) fn display_target(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(o) => format!(
            "postgresql://{}:{}/{}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("")
        ),
        Err(_) => "postgresql://(invalid URL)".into(),
    }
}

/// The closed error kind of a failed acquire or statement (a metric label and the summary's
/// errors-by-kind key).
pub fn error_kind(e: &sqlx::Error) -> ErrorKind {
    match e {
        sqlx::Error::PoolTimedOut => ErrorKind::Timeout,
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed => ErrorKind::Connect,
        sqlx::Error::Tls(_) => ErrorKind::Tls,
        sqlx::Error::Protocol(_) => ErrorKind::Protocol,
        _ => ErrorKind::Database,
    }
}

/// A failed statement's or connection's reason, on one line: the SQLSTATE code and the
/// server's message when the server answered (`42P01 relation "vms" does not exist`), else the
/// driver's text; `password` and URL passwords replaced with `***`.
pub(crate) fn driver_reason(e: &sqlx::Error, password: Option<&str>) -> String {
    let text = match e.as_database_error() {
        Some(d) => match d.code() {
            Some(code) => format!("{code} {}", d.message()),
            None => d.message().to_string(),
        },
        None => e.to_string(),
    };
    let mut text = redact_url(&text);
    if let Some(p) = password.filter(|p| !p.is_empty()) {
        text = text.replace(p, "***");
    }
    text
}

/// The flag (and variable) a database pre-flight error names.
const DATABASE_URL_FIELD: &str = "--database-url (DATABASE_URL)";

/// Opens one connection to `database_url` within `timeout` and closes it: the pre-flight of a
/// direct-mode run, so that an unreachable or misconfigured database stops the run at once with
/// a config error naming `--database-url (DATABASE_URL)`, the driver's reason (redacted: never
/// the password) and the fix — instead of every VU waiting 30 s for "pool timed out".
pub async fn preflight(
    database_url: &str,
    timeout: Duration,
) -> Result<(), crate::error::ConfigError> {
    use crate::error::ConfigError;
    let password = url::Url::parse(database_url)
        .ok()
        .and_then(|u| u.password().map(str::to_string));
    let password = password.as_deref();
    let options = PgConnectOptions::from_str(database_url).map_err(|e| {
        ConfigError::new(
            DATABASE_URL_FIELD,
            format!(
                "not a valid postgres:// URL: {}",
                driver_reason(&e, password)
            ),
            "give a URL like postgres://user:password@127.0.0.1:5432/novacron",
        )
    })?;
    let target = display_target(database_url);
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(conn)) => {
            // a polite goodbye, bounded too: the check already passed
            let _ = tokio::time::timeout(timeout, sqlx::Connection::close(conn)).await;
            Ok(())
        }
        Ok(Err(e)) => Err(ConfigError::new(
            DATABASE_URL_FIELD,
            format!(
                "cannot connect to {target}: {}",
                driver_reason(&e, password)
            ),
            preflight_fix(&e),
        )),
        Err(_) => Err(ConfigError::new(
            DATABASE_URL_FIELD,
            format!(
                "no connection to {target} within {:.0?} (no answer from the server)",
                timeout
            ),
            "check the host and port in the URL, and that the server accepts connections from \
             this machine (listen_addresses, pg_hba.conf, firewall)",
        )),
    }
}

/// What to do about a failed pre-flight connection, by SQLSTATE code or error class.
fn preflight_fix(e: &sqlx::Error) -> &'static str {
    let code = e
        .as_database_error()
        .and_then(|d| d.code().map(|c| c.into_owned()));
    match code.as_deref() {
        // invalid_password, invalid_authorization_specification
        Some("28P01" | "28000") => {
            "check the user and password in the URL (and the server's pg_hba.conf for this host)"
        }
        // invalid_catalog_name: the database does not exist
        Some("3D000") => {
            "create the database (createdb NAME) or name an existing one in the URL's path"
        }
        // too_many_connections
        Some("53300") => "the server is at max_connections: wait, or raise max_connections",
        Some(_) => "check the URL's user, database and options against the server",
        None => match e {
            sqlx::Error::Io(_) => {
                "start PostgreSQL, or fix the host and port in the URL \
                 (e.g. postgres://user:password@127.0.0.1:5432/novacron)"
            }
            sqlx::Error::Tls(_) => {
                "check sslmode and the server's certificate (sslrootcert) in the URL"
            }
            _ => "check that the URL points at a PostgreSQL server (host, port, sslmode)",
        },
    }
}

/// "updated 0 rows, expected 1" for an UPDATE that did not change exactly its one row.
fn rows_not_one(rows: Option<&u64>) -> String {
    match rows {
        Some(n) => format!("updated {n} rows, expected 1"),
        None => "failed".into(),
    }
}

/// Whether the connection a statement failed on may be unusable (then it is dropped, not kept;
/// after an SQL error the server has already resynchronized and the connection is fine).
fn connection_broken(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_)
    )
}

/// What kind of database work an operation stands for.
#[derive(Clone, Copy)]
enum Op {
    Read,
    Query,
    Write,
}

/// The statement verbs: `db.operation.name` and the live `operation` label.
#[derive(Clone, Copy)]
enum Verb {
    Select,
    Insert,
    Update,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Select => "SELECT",
            Verb::Insert => "INSERT",
            Verb::Update => "UPDATE",
        }
    }
    /// Span name and `operation` label (low cardinality: verb and table).
    fn label(self) -> &'static str {
        match self {
            Verb::Select => "SELECT vms",
            Verb::Insert => "INSERT vms",
            Verb::Update => "UPDATE vms",
        }
    }
}

/// One statement in flight: its text (with the traceparent comment when traced) and span.
struct Stmt {
    text: Cow<'static, str>,
    persistent: bool,
    verb: Verb,
    span: Span,
    started: Instant,
}

impl Stmt {
    fn sql(&self) -> AssertSqlSafe<Cow<'static, str>> {
        // a `'static` text is handed over as is: no copy per execution
        AssertSqlSafe(self.text.clone())
    }
}

type Conn = PoolConnection<Postgres>;

/// A VU's connection (if it has one) and how long it keeps it.
struct Lease {
    conn: Option<Conn>,
    hold: ConnHold,
}

/// The latency of a statement that never ran (no connection): not recorded.
const NOT_RUN: f64 = f64::NAN;

type PgQuery = sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>;

impl DbDirectWorkload {
    /// Validates the URL; the pool connects lazily, on the VUs' first statements (setup has a
    /// connection of its own).
    pub fn new(pool_url: &str, pool_size: u32, registry: &mut Registry) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(pool_url)
            .map_err(|e| {
                anyhow::anyhow!(
                    "--database-url is not a valid postgres:// URL: {}",
                    redact_url(&e.to_string())
                )
            })?
            // sqlx would log every statement (its text, traceparent comment included) at
            // info and slow ones at warn: latency is what this run measures and records, and
            // the level checks cost on every statement
            .disable_statement_logging();
        let password = url::Url::parse(pool_url)
            .ok()
            .and_then(|u| u.password().map(str::to_string))
            .filter(|p| !p.is_empty());
        Ok(Self {
            options,
            pool_size: pool_size.max(1),
            pool: OnceLock::new(),
            password,
            target: display_target(pool_url),
            seed_vms: 100,
            think_scale: 1.0,
            mix: DbMix::Upstream,
            planned_vus: AtomicU64::new(0),
            db_errors: registry.declare("db_errors", MetricKind::Rate, Contains::Default),
            query_latency: registry.declare("db_query_latency", MetricKind::Trend, Contains::Time),
            write_latency: registry.declare("db_write_latency", MetricKind::Trend, Contains::Time),
            read_latency: registry.declare("db_read_latency", MetricKind::Trend, Contains::Time),
            acquire_time: registry.declare(
                "db_pool_acquire_time",
                MetricKind::Trend,
                Contains::Time,
            ),
            queries: registry.declare("db_queries_total", MetricKind::Counter, Contains::Default),
            writes: registry.declare("db_writes_total", MetricKind::Counter, Contains::Default),
            reads: registry.declare("db_reads_total", MetricKind::Counter, Contains::Default),
        })
    }

    /// Tells the workload the most VUs the run may have at once (all scenarios together), which
    /// decides whether each VU may keep a connection ([`ConnHold`]).
    pub fn plan_vus(&self, vus: u64) {
        self.planned_vus.store(vus, Ordering::Relaxed);
    }

    /// How long a VU keeps a connection in this run.
    pub fn hold(&self) -> ConnHold {
        match self.mix {
            DbMix::Upstream => ConnHold::Statement,
            DbMix::SelectOnly | DbMix::ReadWrite => {
                let vus = self.planned_vus.load(Ordering::Relaxed);
                if vus > 0 && vus <= u64::from(self.pool_size) {
                    ConnHold::Vu
                } else {
                    ConnHold::Iteration
                }
            }
        }
    }

    /// A summary note on how VUs held connections (what `db_pool_acquire_time` measured), for
    /// the back-to-back mixes.
    pub fn connection_note(&self) -> Option<String> {
        let vus = self.planned_vus.load(Ordering::Relaxed);
        match self.hold() {
            ConnHold::Statement => None,
            ConnHold::Vu => Some(format!(
                "db direct: each VU kept one pool connection for the whole run, as a pgbench client \
                 does (--pool-size {} >= {vus} VUs), so db_pool_acquire_time has one sample per VU \
                 (opening its connection)",
                self.pool_size
            )),
            ConnHold::Iteration if vus == 0 => Some(format!(
                "db direct: VUs shared --pool-size {} connections, one per iteration",
                self.pool_size
            )),
            ConnHold::Iteration => Some(format!(
                "db direct: up to {vus} VUs shared --pool-size {} connections, one per iteration \
                 (sqlx pings a connection when it is given back: one extra round trip per \
                 iteration); --pool-size {vus} lets each VU keep one, as pgbench clients do",
                self.pool_size
            )),
        }
    }

    fn pool(&self) -> &PgPool {
        self.pool.get_or_init(|| {
            PgPoolOptions::new()
                .max_connections(self.pool_size)
                .acquire_timeout(Duration::from_secs(30))
                // sqlx pings every connection on acquire by default: one extra round trip per
                // statement, which would double the server's load and hide in the acquire time.
                // A dead connection instead fails its statement (counted) and is dropped.
                .test_before_acquire(false)
                .connect_lazy_with(self.options.clone())
        })
    }

    /// An error's text with the URL's password removed.
    fn redact(&self, msg: &str) -> String {
        let mut s = redact_url(msg);
        if let Some(p) = &self.password {
            s = s.replace(p.as_str(), "***");
        }
        s
    }

    async fn think(&self, vu: &Vu, ms: u64) {
        vu.sleep(Duration::from_secs_f64(
            ms as f64 / 1000.0 * self.think_scale,
        ))
        .await;
    }

    /// The lease's connection, acquiring one (timed: `db_pool_acquire_time`, the live pool
    /// metrics) when it holds none.
    async fn conn<'l>(&self, vu: &Vu, lease: &'l mut Lease) -> Result<&'l mut Conn, sqlx::Error> {
        let conn = match lease.conn.take() {
            Some(c) => c,
            // boxed: sqlx's acquire future is ~2.7 KB, and held inline it would make every
            // statement's future that size, copied at each await of a back-to-back iteration
            // that already holds its connection
            None => Box::pin(self.acquire(vu)).await?,
        };
        Ok(lease.conn.insert(conn))
    }

    async fn acquire(&self, vu: &Vu) -> Result<Conn, sqlx::Error> {
        let pool = self.pool();
        let started = Instant::now();
        let r = pool.acquire().await;
        let s = started.elapsed().as_secs_f64();
        let idle = pool.num_idle() as u64;
        let size = pool.size() as u64;
        vu.record(Sample::DbPool {
            acquire: self.acquire_time,
            seconds: s,
            idle,
            in_use: size.saturating_sub(idle),
        });
        if let Err(e) = &r {
            // the statement never ran: still one failed database operation
            vu.record(Sample::Db(&DbSample {
                system: "postgresql",
                operation: "ACQUIRE",
                collection: "vms",
                error: Some(error_kind(e)),
                seconds: s,
                trace: None,
                counted_as: Some("ACQUIRE vms"),
            }));
        }
        r
    }

    /// After a statement: gives the connection back unless the lease keeps it, and drops it
    /// when it may be broken.
    fn settle(&self, lease: &mut Lease, error: Option<&sqlx::Error>) {
        if lease.hold == ConnHold::Statement || error.is_some_and(connection_broken) {
            lease.conn = None;
        }
    }

    /// Opens the statement's client span and builds its text.
    fn stmt(&self, vu: &Vu, verb: Verb, sql: &'static str) -> Stmt {
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
    fn done(&self, vu: &Vu, st: Stmt, error: Option<&sqlx::Error>) -> f64 {
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
    fn account(&self, vu: &Vu, op: Op, ms: f64, n: f64, failure: Option<(ErrorKind, String)>) {
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
    fn failure(
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
    fn reason(&self, e: &sqlx::Error) -> String {
        driver_reason(e, self.password.as_deref())
    }

    /// Logs a failed statement (redacted; never the URL).
    fn warn(&self, what: &str, e: &sqlx::Error) {
        tracing::debug!(what, error = %self.redact(&e.to_string()), "database statement failed");
    }

    /// A SELECT returning rows: (rows or error, statement ms; [`NOT_RUN`] when the acquire
    /// failed).
    async fn select(
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
    async fn execute(
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
    async fn insert_vm(
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

    async fn iteration_upstream(&self, vu: &mut Vu, lease: &mut Lease) {
        // 1. simple read
        let (r, ms) = self.select(vu, lease, sql::READ, |q| q).await;
        let ok = [
            vu.check("DB read ok", r.is_ok()),
            vu.check(
                "DB read has results",
                r.as_ref().is_ok_and(|rows| !rows.is_empty()),
            ),
            vu.latency_check("DB read < 200ms", r.is_ok() && ms < 200.0),
        ]
        .iter()
        .all(|b| *b);
        let failure = (!ok).then(|| {
            self.failure("DB read (SELECT vms)", r.as_ref().err(), || {
                "returned no rows".into()
            })
        });
        self.account(vu, Op::Read, ms, 1.0, failure);
        self.think(vu, 500).await;

        // 2. complex query
        let (r, ms) = self
            .select(vu, lease, sql::COMPLEX, |q| {
                q.bind("us-west-1").bind("running")
            })
            .await;
        let ok = [
            vu.check("Complex query ok", r.is_ok()),
            vu.latency_check("Complex query < 300ms", r.is_ok() && ms < 300.0),
        ]
        .iter()
        .all(|b| *b);
        let failure = (!ok).then(|| {
            self.failure("Complex query (SELECT vms)", r.as_ref().err(), || {
                "failed".into()
            })
        });
        self.account(vu, Op::Query, ms, 1.0, failure);
        self.think(vu, 500).await;

        // 3. write (tags as a JSON array, as upstream sends)
        let name = format!(
            "load-test-vm-{}-{}",
            chrono::Utc::now().timestamp_millis(),
            vu.id
        );
        let (r, ms) = match self.conn(vu, lease).await {
            Ok(conn) => {
                let started = Instant::now();
                let r = self
                    .insert_vm(
                        vu,
                        conn,
                        &name,
                        (4, 8192, 100),
                        r#"["load-test","automated"]"#,
                    )
                    .await;
                (r, started.elapsed().as_secs_f64() * 1000.0)
            }
            Err(e) => (Err(e), NOT_RUN),
        };
        self.settle(lease, r.as_ref().err());
        if let Err(e) = &r {
            self.warn(sql::INSERT, e);
        }
        let ok = [
            vu.check("DB write ok", r.is_ok()),
            vu.check("DB write has ID", r.as_ref().is_ok_and(|id| !id.is_empty())),
            vu.latency_check("DB write < 500ms", r.is_ok() && ms < 500.0),
        ]
        .iter()
        .all(|b| *b);
        let failure = (!ok).then(|| {
            self.failure("DB write (INSERT vms)", r.as_ref().err(), || {
                "returned an empty id".into()
            })
        });
        self.account(vu, Op::Write, ms, 1.0, failure);
        let new_id = r.ok().filter(|id| !id.is_empty());
        self.think(vu, 500).await;

        // 4. update
        if let Some(id) = new_id {
            let (r, ms) = self
                .execute(vu, lease, Verb::Update, sql::UPDATE, |q| {
                    q.bind(8_i64)
                        .bind(16384_i64)
                        .bind(r#"["load-test","automated","updated"]"#)
                        .bind(chrono::Utc::now().timestamp_millis())
                        .bind(id)
                })
                .await;
            let ok = [
                vu.check("DB update ok", r.as_ref().is_ok_and(|n| *n == 1)),
                vu.latency_check("DB update < 400ms", r.is_ok() && ms < 400.0),
            ]
            .iter()
            .all(|b| *b);
            let failure = (!ok).then(|| {
                self.failure("DB update (UPDATE vms)", r.as_ref().err(), || {
                    rows_not_one(r.as_ref().ok())
                })
            });
            self.account(vu, Op::Write, ms, 1.0, failure);
        }
        self.think(vu, 500).await;

        // 5. aggregate: the ROLLUP row (state NULL) is the total
        let (r, ms) = self.select(vu, lease, sql::AGGREGATE, |q| q).await;
        let has_total = r.as_ref().is_ok_and(|rows| {
            rows.iter().any(|row| {
                row.try_get::<Option<String>, _>(0)
                    .is_ok_and(|s| s.is_none())
                    && row.try_get::<i64, _>(1).is_ok()
            })
        });
        let ok = [
            vu.check("Aggregation query ok", r.is_ok()),
            vu.check("Aggregation has totals", has_total),
            vu.latency_check("Aggregation < 500ms", r.is_ok() && ms < 500.0),
        ]
        .iter()
        .all(|b| *b);
        let failure = (!ok).then(|| {
            self.failure("Aggregation (SELECT vms)", r.as_ref().err(), || {
                "returned no total row (the ROLLUP row with state NULL)".into()
            })
        });
        self.account(vu, Op::Query, ms, 1.0, failure);
        self.think(vu, 500).await;

        // 6. search
        let (r, ms) = self
            .select(vu, lease, sql::SEARCH, |q| q.bind("%load-test%"))
            .await;
        let ok = [
            vu.check("Search query ok", r.is_ok()),
            vu.latency_check("Search query < 400ms", r.is_ok() && ms < 400.0),
        ]
        .iter()
        .all(|b| *b);
        let failure = (!ok).then(|| {
            self.failure("Search query (SELECT vms)", r.as_ref().err(), || {
                "failed".into()
            })
        });
        self.account(vu, Op::Query, ms, 1.0, failure);
        self.think(vu, 500).await;

        // 7. batch: three inserts in one transaction (upstream reuses the same three names)
        let (r, ms) = match self.conn(vu, lease).await {
            Ok(conn) => {
                let started = Instant::now();
                let r = async {
                    // dropped without commit (an insert failed): rolled back
                    let mut tx = sqlx::Connection::begin(&mut **conn).await?;
                    for n in 1..=3 {
                        let name = format!("batch-vm-{n}");
                        self.insert_vm(vu, &mut tx, &name, (2, 4096, 50), "[]")
                            .await?;
                    }
                    tx.commit().await
                }
                .await;
                (r, started.elapsed().as_secs_f64() * 1000.0)
            }
            Err(e) => (Err(e), NOT_RUN),
        };
        self.settle(lease, r.as_ref().err());
        if let Err(e) = &r {
            self.warn("batch", e);
        }
        let ok = [
            vu.check("Transaction ok", r.is_ok()),
            vu.latency_check("Transaction < 1000ms", r.is_ok() && ms < 1000.0),
        ]
        .iter()
        .all(|b| *b);
        // a failed transaction is one failure, however many of its inserts ran
        let failure = (!ok).then(|| {
            self.failure("Transaction (3 × INSERT vms)", r.as_ref().err(), || {
                "failed".into()
            })
        });
        self.account(vu, Op::Write, ms, 3.0, failure);
        self.think(vu, 1000).await;

        // 8. rapid paged reads
        for i in 0..5_i64 {
            let (r, ms) = self.select(vu, lease, sql::PAGE, |q| q.bind(i * 10)).await;
            let ok = vu.check("Rapid query OK", r.is_ok());
            let failure = (!ok).then(|| {
                self.failure("Rapid query (SELECT vms)", r.as_ref().err(), || {
                    "failed".into()
                })
            });
            self.account(vu, Op::Read, ms, 1.0, failure);
            self.think(vu, 100).await;
        }

        // 9.
        self.think(vu, 1000).await;
    }

    /// A random seed VM's number (`seed-vm-N`).
    fn seed_vm(&self, vu: &mut Vu) -> i64 {
        use rand::Rng;
        i64::from(vu.rng.random_range(0..self.seed_vms.max(1)))
    }

    /// The primary-key read of the back-to-back mixes.
    async fn point_read(&self, vu: &Vu, lease: &mut Lease, n: i64) {
        let (r, ms) = self.select(vu, lease, sql::POINT, |q| q.bind(n)).await;
        let ok = vu.check(
            "Point read ok",
            r.as_ref().is_ok_and(|rows| rows.len() == 1),
        );
        let failure = (!ok).then(|| {
            self.failure("Point read (SELECT vms)", r.as_ref().err(), || {
                let rows = r.as_ref().map(Vec::len).unwrap_or(0);
                format!("returned {rows} rows, expected 1 (are the seed VMs there?)")
            })
        });
        self.account(vu, Op::Read, ms, 1.0, failure);
    }

    async fn iteration_select_only(&self, vu: &mut Vu, lease: &mut Lease) {
        let n = self.seed_vm(vu);
        self.point_read(vu, lease, n).await;
    }

    async fn iteration_read_write(&self, vu: &mut Vu, lease: &mut Lease) {
        use rand::Rng;
        let n = self.seed_vm(vu);
        let cpu: i64 = vu.rng.random_range(1..=16);
        self.point_read(vu, lease, n).await;
        let (r, ms) = self
            .execute(vu, lease, Verb::Update, sql::POINT_UPDATE, |q| {
                q.bind(cpu).bind(cpu * 2048).bind(n)
            })
            .await;
        let ok = vu.check("Point update ok", r.as_ref().is_ok_and(|n| *n == 1));
        let failure = (!ok).then(|| {
            self.failure("Point update (UPDATE vms)", r.as_ref().err(), || {
                rows_not_one(r.as_ref().ok())
            })
        });
        self.account(vu, Op::Write, ms, 1.0, failure);
    }

    /// Creates the schema when `vms` is missing. A failure here (no connection, no rights) is a
    /// setup error: nothing could run.
    async fn ensure_schema(&self, pool: &PgPool) -> anyhow::Result<()> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('vms') IS NOT NULL")
            .fetch_one(pool)
            .await
            .context("connecting and checking for the vms table")?;
        if !exists {
            MIGRATOR
                .run(pool)
                .await
                .context("applying the target's migrations (src/novacron/schema)")?;
        }
        Ok(())
    }

    /// Inserts `seed-vm-0..n-1` unless present; returns how many were new.
    async fn seed(&self, pool: &PgPool) -> Result<u64, sqlx::Error> {
        sqlx::query(sql::SEED)
            .bind(i64::from(self.seed_vms))
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(pool)
            .await
            .map(|d| d.rows_affected())
    }

    /// Setup's work on its own pool: schema, then seed VMs.
    async fn setup_on(&self, vu: &Vu, pool: &PgPool) -> anyhow::Result<()> {
        if let Err(e) = self.ensure_schema(pool).await {
            return Err(anyhow::anyhow!(self.redact(&format!("{e:#}"))));
        }
        let started = Instant::now();
        let r = self.seed(pool).await;
        vu.record(Sample::Db(&DbSample {
            system: "postgresql",
            operation: "INSERT",
            collection: "vms",
            error: r.as_ref().err().map(error_kind),
            seconds: started.elapsed().as_secs_f64(),
            trace: None,
            counted_as: None,
        }));
        match r {
            Ok(created) => tracing::info!(
                created,
                wanted = self.seed_vms,
                target = %self.target,
                "database seeded (seed VMs already present are kept)"
            ),
            Err(e) => tracing::warn!(
                error = %self.redact(&e.to_string()),
                target = %self.target,
                "seeding the database failed; running the iterations anyway"
            ),
        }
        Ok(())
    }
}

impl Workload for DbDirectWorkload {
    /// Schema problems fail the setup (redacted); a failed seed is only a warning, as in api
    /// mode: the iterations then show what does not work.
    ///
    /// Setup has a connection of its own, closed at its end: the pool's connections are opened
    /// by the VUs on their own threads ([`crate::vu_threads`]), where their sockets are polled.
    async fn setup(&self, vu: &mut Vu) -> anyhow::Result<()> {
        let setup_pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(self.options.clone());
        let r = self.setup_on(vu, &setup_pool).await;
        setup_pool.close().await;
        r
    }

    async fn iteration(&self, vu: &mut Vu) {
        // A kept connection lives in the VU between iterations; if the run cuts an iteration
        // short, the lease is dropped with it and the connection goes back to the pool.
        let mut slot: Box<Option<Conn>> = vu
            .workload_state
            .take()
            .and_then(|b| b.downcast().ok())
            .unwrap_or_default();
        let mut lease = Lease {
            conn: slot.take(),
            hold: self.hold(),
        };
        match self.mix {
            // boxed (one allocation per 5.5 s of think time): inline, its ~1.2 KB state would
            // be the size of every iteration future, the back-to-back mixes' too
            DbMix::Upstream => Box::pin(self.iteration_upstream(vu, &mut lease)).await,
            DbMix::SelectOnly => self.iteration_select_only(vu, &mut lease).await,
            DbMix::ReadWrite => self.iteration_read_write(vu, &mut lease).await,
        }
        if lease.hold == ConnHold::Vu {
            *slot = lease.conn.take();
        }
        vu.workload_state = Some(slot);
    }

    async fn teardown(&self, _vu: &mut Vu) -> anyhow::Result<()> {
        if let Some(p) = self.pool.get() {
            p.close().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn redact_url_hides_passwords_only() {
        assert_eq!(
            redact_url("postgres://bob:s3cr%40t@db:5432/novacron?sslmode=disable"),
            "postgres://bob:***@db:5432/novacron?sslmode=disable"
        );
        assert_eq!(
            redact_url("error connecting to postgresql://u:p@h/x: refused"),
            "error connecting to postgresql://u:***@h/x: refused"
        );
        assert_eq!(redact_url("postgres://bob@db/x"), "postgres://bob@db/x");
        assert_eq!(redact_url("http://h:80/a"), "http://h:80/a");
        assert_eq!(redact_url("no url here"), "no url here");
        assert_eq!(
            redact_url("a=postgres://a:b@h1 b=postgres://c:d@h2"),
            "a=postgres://a:***@h1 b=postgres://c:***@h2"
        );
        assert_eq!(redact_url("x://"), "x://");
    }

    #[test]
    fn sqlx_errors_map_to_closed_kinds() {
        let io = || sqlx::Error::Io(std::io::Error::other("connection reset"));
        assert_eq!(error_kind(&sqlx::Error::PoolTimedOut), ErrorKind::Timeout);
        assert_eq!(error_kind(&io()), ErrorKind::Connect);
        assert_eq!(
            error_kind(&sqlx::Error::Protocol("bad".into())),
            ErrorKind::Protocol
        );
        assert_eq!(error_kind(&sqlx::Error::RowNotFound), ErrorKind::Database);
        // a broken connection is dropped, one after an SQL error is kept
        assert!(connection_broken(&io()));
        assert!(!connection_broken(&sqlx::Error::RowNotFound));
        assert!(!connection_broken(&sqlx::Error::PoolTimedOut));
    }

    #[test]
    fn the_shown_target_has_no_credentials() {
        assert_eq!(
            display_target("postgres://bob:pw@db.example:6543/novacron?sslmode=disable"),
            "postgresql://db.example:6543/novacron"
        );
    }

    #[test]
    fn bad_urls_are_reported_without_the_password() {
        let mut r = Registry::new();
        let e = DbDirectWorkload::new("postgres://u:hunter2@h:notaport/x", 4, &mut r)
            .err()
            .expect("invalid port");
        assert!(!format!("{e:#}").contains("hunter2"), "{e:#}");
    }
    /// An iteration's future is moved (copied whole) when the runner starts it: sqlx's pool
    /// acquire (~2.7 KB) and the upstream mix's state are boxed so that a back-to-back
    /// iteration, one short statement, does not copy kilobytes each time (3.7 KB before).
    #[test]
    fn back_to_back_iteration_futures_stay_small() {
        let mut registry = Registry::new();
        let w = DbDirectWorkload::new("postgres://u@127.0.0.1:1/x", 4, &mut registry).unwrap();
        let rec = Arc::new(crate::metrics::Recorder::new(Arc::new(registry)));
        let labels = crate::telemetry::RunLabels {
            run_id: "run".into(),
            test: "database".into(),
            scenario: "default".into(),
        };
        let settings = crate::workload::ClientSettings {
            tls: None,
            request_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let telemetry = crate::telemetry::Telemetry::disabled();
        let mut vu = Vu::new(1, labels, rec, telemetry, settings, Default::default());
        // futures are only built here, never polled: nothing connects
        let size = std::mem::size_of_val(&w.iteration(&mut vu));
        assert!(size <= 1536, "iteration future is {size} bytes");
    }
}
