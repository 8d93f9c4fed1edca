//! novaload against a hostile server: absurd Content-Length, an overflowing chunk size, an
//! endless body, redirect chains and loops, 500s, a self-signed certificate, credentials in the
//! URL, a database that refuses, zero-length runs, absurd VU counts and a run where nothing
//! completes. Each case runs the real binary as a subprocess (as a user or CI would) against a
//! server on 127.0.0.1 port 0 (`support/hostile_server.rs`), and checks the exit code, that no
//! panic text reached stderr, peak memory where it matters, and what the results say.
//!
//! Exit codes: 0 PASS, 2 bad input (refused before anything starts), 3 WARNING, 99 FAIL.

use crate::support::hostile_server;
use crate::support::ports::refusing_port;
use crate::support::runs::results_folder;

use hostile_server::{Behaviour, HostileServer};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_novaload");
/// A run still going after this is killed, so a hang fails the test instead of hanging CI.
const KILL_AFTER: Duration = Duration::from_secs(60);
/// A run whose peak RSS passes this is killed: the machine must survive a product that
/// allocates per VU or buffers an endless body (every assertion on memory is far below it).
const KILL_ABOVE_RSS_KIB: u64 = 1024 * 1024;
/// How often the child's peak RSS (VmHWM) is sampled: every 10 ms for the first 2 s, so a
/// run refused at once (the 10^9 VUs case) is still sampled while it lives, then every 100 ms.
const RSS_POLL_EARLY: Duration = Duration::from_millis(10);
const RSS_POLL_EARLY_FOR: Duration = Duration::from_secs(2);
const RSS_POLL: Duration = Duration::from_millis(100);
/// Text that only appears on stderr when the process panicked or aborted on allocation.
const PANIC_MARKERS: [&str; 3] = ["panicked", "memory allocation of", "RUST_BACKTRACE"];
/// Exit codes of the contract.
const PASS: i32 = 0;
const BAD_INPUT: i32 = 2;
const FAIL: i32 = 99;
/// The limit the memory assertions use.
const RSS_LIMIT_KIB: u64 = 200 * 1024;
/// Environment variables novaload reads, kept only when the test passes them explicitly.
const KEPT_ENV: [&str; 4] = ["PATH", "HOME", "TMPDIR", "LANG"];

/// One finished (or killed) novaload process.
struct Run {
    args: Vec<String>,
    /// None when killed by a signal.
    code: Option<i32>,
    killed_for: Option<&'static str>,
    stdout: String,
    stderr: String,
    wall: Duration,
    peak_rss_kib: u64,
    /// `--out` base folder; results are in `<out>/<UTC timestamp>/`.
    out: tempfile::TempDir,
}

/// Runs `novaload run ARGS --quiet --out <tempdir>` with a clean environment, sampling its
/// peak RSS every 100 ms and killing it after [`KILL_AFTER`] or above [`KILL_ABOVE_RSS_KIB`].
fn novaload(args: &[&str]) -> Run {
    let out = tempfile::tempdir().expect("a temporary results folder");
    let mut cmd = Command::new(BIN);
    cmd.arg("run")
        .args(args)
        .arg("--quiet")
        .arg("--out")
        .arg(out.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // API_URL, DATABASE_URL, OTEL_* and friends from the developer's shell must not change
        // what a case runs against
        .env_clear();
    for k in KEPT_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    {
        // its own process group, so a hang kills novaload and any worker it started
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("starting the novaload binary");
    let pid = child.id();
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let mut peak_rss_kib = 0;
    let mut killed_for = None;
    // bounded in time by KILL_AFTER (the child is killed, then reaped on a later pass), in
    // count by the poll interval
    let status = loop {
        peak_rss_kib = peak_rss_kib.max(vm_hwm_kib(pid).unwrap_or(0));
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        if started.elapsed() > KILL_AFTER + Duration::from_secs(10) {
            // killed 10 s ago and still not gone: give up on it rather than hang the test
            break None;
        }
        if killed_for.is_none() {
            if started.elapsed() > KILL_AFTER {
                killed_for = Some("still running after 60 s");
            } else if peak_rss_kib > KILL_ABOVE_RSS_KIB {
                killed_for = Some("peak RSS above 1 GiB");
            }
            if killed_for.is_some() {
                kill_group(pid);
            }
        }
        std::thread::sleep(if started.elapsed() < RSS_POLL_EARLY_FOR {
            RSS_POLL_EARLY
        } else {
            RSS_POLL
        });
    };
    let wall = started.elapsed();
    let stdout = collect(stdout, pid);
    let stderr = collect(stderr, pid);
    let run = Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status.and_then(|s| s.code()),
        killed_for,
        stdout,
        stderr,
        wall,
        peak_rss_kib,
        out,
    };
    // HOSTILE_VERBOSE=1 cargo test --test it hostile:: -- --nocapture: every run's outcome, for
    // checking that passing cases pass for the right reason
    if std::env::var_os("HOSTILE_VERBOSE").is_some() {
        eprintln!("{}", run.context());
    }
    run
}

/// Reads a pipe to its end on a thread (so a chatty child never blocks on a full pipe).
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
    }
    rx
}

