//! Named profiles: the stage sets and targets of the four NovaCron tests at each scale.
//!
//! `full` is the upstream suite exactly (spec §1.1–§1.4). `smoke` runs all four in well under
//! a minute for CI. `1k`/`10k`/`100k` are scale presets (peak VUs/connections and seeded VMs of
//! that scale). `soak` holds the upstream baseline for two hours. `spike` is the seed's spike
//! shape. Throughput and concurrency targets (the seed README's) are warning-severity
//! thresholds scaled with the profile's peak; error and success rates are critical.

use crate::cli::TestName;
use crate::config::{StageSpec, ThresholdList};
use crate::error::ConfigError;
use crate::thresholds::ThresholdSpec;
use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) const NAMES: &[&str] = &["smoke", "full", "1k", "10k", "100k", "soak", "spike"];

/// Everything a profile decides for one test.
#[derive(Debug, Clone)]
pub struct ProfilePlan {
    pub stages: Vec<StageSpec>,
    pub graceful: Duration,
    pub thresholds: BTreeMap<String, ThresholdList>,
    /// VMs the built-in target seeds.
    pub seed_vms: u64,
    /// Short sessions/streams so smoke iterations fit in seconds.
    pub short_sessions: bool,
    pub peak: u64,
}

fn st(d: &str, t: u64) -> StageSpec {
    StageSpec {
        duration: d.into(),
        target: t as f64,
    }
}

fn upstream_stages(test: TestName) -> Vec<StageSpec> {
    match test {
        TestName::Api => vec![
            st("2m", 100),
            st("5m", 100),
            st("2m", 1000),
            st("5m", 1000),
            st("2m", 10000),
            st("5m", 10000),
            st("2m", 0),
        ],
        TestName::Dwcp => vec![
            st("2m", 50),
            st("5m", 100),
            st("2m", 500),
            st("5m", 500),
            st("2m", 1000),
            st("3m", 1000),
            st("2m", 0),
        ],
        TestName::Ws => vec![
            st("2m", 100),
            st("5m", 1000),
            st("5m", 1000),
            st("2m", 10000),
            st("5m", 10000),
            st("2m", 100000),
            st("3m", 100000),
            st("2m", 0),
        ],
        TestName::Db | TestName::All => vec![
            st("2m", 200),
            st("5m", 500),
            st("2m", 2000),
            st("5m", 2000),
            st("2m", 5000),
            st("3m", 5000),
            st("2m", 0),
        ],
    }
}

/// Peak VUs of the upstream stages.
fn full_peak(test: TestName) -> u64 {
    match test {
        TestName::Api => 10_000,
        TestName::Dwcp => 1_000,
        TestName::Ws => 100_000,
        TestName::Db | TestName::All => 5_000,
    }
}

/// The upstream baseline stage (what soak holds).
fn baseline(test: TestName) -> u64 {
    match test {
        TestName::Api => 100,
        TestName::Dwcp => 50,
        TestName::Ws => 1_000,
        TestName::Db | TestName::All => 200,
    }
}

fn plain(list: &[&str]) -> ThresholdList {
    ThresholdList::Many(list.iter().map(|s| ThresholdSpec::plain(s)).collect())
}

