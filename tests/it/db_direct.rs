//! `run db --db-mode direct` on a real PostgreSQL (`NOVALOAD_TEST_POSTGRES_URL`, started by
//! scripts/test.sh; a fresh database per test): the §1.4 mix as SQL passes its checks with
//! upstream's counts, database errors become failed checks (never a panic or an abort), the
//! password never reaches results or logs, and statements carry the span's `traceparent` as a
//! sqlcommenter comment the server really receives.

use crate::support::postgres::TestDb;
use crate::support::runs::Run;
use crate::support::spans::{Keep, attr};
use novaload::cli::{DbMixArg, DbMode, RunArgs, TestName};
use novaload::metrics::Registry;
use novaload::plan::{Executor, Scenario};
use novaload::runner::{self, TestRun};
use novaload::session::{self, Stops};
use novaload::telemetry::{Telemetry, TelemetryConfig};
use novaload::workload::ClientSettings;
use novaload::workload::db_direct::{ConnHold, DbDirectWorkload, DbMix, sql};
use opentelemetry_sdk::trace::SpanData;
use sqlx::Connection;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Every check of the upstream mix.
const CHECKS: [&str; 18] = [
    "DB read ok",
    "DB read has results",
    "DB read < 200ms",
    "Complex query ok",
    "Complex query < 300ms",
    "DB write ok",
    "DB write has ID",
    "DB write < 500ms",
    "DB update ok",
    "DB update < 400ms",
    "Aggregation query ok",
    "Aggregation has totals",
    "Aggregation < 500ms",
    "Search query ok",
    "Search query < 400ms",
    "Transaction ok",
    "Transaction < 1000ms",
    "Rapid query OK",
];

/// The admin URL, or None (skip) when unset outside CI.
fn admin_url() -> Option<String> {
    crate::support::postgres::admin_url("this test")
}

/// `vus` VUs × `iterations` each of the direct workload, think times scaled by `think`.
async fn run_direct(url: &str, vus: u64, iterations: u64, think: f64, tel: &Telemetry) -> Run {
    run_mix(url, DbMix::Upstream, None, vus, iterations, think, tel, 0).await
}