/// The text of a drained pipe. A worker process left holding the pipe open would block the
/// reader forever: after 5 s its process group is killed and whatever arrived is used.
fn collect(rx: std::sync::mpsc::Receiver<String>, pid: u32) -> String {
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(s) => s,
        Err(_) => {
            kill_group(pid);
            rx.recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| "<output pipe never closed>".into())
        }
    }
}

/// SIGKILL to the process group this test started (its leader is the novaload child, so the
/// group id is the child's pid). The crate forbids `unsafe`, so kill(1) sends it.
fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Peak resident set size of a live process, from `/proc/<pid>/status` (`VmHWM:  1234 kB`).
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

impl Run {
    /// Everything a failed assertion needs to explain itself.
    fn context(&self) -> String {
        let tail = |s: &str| {
            let start = s.len().saturating_sub(3000);
            let start = (start..=s.len())
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(s.len());
            s[start..].to_string()
        };
        format!(
            "\n--- novaload run {:?}\nexit code {:?}{}, wall {:.1} s, peak RSS {} MiB\n--- stderr (tail):\n{}\n--- stdout (tail):\n{}\n--- SUMMARY.md:\n{}",
            self.args,
            self.code,
            self.killed_for
                .map(|r| format!(" (killed: {r})"))
                .unwrap_or_default(),
            self.wall.as_secs_f64(),
            self.peak_rss_kib / 1024,
            tail(&self.stderr),
            tail(&self.stdout),
            self.results_dir()
                .and_then(|d| std::fs::read_to_string(d.join("SUMMARY.md")).ok())
                .map(|s| tail(&s))
                .unwrap_or_else(|| "<none>".into()),
        )
    }

    /// Asserts the exit code, that the run was not killed, and that nothing panicked.
    fn assert_exit(&self, expected: i32) {
        assert!(
            self.killed_for.is_none(),
            "the run was killed{}",
            self.context()
        );
        assert_eq!(
            self.code,
            Some(expected),
            "exit code (0 PASS, 2 bad input, 3 WARNING, 99 FAIL, 101 panic){}",
            self.context()
        );
        self.assert_no_panic();
    }

    fn assert_no_panic(&self) {
        for marker in PANIC_MARKERS {
            assert!(
                !self.stderr.contains(marker) && !self.stdout.contains(marker),
                "panic text `{marker}` in the output{}",
                self.context()
            );
        }
    }

