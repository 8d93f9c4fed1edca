//! Distributed runs: the same scenario as one process and as three segments, merged exactly;
//! merge refusals; `--local-workers` through the real binary.

use crate::support::http_server;
use crate::support::runs::{count, quick_args, results_folder};

use novaload::cli::RunArgs;
use novaload::error::ErrorKind;
use novaload::merge::{self, MergeOptions};
use novaload::report::{Summary, Verdict};
use novaload::session::{self, Stops};
use std::path::{Path, PathBuf};

fn args(url: &str, out: &Path) -> RunArgs {
    RunArgs {
        no_traces: true,
        ..quick_args(url, out)
    }
}

/// Runs `make(i)` as segments 1/3..3/3 concurrently, one results folder each.
async fn three_shards(
    base: &Path,
    run_id: &str,
    make: impl Fn() -> RunArgs,
) -> Vec<(PathBuf, Summary)> {
    let runs = (1..=3).map(|i| {
        let mut a = make();
        a.segment = Some(format!("{i}/3"));
        a.run_id = Some(run_id.into());
        a.out = base.join(format!("shard{i}"));
        async move { session::run(a, Stops::default()).await.unwrap() }
    });
    futures_util::future::join_all(runs)
        .await
        .into_iter()
        .map(|o| (o.results_dir, o.summaries.into_iter().next().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_segments_merge_to_the_single_process_run_exactly() {
    let srv = http_server::start(None).await;
    let url = format!("http://{}/", srv.addr);
    let dir = tempfile::tempdir().unwrap();
    let make = || {
        let mut a = args(&url, dir.path());
        a.vus = Some(6);
        a.iterations = Some(3000);
        a.duration = Some("60s".into());
        // each shard makes ~1,000 requests: only the whole run passes
        a.thresholds = vec!["http_reqs=count>2500".into()];
        a
    };
    let mut single = make();
    single.out = dir.path().join("single");
    let one = session::run(single, Stops::default()).await.unwrap();
    let one = &one.summaries[0];
    assert_eq!(count(one, "http_reqs"), 3000.0);
    let served_single = srv.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(served_single, 3000);

    let shards = three_shards(dir.path(), "dist-run-1", make).await;
    let mut per_shard: Vec<f64> = shards.iter().map(|(_, s)| count(s, "http_reqs")).collect();
    per_shard.sort_by(f64::total_cmp);
    assert_eq!(per_shard, vec![1000.0, 1000.0, 1000.0]);
    // each iteration ran in exactly one shard: the server saw 3,000 more requests
    assert_eq!(
        srv.requests.load(std::sync::atomic::Ordering::Relaxed),
        served_single + 3000
    );
    for (d, s) in &shards {
        assert_eq!(s.run_id, "dist-run-1");
        assert!(!s.segment.is_empty(), "{} has no segment", d.display());
        assert_ne!(s.verdict, Verdict::Pass, "a shard alone misses count>2500");
    }
    // the expected histogram: every shard's trend merged in memory, before any merge code
    let mut expected = shards[0].1.trend("http_req_duration").unwrap();
    for (_, s) in &shards[1..] {
        expected.merge(&s.trend("http_req_duration").unwrap());
    }

    let dirs: Vec<PathBuf> = shards.iter().map(|(d, _)| d.clone()).collect();
    let out = dir.path().join("merged");
    let m = merge::merge_dirs(&dirs, &out, MergeOptions::default()).unwrap();
    let merged = &m.summaries[0];
    assert_eq!(count(merged, "http_reqs"), count(one, "http_reqs"));
    assert_eq!(count(merged, "iterations"), 3000.0);
    assert_eq!(
        merged.value("checks", "passes").unwrap_or(0.0),
        shards
            .iter()
            .map(|(_, s)| s.value("checks", "passes").unwrap_or(0.0))
            .sum::<f64>()
    );
    // percentiles equal those of one histogram of all samples: exact, not approximate
    let got = merged.trend("http_req_duration").unwrap();
    assert_eq!(got.count, 3000);
    for q in [50.0, 90.0, 95.0, 99.0, 99.9, 100.0] {
        assert_eq!(got.percentile(q), expected.percentile(q), "p({q})");
    }
    assert_eq!(
        merged.value("http_req_duration", "p(95)"),
        Some(expected.percentile(95.0))
    );
    assert_eq!(
        merged.value("http_req_duration", "max"),
        Some(expected.max_or_zero())
    );
    // thresholds re-evaluated on the merge: the whole run passes what no shard passes alone
    assert!(
        merged.thresholds.iter().all(|t| t.ok),
        "{:?}",
        merged.thresholds
    );
    assert_eq!(merged.verdict, Verdict::Pass);
    assert_eq!(m.verdict, Verdict::Pass);
    assert_eq!(merged.shards.len(), 3);
    assert!(merged.segment.is_empty());
    for f in ["SUMMARY.md", "url_summary.json", "url.json", "url.1of3.log"] {
        assert!(out.join(f).exists(), "{f} missing in the merge");
    }
    let md = std::fs::read_to_string(out.join("SUMMARY.md")).unwrap();
    assert!(md.contains("Merged shards"), "{md}");
    // per-second NDJSON: counters summed over shards
    let ndjson = std::fs::read_to_string(out.join("url.json")).unwrap();
    let reqs: f64 = ndjson
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "Second" && v["metric"] == "http_reqs")
        .map(|v| v["data"]["values"]["count"].as_f64().unwrap())
        .sum();
    assert_eq!(reqs, 3000.0);

    // order-independent: the same series whatever the argument order
    let reversed: Vec<PathBuf> = dirs.iter().rev().cloned().collect();
    let out2 = dir.path().join("merged-reversed");
    let m2 = merge::merge_dirs(&reversed, &out2, MergeOptions::default()).unwrap();
    assert_eq!(
        serde_json::to_string(&m2.summaries[0].series).unwrap(),
        serde_json::to_string(&merged.series).unwrap()
    );
    assert_eq!(
        serde_json::to_string(&m2.summaries[0].metrics).unwrap(),
        serde_json::to_string(&merged.metrics).unwrap()
    );

    // refusals: a missing shard, a repeated shard, shards of different runs
    let e = merge::merge_dirs(&dirs[..2], &dir.path().join("x1"), MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing shard"), "{e}");
    assert!(e.contains("2/3:1"), "names the missing segment: {e}");
    let partial = merge::merge_dirs(
        &dirs[..2],
        &dir.path().join("x2"),
        MergeOptions {
            allow_partial: true,
        },
    )
    .unwrap();
    assert!(partial.summaries[0].partial);
    assert_eq!(count(&partial.summaries[0], "http_reqs"), 2000.0);

    let twice = vec![dirs[0].clone(), dirs[0].clone(), dirs[1].clone()];
    let e = merge::merge_dirs(&twice, &dir.path().join("x3"), MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("appears twice"), "{e}");

    let other = dir.path().join("other-run");
    std::fs::create_dir_all(&other).unwrap();
    let text = std::fs::read_to_string(dirs[2].join("url_summary.json")).unwrap();
    std::fs::write(
        other.join("url_summary.json"),
        text.replace("dist-run-1", "another-run"),
    )
    .unwrap();
    let mixed = vec![dirs[0].clone(), dirs[1].clone(), other.clone()];
    let e = merge::merge_dirs(&mixed, &dir.path().join("x4"), MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("run id differs"), "{e}");
    assert!(e.contains("dist-run-1") && e.contains("another-run"), "{e}");
    assert!(
        e.contains(&other.display().to_string()),
        "names the dir: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrival_rate_segments_merge_within_one_percent() {
    let srv = http_server::start(None).await;
    let url = format!("http://{}/", srv.addr);
    let dir = tempfile::tempdir().unwrap();
    let make = || {
        let mut a = args(&url, dir.path());
        a.rate = Some(300.0);
        a.duration = Some("2s".into());
        a.vus = Some(20);
        a
    };
    let mut single = make();
    single.out = dir.path().join("single");
    let one = session::run(single, Stops::default()).await.unwrap();
    let one_reqs = count(&one.summaries[0], "http_reqs");
    let shards = three_shards(dir.path(), "dist-rate", make).await;
    for (_, s) in &shards {
        let r = count(s, "http_reqs");
        assert!((195.0..=205.0).contains(&r), "a shard ran {r}, not ~200");
    }
    let dirs: Vec<PathBuf> = shards.iter().map(|(d, _)| d.clone()).collect();
    let m = merge::merge_dirs(&dirs, &dir.path().join("merged"), MergeOptions::default()).unwrap();
    let merged = count(&m.summaries[0], "http_reqs");
    assert!(
        (merged - one_reqs).abs() <= one_reqs * 0.01,
        "merged {merged} vs single {one_reqs}"
    );
    // gauges are per-process totals: the shards' VUs (7 + 7 + 6) add up to the single run's 20,
    // where the largest shard alone has 7
    let vus_max = |s: &Summary| s.value("vus_max", "max");
    assert_eq!(vus_max(&one.summaries[0]), Some(20.0));
    assert!(shards.iter().all(|(_, s)| vus_max(s) < Some(8.0)));
    assert_eq!(vus_max(&m.summaries[0]), Some(20.0));
}

#[test]
fn local_workers_give_one_results_folder_equal_to_a_single_run() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt.block_on(http_server::start(None));
    let url = format!("http://{}/", srv.addr);
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_novaload");
    let run = |extra: &[&str], out: &Path| {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["run", "--url", &url, "--vus", "6", "--iterations", "600"])
            .args(["--duration", "60s", "--no-traces", "-q", "--out"])
            .arg(out)
            .args(extra)
            .env_remove("NOVALOAD_RUN_ID")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        let o = cmd.output().unwrap();
        assert!(
            o.status.success(),
            "{:?}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        let folders: Vec<PathBuf> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(folders.len(), 1, "one results folder: {folders:?}");
        novaload::report::json::read_summary(&folders[0].join("url_summary.json")).unwrap()
    };
    let single = run(&[], &dir.path().join("single"));
    let workers = run(&["--local-workers", "3"], &dir.path().join("workers"));
    for m in ["http_reqs", "iterations"] {
        assert_eq!(count(&workers, m), count(&single, m), "{m}");
    }
    assert_eq!(count(&workers, "http_reqs"), 600.0);
    assert_eq!(workers.shards.len(), 3, "{:?}", workers.shards);
    assert_eq!(
        workers.trend("http_req_duration").unwrap().count,
        single.trend("http_req_duration").unwrap().count
    );
    drop(rt);
}

/// Runs `make()` as segments 1/2 and 2/2 concurrently, with the given run ids (None: the
/// shard generates its own, as `novaload run --segment i/2` without `--run-id` does).
async fn two_shards(
    base: &Path,
    run_ids: [Option<&str>; 2],
    make: impl Fn() -> RunArgs,
) -> Vec<(PathBuf, Summary)> {
    let runs = run_ids.iter().enumerate().map(|(i, id)| {
        let mut a = make();
        a.segment = Some(format!("{}/2", i + 1));
        a.run_id = id.map(str::to_owned);
        a.out = base.join(format!("shard{}", i + 1));
        async move { session::run(a, Stops::default()).await.unwrap() }
    });
    futures_util::future::join_all(runs)
        .await
        .into_iter()
        .map(|o| (o.results_dir, o.summaries.into_iter().next().unwrap()))
        .collect()
}

/// `novaload merge DIRS -o OUT` through the real binary: (exit code, stderr).
fn merge_command(dirs: &[PathBuf], out: &Path) -> (Option<i32>, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_novaload"))
        .arg("merge")
        .args(dirs)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_with_generated_run_ids_merge_as_one_run_with_a_note() {
    let srv = http_server::start(None).await;
    let url = format!("http://{}/", srv.addr);
    let dir = tempfile::tempdir().unwrap();
    let make = || {
        let mut a = args(&url, dir.path());
        a.vus = Some(5);
        a.iterations = Some(400);
        a.duration = Some("60s".into());
        a
    };
    let shards = two_shards(dir.path(), [None, None], make).await;
    let (ids, generated): (Vec<&str>, Vec<bool>) = shards
        .iter()
        .map(|(_, s)| (s.run_id.as_str(), s.run_id_generated))
        .unzip();
    assert_eq!(generated, [true, true], "no --run-id given: {ids:?}");
    assert_ne!(ids[0], ids[1], "each shard generated its own id");
    // the shards' VUs (3 + 2) add up to the run's 5; each shard's own vus_max is smaller
    let shard_vus: Vec<f64> = shards
        .iter()
        .map(|(_, s)| s.value("vus_max", "value").unwrap())
        .collect();
    assert_eq!(shard_vus.iter().sum::<f64>(), 5.0, "{shard_vus:?}");
    assert!(shard_vus.iter().all(|v| *v < 5.0), "{shard_vus:?}");

    // failure messages in each shard: the merge carries the union, counts added
    let dirs: Vec<PathBuf> = shards.iter().map(|(d, _)| d.clone()).collect();
    for (i, d) in dirs.iter().enumerate() {
        let path = d.join("url_summary.json");
        let mut s = novaload::report::json::read_summary(&path).unwrap();
        s.error_reasons.add(ErrorKind::Status, "GET /: HTTP 503");
        s.error_reasons.add(
            ErrorKind::Timeout,
            &format!("shard {i}: no response within 10s"),
        );
        std::fs::write(&path, novaload::report::json::summary_file(&s).unwrap()).unwrap();
    }

    let out = dir.path().join("merged");
    let m = merge::merge_dirs(&dirs, &out, MergeOptions::default()).unwrap();
    let merged = &m.summaries[0];
    assert_eq!(count(merged, "http_reqs"), 400.0);
    assert_eq!(merged.shards.len(), 2);
    // the first shard's id names the merged run, and a note says why and how to avoid it
    assert_eq!(merged.run_id, ids[0]);
    let note = merged
        .notes
        .iter()
        .find(|n| n.contains("different generated run ids"))
        .unwrap_or_else(|| panic!("no run id note in {:?}", merged.notes));
    assert!(note.contains("--run-id"), "{note}");
    assert!(note.contains(ids[0]) && note.contains(ids[1]), "{note}");
    assert!(
        merged.run_id_generated,
        "the merged id is still a generated one"
    );

    // vus_max: the merged value is the sum over shards, like its peak (not one shard's value)
    assert_eq!(merged.value("vus_max", "value"), Some(5.0));
    assert_eq!(merged.value("vus_max", "max"), Some(5.0));
    assert_eq!(merged.value("vus_max", "min"), Some(5.0));

    let reasons = &merged.error_reasons;
    assert_eq!(reasons.top("status", 5), vec![("GET /: HTTP 503", 2)]);
    assert_eq!(
        reasons.top("timeout", 5),
        vec![
            ("shard 0: no response within 10s", 1),
            ("shard 1: no response within 10s", 1)
        ]
    );
    // what merge wrote reads back the same
    let written = novaload::report::json::read_summary(&out.join("url_summary.json")).unwrap();
    assert_eq!(&written.error_reasons, reasons);
    assert_eq!(written.notes, merged.notes);

    // through the real binary: exit 0 (the run passes)
    let (code, stderr) = merge_command(&dirs, &dir.path().join("merged-cli"));
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_of_different_given_run_ids_are_refused_with_exit_2_naming_the_fix() {
    let srv = http_server::start(None).await;
    let url = format!("http://{}/", srv.addr);
    let dir = tempfile::tempdir().unwrap();
    let make = || {
        let mut a = args(&url, dir.path());
        a.vus = Some(2);
        a.iterations = Some(100);
        a.duration = Some("60s".into());
        a
    };
    let shards = two_shards(dir.path(), [Some("run-a"), Some("run-b")], make).await;
    let dirs: Vec<PathBuf> = shards.iter().map(|(d, _)| d.clone()).collect();
    let (code, stderr) = merge_command(&dirs, &dir.path().join("merged"));
    assert_eq!(code, Some(2), "a bad-input error: {stderr}");
    assert!(stderr.contains("--run-id"), "names the fix: {stderr}");
    assert!(
        stderr.contains("run-a") && stderr.contains("run-b"),
        "{stderr}"
    );
    assert!(!dir.path().join("merged").join("url_summary.json").exists());

    // one shard given an id, the other generating its own: refused the same way
    let text = std::fs::read_to_string(dirs[1].join("url_summary.json")).unwrap();
    let flipped = text.replacen(
        "\"run_id_generated\": false",
        "\"run_id_generated\": true",
        1,
    );
    assert_ne!(flipped, text, "the summary spells run_id_generated");
    std::fs::write(dirs[1].join("url_summary.json"), flipped).unwrap();
    let e = merge::merge_dirs(&dirs, &dir.path().join("x1"), MergeOptions::default()).unwrap_err();
    let config = e
        .downcast_ref::<novaload::error::ConfigError>()
        .unwrap_or_else(|| panic!("not a ConfigError: {e:#}"));
    assert_eq!(config.field, "--run-id");
    assert!(config.problem.contains("given") && config.problem.contains("generated"));

    // a missing shard: exit 2, naming the missing segment
    let (code, stderr) = merge_command(&dirs[..1], &dir.path().join("x2"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("missing") && stderr.contains("1/2:1"),
        "{stderr}"
    );
    assert!(stderr.contains("--allow-partial"), "{stderr}");
}

/// Ctrl-C on the parent of `--local-workers` reaches every worker (each runs in its own
/// process group, so the parent forwards SIGINT): each stops gracefully and writes its partial
/// results, the parent merges them and exits 105 (interrupted), as a single process does.
#[test]
fn an_interrupted_parent_stops_its_workers_gracefully_and_merges_their_partial_results() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let srv = rt.block_on(http_server::start(None));
    let url = format!("http://{}/", srv.addr);
    let out = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_novaload"))
        .args(["run", "--url", &url, "--vus", "4", "--duration", "5m"])
        .args(["--no-traces", "-q", "--local-workers", "2", "--out"])
        .arg(out.path())
        .env_remove("NOVALOAD_RUN_ID")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // the workers start 2 s after the parent; let them send load for a while
    std::thread::sleep(std::time::Duration::from_secs(5));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the graceful stop is bounded"
    );
    assert_eq!(status.code(), Some(105), "{stderr}");
    let folder = results_folder(out.path()).unwrap();
    for shard in ["1", "2"] {
        let s = novaload::report::json::read_summary(
            &folder.join("shards").join(shard).join("url_summary.json"),
        )
        .unwrap();
        assert!(
            count(&s, "http_reqs") > 0.0,
            "shard {shard} measured nothing"
        );
        assert_eq!(
            s.partial_reason.as_deref(),
            Some("interrupted by Ctrl-C/SIGTERM"),
            "shard {shard} was stopped by its parent's SIGINT"
        );
    }
    let merged = novaload::report::json::read_summary(&folder.join("url_summary.json")).unwrap();
    assert_eq!(merged.shards.len(), 2);
    assert!(count(&merged, "http_reqs") > 0.0);
    drop(rt);
}
