//! The target's storage: VMs and DWCP migration jobs in SQLite or PostgreSQL through sqlx.
//!
//! One SQL text serves both databases: `$N` placeholders (sqlx-sqlite accepts them), `BIGINT`
//! epoch-millisecond timestamps, JSON tags as text, `ON CONFLICT` and `RETURNING` (both engines
//! have them). [`Store`] is a two-variant enum and [`on_pool!`] expands each query body once per
//! pool type, which keeps static dispatch without the `sqlx::Any` driver's per-row conversions.
//! Every dynamic SQL fragment (sort column, direction, filters) comes from a fixed whitelist.
//!
//! One file: every query of both engines sits together so the SQL they share stays in step.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, PgPool, SqlitePool};

use super::telemetry::Metrics;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/novacron/schema");

/// VM states NovaCron's schema knows (`vm_state` enum), plus `creating`.
pub const STATES: [&str; 6] = [
    "running",
    "stopped",
    "paused",
    "migrating",
    "error",
    "creating",
];

/// Which database and how to open it.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// A PostgreSQL URL (never logged: it may carry a password).
    Postgres { url: String, max_connections: u32 },
    /// SQLite in a file (WAL) or, with `None`, a private in-memory shared-cache database.
    Sqlite { file: Option<PathBuf> },
}

/// A connection pool on one of the two supported databases.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    metrics: Arc<Metrics>,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the concrete pool; the body is compiled once per database.
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// One VM as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VmRow {
    pub id: String,
    pub name: String,
    pub state: String,
    pub zone: String,
    pub cpu_cores: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
    pub image: String,
    pub tags: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const VM_COLS: &str =
    "id, name, state, zone, cpu_cores, memory_mb, disk_gb, image, tags, created_at, updated_at";

/// A validated VM to create.
#[derive(Debug, Clone)]
pub struct NewVm {
    pub name: String,
    pub state: String,
    pub zone: String,
    pub cpu_cores: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
    pub image: String,
    pub tags: String,
}

/// A validated partial update; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct VmPatch {
    pub name: Option<String>,
    pub state: Option<String>,
    pub zone: Option<String>,
    pub cpu_cores: Option<i64>,
    pub memory_mb: Option<i64>,
    pub disk_gb: Option<i64>,
    pub image: Option<String>,
    pub tags: Option<String>,
}

/// Filters and paging for the VM list; `sort` and `order` are already whitelisted SQL.
#[derive(Debug, Clone)]
pub struct VmQuery {
    pub zone: Option<String>,
    pub state: Option<String>,
    pub sort: &'static str,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

/// Counts for `GET /api/v1/vms/stats/aggregate`.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    pub total: i64,
    pub by_state: Vec<(String, i64)>,
    pub by_zone: Vec<(String, i64)>,
    pub total_cpu_cores: i64,
    pub total_memory_mb: i64,
    pub total_disk_gb: i64,
}

/// One operation of `POST /api/v1/vms/batch`, validated.
#[derive(Debug, Clone)]
pub enum BatchOp {
    Create(NewVm),
    Update(String, VmPatch),
    Delete(String),
}

/// Outcome of one batch operation.
#[derive(Debug, Clone)]
pub enum BatchOutcome {
    Created(VmRow),
    Updated(VmRow),
    Deleted(String),
}

/// Why a batch was rolled back.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("operations[{index}]: vm {id} not found")]
    NotFound { index: usize, id: String },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// One DWCP migration job as stored (times in epoch ms).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MigrationRow {
    pub job_id: String,
    pub vm_id: String,
    pub source_zone: String,
    pub target_zone: String,
    pub protocol: String,
    pub live_migration: bool,
    pub data_loss: bool,
    pub started_at: i64,
    pub pending_until: i64,
    pub completes_at: i64,
    pub fails: bool,
    pub error_message: Option<String>,
}

const MIG_COLS: &str = "job_id, vm_id, source_zone, target_zone, protocol, live_migration, data_loss, started_at, pending_until, completes_at, fails, error_message";

/// Migration counts at one instant, derived from the planned times.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct MigrationStats {
    pub total: i64,
    pub pending: i64,
    pub in_progress: i64,
    pub completed: i64,
    pub failed: i64,
}

/// A migration the sweeper just marked final (for the final-status counters).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Finalized {
    pub source_zone: String,
    pub target_zone: String,
    pub fails: bool,
    pub started_at: i64,
    pub completes_at: i64,
}