    /// Asserts a bad-input refusal: exit 2 within `within`, nothing written to the results
    /// folder, and stderr naming `field`.
    fn assert_refused(&self, field: &str, within: Duration) {
        self.assert_exit(BAD_INPUT);
        assert!(
            self.wall <= within,
            "refusing took {:.1} s, expected <= {:.0} s{}",
            self.wall.as_secs_f64(),
            within.as_secs_f64(),
            self.context()
        );
        assert!(
            self.stderr.contains(field),
            "stderr does not name `{field}`{}",
            self.context()
        );
        assert!(
            self.results_dir().is_none(),
            "bad input must be refused before any result is written{}",
            self.context()
        );
    }

    /// The run's `<out>/<UTC timestamp>/` folder, if one was created.
    fn results_dir(&self) -> Option<PathBuf> {
        results_folder(self.out.path()).ok()
    }

    /// SUMMARY.md of the run (the test fails with the run's output when there is none).
    fn summary_md(&self) -> String {
        self.results_dir()
            .and_then(|d| std::fs::read_to_string(d.join("SUMMARY.md")).ok())
            .unwrap_or_else(|| panic!("no SUMMARY.md was written{}", self.context()))
    }

    /// `<stem>_summary.json` of the run.
    fn summary_json(&self, stem: &str) -> serde_json::Value {
        let path = self
            .results_dir()
            .map(|d| d.join(format!("{stem}_summary.json")))
            .unwrap_or_else(|| panic!("no results folder{}", self.context()));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}{}", path.display(), self.context()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}{}", path.display(), self.context()))
    }

    /// `metrics.<metric>.values.<value>` of `url_summary.json` (quick mode's results stem).
    fn url_metric(&self, metric: &str, value: &str) -> Option<f64> {
        self.summary_json("url")["metrics"][metric]["values"][value].as_f64()
    }

    /// Asserts SUMMARY.md contains `needle` (case-insensitively when asked).
    fn assert_summary_mentions(&self, needle: &str, case_insensitive: bool) {
        let md = self.summary_md();
        let found = if case_insensitive {
            md.to_lowercase().contains(&needle.to_lowercase())
        } else {
            md.contains(needle)
        };
        assert!(
            found,
            "SUMMARY.md does not mention `{needle}`{}",
            self.context()
        );
    }

    /// Every file under the results folder, recursively (bounded: a results folder holds a
    /// handful of files in at most a few levels).
    fn result_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut pending = vec![self.out.path().to_path_buf()];
        for _ in 0..10_000 {
            let Some(dir) = pending.pop() else { break };
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.filter_map(|e| e.ok()) {
                let p = e.path();
                if p.is_dir() {
                    pending.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        files
    }

    /// Asserts `secret` appears in no result file, nor on stderr or stdout.
    fn assert_secret_absent(&self, secret: &str) {
        for f in self.result_files() {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "the secret `{secret}` is written in {}{}",
                f.display(),
                self.context()
            );
        }
        assert!(
            !self.stderr.contains(secret),
            "the secret `{secret}` is on stderr{}",
            self.context()
        );
        assert!(
            !self.stdout.contains(secret),
            "the secret `{secret}` is on stdout{}",
            self.context()
        );
    }
}

/// Asserts `json.errors_by_kind.<kind>` counted at least one failure.
fn assert_error_kind_counted(run: &Run, stem: &str, kind: &str) {
    let n = run.summary_json(stem)["errors_by_kind"][kind]
        .as_u64()
        .unwrap_or(0);
    assert!(
        n > 0,
        "{stem}_summary.json errors_by_kind has no `{kind}` failures{}",
        run.context()
    );
}

// 1. -------------------------------------------------------------------------------------------

#[test]
fn absurd_content_length_fails_as_a_protocol_error_naming_content_length() {
    let server = HostileServer::start(Behaviour::ByPath);
    let url = format!("{}/absurd-length", server.base_url());
    let run = novaload(&["--url", &url, "--vus", "1", "--duration", "2s"]);
    run.assert_exit(FAIL);
    run.assert_summary_mentions("❌ FAIL", false);
    run.assert_summary_mentions("protocol", false);
    run.assert_summary_mentions("Content-Length", true);
    assert_error_kind_counted(&run, "url", "protocol");
}

