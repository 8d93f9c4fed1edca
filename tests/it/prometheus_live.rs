//! A real Prometheus scraping a real smoke run: `novaload target` and `novaload run all
//! --profile smoke` as processes, Prometheus (with the repo's alert and recording rules and
//! exemplar storage) scraping both, spans going to a real OTLP receiver (rotel) so exemplars
//! point at sampled traces. Then every dashboard query, recording rule and alert expression is
//! evaluated (tests/support/promql_eval.py) and must return data, except those listed in
//! alerts/silent-in-smoke.txt; and Prometheus must hold trace-id exemplars.
//!
//! Needs `prometheus` (Debian package) and rotel (PyPI); scripts/test.sh installs both. When
//! missing the test fails under CI and is skipped elsewhere.

use crate::support::ports::{Process, start_on_free_ports, wait_for_line, wait_listening};
use crate::support::runs::results_folder;
use crate::support::tools::{self, tool};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl Process for Kill {
    fn pid(&self) -> u32 {
        self.0.pid()
    }
    fn has_exited(&mut self) -> bool {
        self.0.has_exited()
    }
    fn stop(&mut self) {
        self.0.stop();
    }
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
    let Some(prometheus) = tool("prometheus", "apt-get install -y prometheus") else {
        return;
    };
    let Some(rotel) = tools::rotel() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let novaload = env!("CARGO_BIN_EXE_novaload");

    // rotel cannot listen on port 0: it is given two free ports (started again elsewhere if one
    // was taken meanwhile)
    let (_rotel, rotel_ports) = start_on_free_ports("rotel", 2, Duration::from_secs(30), |ports| {
        spawn(
            Command::new(&rotel)
                .args([
                    "start",
                    "--exporter",
                    "blackhole",
                    "--otlp-grpc-endpoint",
                    &format!("127.0.0.1:{}", ports[0]),
                    "--otlp-http-endpoint",
                    &format!("127.0.0.1:{}", ports[1]),
                ])
                .arg("--pid-file")
                .arg(d.join("rotel.pid"))
                .arg("--log-file")
                .arg(d.join("rotel-file.log")),
            &d.join("rotel.log"),
        )
    });
    let oport = rotel_ports[0];
    let _target = spawn(
        Command::new(novaload).args([
            "target",
            "--listen",
            "127.0.0.1:0",
            "--migration-time",
            "2s",
        ]),
        &d.join("target.log"),
    );
    let taddr = wait_for_line(
        &d.join("target.log"),
        "novaload target listening on http://",
        Duration::from_secs(30),
    );
    let taddr = taddr.split_whitespace().next().unwrap().to_string();
    wait_for(&format!("http://{taddr}/health"), Duration::from_secs(30));

    // The run's /metrics listens on port 0, so its address is known only once the run is up:
    // Prometheus reads the novaload job's target from a file written then.
    let novaload_targets = d.join("novaload-targets.json");
    std::fs::write(&novaload_targets, "[]").unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {ROOT}/alerts/novaload-rules.yml\nscrape_configs:\n  - job_name: novaload\n    file_sd_configs: [{{files: ['{}'], refresh_interval: 1s}}]\n  - job_name: target\n    static_configs: [{{targets: ['{taddr}']}}]\n",
        novaload_targets.display()
    );
    std::fs::write(d.join("prometheus.yml"), config).unwrap();
    // Prometheus listens on port 0 too; it logs the address as given, so the kernel is asked
    let mut prom = spawn(
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                d.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--enable-feature=exemplar-storage"),
        &d.join("prometheus.log"),
    );
    let paddr = wait_listening("prometheus", &mut prom, Duration::from_secs(30))[0];
    wait_for(&format!("http://{paddr}/-/ready"), Duration::from_secs(30));

    // the run, in the background, so we can look at its /metrics while it goes
    let mut run = spawn(
        Command::new(novaload)
            .args(["run", "all", "--profile", "smoke", "--run-id", "live-test"])
            .args(["--api-url", &format!("http://{taddr}")])
            // not --quiet: the run prints where /metrics listens
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--otlp-endpoint", &format!("http://127.0.0.1:{oport}")])
            .arg("--out")
            .arg(d.join("results")),
        &d.join("run.log"),
    );
    let maddr = wait_for_line(
        &d.join("run.log"),
        "novaload: live metrics on http://",
        Duration::from_secs(60),
    );
    let maddr = maddr.trim_end_matches("/metrics").to_string();
    let tmp = d.join("novaload-targets.json.tmp");
    std::fs::write(&tmp, format!("[{{\"targets\": [\"{maddr}\"]}}]")).unwrap();
    std::fs::rename(&tmp, &novaload_targets).unwrap();
    wait_for(&format!("http://{maddr}/metrics"), Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(12));
    let scrape = http_get(
        &format!("http://{maddr}/metrics"),
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
    let results = results_folder(&d.join("results")).expect("a results folder");
    let api: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("api_summary.json")).unwrap())
            .unwrap();
    let tel = &api["telemetry"];
    assert_eq!(tel["metrics_addr"], maddr, "{tel}");
    assert!(tel["spans_exported"].as_u64().unwrap_or(0) > 0, "{tel}");

    // Prometheus stored exemplars with trace ids
    let ex = http_get(
        &format!("http://{paddr}/api/v1/query_exemplars?query=http_client_request_duration_seconds_bucket&start={}&end={}", now() - 600, now() + 1),
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
            &format!("http://{paddr}"),
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