/// Upstream thresholds (exact) plus the seed README's promises that upstream never enforced
/// ([`targets`]).
fn thresholds(test: TestName, peak: u64, full: bool) -> BTreeMap<String, ThresholdList> {
    let mut t = BTreeMap::new();
    match test {
        TestName::Api => {
            t.insert(
                "http_req_duration".into(),
                plain(&["p(95)<500", "p(99)<1000"]),
            );
            t.insert("http_req_failed".into(), plain(&["rate<0.01"]));
            t.insert("errors".into(), plain(&["rate<0.05"]));
            t.insert("api_latency".into(), plain(&["p(95)<600"]));
            t.insert("vm_creation_time".into(), plain(&["p(95)<2000"]));
        }
        TestName::Dwcp => {
            t.insert("dwcp_errors".into(), plain(&["rate<0.02"]));
            t.insert("migration_duration".into(), plain(&["p(95)<30000"]));
            t.insert("dwcp_protocol_latency".into(), plain(&["p(95)<1000"]));
            t.insert("vm_migrations_total".into(), plain(&["count>0"]));
        }
        TestName::Ws => {
            t.insert("ws_errors".into(), plain(&["rate<0.05"]));
            t.insert("ws_message_latency".into(), plain(&["p(95)<500"]));
            t.insert("ws_connection_time".into(), plain(&["p(95)<2000"]));
            t.insert("ws_connections_established".into(), plain(&["count>0"]));
            t.insert("ws_connection_success".into(), plain(&["rate>0.95"]));
        }
        TestName::Db | TestName::All => {
            t.insert("db_errors".into(), plain(&["rate<0.01"]));
            t.insert("db_query_latency".into(), plain(&["p(95)<300"]));
            t.insert("db_write_latency".into(), plain(&["p(95)<500"]));
            t.insert("db_read_latency".into(), plain(&["p(95)<200"]));
            t.insert("http_req_duration".into(), plain(&["p(95)<600"]));
        }
    }
    t.extend(targets(test, peak, full));
    t
}

/// The full profile's simulated DWCP migration time for the built-in target: live migrations
/// of real VMs take tens of seconds, and with the default 2 s a VU spends most of its
/// iteration outside a migration, so the seed's concurrency could never build up.
pub(crate) const FULL_PROFILE_MIGRATION_TIME: Duration = Duration::from_secs(20);

/// Share of the peak VUs expected to be inside a migration at once. A DWCP iteration spends
/// ~12.5 s outside its migration (polls, stats, the 5 s stream, think time): with the full
/// profile's 20 s migrations that is 20/32.5 ≈ 0.6 of the time (half is the target, with
/// margin); with 2 s migrations (the built-in target's default) ≈ 0.14 (a tenth).
fn dwcp_in_flight_share(full: bool) -> f64 {
    if full { 0.5 } else { 0.1 }
}

/// The seed README's throughput and concurrency targets (warnings), for `peak` planned VUs:
/// the seed's figure at full scale (`full`: the upstream stages, unchanged), elsewhere 80 % of
/// the figure scaled by peak VUs, since each VU's think time caps what it can send. The session
/// calls this again with the VUs actually planned when `--vus`, `--stage` or a scenario file
/// change them, so a target always matches the load that was asked for.
pub fn targets(test: TestName, peak: u64, full: bool) -> BTreeMap<String, ThresholdList> {
    let scaled = |seed: f64| {
        if full {
            seed
        } else {
            (seed * peak as f64 / full_peak(test) as f64 * 0.8)
                .max(1.0)
                .floor()
        }
    };
    let warn = |e: String| ThresholdList::One(ThresholdSpec::warning(&e));
    let (metric, target) = match test {
        TestName::Api => ("http_reqs_per_second", scaled(10_000.0)),
        TestName::Dwcp => (
            "dwcp_concurrent_migrations",
            (peak as f64 * dwcp_in_flight_share(full)).max(1.0).floor(),
        ),
        TestName::Ws => ("ws_connections_active", scaled(100_000.0)),
        TestName::Db | TestName::All => ("db_queries_per_second", scaled(5_000.0)),
    };
    BTreeMap::from([(metric.to_string(), warn(format!("max>={target}")))])
}

/// Whether `peak` VUs with the named profile are the upstream suite's full scale.
pub(crate) fn is_full_scale(test: TestName, profile: &str, peak: u64) -> bool {
    profile == "full" && peak == full_peak(test)
}

