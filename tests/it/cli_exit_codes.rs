//! The binary's contract: exit codes per verdict, bad input exits 2 with a message naming the
//! field and the fix (and writes nothing), Ctrl-C writes partial results and exits 105.

use crate::support::http_server;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_novaload");

fn run(args: &[&str], out: &std::path::Path) -> (i32, String) {
    let o = Command::new(BIN)
        .args(["run", "-q", "--no-telemetry"])
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn result_dirs(out: &std::path::Path) -> usize {
    std::fs::read_dir(out).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_map_to_exit_codes() {
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://{}", srv.addr);
    let d = dir.path().to_path_buf();
    let b = base.clone();
    let codes = tokio::task::spawn_blocking(move || {
        let pass = run(
            &[
                "--url",
                &format!("{b}/"),
                "--iterations",
                "5",
                "--threshold",
                "http_req_failed=rate<0.01",
            ],
            &d,
        );
        let warn = run(
            &[
                "--url",
                &format!("{b}/slow/20"),
                "--iterations",
                "3",
                "--threshold",
                "http_req_duration=p(95)<1",
            ],
            &d,
        );
        let fail = run(
            &[
                "--url",
                &format!("{b}/status/503"),
                "--iterations",
                "3",
                "--threshold",
                "http_req_failed=rate<0.01",
            ],
            &d,
        );
        (pass, warn, fail)
    })
    .await
    .unwrap();
    assert_eq!(codes.0.0, 0, "{}", codes.0.1);
    assert_eq!(codes.1.0, 3, "{}", codes.1.1);
    assert_eq!(codes.2.0, 99, "{}", codes.2.1);
}

#[test]
fn bad_input_exits_2_naming_the_field_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let scen = dir.path().join("bad.json");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--url".into(),
                "http://127.0.0.1:1/".into(),
                "--duration".into(),
                "10 parsecs".into(),
            ],
            "--duration",
        ),
        (
            vec![
                "--url".into(),
                "http://127.0.0.1:1/".into(),
                "--iterations".into(),
                "1".into(),
                "--threshold".into(),
                "http_req_duration=p95<1".into(),
            ],
            "thresholds.http_req_duration",
        ),
        (
            vec![
                "--url".into(),
                "http://127.0.0.1:1/".into(),
                "--iterations".into(),
                "1".into(),
            ],
            "--url",
        ),
        (vec!["--url".into(), "ftp://127.0.0.1/".into()], "--url"),
        (
            vec![
                "--scenario".into(),
                scen.display().to_string(),
                "--url".into(),
                "http://127.0.0.1:1/".into(),
            ],
            "scenarios.s.executor",
        ),
        (
            vec!["api".into(), "--profile".into(), "gigantic".into()],
            "--profile",
        ),
    ];
    std::fs::write(&scen, r#"{"scenarios":{"s":{"executor":"warp-drive"}}}"#).unwrap();
    for (args, field) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, err) = run(&args, &out);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(&format!("invalid {field}")),
            "{args:?} should name {field}: {err}"
        );
        assert!(
            err.contains("fix:"),
            "{args:?} should say how to fix it: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(
        result_dirs(&out),
        0,
        "bad input must not leave results folders"
    );
    // an unwritable --out is also bad input
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let srv = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", srv.local_addr().unwrap());
    let (code, err) = run(&["--url", &url, "--iterations", "1"], &file.join("sub"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid --out"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_writes_partial_results_and_exits_105() {
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let mut child = Command::new(BIN)
        .args([
            "run",
            "-q",
            "--no-telemetry",
            "--url",
            &format!("http://{}/slow/5", srv.addr),
            "--vus",
            "4",
            "--duration",
            "5m",
        ])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "graceful stop is bounded by gracefulStop"
    );
    assert_eq!(status.code(), Some(105));
    let run_dir = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("url_summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["partial"], true);
    assert!(
        summary["metrics"]["http_reqs"]["values"]["count"]
            .as_f64()
            .unwrap()
            > 10.0
    );
    let md = std::fs::read_to_string(run_dir.join("SUMMARY.md")).unwrap();
    assert!(
        md.contains("Partial run") && md.contains("interrupted by Ctrl-C/SIGTERM"),
        "{md}"
    );
}