// 2. -------------------------------------------------------------------------------------------

#[test]
fn overflowing_chunk_size_fails_as_a_protocol_error() {
    let server = HostileServer::start(Behaviour::ByPath);
    let url = format!("{}/huge-chunk", server.base_url());
    let run = novaload(&["--url", &url, "--vus", "1", "--duration", "2s"]);
    run.assert_exit(FAIL);
    run.assert_summary_mentions("❌ FAIL", false);
    run.assert_summary_mentions("protocol", false);
    run.assert_summary_mentions("chunk", true);
    assert_error_kind_counted(&run, "url", "protocol");
}

#[test]
fn overflowing_chunk_size_in_every_api_answer_fails_the_api_test_without_panicking() {
    let server = HostileServer::start(Behaviour::HugeChunkEverywhere);
    let api_url = server.base_url();
    let run = novaload(&[
        "api",
        "--api-url",
        &api_url,
        "--duration",
        "3s",
        "--vus",
        "1",
    ]);
    // 101 would be Rust's panic exit code
    run.assert_exit(FAIL);
    run.assert_summary_mentions("❌ FAIL", false);
}

// 3. -------------------------------------------------------------------------------------------

#[test]
fn endless_body_is_cut_at_the_request_timeout_with_bounded_memory() {
    let server = HostileServer::start(Behaviour::ByPath);
    let url = format!("{}/endless", server.base_url());
    let run = novaload(&[
        "--url",
        &url,
        "--vus",
        "1",
        "--duration",
        "3s",
        "--timeout",
        "1s",
    ]);
    run.assert_exit(FAIL);
    let longest = run
        .url_metric("http_req_duration", "max")
        .unwrap_or_else(|| {
            panic!(
                "url_summary.json has no metrics.http_req_duration.values.max{}",
                run.context()
            )
        });
    assert!(
        longest <= 1100.0,
        "the longest request took {longest} ms with --timeout 1s{}",
        run.context()
    );
    assert!(
        run.peak_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} MiB reading an endless body (limit 200 MiB){}",
        run.peak_rss_kib / 1024,
        run.context()
    );
    run.assert_summary_mentions("timeout", true);
}

// 4. -------------------------------------------------------------------------------------------

#[test]
fn redirect_hops_are_followed_and_each_counted_as_a_request() {
    let server = HostileServer::start(Behaviour::ByPath);
    // /r/2 -> /r/1 -> /r/0 -> /ok: four requests per iteration, as k6 records them
    let url = format!("{}/r/2", server.base_url());
    let run = novaload(&["--url", &url, "--iterations", "5", "--vus", "1"]);
    run.assert_exit(PASS);
    assert_eq!(
        run.url_metric("http_reqs", "count"),
        Some(20.0),
        "http_reqs for 5 iterations of a 3-hop redirect chain{}",
        run.context()
    );
}

#[test]
fn redirect_loop_fails_as_a_redirect_error() {
    let server = HostileServer::start(Behaviour::ByPath);
    let url = format!("{}/loop", server.base_url());
    let run = novaload(&["--url", &url, "--iterations", "5", "--vus", "1"]);
    run.assert_exit(FAIL);
    run.assert_summary_mentions("❌ FAIL", false);
    run.assert_summary_mentions("redirect", true);
}

#[test]
fn max_redirects_zero_takes_the_302_as_the_answer() {
    let server = HostileServer::start(Behaviour::ByPath);
    let url = format!("{}/r/0", server.base_url());
    let run = novaload(&[
        "--url",
        &url,
        "--iterations",
        "5",
        "--vus",
        "1",
        "--max-redirects",
        "0",
    ]);
    run.assert_exit(PASS);
    assert_eq!(
        run.url_metric("http_reqs", "count"),
        Some(5.0),
        "http_reqs with --max-redirects 0: one request per iteration{}",
        run.context()
    );
}

// 5. -------------------------------------------------------------------------------------------

