//! The four NovaCron workloads against the reference target on port 0: they pass their checks
//! on a healthy target, and the verdict follows the target's injected faults (errors → FAIL,
//! latency → WARNING, dropped WebSockets → connection success below 95 % → FAIL).

use novaload::cli::{RunArgs, TestName};
use novaload::novacron::{self, TargetArgs, TargetHandle};
use novaload::report::{Summary, Verdict};
use novaload::session::{self, Stops};
use std::time::Duration;

async fn target(tweak: impl FnOnce(&mut TargetArgs)) -> TargetHandle {
    let mut a = TargetArgs::embedded();
    a.migration_time = Duration::from_millis(1500);
    tweak(&mut a);
    novacron::spawn(a, None).await.unwrap()
}

fn args(test: Option<TestName>, api_url: &str, out: &std::path::Path) -> RunArgs {
    RunArgs {
        test,
        api_url: Some(api_url.to_string()),
        profile: Some("smoke".into()),
        out: out.to_path_buf(),
        quiet: true,
        timeout: "10s".into(),
        ..RunArgs::with_defaults()
    }
}

fn failed_checks(s: &Summary) -> Vec<String> {
    s.checks
        .iter()
        .filter(|c| c.fails > 0)
        .map(|c| format!("{} ({} fails)", c.name, c.fails))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_four_workloads_pass_against_the_reference_target() {
    let t = target(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(Some(TestName::All), &t.base_url(), dir.path());
    a.vus = Some(2);
    a.iterations = Some(2);
    a.parallel = true;
    let o = session::run(a, Stops::default()).await.unwrap();
    let tests: Vec<_> = o.summaries.iter().map(|s| s.test.as_str()).collect();
    assert_eq!(tests, ["api", "dwcp", "ws", "db"]);
    for s in &o.summaries {
        assert!(
            failed_checks(s).is_empty(),
            "{}: failed checks {:?}",
            s.test,
            failed_checks(s)
        );
        assert!(
            s.checks.iter().map(|c| c.passes).sum::<u64>() > 10,
            "{}: too few checks",
            s.test
        );
        let failed: Vec<_> = s
            .thresholds
            .iter()
            .filter(|t| !t.ok)
            .map(|t| format!("{} {} measured {:?}", t.metric, t.threshold, t.measured))
            .collect();
        // smoke targets for throughput/concurrency assume the smoke stages, not 2 iterations
        assert!(s.verdict != Verdict::Fail, "{}: {failed:?}", s.test);
    }
    for f in [
        "SUMMARY.md",
        "api_summary.json",
        "dwcp_summary.json",
        "websocket_summary.json",
        "database_summary.json",
        "api.json",
        "websocket.log",
    ] {
        assert!(o.results_dir.join(f).exists(), "{f} missing");
    }
    // error Rates count successes too (upstream defect B1): the api test's `errors` has samples
    let api = &o.summaries[0];
    assert_eq!(api.value("errors", "rate"), Some(0.0));
    assert!(api.value("errors", "fails").unwrap() >= 10.0);
    let ws = &o.summaries[2];
    assert_eq!(ws.value("ws_connection_success", "rate"), Some(1.0));
    assert!(ws.value("ws_messages_received", "count").unwrap() > 0.0);
    let dwcp = &o.summaries[1];
    assert_eq!(dwcp.value("vm_migrations_total", "count"), Some(2.0));
    assert!(dwcp.value("dwcp_concurrent_migrations", "max").unwrap() >= 1.0);
    t.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_server_errors_fail_the_run_with_the_right_counts() {
    let t = target(|a| a.error_rate = 0.05).await;
    let dir = tempfile::tempdir().unwrap();
    // many requests through quick mode: 5 % errors shows up as ~5 %, not 100 % as upstream
    let mut a = args(None, &t.base_url(), dir.path());
    a.api_url = None;
    a.url = Some(format!("{}/api/v1/vms/1", t.base_url()));
    a.vus = Some(8);
    a.iterations = Some(2000);
    a.thresholds = vec!["http_req_failed=rate<0.01".into()];
    let o = session::run(a, Stops::default()).await.unwrap();
    assert_eq!(o.verdict, Verdict::Fail);
    let s = &o.summaries[0];
    let failed = s.value("http_req_failed", "passes").unwrap();
    let rate = s.value("http_req_failed", "rate").unwrap();
    assert!((0.02..0.09).contains(&rate), "error rate {rate}");
    assert_eq!(s.errors_by_kind.get("status").copied(), Some(failed as u64));
    let md = std::fs::read_to_string(o.results_dir.join("SUMMARY.md")).unwrap();
    assert!(
        md.contains(&format!("`status`: {} failed operations", failed as u64)),
        "{md}"
    );
    // and why, once per failed request
    let status = &s.error_reasons.kinds["status"];
    assert_eq!(
        status.messages.values().sum::<u64>() + status.other_messages,
        failed as u64,
        "{status:?}"
    );
    assert!(md.contains("  - "), "the top messages are listed: {md}");

    // the api workload's own error Rate follows the failures as a percentage
    let mut a = args(Some(TestName::Api), &t.base_url(), dir.path());
    a.vus = Some(3);
    a.iterations = Some(3);
    let o = session::run(a, Stops::default()).await.unwrap();
    let s = &o.summaries[0];
    let errors = s.value("errors", "rate").unwrap();
    assert!(errors < 1.0, "errors is a real rate, got {errors}");
    // every `errors` failure is explained by a failed operation of some kind
    let explained: u64 = s.errors_by_kind.values().sum();
    let failures = s.value("errors", "passes").unwrap() as u64;
    assert!(
        failures <= explained,
        "{failures} errors, {:?}",
        s.errors_by_kind
    );
    t.shutdown().await.unwrap();
}

/// Migrations the target fails: each `dwcp_errors` failure is a `check` failure in
/// errors-by-kind with the target's own reason, so the FAIL explains itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_migrations_are_explained() {
    let t = target(|a| {
        a.migration_failure_rate = 1.0;
        a.migration_time = Duration::from_millis(300);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(Some(TestName::Dwcp), &t.base_url(), dir.path());
    a.vus = Some(1);
    a.iterations = Some(1);
    let o = session::run(a, Stops::default()).await.unwrap();
    let s = &o.summaries[0];
    assert_eq!(o.verdict, Verdict::Fail, "{:?}", s.thresholds);
    assert_eq!(s.value("failed_migrations", "count"), Some(1.0));
    // the one failure of dwcp_errors is the failed migration, nothing unexplained
    assert_eq!(s.value("dwcp_errors", "passes"), Some(1.0));
    assert_eq!(
        s.errors_by_kind.get("check"),
        Some(&1),
        "{:?}",
        s.errors_by_kind
    );
    let check = &s.error_reasons.kinds["check"];
    assert!(
        check
            .messages
            .keys()
            .all(|m| m.starts_with("DWCP migration failed")),
        "{check:?}"
    );
    let md = std::fs::read_to_string(o.results_dir.join("SUMMARY.md")).unwrap();
    assert!(md.contains("- `check`: 1 failed operation\n"), "{md}");
    assert!(md.contains("  - 1 × `DWCP migration failed"), "{md}");
    t.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_latency_is_a_warning_not_a_failure() {
    let t = target(|a| a.latency = Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(Some(TestName::Api), &t.base_url(), dir.path());
    a.vus = Some(2);
    a.iterations = Some(2);
    a.thresholds = vec!["http_req_duration=p(95)<250".into()];
    let o = session::run(a, Stops::default()).await.unwrap();
    let s = &o.summaries[0];
    assert_eq!(o.verdict, Verdict::Warning, "{:?}", s.thresholds);
    // the slow-response checks fail and show in the checks table...
    let detail = s
        .checks
        .iter()
        .find(|c| c.name == "VM detail response time < 300ms")
        .unwrap();
    assert_eq!(detail.passes, 0);
    // ...but they are not errors: the error Rate counts functional failures only
    assert_eq!(s.value("errors", "rate"), Some(0.0));
    t.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_websockets_count_against_connection_success() {
    let t = target(|a| a.ws_drop_rate = 1.0).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(Some(TestName::Ws), &t.base_url(), dir.path());
    a.vus = Some(4);
    a.iterations = Some(12);
    let o = session::run(a, Stops::default()).await.unwrap();
    let s = &o.summaries[0];
    let success = s.value("ws_connection_success", "rate").unwrap();
    assert!(success < 0.95, "success {success}");
    assert!(s.value("ws_connections_failed", "count").unwrap() > 0.0);
    assert_eq!(o.verdict, Verdict::Fail);
    let t_result = s
        .thresholds
        .iter()
        .find(|t| t.metric == "ws_connection_success")
        .unwrap();
    assert!(!t_result.ok && t_result.critical);
    t.shutdown().await.unwrap();
}

/// Without a URL the session starts the built-in target and binds the plans, built once against
/// a placeholder, to its address: every workload reaches it, with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_url_the_plans_run_against_the_built_in_target() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(Some(TestName::All), "", dir.path());
    a.api_url = None;
    a.token = Some("built-in-token".into());
    a.vus = Some(1);
    a.iterations = Some(1);
    a.parallel = true;
    let o = session::run(a, Stops::default()).await.unwrap();
    assert_eq!(o.summaries.len(), 4);
    for s in &o.summaries {
        assert!(
            s.target.starts_with("http://127.0.0.1:") && !s.target.ends_with(":1"),
            "{}: target {}",
            s.test,
            s.target
        );
        assert!(
            failed_checks(s).is_empty() && s.verdict == Verdict::Pass,
            "{}: {:?} {:?}",
            s.test,
            s.verdict,
            failed_checks(s)
        );
    }
}