/// Like [`run_direct`] with a mix, a pool of 4, (Some) the planned VUs the session would tell
/// the workload, and `--vu-threads` (0: the shared runtime).
#[allow(clippy::too_many_arguments)]
async fn run_mix(
    url: &str,
    mix: DbMix,
    planned_vus: Option<u64>,
    vus: u64,
    iterations: u64,
    think: f64,
    tel: &Telemetry,
    vu_threads: usize,
) -> Run {
    let mut registry = Registry::new();
    let mut w = DbDirectWorkload::new(url, 4, &mut registry).expect("valid URL");
    w.think_scale = think;
    w.mix = mix;
    if let Some(n) = planned_vus {
        w.plan_vus(n);
    }
    let params = TestRun {
        settings: ClientSettings {
            tls: None,
            request_timeout: Duration::from_secs(10),
            ..Default::default()
        },
        vu_threads,
        ..TestRun::new(
            "db",
            "dbd-test",
            vec![Scenario::new(
                "default",
                Executor::PerVuIterations {
                    vus,
                    iterations,
                    max_duration: Duration::from_secs(120),
                },
            )],
            registry,
            tel.clone(),
        )
    };
    Run::from(runner::run(Arc::new(w), params).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_mix_runs_as_sql_on_a_fresh_database() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::create(&admin, None).await;
    let r = run_direct(&db.url, 2, 2, 0.05, &Telemetry::disabled()).await;
    assert!(r.outcome.errors.is_empty(), "{:?}", r.outcome.errors);
    for c in CHECKS {
        let (p, f) = r.check(c);
        assert_eq!(f, 0, "check {c} failed {f} times");
        let want = if c == "Rapid query OK" { 20 } else { 4 };
        assert_eq!(p, want, "check {c}");
    }
    // upstream's counts: 14 queries (the update ran), 9 reads, 5 writes per iteration
    assert_eq!(r.get("db_queries_total", "count"), 4.0 * 14.0);
    assert_eq!(r.get("db_reads_total", "count"), 4.0 * 9.0);
    assert_eq!(r.get("db_writes_total", "count"), 4.0 * 5.0);
    // latencies: 6 reads (1 + 5 rapid), 3 queries, 3 writes (write, update, batch) each time
    assert_eq!(r.get("db_read_latency", "count"), 24.0);
    assert_eq!(r.get("db_query_latency", "count"), 12.0);
    assert_eq!(r.get("db_write_latency", "count"), 12.0);
    for t in ["db_read_latency", "db_query_latency", "db_write_latency"] {
        assert!(r.get(t, "max") > 0.0, "{t} has no time");
    }
    // one acquire per statement, the batch's transaction on one connection
    assert_eq!(r.get("db_pool_acquire_time", "count"), 4.0 * 12.0);
    // B1 fixed: db_errors has a sample per check group, all false
    assert_eq!(r.get("db_errors", "passes"), 0.0);
    assert_eq!(r.get("db_errors", "fails"), 4.0 * 12.0);

    // the target's migrations made the schema; the rows are what the mix wrote
    assert_eq!(db.scalar("SELECT COUNT(*) FROM _sqlx_migrations").await, 1);
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM vms WHERE name LIKE 'seed-vm-%'")
            .await,
        100
    );
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM vms WHERE name LIKE 'load-test-vm-%' AND cpu_cores = 8 \
             AND tags = '[\"load-test\",\"automated\",\"updated\"]'"
        )
        .await,
        4
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM vms WHERE name LIKE 'batch-vm-%'")
            .await,
        12
    );
    // a second run keeps the existing schema and seed
    let r2 = run_direct(&db.url, 1, 1, 0.0, &Telemetry::disabled()).await;
    assert!(r2.outcome.errors.is_empty(), "{:?}", r2.outcome.errors);
    assert_eq!(r2.check("DB read ok"), (1, 0));
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM vms WHERE name LIKE 'seed-vm-%'")
            .await,
        100
    );
    db.drop_db().await;
}

/// NovaCron's canonical `vms` table (spec §4.7) has no zone/tags/cpu columns: setup leaves the
/// existing table alone, and every statement fails as a check, not as a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_errors_become_failed_checks_without_aborting() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::create(&admin, None).await;
    let mut c = db.conn().await;
    sqlx::query(
        "CREATE TABLE vms (id VARCHAR(255) PRIMARY KEY, name VARCHAR(255) NOT NULL, \
         state VARCHAR(50) NOT NULL, node_id VARCHAR(255), tenant_id VARCHAR(255) DEFAULT 'default', \
         config JSONB, created_at TIMESTAMP DEFAULT NOW(), updated_at TIMESTAMP DEFAULT NOW())",
    )
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.ok();
    let r = run_direct(&db.url, 1, 1, 0.0, &Telemetry::disabled()).await;
    assert!(r.outcome.errors.is_empty(), "{:?}", r.outcome.errors);
    for c in [
        "DB read ok",
        "Complex query ok",
        "DB write ok",
        "Search query ok",
        "Transaction ok",
    ] {
        assert_eq!(r.check(c), (0, 1), "{c}");
    }
    assert_eq!(r.check("Rapid query OK"), (0, 5));
    // the aggregate only needs `state`: it works on this schema too
    assert_eq!(r.check("Aggregation query ok"), (1, 0));
    // no id came back, so no update: upstream's 13
    assert_eq!(r.check("DB update ok"), (0, 0));
    assert_eq!(r.get("db_queries_total", "count"), 13.0);
    assert_eq!(r.get("db_errors", "passes"), 10.0);
    assert_eq!(r.get("db_errors", "fails"), 1.0);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM vms").await, 0);
    db.drop_db().await;
}