#[test]
fn server_errors_fail_the_default_http_req_failed_threshold() {
    let server = HostileServer::start(Behaviour::ByPath);
    let url = format!("{}/500", server.base_url());
    let run = novaload(&["--url", &url, "--vus", "1", "--duration", "2s"]);
    run.assert_exit(FAIL);
    run.assert_summary_mentions("❌ FAIL", false);
    run.assert_summary_mentions("http_req_failed", false);
}

#[test]
fn a_user_http_req_failed_threshold_replaces_the_default() {
    let server = HostileServer::start(Behaviour::ByPath);
    let url = format!("{}/500", server.base_url());
    let run = novaload(&[
        "--url",
        &url,
        "--vus",
        "1",
        "--duration",
        "2s",
        "--threshold",
        "http_req_failed=rate<=1",
    ]);
    run.assert_exit(PASS);
}

// 6. -------------------------------------------------------------------------------------------

#[test]
fn self_signed_certificate_fails_as_tls_unknown_issuer_without_cacert() {
    let certs = tempfile::tempdir().expect("a folder for the certificate");
    let (cert, key) = hostile_server::self_signed_certificate(certs.path());
    let server = HostileServer::start_tls(&cert, &key);
    let url = format!("https://localhost:{}/ok", server.port());
    let run = novaload(&["--url", &url, "--iterations", "3", "--vus", "1"]);
    run.assert_exit(FAIL);
    run.assert_summary_mentions("❌ FAIL", false);
    run.assert_summary_mentions("tls", false);
    run.assert_summary_mentions("issuer", true);
}

#[test]
fn self_signed_certificate_is_trusted_with_cacert() {
    let certs = tempfile::tempdir().expect("a folder for the certificate");
    let (cert, key) = hostile_server::self_signed_certificate(certs.path());
    let server = HostileServer::start_tls(&cert, &key);
    let cacert = cert.display().to_string();
    // the certificate names both: each must verify
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{}/ok", server.port());
        let run = novaload(&[
            "--url",
            &url,
            "--iterations",
            "3",
            "--vus",
            "1",
            "--cacert",
            &cacert,
        ]);
        run.assert_exit(PASS);
    }
}

// 7. -------------------------------------------------------------------------------------------

#[test]
fn basic_auth_from_the_url_is_sent_and_never_written() {
    let server = HostileServer::start(Behaviour::ByPath);
    let url = format!("http://user:p%40ss@{}/auth", server.addr);
    // /auth answers 401 unless the credentials arrive: exit 0 means they were sent, decoded
    let run = novaload(&["--url", &url, "--iterations", "3"]);
    run.assert_exit(PASS);
    assert!(
        !run.result_files().is_empty(),
        "no result files to check{}",
        run.context()
    );
    run.assert_secret_absent("p%40ss");
    run.assert_secret_absent("p@ss");
    // the Authorization header value carries the same password, base64-encoded
    run.assert_secret_absent(hostile_server::EXPECTED_AUTHORIZATION.trim_start_matches("Basic "));
}

// 8. -------------------------------------------------------------------------------------------

/// `run db` against a database URL whose port does not speak PostgreSQL: refused as bad input,
/// quickly, naming the flag and the reason, never printing the password.
fn assert_database_refusal(port: u16, reasons: &[&str]) {
    let db_url = format!("postgres://nova:hunter2@127.0.0.1:{port}/x");
    let run = novaload(&["db", "--database-url", &db_url, "--duration", "2s"]);
    run.assert_exit(BAD_INPUT);
    assert!(
        run.wall <= Duration::from_secs(10),
        "refusing an unreachable database took {:.1} s (limit 10 s){}",
        run.wall.as_secs_f64(),
        run.context()
    );
    assert!(
        run.stderr.contains("--database-url"),
        "stderr does not name --database-url{}",
        run.context()
    );
    let stderr = run.stderr.to_lowercase();
    assert!(
        reasons.iter().any(|r| stderr.contains(r)),
        "stderr gives none of the reasons {reasons:?}{}",
        run.context()
    );
    run.assert_secret_absent("hunter2");
}

