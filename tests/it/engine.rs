//! Engine integration tests: executors against a real HTTP server on port 0, coordinated-
//! omission correction, thresholds → verdicts, results files, Ctrl-C partial results.

use crate::support::http_server;
use crate::support::runs::{metric, quick_args};

use novaload::report::Verdict;
use novaload::session::{self, Stops};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_vus_run_writes_every_result_file() {
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = quick_args(&format!("http://{}/", srv.addr), dir.path());
    a.vus = Some(4);
    a.duration = Some("2s".into());
    a.thresholds = vec![
        "http_req_failed=rate<0.01".into(),
        "http_req_duration=p(95)<1000".into(),
    ];
    let o = session::run(a, Stops::default()).await.unwrap();
    assert_eq!(o.verdict, Verdict::Pass);
    let s = &o.summaries[0];
    let reqs = metric(s, "http_reqs", "count");
    assert!(reqs > 100.0, "only {reqs} requests");
    assert_eq!(
        reqs as u64,
        srv.requests.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(metric(s, "http_req_failed", "rate"), 0.0);
    assert_eq!(metric(s, "vus_max", "value"), 4.0);
    for f in ["SUMMARY.md", "url_summary.json", "url.json", "url.log"] {
        assert!(o.results_dir.join(f).exists(), "{f} missing");
    }
    // the JSON summary: schema version, serialized histograms, the k6 export view
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(o.results_dir.join("url_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["verdict"], "PASS");
    assert!(v["series"].as_array().unwrap().iter().any(|s| s["data"]["type"] == "trend" && !s["data"]["hdr"].as_str().unwrap().is_empty()));
    let k6 = &v["k6_summary_export"];
    assert!(k6["metrics"]["http_req_duration"]["p(95)"].is_number());
    assert!(
        k6["metrics"]["http_req_failed"]["value"].is_number(),
        "k6 export renames rate to value"
    );
    assert_eq!(
        k6["metrics"]["http_req_failed"]["thresholds"]["rate<0.01"], false,
        "k6 export: true means failed"
    );
    // the time series is NDJSON with declarations first
    let ts = std::fs::read_to_string(o.results_dir.join("url.json")).unwrap();
    let lines: Vec<serde_json::Value> = ts
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "Metric");
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "Second" && l["metric"] == "http_reqs")
    );
    // report re-renders SUMMARY.md from the JSON
    let before = std::fs::read_to_string(o.results_dir.join("SUMMARY.md")).unwrap();
    std::fs::remove_file(o.results_dir.join("SUMMARY.md")).unwrap();
    assert_eq!(
        novaload::results::report(&o.results_dir).unwrap(),
        Verdict::Pass
    );
    assert_eq!(
        std::fs::read_to_string(o.results_dir.join("SUMMARY.md")).unwrap(),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramping_vus_follow_the_stages() {
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("ramp.yaml");
    std::fs::write(
        &scenario,
        "scenarios:\n  ramp:\n    executor: ramping-vus\n    startVUs: 0\n    gracefulRampDown: 1s\n    stages:\n      - {duration: 2s, target: 6}\n      - {duration: 2s, target: 6}\n      - {duration: 1s, target: 0}\n",
    )
    .unwrap();
    let mut a = quick_args(&format!("http://{}/slow/20", srv.addr), dir.path());
    a.scenario = Some(scenario);
    let started = Instant::now();
    let o = session::run(a, Stops::default()).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(9), "ramp took {took:?}");
    let s = &o.summaries[0];
    assert_eq!(metric(s, "vus", "max"), 6.0);
    // VUs: 0→6 over 2 s (avg 3), 6 for 2 s, 6→0 over 1 s (avg 3): ~21 VU-seconds at ~45 it/s each
    let iters = metric(s, "iterations", "count");
    assert!((500.0..1100.0).contains(&iters), "{iters} iterations");
    // the per-second series shows the ramp: the first second has fewer VUs than the plateau
    let ts = std::fs::read_to_string(o.results_dir.join("url.json")).unwrap();
    let vus: Vec<f64> = ts
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["type"] == "Second" && l["metric"] == "vus")
        .map(|l| l["data"]["values"]["value"].as_f64().unwrap())
        .collect();
    assert!(vus.len() >= 4, "{vus:?}");
    assert!(vus[0] <= 4.0 && vus[2] == 6.0, "{vus:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrival_rate_is_accurate() {
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = quick_args(&format!("http://{}/", srv.addr), dir.path());
    a.rate = Some(200.0);
    a.duration = Some("3s".into());
    a.vus = Some(5);
    let o = session::run(a, Stops::default()).await.unwrap();
    let s = &o.summaries[0];
    let iters = metric(s, "iterations", "count");
    assert!(
        (594.0..=600.0).contains(&iters),
        "{iters} iterations for 200/s × 3 s"
    );
    assert!(s.value("dropped_iterations", "count").unwrap_or(0.0) == 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrival_rates_are_over_the_scheduled_window_not_the_last_arrival() {
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    // 0.5/s for 2 s is one arrival at 0 s: the rate is 0.5/s, not 1 over the iteration's 2 ms
    let mut a = quick_args(&format!("http://{}/", srv.addr), dir.path());
    a.rate = Some(0.5);
    a.duration = Some("2s".into());
    a.vus = Some(1);
    let o = session::run(a, Stops::default()).await.unwrap();
    let s = &o.summaries[0];
    assert_eq!(metric(s, "iterations", "count"), 1.0);
    assert!(
        (1.95..2.5).contains(&s.duration_s),
        "the run lasts its window: {} s",
        s.duration_s
    );
    let rate = metric(s, "iterations", "rate");
    assert!((0.4..=0.52).contains(&rate), "iterations/s {rate}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrected_latency_does_not_charge_the_dispatcher_timer() {
    // 1,500/s (starts 0.67 ms apart, off tokio's millisecond timer ticks) against an idle
    // server: a corrected sample is the raw one plus the pickup, not plus the timer's lateness
    // (which was ~1 ms at the median), and no start at the end of the schedule is dropped.
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = quick_args(&format!("http://{}/", srv.addr), dir.path());
    a.rate = Some(1500.0);
    a.duration = Some("2s".into());
    a.vus = Some(10);
    let o = session::run(a, Stops::default()).await.unwrap();
    let s = &o.summaries[0];
    let raw = metric(s, "http_req_duration", "med");
    let corrected = metric(s, "http_req_duration_corrected", "med");
    assert!(
        corrected - raw < 0.5,
        "corrected median {corrected} ms vs raw {raw} ms on an idle server"
    );
    assert!(s.value("dropped_iterations", "count").unwrap_or(0.0) == 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinated_omission_is_corrected_under_a_stall() {
    // 100 req/s with one connection; the server stalls for 1 s at t=1 s
    let srv = http_server::start(Some(http_server::Stall {
        after: Duration::from_millis(1000),
        len: Duration::from_secs(1),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = quick_args(&format!("http://{}/", srv.addr), dir.path());
    a.rate = Some(100.0);
    a.duration = Some("4s".into());
    a.vus = Some(1);
    a.max_vus = Some(1);
    let o = session::run(a, Stops::default()).await.unwrap();
    let s = &o.summaries[0];
    let raw_p99 = metric(s, "http_req_duration", "p(99)");
    let corrected_p99 = metric(s, "http_req_duration_corrected", "p(99)");
    let raw_max = metric(s, "http_req_duration", "max");
    assert!(
        raw_max >= 900.0,
        "the stalled request itself took {raw_max} ms"
    );
    assert!(
        raw_p99 < 200.0,
        "raw p99 {raw_p99} ms should hide the stall"
    );
    assert!(
        corrected_p99 >= 900.0,
        "corrected p99 {corrected_p99} ms should show the stall"
    );
    assert!(metric(s, "late_iterations", "count") >= 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_decide_the_verdict() {
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    // a failing error-rate threshold is critical: FAIL
    let mut a = quick_args(&format!("http://{}/status/500", srv.addr), dir.path());
    a.iterations = Some(20);
    a.vus = Some(2);
    a.thresholds = vec!["http_req_failed=rate<0.01".into()];
    let o = session::run(a, Stops::default()).await.unwrap();
    assert_eq!(o.verdict, Verdict::Fail);
    assert_eq!(o.summaries[0].errors_by_kind.get("status"), Some(&20));
    // a missed latency threshold alone is a WARNING
    let mut a = quick_args(&format!("http://{}/slow/30", srv.addr), dir.path());
    a.iterations = Some(10);
    a.thresholds = vec![
        "http_req_duration=p(95)<5".into(),
        "http_req_failed=rate<0.01".into(),
    ];
    let o = session::run(a, Stops::default()).await.unwrap();
    assert_eq!(o.verdict, Verdict::Warning);
    let md = std::fs::read_to_string(o.results_dir.join("SUMMARY.md")).unwrap();
    assert!(md.contains("⚠️ WARNING"), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_writes_partial_results() {
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = quick_args(&format!("http://{}/slow/10", srv.addr), dir.path());
    a.vus = Some(3);
    a.duration = Some("60s".into());
    let stops = Stops::default();
    let s2 = stops.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s2.interrupt.cancel();
    });
    let started = Instant::now();
    let o = session::run(a, stops).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "graceful stop took {:?}",
        started.elapsed()
    );
    assert!(o.interrupted);
    let s = &o.summaries[0];
    assert!(s.partial);
    assert!(metric(s, "http_reqs", "count") > 10.0);
    let md = std::fs::read_to_string(o.results_dir.join("SUMMARY.md")).unwrap();
    assert!(md.contains("Partial run"), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_is_not_sent_when_tracing_is_off_but_auth_headers_are() {
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = quick_args(&format!("http://{}/", srv.addr), dir.path());
    a.iterations = Some(1);
    a.headers = vec!["X-Test: yes".into()];
    session::run(a, Stops::default()).await.unwrap();
    let h = srv.last_headers.lock().unwrap().clone();
    assert!(h.iter().any(|(k, v)| k == "x-test" && v == "yes"), "{h:?}");
    assert!(
        h.iter()
            .any(|(k, v)| k == "user-agent" && v.starts_with("novaload/"))
    );
}

/// `--vu-threads`: VUs on their own event loops run every kind of executor as the shared
/// runtime does (a ramp's VU count, an arrival rate's exact count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vu_threads_run_ramps_and_arrival_rates_as_the_shared_runtime_does() {
    let srv = http_server::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("two.yaml");
    std::fs::write(
        &scenario,
        "scenarios:\n  ramp:\n    executor: ramping-vus\n    startVUs: 0\n    gracefulRampDown: 1s\n    stages:\n      - {duration: 1s, target: 4}\n      - {duration: 2s, target: 4}\n  rate:\n    executor: constant-arrival-rate\n    rate: 100\n    timeUnit: 1s\n    duration: 3s\n    preAllocatedVUs: 3\n",
    )
    .unwrap();
    let mut a = quick_args(&format!("http://{}/slow/20", srv.addr), dir.path());
    a.scenario = Some(scenario);
    a.vu_threads = Some(2);
    let o = session::run(a, Stops::default()).await.unwrap();
    let s = &o.summaries[0];
    assert_eq!(metric(s, "http_req_failed", "rate"), 0.0);
    assert_eq!(metric(s, "vus_max", "max"), 7.0);
    assert!(metric(s, "vus", "max") >= 4.0);
    assert!(s.value("dropped_iterations", "count").unwrap_or(0.0) == 0.0);
    // iterations per scenario, from the summary's series
    let per_scenario = |name: &str| -> f64 {
        s.series
            .iter()
            .filter(|x| x.metric == "iterations" && x.tags.scenario.as_deref() == Some(name))
            .map(|x| match x.data.to_agg() {
                Ok(novaload::metrics::Agg::Counter { sum }) => sum,
                other => panic!("{other:?}"),
            })
            .sum()
    };
    let rate = per_scenario("rate");
    assert!(
        (294.0..=300.0).contains(&rate),
        "{rate} arrival-rate iterations"
    );
    // 0→4 VUs over 1 s, then 4 for 2 s: ~10 VU-seconds at up to ~45 iterations/s each
    let ramp = per_scenario("ramp");
    assert!((200.0..600.0).contains(&ramp), "{ramp} ramp iterations");
}
