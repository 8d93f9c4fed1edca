//! The integration tests, as one test binary (one build and one link instead of one per file).
//! Each module is what used to be its own binary under `tests/`: `cargo test --test it hostile::`
//! runs what `cargo test --test hostile` did. Helpers shared by several modules live in
//! `support/`; non-Rust fixtures stay under `tests/` (`tests/snapshots/`,
//! `tests/grafana-schema/`, `tests/support/tls/`, `tests/support/promql_eval.py`).

mod support;

mod cli_exit_codes;
mod compare;
mod db_direct;
mod deploy_kubernetes;
mod distributed;
mod engine;
mod hostile;
mod logging;
mod observability_files;
mod prometheus_live;
mod readme;
mod report_html;
mod report_junit;
mod summary_snapshot;
mod target_dwcp;
mod target_hardening;
mod target_rest;
mod target_workers;
mod target_ws;
mod telemetry_dead_collector;
mod telemetry_metrics;
mod telemetry_otlp;
mod telemetry_overhead;
mod telemetry_spans;
mod trace_propagation;
mod workloads;
mod ws_tls;
mod ws_workload;