#[test]
fn a_database_port_that_accepts_and_closes_is_refused_naming_the_flag() {
    let server = HostileServer::start(Behaviour::AcceptAndClose);
    assert_database_refusal(
        server.port(),
        &["closed", "refused", "reset", "eof", "end of file"],
    );
}

#[test]
fn a_database_port_that_refuses_connections_is_refused_naming_the_flag() {
    // bound and not listening: a real ECONNREFUSED, and no other process can take the port
    let (_refusing, port) = refusing_port();
    assert_database_refusal(port, &["refused"]);
}

// 9. -------------------------------------------------------------------------------------------

#[test]
fn zero_length_runs_are_refused_naming_the_field() {
    let server = HostileServer::start(Behaviour::ByPath);
    let url = format!("{}/ok", server.base_url());
    let within = Duration::from_secs(5);

    novaload(&["--url", &url, "--duration", "0s"]).assert_refused("--duration", within);
    novaload(&["--url", &url, "--stage", "0s:10"]).assert_refused("--stage", within);

    let files = tempfile::tempdir().expect("a folder for scenario files");
    let yaml = files.path().join("empty.yaml");
    std::fs::write(&yaml, "# nothing here\n").expect("writing empty.yaml");
    let toml = files.path().join("empty.toml");
    std::fs::write(&toml, "").expect("writing empty.toml");
    for scenario in [&yaml, &toml] {
        let path = scenario.display().to_string();
        novaload(&["--url", &url, "--scenario", &path]).assert_refused("--scenario", within);
    }
}

// 10. ------------------------------------------------------------------------------------------

#[test]
fn an_absurd_vu_count_is_refused_before_allocating() {
    let server = HostileServer::start(Behaviour::ByPath);
    let url = format!("{}/ok", server.base_url());
    let run = novaload(&["--url", &url, "--vus", "1000000000", "--duration", "1s"]);
    run.assert_exit(BAD_INPUT);
    assert!(
        run.wall <= Duration::from_secs(5),
        "refusing 10^9 VUs took {:.1} s (limit 5 s){}",
        run.wall.as_secs_f64(),
        run.context()
    );
    assert!(
        run.peak_rss_kib < RSS_LIMIT_KIB,
        "peak RSS {} MiB refusing 10^9 VUs (limit 200 MiB){}",
        run.peak_rss_kib / 1024,
        run.context()
    );
    assert!(
        run.stderr.contains("--local-workers") || run.stderr.contains("--segment"),
        "stderr suggests neither --local-workers nor --segment{}",
        run.context()
    );
    assert!(
        run.results_dir().is_none(),
        "bad input must be refused before any result is written{}",
        run.context()
    );
}

// 11. ------------------------------------------------------------------------------------------

#[test]
fn a_run_where_no_request_completes_says_it_measured_nothing() {
    let server = HostileServer::start(Behaviour::ByPath);
    let url = format!("{}/hang", server.base_url());
    let files = tempfile::tempdir().expect("a folder for the scenario file");
    let scenario = files.path().join("s.json");
    std::fs::write(
        &scenario,
        r#"{"scenarios":{"hang":{"executor":"constant-vus","vus":2,"duration":"1s","gracefulStop":"0s"}}}"#,
    )
    .expect("writing s.json");
    let scenario = scenario.display().to_string();
    // Quick mode reads --scenario together with --url (session::url_plan), but --vus and
    // --duration replace the file's scenarios, gracefulStop included (apply_overrides, as k6
    // does): the file alone carries the 2 VUs for 1 s.
    let run = novaload(&["--url", &url, "--scenario", &scenario, "--timeout", "5s"]);
    run.assert_exit(FAIL);
    run.assert_summary_mentions("❌ FAIL", false);
    run.assert_summary_mentions("measured nothing", true);
}
