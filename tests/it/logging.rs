//! Log events reach the user: warnings on stderr by default, debug events with `-v`, plain
//! text (no colour codes) when stderr is not a terminal.

use crate::support::http_server;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_novaload");

/// A server that answers every request `200 ok` cannot create the db test's seed VMs (it
/// wants 201): the workload's warning must be on stderr without any flag.
#[test]
fn a_warning_is_on_stderr_by_default_without_colour_codes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt.block_on(http_server::start(None));
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(["run", "db", "--api-url", &format!("http://{}", srv.addr)])
        .args(["--vus", "1", "--duration", "1s", "-q", "--no-html", "--out"])
        .arg(out.path())
        .env_remove("RUST_LOG")
        .env_remove("DATABASE_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("WARN") && stderr.contains("created fewer seed VMs than asked"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "escape codes in a pipe: {stderr:?}"
    );
    drop(rt);
}

/// The reference server's debug event ("seeded VMs") shows with `-v`, not without it.
#[test]
fn debug_events_show_with_v_only() {
    for (verbose, shown) in [(false, false), (true, true)] {
        let mut cmd = Command::new(BIN);
        if verbose {
            cmd.arg("-v");
        }
        let mut child = cmd
            .args(["target", "--listen", "127.0.0.1:0", "--seed-vms", "10"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // the seed happens before the server listens: once it listens, stderr has it or not
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let started = Instant::now();
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "target exited");
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "target never listened"
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(
            stderr.contains("seeded VMs"),
            shown,
            "-v {verbose}: {stderr}"
        );
    }
}