/// Failed statements land in the summary's errors-by-kind table (and SUMMARY.md) as failed
/// HTTP requests do: on the canonical NovaCron table every statement but the aggregate fails
/// with an SQL error, the batch transaction counting once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_errors_are_counted_by_kind_in_the_summary() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::create(&admin, None).await;
    let mut c = db.conn().await;
    sqlx::query(
        "CREATE TABLE vms (id VARCHAR(255) PRIMARY KEY, name VARCHAR(255) NOT NULL, \
         state VARCHAR(50) NOT NULL, created_at TIMESTAMP DEFAULT NOW())",
    )
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.ok();
    let out = tempfile::tempdir().unwrap();
    let o = session::run(direct_args(&db.url, out.path()), Stops::default())
        .await
        .unwrap();
    let s = &o.summaries[0];
    assert!(s.run_errors.is_empty(), "{:?}", s.run_errors);
    // read, complex, write, search, batch, 5 rapid reads; the aggregate works, no update ran
    assert_eq!(
        s.errors_by_kind.iter().collect::<Vec<_>>(),
        vec![(&"database".to_string(), &10)],
        "{:?}",
        s.errors_by_kind
    );
    // the error samples are part of the query count, not extra queries
    assert_eq!(
        s.metrics["db_queries_total"].values.get("count"),
        Some(13.0)
    );
    // and why: the step, the SQLSTATE code and the server's message (undefined_column)
    let reasons = &s.error_reasons.kinds["database"];
    assert_eq!(
        reasons.messages.values().sum::<u64>() + reasons.other_messages,
        10,
        "{reasons:?}"
    );
    let read = "DB read (SELECT vms): 42703 column \"zone\" does not exist";
    assert_eq!(reasons.messages.get(read), Some(&1), "{reasons:?}");
    let md = std::fs::read_to_string(files_named(out.path(), "SUMMARY.md")).unwrap();
    assert!(md.contains("`database`: 10 failed operations"), "{md}");
    assert!(md.contains("42703 column"), "{md}");
    db.drop_db().await;
}

/// A URL whose password must never appear in a pre-flight error.
const PREFLIGHT_PASSWORD: &str = "Pf-hunter2-secret";

fn assert_preflight_error(e: &novaload::error::ConfigError, started: std::time::Instant) {
    let msg = e.to_string();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    assert!(msg.contains("--database-url (DATABASE_URL)"), "{msg}");
    assert!(msg.contains("fix: "), "{msg}");
    assert!(!msg.contains(PREFLIGHT_PASSWORD), "password in {msg}");
}

/// A server that accepts and hangs up at once (not PostgreSQL, or dying): a config error within
/// the pre-flight's bound, naming the flag and the target, without the password.
#[tokio::test]
async fn preflight_reports_a_server_that_hangs_up() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let closer = std::thread::spawn(move || {
        // at most 50 connections or 10 s, whichever comes first
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let mut served = 0;
        while served < 50 && std::time::Instant::now() < until {
            match listener.accept() {
                Ok((stream, _)) => {
                    drop(stream);
                    served += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        served
    });
    let url = format!("postgres://nova:{PREFLIGHT_PASSWORD}@127.0.0.1:{port}/novacron");
    let started = std::time::Instant::now();
    let e = novaload::workload::db_direct::preflight(&url, Duration::from_secs(5))
        .await
        .expect_err("nothing speaks PostgreSQL there");
    assert_preflight_error(&e, started);
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("postgresql://127.0.0.1:{port}/novacron")),
        "{msg}"
    );
    assert!(closer.join().unwrap() >= 1);
}

/// A server that never answers: the pre-flight gives up after its timeout, not 30 s later.
#[tokio::test]
async fn preflight_is_bounded_by_its_timeout() {
    // bound and listening (the kernel completes the TCP handshake), never accepted: silence
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("postgres://nova:{PREFLIGHT_PASSWORD}@127.0.0.1:{port}/novacron");
    let started = std::time::Instant::now();
    let e = novaload::workload::db_direct::preflight(&url, Duration::from_secs(1))
        .await
        .expect_err("no answer");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_preflight_error(&e, started);
    assert!(e.to_string().contains("within 1s"), "{e}");
    drop(listener);
}

