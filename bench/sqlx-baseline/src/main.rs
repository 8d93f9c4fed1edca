//! bench/db.sh's two mixes with nothing but sqlx: CLIENTS tasks (4), one connection each, the
//! same statements as `novaload run db --db-mix select-only|read-write`, for SECS seconds (5).
//! RUNTIME=shared: tokio's work-stealing runtime; RUNTIME=threads: JOBS (2) single-threaded
//! runtimes, clients dealt out among them (novaload `--vu-threads`, pgbench `-j`).
//!
//!   URL=postgres://postgres@127.0.0.1:5432/bench MIX=read-write RUNTIME=threads \
//!     cargo run --release --manifest-path bench/sqlx-baseline/Cargo.toml
//!
//! Prints the transactions per second; time it with `/usr/bin/time` for CPU per transaction.
//! The database must have novaload's schema and seed VMs (bench/db.sh sets them up).

use sqlx::Connection;
use std::time::{Duration, Instant};

struct Settings {
    url: String,
    read_write: bool,
    end: Instant,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn number(name: &str, default: u64) -> u64 {
    let v = env_or(name, &default.to_string());
    v.parse()
        .unwrap_or_else(|_| panic!("{name}={v}: expected a whole number"))
}

/// One client: the mix's statements back to back until the end; returns its transactions.
async fn client(s: &Settings, seed: u64) -> u64 {
    let mut conn = sqlx::PgConnection::connect(&s.url)
        .await
        .unwrap_or_else(|e| panic!("connecting to URL: {e}"));
    let (mut done, mut x) = (0, seed.wrapping_mul(7919) | 1);
    while Instant::now() < s.end {
        // xorshift: seed VM 0..99 and a core count 1..16, as the mixes draw them
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (vm, cpu) = ((x % 100) as i64, ((x >> 8) % 16 + 1) as i64);
        let rows = sqlx::query("SELECT id, name, state FROM vms WHERE id = 'seed-vm-' || $1")
            .bind(vm)
            .fetch_all(&mut conn)
            .await
            .expect("point read");
        assert_eq!(
            rows.len(),
            1,
            "seed-vm-{vm} missing: run bench/db.sh's setup"
        );
        if s.read_write {
            sqlx::query(
                "UPDATE vms SET cpu_cores = $1, memory_mb = $2 WHERE id = 'seed-vm-' || $3",
            )
            .bind(cpu)
            .bind(cpu * 2048)
            .bind(vm)
            .execute(&mut conn)
            .await
            .expect("point update");
        }
        done += 1;
    }
    done
}

/// Runs `clients` clients on the current runtime.
async fn clients(s: std::sync::Arc<Settings>, first: u64, clients: u64) -> u64 {
    let tasks: Vec<_> = (first..first + clients)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { client(&s, i).await })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("client task");
    }
    total
}

fn main() {
    let secs = number("SECS", 5);
    let (n, jobs) = (number("CLIENTS", 4), number("JOBS", 2).max(1));
    let s = std::sync::Arc::new(Settings {
        url: std::env::var("URL").expect("URL=postgres://… is required"),
        read_write: env_or("MIX", "read-write") == "read-write",
        end: Instant::now() + Duration::from_secs(secs),
    });
    let total = match env_or("RUNTIME", "shared").as_str() {
        "shared" => tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(clients(s, 0, n)),
        "threads" => {
            let threads: Vec<_> = (0..jobs)
                .map(|j| {
                    let s = s.clone();
                    // clients j, j + jobs, …: dealt out in turn
                    let mine = (j..n).step_by(jobs as usize).count() as u64;
                    std::thread::spawn(move || {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("runtime")
                            .block_on(clients(s, j * 1000, mine))
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().expect("thread")).sum()
        }
        other => panic!("RUNTIME={other}: expected shared or threads"),
    };
    println!("tps {:.0}", total as f64 / secs as f64);
}