/// Status filter for the migration list, as SQL over `$1` = now (epoch ms).
pub fn migration_status_sql(status: &str) -> Option<&'static str> {
    Some(match status {
        "pending" => "$1 < pending_until",
        "in_progress" => "pending_until <= $1 AND $1 < completes_at",
        "completed" => "completes_at <= $1 AND NOT fails",
        "failed" => "completes_at <= $1 AND fails",
        _ => return None,
    })
}

/// Wall clock in epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    /// Opens the pool and applies the migrations.
    pub async fn open(config: &StoreConfig, metrics: Arc<Metrics>) -> anyhow::Result<Store> {
        use anyhow::Context;
        let pool = match config {
            StoreConfig::Postgres {
                url,
                max_connections,
            } => {
                let opts = PgConnectOptions::from_str(url)
                    .context("--database-url is not a valid postgres:// URL")?;
                let pool = PgPoolOptions::new()
                    .max_connections(*max_connections)
                    .min_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
                    // The URL is left out on purpose: it may hold a password.
                    .context("connecting to PostgreSQL (--database-url)")?;
                Pool::Postgres(pool)
            }
            StoreConfig::Sqlite { file } => {
                let (opts, max) = match file {
                    Some(path) => (
                        SqliteConnectOptions::new()
                            .filename(path)
                            .create_if_missing(true)
                            .journal_mode(SqliteJournalMode::Wal)
                            .synchronous(SqliteSynchronous::Normal)
                            .busy_timeout(Duration::from_secs(10)),
                        // WAL: readers run beside the one writer.
                        8,
                    ),
                    None => (
                        // A named in-memory database shared by this pool's connections only.
                        SqliteConnectOptions::new()
                            .filename(format!("file:novaload-{}", uuid::Uuid::new_v4().simple()))
                            .in_memory(true)
                            .shared_cache(true)
                            .busy_timeout(Duration::from_secs(10)),
                        // Shared cache locks per table, so more connections only add contention.
                        4,
                    ),
                };
                let pool = SqlitePoolOptions::new()
                    .max_connections(max)
                    // The in-memory database lives as long as one connection does.
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
                    .context("opening the SQLite database")?;
                Pool::Sqlite(pool)
            }
        };
        let store = Store { pool, metrics };
        on_pool!(store, p => MIGRATOR.run(p).await).context("applying database migrations")?;
        Ok(store)
    }

    /// (connections open, connections in use).
    pub fn pool_usage(&self) -> (u32, u32) {
        let (size, idle) = on_pool!(self, p => (p.size(), p.num_idle()));
        (size, size.saturating_sub(idle as u32))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        on_pool!(self, p => p.close().await);
    }

    fn record<T>(
        &self,
        op: &'static str,
        table: &'static str,
        start: Instant,
        r: &Result<T, impl std::any::Any>,
    ) {
        self.metrics
            .db_query(op, table, r.is_ok(), start.elapsed().as_secs_f64());
    }

    /// Inserts VMs "1".."n" unless present, in one statement inside one transaction: a
    /// recursive CTE generates the rows in the database, so 100k rows cost one round trip.
    pub async fn seed(&self, n: u64) -> Result<u64, sqlx::Error> {
        if n == 0 {
            return Ok(0);
        }
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let now = now_ms();
        // `WHERE true` resolves SQLite's INSERT…SELECT…ON CONFLICT parsing ambiguity.
        const SQL: &str = "WITH RECURSIVE seq(n) AS (SELECT CAST(1 AS BIGINT) UNION ALL SELECT n + 1 FROM seq WHERE n < $1) \
            INSERT INTO vms (id, name, state, zone, cpu_cores, memory_mb, disk_gb, image, tags, created_at, updated_at) \
            SELECT CAST(n AS TEXT), 'vm-' || CAST(n AS TEXT), \
              CASE WHEN n % 20 = 0 THEN 'stopped' WHEN n % 50 = 7 THEN 'paused' ELSE 'running' END, \
              CASE n % 3 WHEN 0 THEN 'eu-west-1' WHEN 1 THEN 'us-west-1' ELSE 'us-east-1' END, \
              2 + (n % 4) * 2, 4096 * (1 + n % 4), 50 + (n % 5) * 50, \
              CASE n % 2 WHEN 0 THEN 'ubuntu-22.04' ELSE 'debian-12' END, \
              '[\"seed\"]', $2 - n * 1000, $2 - n * 1000 \
            FROM seq WHERE true ON CONFLICT (id) DO NOTHING";
        let start = Instant::now();
        let r = on_pool!(self, p => async {
            let mut tx = p.begin().await?;
            let done = sqlx::query(SQL).bind(n).bind(now).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<u64, sqlx::Error>(done.rows_affected())
        }.await);
        self.record("INSERT", "vms", start, &r);
        r
    }

    /// One page of VMs plus the number matching the filters.
    pub async fn list_vms(&self, q: &VmQuery) -> Result<(Vec<VmRow>, i64), sqlx::Error> {
        let mut where_sql = String::from(" WHERE 1 = 1");
        let mut args: Vec<&str> = Vec::new();
        if let Some(z) = &q.zone {
            args.push(z);
            where_sql.push_str(&format!(" AND zone = ${}", args.len()));
        }
        if let Some(s) = &q.state {
            args.push(s);
            where_sql.push_str(&format!(" AND state = ${}", args.len()));
        }
        let dir = if q.descending { "DESC" } else { "ASC" };
        let list_sql = format!(
            "SELECT {VM_COLS} FROM vms{where_sql} ORDER BY {sort} {dir}, id {dir} LIMIT ${l} OFFSET ${o}",
            sort = q.sort,
            l = args.len() + 1,
            o = args.len() + 2
        );
        let count_sql = format!("SELECT COUNT(*) FROM vms{where_sql}");
        let start = Instant::now();
        let r = on_pool!(self, p => async {
            let mut lq = sqlx::query_as::<_, VmRow>(AssertSqlSafe(list_sql.as_str()));
            let mut cq = sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_sql.as_str()));
            for a in &args {
                lq = lq.bind(*a);
                cq = cq.bind(*a);
            }
            let rows = lq.bind(q.limit).bind(q.offset).fetch_all(p).await?;
            // A short first page already tells the total; skip the COUNT then.
            let total = if q.offset == 0 && (rows.len() as i64) < q.limit {
                rows.len() as i64
            } else {
                cq.fetch_one(p).await?
            };
            Ok::<_, sqlx::Error>((rows, total))
        }.await);
        self.record("SELECT", "vms", start, &r);
        r
    }

    /// One VM by id.
    pub async fn get_vm(&self, id: &str) -> Result<Option<VmRow>, sqlx::Error> {
        let sql = format!("SELECT {VM_COLS} FROM vms WHERE id = $1");
        let start = Instant::now();
        let r = on_pool!(self, p => sqlx::query_as::<_, VmRow>(AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(p).await);
        self.record("SELECT", "vms", start, &r);
        r
    }

    /// Whether a VM exists (cheaper than [`Store::get_vm`]).
    pub async fn vm_exists(&self, id: &str) -> Result<bool, sqlx::Error> {
        let start = Instant::now();
        let r = on_pool!(self, p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM vms WHERE id = $1")
            .bind(id).fetch_one(p).await);
        self.record("SELECT", "vms", start, &r);
        r.map(|n| n > 0)
    }

    /// Creates a VM with a fresh UUID id (never collides with the numeric seed ids).
    pub async fn create_vm(&self, vm: &NewVm) -> Result<VmRow, sqlx::Error> {
        let start = Instant::now();
        let r = on_pool!(self, p => insert_vm(p, vm).await);
        self.record("INSERT", "vms", start, &r);
        r
    }

    /// Applies a partial update; `None` when the VM does not exist.
    pub async fn update_vm(&self, id: &str, patch: &VmPatch) -> Result<Option<VmRow>, sqlx::Error> {
        let start = Instant::now();
        let r = on_pool!(self, p => update_vm_in(p, id, patch).await);
        self.record("UPDATE", "vms", start, &r);
        r
    }

    /// Deletes a VM; false when it did not exist.
    pub async fn delete_vm(&self, id: &str) -> Result<bool, sqlx::Error> {
        let start = Instant::now();
        let r = on_pool!(self, p => sqlx::query("DELETE FROM vms WHERE id = $1").bind(id).execute(p).await.map(|d| d.rows_affected()));
        self.record("DELETE", "vms", start, &r);
        r.map(|n| n > 0)
    }

    /// Totals by state and zone.
    pub async fn aggregate(&self) -> Result<Aggregate, sqlx::Error> {
        const GROUP_STATE: &str = "SELECT state, COUNT(*) FROM vms GROUP BY state ORDER BY state";
        const GROUP_ZONE: &str = "SELECT zone, COUNT(*) FROM vms GROUP BY zone ORDER BY zone";
        // CAST keeps SUM(BIGINT) an integer on PostgreSQL (it would be NUMERIC).
        const SUMS: &str = "SELECT CAST(COALESCE(SUM(cpu_cores), 0) AS BIGINT), \
            CAST(COALESCE(SUM(memory_mb), 0) AS BIGINT), CAST(COALESCE(SUM(disk_gb), 0) AS BIGINT) FROM vms";
        let start = Instant::now();
        let r = on_pool!(self, p => async {
            let by_state: Vec<(String, i64)> = sqlx::query_as(GROUP_STATE).fetch_all(p).await?;
            let by_zone: Vec<(String, i64)> = sqlx::query_as(GROUP_ZONE).fetch_all(p).await?;
            let (cpu, mem, disk): (i64, i64, i64) = sqlx::query_as(SUMS).fetch_one(p).await?;
            Ok::<_, sqlx::Error>(Aggregate {
                total: by_state.iter().map(|(_, c)| c).sum(),
                by_state,
                by_zone,
                total_cpu_cores: cpu,
                total_memory_mb: mem,
                total_disk_gb: disk,
            })
        }.await);
        self.record("SELECT", "vms", start, &r);
        r
    }

    /// VMs whose name contains `q` (LIKE, with the pattern characters escaped).
    pub async fn search(&self, q: &str, limit: i64) -> Result<Vec<VmRow>, sqlx::Error> {
        let escaped: String = q
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("%{escaped}%");
        let sql = format!(
            "SELECT {VM_COLS} FROM vms WHERE name LIKE $1 ESCAPE '\\' ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let start = Instant::now();
        let r = on_pool!(self, p => sqlx::query_as::<_, VmRow>(AssertSqlSafe(sql.as_str())).bind(&pattern).bind(limit).fetch_all(p).await);
        self.record("SELECT", "vms", start, &r);
        r
    }

    /// Runs every operation in one transaction: all or nothing.
    pub async fn batch(&self, ops: &[BatchOp]) -> Result<Vec<BatchOutcome>, BatchError> {
        let start = Instant::now();
        let r = on_pool!(self, p => async {
            let mut tx = p.begin().await?;
            let mut out = Vec::with_capacity(ops.len());
            for (index, op) in ops.iter().enumerate() {
                match op {
                    BatchOp::Create(vm) => out.push(BatchOutcome::Created(insert_vm(&mut *tx, vm).await?)),
                    BatchOp::Update(id, patch) => match update_vm_in(&mut *tx, id, patch).await? {
                        Some(row) => out.push(BatchOutcome::Updated(row)),
                        None => return Err(BatchError::NotFound { index, id: id.clone() }),
                    },
                    BatchOp::Delete(id) => {
                        let d = sqlx::query("DELETE FROM vms WHERE id = $1").bind(id).execute(&mut *tx).await?;
                        if d.rows_affected() == 0 {
                            return Err(BatchError::NotFound { index, id: id.clone() });
                        }
                        out.push(BatchOutcome::Deleted(id.clone()));
                    }
                }
            }
            tx.commit().await?;
            Ok(out)
        }.await);
        self.record("BATCH", "vms", start, &r);
        r
    }

    /// VM counts by state (for the `novacron_vms_total` gauge).
    pub async fn vm_state_counts(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        const SQL: &str = "SELECT state, COUNT(*) FROM vms GROUP BY state";
        on_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await)
    }

    /// Stores a new migration job.
    pub async fn insert_migration(&self, m: &MigrationRow) -> Result<(), sqlx::Error> {
        let sql = format!(
            "INSERT INTO migrations ({MIG_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        );
        let start = Instant::now();
        let r = on_pool!(self, p => sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(&m.job_id).bind(&m.vm_id).bind(&m.source_zone).bind(&m.target_zone)
            .bind(&m.protocol).bind(m.live_migration).bind(m.data_loss).bind(m.started_at)
            .bind(m.pending_until).bind(m.completes_at).bind(m.fails).bind(&m.error_message)
            .execute(p).await.map(|_| ()));
        self.record("INSERT", "migrations", start, &r);
        r.map(|_| ())
    }

    /// One migration job by id.
    pub async fn get_migration(&self, job_id: &str) -> Result<Option<MigrationRow>, sqlx::Error> {
        let sql = format!("SELECT {MIG_COLS} FROM migrations WHERE job_id = $1");
        let start = Instant::now();
        let r = on_pool!(self, p => sqlx::query_as::<_, MigrationRow>(AssertSqlSafe(sql.as_str())).bind(job_id).fetch_optional(p).await);
        self.record("SELECT", "migrations", start, &r);
        r
    }

    /// Newest migrations, optionally only those whose derived status is `status`.
    pub async fn list_migrations(
        &self,
        status: Option<&str>,
        now: i64,
        limit: i64,
    ) -> Result<Vec<MigrationRow>, sqlx::Error> {
        let filter = status.and_then(migration_status_sql).unwrap_or("$1 = $1");
        let sql = format!(
            "SELECT {MIG_COLS} FROM migrations WHERE {filter} ORDER BY started_at DESC, job_id DESC LIMIT $2"
        );
        let start = Instant::now();
        let r = on_pool!(self, p => sqlx::query_as::<_, MigrationRow>(AssertSqlSafe(sql.as_str())).bind(now).bind(limit).fetch_all(p).await);
        self.record("SELECT", "migrations", start, &r);
        r
    }

    /// Counts by derived status at `now`.
    pub async fn migration_stats(&self, now: i64) -> Result<MigrationStats, sqlx::Error> {
        const SQL: &str = "SELECT COUNT(*) AS total, \
            CAST(COALESCE(SUM(CASE WHEN $1 < pending_until THEN 1 ELSE 0 END), 0) AS BIGINT) AS pending, \
            CAST(COALESCE(SUM(CASE WHEN pending_until <= $1 AND $1 < completes_at THEN 1 ELSE 0 END), 0) AS BIGINT) AS in_progress, \
            CAST(COALESCE(SUM(CASE WHEN completes_at <= $1 AND NOT fails THEN 1 ELSE 0 END), 0) AS BIGINT) AS completed, \
            CAST(COALESCE(SUM(CASE WHEN completes_at <= $1 AND fails THEN 1 ELSE 0 END), 0) AS BIGINT) AS failed \
            FROM migrations";
        let start = Instant::now();
        let r = on_pool!(self, p => sqlx::query_as::<_, MigrationStats>(SQL).bind(now).fetch_one(p).await);
        self.record("SELECT", "migrations", start, &r);
        r
    }

    /// Marks every migration past its end as final, once across all worker processes (the
    /// conditional UPDATE is the claim), and returns the ones this call claimed.
    pub async fn finalize_due(&self, now: i64) -> Result<Vec<Finalized>, sqlx::Error> {
        const SQL: &str = "UPDATE migrations SET finalized = TRUE, completed_at = completes_at, \
            status = CASE WHEN fails THEN 'failed' ELSE 'completed' END \
            WHERE finalized = FALSE AND completes_at <= $1 \
            RETURNING source_zone, target_zone, fails, started_at, completes_at";
        let start = Instant::now();
        let r =
            on_pool!(self, p => sqlx::query_as::<_, Finalized>(SQL).bind(now).fetch_all(p).await);
        self.record("UPDATE", "migrations", start, &r);
        r
    }
}

async fn insert_vm<'e, E, DB>(exec: E, vm: &NewVm) -> Result<VmRow, sqlx::Error>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'e, Database = DB>,
    VmRow: for<'r> sqlx::FromRow<'r, DB::Row>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
{
    let now = now_ms();
    let sql = format!(
        "INSERT INTO vms ({VM_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING {VM_COLS}"
    );
    sqlx::query_as::<DB, VmRow>(AssertSqlSafe(sql.as_str()))
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(vm.name.clone())
        .bind(vm.state.clone())
        .bind(vm.zone.clone())
        .bind(vm.cpu_cores)
        .bind(vm.memory_mb)
        .bind(vm.disk_gb)
        .bind(vm.image.clone())
        .bind(vm.tags.clone())
        .bind(now)
        .fetch_one(exec)
        .await
}

async fn update_vm_in<'e, E, DB>(
    exec: E,
    id: &str,
    patch: &VmPatch,
) -> Result<Option<VmRow>, sqlx::Error>
where
    DB: sqlx::Database,
    E: sqlx::Executor<'e, Database = DB>,
    VmRow: for<'r> sqlx::FromRow<'r, DB::Row>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
{
    // COALESCE keeps the stored value for every field the PATCH body did not name.
    let sql = format!(
        "UPDATE vms SET name = COALESCE($2, name), state = COALESCE($3, state), zone = COALESCE($4, zone), \
         cpu_cores = COALESCE($5, cpu_cores), memory_mb = COALESCE($6, memory_mb), disk_gb = COALESCE($7, disk_gb), \
         image = COALESCE($8, image), tags = COALESCE($9, tags), updated_at = $10 WHERE id = $1 RETURNING {VM_COLS}"
    );
    sqlx::query_as::<DB, VmRow>(AssertSqlSafe(sql.as_str()))
        .bind(id.to_string())
        .bind(patch.name.clone())
        .bind(patch.state.clone())
        .bind(patch.zone.clone())
        .bind(patch.cpu_cores)
        .bind(patch.memory_mb)
        .bind(patch.disk_gb)
        .bind(patch.image.clone())
        .bind(patch.tags.clone())
        .bind(now_ms())
        .fetch_optional(exec)
        .await
}