/// On the real server: a missing database is named with the server's reason (SQLSTATE 3D000)
/// and the fix; the right URL passes.
#[tokio::test]
async fn preflight_names_a_missing_database() {
    let Some(admin) = admin_url() else { return };
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_password(Some(PREFLIGHT_PASSWORD)).unwrap();
    url.set_path("/novaload_no_such_db_for_preflight");
    let started = std::time::Instant::now();
    let e = novaload::workload::db_direct::preflight(url.as_str(), Duration::from_secs(5))
        .await
        .expect_err("the database does not exist");
    assert_preflight_error(&e, started);
    let msg = e.to_string();
    assert!(msg.contains("novaload_no_such_db_for_preflight"), "{msg}");
    assert!(msg.contains("3D000"), "{msg}");
    assert!(msg.contains("createdb"), "{msg}");
    novaload::workload::db_direct::preflight(&admin, Duration::from_secs(5))
        .await
        .expect("the admin database is there");
}

/// The pgbench comparison mixes: with a pool as large as the VUs each VU acquires once and keeps
/// its connection (pgbench's model); with more VUs than connections, once per iteration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_mixes_keep_a_connection_per_vu() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::create(&admin, None).await;

    let r = run_mix(
        &db.url,
        DbMix::SelectOnly,
        Some(2),
        2,
        25,
        0.0,
        &Telemetry::disabled(),
        0,
    )
    .await;
    assert!(r.outcome.errors.is_empty(), "{:?}", r.outcome.errors);
    assert_eq!(r.check("Point read ok"), (50, 0));
    assert_eq!(r.get("db_queries_total", "count"), 50.0);
    assert_eq!(r.get("db_read_latency", "count"), 50.0);
    assert_eq!(r.get("db_pool_acquire_time", "count"), 2.0, "one per VU");
    assert_eq!(r.get("db_errors", "passes"), 0.0);

    let before = db
        .scalar("SELECT COUNT(*) FROM vms WHERE name LIKE 'seed-vm-%' AND cpu_cores = 2")
        .await;
    assert_eq!(before, 100, "seeded with 2 cores");
    // on two VU threads (--vu-threads 2), as bench/db.sh runs it: each VU opens its own
    // connection on its thread
    let r = run_mix(
        &db.url,
        DbMix::ReadWrite,
        Some(2),
        2,
        25,
        0.0,
        &Telemetry::disabled(),
        2,
    )
    .await;
    assert!(r.outcome.errors.is_empty(), "{:?}", r.outcome.errors);
    assert_eq!(r.check("Point read ok"), (50, 0));
    assert_eq!(r.check("Point update ok"), (50, 0));
    assert_eq!(r.get("db_queries_total", "count"), 100.0);
    assert_eq!(r.get("db_reads_total", "count"), 50.0);
    assert_eq!(r.get("db_writes_total", "count"), 50.0);
    assert_eq!(r.get("db_write_latency", "count"), 50.0);
    assert_eq!(r.get("db_pool_acquire_time", "count"), 2.0, "one per VU");
    // the updates really happened: memory follows the new core count (cores × 2048 MB)
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM vms WHERE memory_mb <> cpu_cores * 2048")
            .await,
        0
    );
    assert!(
        db.scalar("SELECT COUNT(*) FROM vms WHERE cpu_cores = 2")
            .await
            < 100,
        "no VM was resized"
    );

    // 8 planned VUs > 4 connections: a connection per iteration, given back at its end (and
    // taken by VUs on either VU thread)
    let r = run_mix(
        &db.url,
        DbMix::ReadWrite,
        Some(8),
        2,
        5,
        0.0,
        &Telemetry::disabled(),
        2,
    )
    .await;
    assert_eq!(r.check("Point update ok"), (10, 0));
    assert_eq!(
        r.get("db_pool_acquire_time", "count"),
        10.0,
        "one per iteration"
    );
    db.drop_db().await;
}

