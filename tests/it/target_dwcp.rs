//! DWCP v3 REST surface of `novaload target` on SQLite and PostgreSQL: version, migrations
//! walking every phase to `completed` with no data loss, failures, listing, stats, metrics.
use std::time::{Duration, Instant};

use crate::support::target::*;
use novaload::novacron::TargetArgs;
use novaload::novacron::vm_migration::PHASES;
use serde_json::{Value, json};

const BODY: &str = r#"{"vm_id":"test-vm-abcdefgh","source_zone":"us-west-1","target_zone":"us-east-1","protocol":"dwcp-v3","live_migration":true,"bandwidth_limit_mbps":1000,"compression":true,"encryption":true}"#;

async fn start_migration(base: &str) -> String {
    let r = send("POST", base, "/api/v1/dwcp/migrations", BODY).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let j = r.json();
    assert_eq!(j["status"], "pending");
    j["job_id"].as_str().unwrap().to_owned()
}

/// Polls every 50 ms until the job is final; returns (phases seen in order, final body).
async fn poll(base: &str, job: &str) -> (Vec<String>, Vec<String>, Value) {
    let mut phases: Vec<String> = vec![];
    let mut statuses: Vec<String> = vec![];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(base, &format!("/api/v1/dwcp/migrations/{job}")).await;
        assert_eq!(r.status, 200);
        let j = r.json();
        let phase = j["phase"].as_str().unwrap().to_owned();
        let status = j["status"].as_str().unwrap().to_owned();
        assert_eq!(j["data_loss"], json!(false));
        assert!(j["progress"].is_number());
        if phases.last() != Some(&phase) {
            phases.push(phase);
        }
        if statuses.last() != Some(&status) {
            statuses.push(status.clone());
        }
        if status == "completed" || status == "failed" {
            return (phases, statuses, j);
        }
        assert!(Instant::now() < deadline, "migration never finished: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_walk_phases_to_completion_on_every_backend() {
    for backend in backends() {
        let mut args = TargetArgs::embedded();
        args.migration_time = Duration::from_secs(1);
        let t = start(&backend, args, None).await;
        let base = t.base.clone();

        // setup() sends no headers.
        let r = call("GET", &format!("{base}/api/v1/dwcp/version"), None, &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["version"], "v3");

        let job = start_migration(&base).await;
        // Listing while it runs: the k6 batch check wants a `migrations` array.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = get(
            &base,
            "/api/v1/dwcp/migrations?status=in_progress&limit=100",
        )
        .await;
        assert_eq!(r.status, 200);
        let listed = r.json()["migrations"].as_array().unwrap().clone();
        assert!(
            listed.iter().any(|m| m["job_id"] == json!(job)),
            "{listed:?}"
        );
        assert!(listed.iter().all(|m| m["status"] == "in_progress"));
        let s = get(&base, "/api/v1/dwcp/stats").await.json();
        assert_eq!(s["active_migrations"], 1);

        let (phases, statuses, last) = poll(&base, &job).await;
        // `pending` lasts the first 5 % (50 ms here) and was seen in the POST response.
        assert!(statuses.contains(&"in_progress".to_owned()), "{statuses:?}");
        assert_eq!(statuses.last().map(String::as_str), Some("completed"));
        assert_eq!(last["progress"], json!(100.0));
        assert_eq!(last["phase"], "complete");
        // Phases appear in DWCP v3 order (a 50 ms poll may skip a short one).
        let order: Vec<&str> = PHASES.iter().map(|(p, _)| *p).chain(["complete"]).collect();
        let idx: Vec<usize> = phases
            .iter()
            .map(|p| {
                order
                    .iter()
                    .position(|o| o == p)
                    .unwrap_or_else(|| panic!("unknown phase {p}"))
            })
            .collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "{phases:?}");
        assert!(phases.len() >= 6, "{phases:?}");

        let r = get(&base, "/api/v1/dwcp/migrations?status=completed").await;
        assert!(
            r.json()["migrations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["job_id"] == json!(job))
        );
        assert_eq!(
            get(&base, "/api/v1/dwcp/migrations?status=in_progress")
                .await
                .json()["migrations"],
            json!([])
        );
        let s = get(&base, "/api/v1/dwcp/stats").await.json();
        assert_eq!(
            (
                s["completed"].clone(),
                s["failed"].clone(),
                s["total"].clone()
            ),
            (json!(1), json!(0), json!(1))
        );
        assert_eq!(s["active_migrations"], 0);

        // Errors.
        assert_eq!(get(&base, "/api/v1/dwcp/migrations/nope").await.status, 404);
        for (body, field) in [
            (r#"{"source_zone":"a","target_zone":"b"}"#, "vm_id"),
            (
                r#"{"vm_id":"v","source_zone":7,"target_zone":"b"}"#,
                "source_zone",
            ),
            (r#"{"vm_id":"v","source_zone":"a"}"#, "target_zone"),
            (
                r#"{"vm_id":"v","source_zone":"a","target_zone":"b","live_migration":"yes"}"#,
                "live_migration",
            ),
            (
                r#"{"vm_id":"v","source_zone":"a","target_zone":"b","bandwidth_limit_mbps":-1}"#,
                "bandwidth_limit_mbps",
            ),
            ("nope", "body"),
        ] {
            let r = send("POST", &base, "/api/v1/dwcp/migrations", body).await;
            assert_eq!(r.status, 400, "{body}");
            assert_eq!(r.json()["field"], field);
        }
        assert_eq!(
            get(&base, "/api/v1/dwcp/migrations?status=weird")
                .await
                .json()["field"],
            "status"
        );

        // The sweeper counts the final status once.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let m = call("GET", &format!("{base}/metrics"), None, &[])
            .await
            .text();
        assert!(m.contains(r#"novacron_dwcp_migrations_total{source="us-west-1",destination="us-east-1",status="started"} 1"#), "{m}");
        assert!(m.contains(r#"novacron_dwcp_migrations_total{source="us-west-1",destination="us-east-1",status="completed"} 1"#), "{m}");
        assert!(
            m.contains("novacron_dwcp_migration_duration_seconds_count 1"),
            "{m}"
        );
        t.stop().await;
        eprintln!("ok: {backend:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_rate_one_fails_every_migration_on_every_backend() {
    for backend in backends() {
        let mut args = TargetArgs::embedded();
        args.migration_time = Duration::from_secs(1);
        args.migration_failure_rate = 1.0;
        let t = start(&backend, args, None).await;
        let jobs = [
            start_migration(&t.base).await,
            start_migration(&t.base).await,
        ];
        for job in &jobs {
            let (_, statuses, last) = poll(&t.base, job).await;
            assert_eq!(statuses.last().map(String::as_str), Some("failed"));
            assert!(last["error"].is_string());
            assert!(last["progress"].as_f64().unwrap() < 100.0);
            assert_eq!(last["data_loss"], json!(false));
        }
        let s = get(&t.base, "/api/v1/dwcp/stats").await.json();
        assert_eq!(
            (s["failed"].clone(), s["completed"].clone()),
            (json!(2), json!(0))
        );
        let r = get(&t.base, "/api/v1/dwcp/migrations?status=failed&limit=1").await;
        assert_eq!(r.json()["migrations"].as_array().unwrap().len(), 1);
        t.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_migrations_in_flight_are_cheap() {
    // 1,000 concurrent jobs: all stored, listed and counted; no task per job.
    let mut args = TargetArgs::embedded();
    args.migration_time = Duration::from_secs(30);
    let t = start(&Backend::Sqlite, args, None).await;
    let base = t.base.clone();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let base = base.clone();
        set.spawn(async move {
            for _ in 0..125 {
                start_migration(&base).await;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let s = get(&base, "/api/v1/dwcp/stats").await.json();
    assert_eq!(s["total"], 1000);
    assert_eq!(s["active_migrations"], 1000);
    let r = get(&base, "/api/v1/dwcp/migrations?limit=100").await;
    assert_eq!(r.json()["migrations"].as_array().unwrap().len(), 100);
    t.stop().await;
}
