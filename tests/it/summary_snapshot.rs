//! SUMMARY.md's layout is a contract people read and diff: a snapshot of a deterministic
//! summary (fixed values, fixed time) catches unintended changes. Update deliberately with
//! `INSTA_UPDATE=always cargo test --test it summary_snapshot` and review the diff.

use chrono::TimeZone;
use novaload::metrics::{Contains, MetricKind, Recorder, Registry, Tags, builtin};
use novaload::report::markdown;
use novaload::report::summary::{ScenarioInfo, Summary, SummaryMeta};
use novaload::thresholds::{self, ThresholdSpec};
use std::sync::Arc;

fn summary() -> Summary {
    let mut reg = Registry::new();
    let errors = reg.declare("errors", MetricKind::Rate, Contains::Default);
    let creation = reg.declare("vm_creation_time", MetricKind::Trend, Contains::Time);
    let reg = Arc::new(reg);
    let rec = Recorder::new(reg.clone());
    let scenario: Arc<str> = Arc::from("default");
    let ok = Tags {
        scenario: Some(scenario.clone()),
        name: Some(Arc::from("GET /api/v1/vms")),
        status: Some(200),
        ..Tags::default()
    };
    let bad = Tags {
        status: Some(500),
        error_kind: Some(novaload::error::ErrorKind::Status),
        ..ok.clone()
    };
    for i in 0..200 {
        let t = if i % 50 == 0 { &bad } else { &ok };
        rec.record(builtin::HTTP_REQS, 1.0, t);
        rec.record(builtin::HTTP_REQ_DURATION, 10.0 + (i % 40) as f64, t);
        rec.record(
            builtin::HTTP_REQ_FAILED,
            if i % 50 == 0 { 1.0 } else { 0.0 },
            t,
        );
        rec.record(
            errors,
            if i % 50 == 0 { 1.0 } else { 0.0 },
            &Tags::scenario(&scenario),
        );
    }
    // why the 4 requests failed: two distinct messages, one with Markdown-hostile characters
    for i in 0..4 {
        let message = if i < 3 {
            "GET /api/v1/vms: HTTP 500 Internal Server Error"
        } else {
            "GET /api/v1/vms: HTTP 500 `db | down`"
        };
        rec.record_reason(novaload::error::ErrorKind::Status, message);
    }
    for i in 0..20 {
        rec.record(
            creation,
            100.0 + i as f64 * 10.0,
            &Tags::scenario(&scenario),
        );
    }
    for (name, pass) in [
        ("VM list status 200", true),
        ("VM create status 201", true),
        ("VM create status 201", false),
    ] {
        let t = Tags {
            check: Some(name.into()),
            ..Tags::scenario(&scenario)
        };
        rec.record(builtin::CHECKS, if pass { 1.0 } else { 0.0 }, &t);
    }
    let snap = rec.snapshot();
    let th = |m: &str, e: &str| thresholds::build(m, &ThresholdSpec::plain(e), &reg).unwrap();
    Summary::build(
        &snap,
        SummaryMeta {
            run_id: "snapshot".into(),
            run_id_generated: false,
            test: "api".into(),
            profile: "smoke".into(),
            target: "http://127.0.0.1:8080".into(),
            started_at: chrono::Utc
                .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
                .unwrap(),
            duration_s: 20.0,
            partial_reason: None,
            segment: String::new(),
            scenarios: vec![ScenarioInfo {
                name: "default".into(),
                executor: "ramping-vus".into(),
                description: "ramping-vus, startVUs 0, stages 4s→5, 8s→5, 3s→0".into(),
            }],
            thresholds: vec![
                th("http_req_duration", "p(95)<500"),
                th("http_req_duration", "p(99)<30"),
                th("http_req_failed", "rate<0.01"),
                th("vm_creation_time", "p(95)<2000"),
            ],
            interrupted_iterations: 0,
            run_errors: vec![],
            notes: vec!["a note for the reader".into()],
            telemetry: Default::default(),
        },
    )
}

#[test]
fn summary_md_layout() {
    let s = summary();
    // p(99)<30 is a missed warning, http_req_failed 2 % a missed critical: FAIL
    assert_eq!(s.verdict, novaload::report::Verdict::Fail);
    // The snapshot stays at tests/snapshots/summary_snapshot__summary_md_layout.snap, where
    // it was when this was its own test binary (insta would otherwise prefix the module path).
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        insta::assert_snapshot!(
            "summary_snapshot__summary_md_layout",
            markdown::render(&[s])
        )
    });
}
