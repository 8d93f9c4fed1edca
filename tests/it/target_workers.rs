//! `novaload target --workers N` through the real binary: N processes accept on one port
//! (seen in the `pid` of `/health` over fresh connections), share one database (a VM created
//! through one connection is read through many), carry a small ws run to PASS, stop together
//! on SIGTERM, and do not outlive a parent killed with SIGKILL.

use novaload::cli::{RunArgs, TestName};
use novaload::report::Verdict;
use novaload::session::{self, Stops};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `novaload target --workers N` parent; killed (SIGKILL) if the test ends without stopping it.
struct Target {
    child: Child,
    addr: String,
    pids: Vec<u32>,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(workers: u32, tmp: &std::path::Path) -> Target {
    let mut child = Command::new(env!("CARGO_BIN_EXE_novaload"))
        .args(["target", "--listen", "127.0.0.1:0", "--seed-vms", "20"])
        // the workers' temporary SQLite file goes here (a SIGKILLed parent cannot remove it)
        .env("TMPDIR", tmp)
        .args(["--workers", &workers.to_string()])
        .env_remove("DATABASE_URL")
        .env_remove("NOVALOAD_TARGET_WORKERS")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start novaload target");
    let stdout = child.stdout.take().unwrap();
    // "novaload target listening on http://127.0.0.1:PORT (N worker processes, pids [a, b]; ...)"
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the target prints its address within 60 s");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let pids: Vec<u32> = line
        .split_once("pids [")
        .and_then(|(_, r)| r.split_once(']'))
        .map(|(list, _)| list.split(", ").map(|p| p.parse().unwrap()).collect())
        .unwrap_or_else(|| panic!("no pids in {line:?}"));
    assert_eq!(pids.len(), workers as usize, "{line}");
    Target { child, addr, pids }
}

/// One HTTP/1.1 request on a fresh connection (so the kernel picks a worker each time).
fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).expect("connect to the target");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer test-token-123\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// Whether `pid` still runs (a zombie awaiting its reaper counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit_once(')').map(|(_, r)| r.trim_start());
            !matches!(state.and_then(|r| r.chars().next()), Some('Z' | 'X'))
        })
        .unwrap_or(false)
}

fn wait_gone(pids: &[u32], within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_port_and_the_data_and_carry_a_ws_run() {
    let tmp = tempfile::tempdir().unwrap();
    let t = start(2, tmp.path());
    let addr = t.addr.clone();
    let expected: BTreeSet<u32> = t.pids.iter().copied().collect();

    // both processes accept: SO_REUSEPORT hashes each new connection to one of them; 60
    // connections all landing on one of two processes has probability 2^-59
    let addr2 = addr.clone();
    let (answered, created, reads) = tokio::task::spawn_blocking(move || {
        let answered: BTreeSet<u32> = (0..60)
            .map(|_| {
                let (code, v) = request(&addr2, "GET", "/health", "");
                assert_eq!(code, 200, "{v}");
                v["pid"].as_u64().expect("pid in /health") as u32
            })
            .collect();
        // shared data: a VM created through one worker is seen by every worker
        let (code, vm) = request(
            &addr2,
            "POST",
            "/api/v1/vms",
            r#"{"name":"shared","cpu_cores":2,"memory_mb":2048,"disk_gb":20}"#,
        );
        assert!(code == 200 || code == 201, "create: {code} {vm}");
        let id = vm["id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| vm["id"].as_u64().map(|n| n.to_string()))
            .unwrap_or_else(|| panic!("id in {vm}"));
        let reads: Vec<u16> = (0..20)
            .map(|_| request(&addr2, "GET", &format!("/api/v1/vms/{id}"), "").0)
            .collect();
        (answered, id, reads)
    })
    .await
    .unwrap();
    assert_eq!(
        answered, expected,
        "every worker answers on the shared port"
    );
    assert!(
        reads.iter().all(|c| *c == 200),
        "VM {created} read back through both workers: {reads:?}"
    );

    // a small ws run against the two processes passes; 6 s sessions outlast the 2 s ramp and
    // 3 s hold, so all 20 connections are open at once and the concurrency target is met
    let dir = tempfile::tempdir().unwrap();
    let a = RunArgs {
        test: Some(TestName::Ws),
        api_url: Some(format!("http://{addr}")),
        profile: Some("smoke".into()),
        stages: vec!["2s:20".into(), "3s:20".into(), "1s:0".into()],
        ws_session: Some("6s".into()),
        out: dir.path().to_path_buf(),
        quiet: true,
        no_telemetry: true,
        timeout: "10s".into(),
        ..RunArgs::with_defaults()
    };
    let o = session::run(a, Stops::default()).await.unwrap();
    let s = &o.summaries[0];
    let missed: Vec<_> = s.thresholds.iter().filter(|t| !t.ok).collect();
    assert_eq!(s.verdict, Verdict::Pass, "missed: {missed:?}");
    assert_eq!(s.value("ws_connections_established", "count"), Some(20.0));
    assert_eq!(s.value("ws_connection_success", "rate"), Some(1.0));
    assert!(s.value("ws_messages_received", "count").unwrap_or(0.0) >= 60.0);

    // SIGTERM stops the parent and both workers
    let mut t = t;
    let status = Command::new("kill")
        .args(["-TERM", &t.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(st) = t.child.try_wait().unwrap() {
            break st.code();
        }
        assert!(Instant::now() < deadline, "the parent did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, Some(0));
    assert_eq!(
        wait_gone(&t.pids, Duration::from_secs(5)),
        Vec::<u32>::new()
    );
    assert!(TcpStream::connect(&addr).is_err(), "the port is closed");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "the temporary database is removed: {left:?}"
    );
}

#[test]
fn workers_do_not_outlive_a_killed_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = start(2, tmp.path());
    assert!(t.pids.iter().all(|p| alive(*p)));
    t.child.kill().unwrap(); // SIGKILL: the parent gets no chance to stop anyone
    t.child.wait().unwrap();
    let left = wait_gone(&t.pids, Duration::from_secs(20));
    assert!(left.is_empty(), "workers {left:?} outlived their parent");
}

#[test]
fn bad_worker_counts_name_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_novaload"))
        .args(["target", "--listen", "127.0.0.1:0", "--workers", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--workers"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_novaload"))
        .args([
            "target",
            "--listen",
            "127.0.0.1:0",
            "--ws-push-interval",
            "1ms",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--ws-push-interval"), "{err}");
}