#[test]
fn connection_hold_follows_the_mix_and_the_pool() {
    let mut reg = Registry::new();
    let mut w = DbDirectWorkload::new("postgres://u@127.0.0.1:1/x", 8, &mut reg).unwrap();
    // upstream: every statement acquires (think time follows each)
    w.plan_vus(2);
    assert_eq!(w.hold(), ConnHold::Statement);
    assert!(w.connection_note().is_none());
    for mix in [DbMix::SelectOnly, DbMix::ReadWrite] {
        w.mix = mix;
        w.plan_vus(8);
        assert_eq!(w.hold(), ConnHold::Vu);
        assert!(
            w.connection_note()
                .unwrap()
                .contains("--pool-size 8 >= 8 VUs")
        );
        w.plan_vus(9);
        assert_eq!(w.hold(), ConnHold::Iteration);
        assert!(w.connection_note().unwrap().contains("--pool-size 9"));
        // unknown VUs: the safe choice
        w.plan_vus(0);
        assert_eq!(w.hold(), ConnHold::Iteration);
    }
}

#[tokio::test]
async fn a_pool_of_zero_is_a_config_error_naming_the_flag() {
    let out = tempfile::tempdir().unwrap();
    let mut a = direct_args("postgres://u@127.0.0.1:1/x", out.path());
    a.pool_size = Some(0);
    let e = novaload::config::resolve(a.clone())
        .err()
        .expect("config error");
    let msg = e.to_string();
    assert!(
        msg.contains("--pool-size") && msg.contains("1 or more"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_sql_mix_without_direct_mode_is_a_config_error() {
    let out = tempfile::tempdir().unwrap();
    let mut a = direct_args("", out.path());
    a.database_url = None;
    a.db_mode = None;
    a.db_mix = DbMixArg::ReadWrite;
    let e = novaload::config::resolve(a.clone())
        .err()
        .expect("config error");
    let msg = e.to_string();
    assert!(
        msg.contains("--db-mix") && msg.contains("--db-mode direct"),
        "{msg}"
    );
    // the upstream mix through the API stays valid
    a.db_mix = DbMixArg::Upstream;
    assert!(novaload::config::resolve(a.clone()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_table_mid_run_records_failures() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::create(&admin, None).await;
    let mut c = db.conn().await;
    let dropper = tokio::spawn(async move {
        // iterations take ~1.1 s at think 0.2: drop during the second
        tokio::time::sleep(Duration::from_millis(1600)).await;
        sqlx::query("DROP TABLE vms").execute(&mut c).await.unwrap();
    });
    let r = run_direct(&db.url, 1, 3, 0.2, &Telemetry::disabled()).await;
    dropper.await.unwrap();
    assert!(r.outcome.errors.is_empty(), "{:?}", r.outcome.errors);
    let (ok, failed) = r.check("DB read ok");
    assert_eq!(ok + failed, 3);
    assert!(
        ok >= 1 && failed >= 1,
        "DB read ok: {ok} passed, {failed} failed"
    );
    let (p, f) = (r.get("db_errors", "passes"), r.get("db_errors", "fails"));
    assert!(p > 0.0 && f > 0.0, "db_errors: {p} failures, {f} successes");
    db.drop_db().await;
}

/// Captures the `tracing` output (debug and up, every target) of the whole test process while
/// it lives, for the leak check. The subscriber is process-wide and installed by the first
/// capture; it records nothing while no capture lives, so the other tests of this binary do not
/// run with debug logging on.
struct LogCapture(Arc<Mutex<Vec<u8>>>);

static CAPTURES: AtomicUsize = AtomicUsize::new(0);

impl LogCapture {
    fn start() -> LogCapture {
        static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
        let buf = BUF
            .get_or_init(|| {
                use tracing_subscriber::layer::{Layer, SubscriberExt};
                use tracing_subscriber::util::SubscriberInitExt;
                let buf = Arc::new(Mutex::new(Vec::new()));
                #[derive(Clone)]
                struct W(Arc<Mutex<Vec<u8>>>);
                impl Write for W {
                    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                        self.0.lock().unwrap().extend_from_slice(b);
                        Ok(b.len())
                    }
                    fn flush(&mut self) -> std::io::Result<()> {
                        Ok(())
                    }
                }
                let w = W(buf.clone());
                let capturing = tracing_subscriber::filter::dynamic_filter_fn(|meta, _| {
                    CAPTURES.load(Ordering::SeqCst) > 0 && *meta.level() <= tracing::Level::DEBUG
                })
                .with_max_level_hint(tracing::level_filters::LevelFilter::DEBUG);
                let _ = tracing_subscriber::registry()
                    .with(
                        tracing_subscriber::fmt::layer()
                            .with_writer(move || w.clone())
                            .with_filter(capturing),
                    )
                    .try_init();
                buf
            })
            .clone();
        CAPTURES.fetch_add(1, Ordering::SeqCst);
        LogCapture(buf)
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        CAPTURES.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::ops::Deref for LogCapture {
    type Target = Mutex<Vec<u8>>;
    fn deref(&self) -> &Mutex<Vec<u8>> {
        &self.0
    }
}

fn direct_args(url: &str, out: &std::path::Path) -> RunArgs {
    RunArgs {
        test: Some(TestName::Db),
        db_mode: Some(DbMode::Direct),
        database_url: Some(url.into()),
        vus: Some(1),
        iterations: Some(1),
        out: out.to_path_buf(),
        quiet: true,
        timeout: "10s".into(),
        otlp_protocol: "grpc".into(),
        service_name: "novaload".into(),
        ..RunArgs::default()
    }
}

/// The first file called `name` under `dir`.
fn files_named(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|f| f == name) {
                return p;
            }
        }
    }
    panic!("no {name} under {}", dir.display());
}

fn files_contain(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            hits.extend(files_contain(&p, needle));
        } else if std::fs::read_to_string(&p).is_ok_and(|s| s.contains(needle)) {
            hits.push(p.display().to_string());
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_never_reaches_results_or_logs() {
    let Some(admin) = admin_url() else { return };
    let logs = LogCapture::start();
    let pw = "Pw-9f3kQz-never-shown";
    let db = TestDb::create(&admin, Some(pw)).await;
    // from here on (the test's own CREATE ROLE … PASSWORD is logged by sqlx)
    let logs_from = logs.lock().unwrap().len();
    let out = tempfile::tempdir().unwrap();

    // a passing run through the CLI's session
    let o = session::run(direct_args(&db.url, out.path()), Stops::default())
        .await
        .unwrap();
    let s = &o.summaries[0];
    assert!(s.run_errors.is_empty(), "{:?}", s.run_errors);
    let port = url::Url::parse(&db.url).unwrap().port().unwrap();
    assert_eq!(
        s.target,
        format!("postgresql://127.0.0.1:{port}/{}", db.name)
    );
    assert!(s.checks.iter().all(|c| c.fails == 0), "{:?}", s.checks);
    assert!(!s.thresholds.is_empty());
    assert!(
        s.thresholds.iter().all(|t| t.metric != "http_req_duration"),
        "no HTTP in direct mode"
    );

    // a failing run: the database does not exist (the pre-flight's config error names it)
    let mut missing = url::Url::parse(&db.url).unwrap();
    missing.set_path("/no_such_database_here");
    let Err(e) = session::run(direct_args(missing.as_str(), out.path()), Stops::default()).await
    else {
        panic!("a missing database is a config error");
    };
    let msg = format!("{e:#}");
    assert!(msg.contains("no_such_database_here"), "{msg}");
    assert!(!msg.contains(pw), "password in {msg}");

    let hits = files_contain(out.path(), pw);
    assert!(hits.is_empty(), "password in {hits:?}");
    let logged = String::from_utf8_lossy(&logs.lock().unwrap()[logs_from..]).to_string();
    assert!(logged.contains("database seeded"), "the capture works");
    let leaked: Vec<&str> = logged.lines().filter(|l| l.contains(pw)).collect();
    assert!(leaked.is_empty(), "password in the logs: {leaked:#?}");
    db.drop_db().await;
}

#[tokio::test]
async fn direct_mode_without_a_url_is_a_config_error() {
    let out = tempfile::tempdir().unwrap();
    let mut a = direct_args("", out.path());
    a.database_url = None;
    let e = novaload::config::resolve(a.clone())
        .err()
        .expect("config error");
    let msg = e.to_string();
    assert!(
        msg.contains("--database-url") && msg.contains("DATABASE_URL"),
        "{msg}"
    );
}

/// The server receives each statement with its span's traceparent: a trigger records
/// `current_query()` (the statement text exactly as the client sent it) for every INSERT and
/// UPDATE on `vms`, and each INSERT/UPDATE span's traceparent must be among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_carry_the_spans_traceparent_as_a_sqlcommenter_comment() {
    let Some(admin) = admin_url() else { return };
    let db = TestDb::create(&admin, None).await;
    let mut c = db.conn().await;
    sqlx::migrate!("src/novacron/schema")
        .run(&mut c)
        .await
        .unwrap();
    for stmt in [
        "CREATE TABLE seen (q TEXT)",
        "CREATE FUNCTION keep_query() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN INSERT INTO seen VALUES (current_query()); RETURN NEW; END $$",
        "CREATE TRIGGER keep BEFORE INSERT OR UPDATE ON vms FOR EACH ROW EXECUTE FUNCTION keep_query()",
    ] {
        sqlx::query(stmt).execute(&mut c).await.unwrap();
    }

    let exporter = Keep::default();
    let tel = Telemetry::start_with_span_exporter(
        TelemetryConfig {
            run_id: "dbd-trace".into(),
            profile: "test".into(),
            service_name: "novaload".into(),
            sample_ratio: 1.0,
            traces: true,
            ..TelemetryConfig::default()
        },
        exporter.clone(),
    )
    .await
    .unwrap();
    let r = run_direct(&db.url, 1, 1, 0.0, &tel).await;
    assert!(r.outcome.errors.is_empty(), "{:?}", r.outcome.errors);
    let report = tel.shutdown().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let spans = exporter.get_finished_spans().unwrap();

    let seen: Vec<String> = sqlx::query_scalar("SELECT q FROM seen WHERE q LIKE '%traceparent%'")
        .fetch_all(&mut c)
        .await
        .unwrap();
    c.close().await.ok();
    let writes: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "INSERT vms" || s.name == "UPDATE vms")
        .collect();
    // write + update + 3 batch inserts, each seen once by the server
    assert_eq!(
        writes.len(),
        5,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert_eq!(seen.len(), 5, "{seen:?}");
    for s in &writes {
        let tp = format!(
            "/*traceparent='00-{}-{}-01'*/",
            s.span_context.trace_id(),
            s.span_context.span_id()
        );
        assert!(
            seen.iter().any(|q| q.ends_with(&tp)),
            "{tp} not received; server saw {seen:?}"
        );
    }

    let iteration = spans.iter().find(|s| s.name == "iteration").unwrap();
    let selects: Vec<&SpanData> = spans.iter().filter(|s| s.name == "SELECT vms").collect();
    assert_eq!(
        selects.len(),
        9,
        "1 read, complex, aggregate, search, 5 pages"
    );
    for s in selects.iter().chain(writes.iter()) {
        assert_eq!(s.span_kind, opentelemetry::trace::SpanKind::Client);
        assert_eq!(s.parent_span_id, iteration.span_context.span_id());
        assert_eq!(attr(s, "db.system.name").as_deref(), Some("postgresql"));
        assert_eq!(attr(s, "db.collection.name").as_deref(), Some("vms"));
        let op = attr(s, "db.operation.name").unwrap();
        assert!(s.name.starts_with(&op));
        let text = attr(s, "db.query.text").unwrap();
        // parameterized, without values or the comment
        assert!(
            !text.contains("traceparent") && !text.contains("load-test"),
            "{text}"
        );
    }
    let texts: Vec<String> = selects
        .iter()
        .filter_map(|s| attr(s, "db.query.text"))
        .collect();
    for q in [
        sql::READ,
        sql::COMPLEX,
        sql::AGGREGATE,
        sql::SEARCH,
        sql::PAGE,
    ] {
        assert!(texts.iter().any(|t| t == q), "no span for {q}");
    }
    db.drop_db().await;
}
