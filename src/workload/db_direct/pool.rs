//! The connection pool: how long a VU keeps a connection ([`ConnHold`]), acquiring one (timed:
//! `db_pool_acquire_time` and the live pool metrics) and giving it back.

use super::{DbDirectWorkload, DbMix, Vu, error_kind};
use crate::metrics::{DbSample, Sample};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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

pub(super) type Conn = PoolConnection<Postgres>;

/// A VU's connection (if it has one) and how long it keeps it.
pub(super) struct Lease {
    pub(super) conn: Option<Conn>,
    pub(super) hold: ConnHold,
}

/// Whether the connection a statement failed on may be unusable (then it is dropped, not kept;
/// after an SQL error the server has already resynchronized and the connection is fine).
pub(super) fn connection_broken(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_)
    )
}

impl DbDirectWorkload {
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

    pub(super) fn pool(&self) -> &PgPool {
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

    /// The lease's connection, acquiring one (timed: `db_pool_acquire_time`, the live pool
    /// metrics) when it holds none.
    pub(super) async fn conn<'l>(
        &self,
        vu: &Vu,
        lease: &'l mut Lease,
    ) -> Result<&'l mut Conn, sqlx::Error> {
        let conn = match lease.conn.take() {
            Some(c) => c,
            // boxed: sqlx's acquire future is ~2.7 KB, and held inline it would make every
            // statement's future that size, copied at each await of a back-to-back iteration
            // that already holds its connection
            None => Box::pin(self.acquire(vu)).await?,
        };
        Ok(lease.conn.insert(conn))
    }

    pub(super) async fn acquire(&self, vu: &Vu) -> Result<Conn, sqlx::Error> {
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
    pub(super) fn settle(&self, lease: &mut Lease, error: Option<&sqlx::Error>) {
        if lease.hold == ConnHold::Statement || error.is_some_and(connection_broken) {
            lease.conn = None;
        }
    }
}