/// Resolves a profile for a test.
pub fn plan(test: TestName, profile: &str) -> Result<ProfilePlan, ConfigError> {
    let peak_full = full_peak(test);
    let (stages, graceful, seed_vms, short, peak) = match profile {
        "full" => (
            upstream_stages(test),
            Duration::from_secs(30),
            1_000,
            false,
            peak_full,
        ),
        "smoke" => {
            let p = match test {
                TestName::Ws => 20,
                TestName::Dwcp => 4,
                _ => 5,
            };
            (
                vec![st("4s", p), st("8s", p), st("3s", 0)],
                Duration::from_secs(20),
                1_000,
                true,
                p,
            )
        }
        "1k" | "10k" | "100k" => {
            let scale: u64 = match profile {
                "1k" => 1_000,
                "10k" => 10_000,
                _ => 100_000,
            };
            let peak = match test {
                TestName::Api | TestName::Ws => scale,
                TestName::Dwcp => scale / 10,
                TestName::Db | TestName::All => scale / 2,
            };
            (
                vec![
                    st("1m", peak / 10),
                    st("2m", peak),
                    st("5m", peak),
                    st("1m", 0),
                ],
                Duration::from_secs(30),
                scale,
                false,
                peak,
            )
        }
        "soak" => {
            let b = baseline(test);
            (
                vec![st("2m", b), st("2h", b), st("2m", 0)],
                Duration::from_secs(30),
                1_000,
                false,
                b,
            )
        }
        "spike" => (
            vec![
                st("10s", (peak_full / 100).max(1)),
                st("1m", peak_full),
                st("10s", 0),
            ],
            Duration::from_secs(30),
            1_000,
            false,
            peak_full,
        ),
        other => {
            return Err(ConfigError::new(
                "--profile",
                format!("unknown profile '{other}'"),
                format!("use one of: {}", NAMES.join(", ")),
            ));
        }
    };
    Ok(ProfilePlan {
        thresholds: thresholds(test, peak, profile == "full"),
        stages,
        graceful,
        seed_vms,
        short_sessions: short,
        peak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_is_the_upstream_suite() {
        let api = plan(TestName::Api, "full").unwrap();
        assert_eq!(api.stages.len(), 7);
        assert_eq!(api.stages[4], st("2m", 10000));
        let ws = plan(TestName::Ws, "full").unwrap();
        assert_eq!(ws.peak, 100_000);
        let total: u64 = ws
            .stages
            .iter()
            .map(|s| crate::duration::parse(&s.duration, "x").unwrap().as_secs())
            .sum();
        assert_eq!(total, 26 * 60);
        assert!(
            plan(TestName::Api, "full")
                .unwrap()
                .thresholds
                .contains_key("http_reqs_per_second")
        );
    }

    #[test]
    fn targets_follow_the_planned_vus() {
        let t = |test, peak, full| {
            let m = targets(test, peak, full);
            let (k, v) = m.into_iter().next().unwrap();
            (k, v.specs()[0].clone())
        };
        assert_eq!(
            t(TestName::Api, 10_000, true),
            (
                "http_reqs_per_second".to_string(),
                ThresholdSpec::warning("max>=10000")
            )
        );
        // 500 VUs of the 10,000-VU suite: 80 % of a twentieth
        assert_eq!(
            t(TestName::Api, 500, false).1,
            ThresholdSpec::warning("max>=400")
        );
        assert_eq!(
            t(TestName::Dwcp, 1_000, true).1,
            ThresholdSpec::warning("max>=500")
        );
        assert_eq!(
            t(TestName::Dwcp, 40, false).1,
            ThresholdSpec::warning("max>=4")
        );
        assert!(is_full_scale(TestName::Dwcp, "full", 1_000));
        assert!(!is_full_scale(TestName::Dwcp, "full", 200));
    }

    #[test]
    fn unknown_profile_names_the_choices() {
        let e = plan(TestName::Api, "huge").unwrap_err();
        assert_eq!(e.field, "--profile");
        assert!(e.fix.contains("smoke"));
    }
}
