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

mod pool;
mod preflight;
mod statements;

pub use pool::ConnHold;
pub(crate) use preflight::{display_target, driver_reason, redact_url};
pub use preflight::{error_kind, preflight};
pub use statements::sql;

use super::{Vu, Workload};
use crate::metrics::{Contains, MetricId, MetricKind, Registry};
use pool::{Conn, Lease};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Row};
use statements::{NOT_RUN, Op, Verb, rows_not_one};
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/novacron/schema");

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
