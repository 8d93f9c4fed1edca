//! A real Prometheus scraping a real smoke run: `novaload target` and `novaload run all
//! --profile smoke` as processes, Prometheus (with the repo's alert and recording rules and
//! exemplar storage) scraping both, spans going to a real OTLP receiver (rotel) so exemplars
//! point at sampled traces. Then every dashboard query, recording rule and alert expression is
//! evaluated (tests/support/promql_eval.py) and must return data, except those listed in
//! alerts/silent-in-smoke.txt; and Prometheus must hold trace-id exemplars.
//!
//! Needs `prometheus` (Debian package) and rotel (PyPI); scripts/test.sh installs both. When
//! missing the test fails under CI and is skipped elsewhere.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn rotel() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NOVALOAD_TEST_ROTEL") {
        return Some(PathBuf::from(p));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import rotel, os; print(os.path.dirname(rotel.__file__))",
        ])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("rotel-agent");
    p.is_file().then_some(p)
}

fn need<T>(what: Option<T>, name: &str) -> Option<T> {
    if what.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{name} not found: run scripts/test.sh (it installs prometheus and rotel)");
        }
        eprintln!("SKIP: {name} not found (run scripts/test.sh)");
    }
    what
}

/// GETs a URL over plain HTTP/1.1 (no client library needed for a loopback test).
fn http_get(url: &str, accept: &str) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    Some(buf)
}

fn wait_for(url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if http_get(url, "*/*")
            .is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{url} did not come up within {within:?}");
}

fn spawn(cmd: &mut Command, log: &Path) -> Kill {
    let f = std::fs::File::create(log).unwrap();
    Kill(
        cmd.stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
    )
}

#[test]
fn prometheus_scrapes_a_smoke_run_and_every_query_has_data() {
    let Some(prometheus) = need(which("prometheus"), "prometheus") else {
        return;
    };
    let Some(rotel) = need(rotel(), "rotel") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let novaload = env!("CARGO_BIN_EXE_novaload");
    let (tport, mport, pport, oport, ohttp) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );

    let _rotel = spawn(
        Command::new(&rotel)
            .args([
                "start",
                "--exporter",
                "blackhole",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{oport}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{ohttp}"),
            ])
            .arg("--pid-file")
            .arg(d.join("rotel.pid"))
            .arg("--log-file")
            .arg(d.join("rotel-file.log")),
        &d.join("rotel.log"),
    );
    let _target = spawn(
        Command::new(novaload).args([
            "target",
            "--listen",
            &format!("127.0.0.1:{tport}"),
            "--migration-time",
            "2s",
        ]),
        &d.join("target.log"),
    );
    wait_for(
        &format!("http://127.0.0.1:{tport}/health"),
        Duration::from_secs(30),
    );

    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {ROOT}/alerts/novaload-rules.yml\nscrape_configs:\n  - job_name: novaload\n    static_configs: [{{targets: ['127.0.0.1:{mport}']}}]\n  - job_name: target\n    static_configs: [{{targets: ['127.0.0.1:{tport}']}}]\n"
    );
    std::fs::write(d.join("prometheus.yml"), config).unwrap();
    let _prom = spawn(
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                d.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
            .arg("--enable-feature=exemplar-storage"),
        &d.join("prometheus.log"),
    );
    wait_for(
        &format!("http://127.0.0.1:{pport}/-/ready"),
        Duration::from_secs(30),
    );

    // the run, in the background, so we can look at its /metrics while it goes
    let mut run = spawn(
        Command::new(novaload)
            .args([
                "run",
                "all",
                "--profile",
                "smoke",
                "--quiet",
                "--run-id",
                "live-test",
            ])
            .args(["--api-url", &format!("http://127.0.0.1:{tport}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{mport}")])
            .args(["--otlp-endpoint", &format!("http://127.0.0.1:{oport}")])
            .arg("--out")
            .arg(d.join("results")),
        &d.join("run.log"),
    );
    wait_for(
        &format!("http://127.0.0.1:{mport}/metrics"),
        Duration::from_secs(60),
    );
    std::thread::sleep(Duration::from_secs(12));
    let scrape = http_get(
        &format!("http://127.0.0.1:{mport}/metrics"),
        "application/openmetrics-text; version=1.0.0",
    )
    .unwrap();
    assert!(
        scrape.contains("application/openmetrics-text"),
        "OpenMetrics when asked"
    );
    assert!(
        scrape.contains("http_client_request_duration_seconds_bucket{"),
        "histogram series present"
    );
    assert!(
        scrape.contains("# {trace_id=\""),
        "exemplars on the latency histogram"
    );
    assert!(
        scrape.contains("run_id=\"live-test\"") && scrape.contains("test=\"api\""),
        "labels"
    );
    let deadline = Instant::now() + Duration::from_secs(150);
    let status = loop {
        if let Some(s) = run.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "smoke run did not finish in time"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        status.code().is_some_and(|c| c == 0 || c == 3),
        "run exit {status:?}: {}",
        std::fs::read_to_string(d.join("run.log")).unwrap_or_default()
    );
    std::thread::sleep(Duration::from_secs(3)); // last scrapes and rule evaluations

    // The summaries carry telemetry's final report: where /metrics was served, and the spans
    // the OTLP receiver (rotel) accepted.
    let results = std::fs::read_dir(d.join("results"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a results folder");
    let api: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("api_summary.json")).unwrap())
            .unwrap();
    let tel = &api["telemetry"];
    assert_eq!(tel["metrics_addr"], format!("127.0.0.1:{mport}"), "{tel}");
    assert!(tel["spans_exported"].as_u64().unwrap_or(0) > 0, "{tel}");

    // Prometheus stored exemplars with trace ids
    let ex = http_get(
        &format!("http://127.0.0.1:{pport}/api/v1/query_exemplars?query=http_client_request_duration_seconds_bucket&start={}&end={}", now() - 600, now() + 1),
        "application/json",
    )
    .unwrap();
    assert!(
        ex.contains("\"trace_id\""),
        "no exemplars in Prometheus: {}",
        &ex[..ex.len().min(600)]
    );

    // every dashboard query, recording rule and alert expression
    let out = Command::new("python3")
        .arg(format!("{ROOT}/tests/support/promql_eval.py"))
        .args([
            "--prometheus",
            &format!("http://127.0.0.1:{pport}"),
            "--lookback",
            "5m",
            "--step",
            "2s",
            "--var",
            "run_id=live-test",
        ])
        .arg("--json")
        .arg(d.join("promql.json"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "queries without data:\n{text}");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
