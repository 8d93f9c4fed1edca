//! Command-line interface (clap derive). Every flag documents itself; flags that upstream
//! reads from the environment (`API_URL`, `API_TOKEN`, ...) read the same variables.
//! Precedence: flag > environment > scenario file > profile > default.

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "novaload",
    version,
    about = "Observability-native load tester for NovaCron (k6-compatible scenarios, OpenTelemetry spans, Prometheus metrics)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output on stderr: -v shows debug events, -vv trace events (`RUST_LOG`, e.g.
    /// `RUST_LOG=novaload=debug`, overrides). Warnings are always shown.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a test: one of the NovaCron workloads (docs/NOVACRON-SUITE.md), `all`, a `--url`,
    /// or a `--scenario` file.
    Run(Box<RunArgs>),
    /// Start the NovaCron-compatible reference server.
    Target(Box<crate::novacron::TargetArgs>),
    /// Re-render SUMMARY.md and junit.xml (and report.html with --html) from a results folder.
    Report(ReportArgs),
    /// Compare two results folders: per-metric deltas, regressions highlighted.
    Compare(CompareArgs),
    /// Print the metric reference (Markdown) generated from the names module.
    MetricsReference,
    /// Merge the results folders of distributed shards (segments) into one, exactly.
    Merge(MergeArgs),
    /// A local worker of `run --local-workers`: reads its resolved run configuration (JSON,
    /// secrets included) from stdin. Started by novaload itself, never by hand.
    #[command(hide = true)]
    Worker,
}

#[derive(Args, Debug, Clone)]
pub struct MergeArgs {
    /// Shard results folders (each holds `<test>_summary.json`).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Output folder for the merged results (created; must not hold results already).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Merge even when some segments are missing (the result is marked partial and names them).
    #[arg(long)]
    pub allow_partial: bool,
}

/// Output format of `novaload compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum CompareFormat {
    #[default]
    Text,
    Markdown,
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// The baseline results folder (results/<timestamp>).
    pub run_a: PathBuf,
    /// The results folder compared against the baseline.
    pub run_b: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: CompareFormat,
    /// Changes within this many percent are not highlighted as regressions or improvements.
    #[arg(long, default_value_t = 10.0)]
    pub tolerance: f64,
    /// Exit 99 when a regression is worse than PCT percent (latency up, error rate up,
    /// throughput down).
    #[arg(long, value_name = "PCT")]
    pub fail_on_regression: Option<f64>,
}

/// How the db test reaches the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum DbMode {
    /// the upstream mix through the REST API (docs/NOVACRON-SUITE.md#db)
    Api,
    /// the same mix as SQL through a sqlx PostgreSQL pool (--database-url)
    Direct,
}

/// `--db-mix`: which statements a direct-mode iteration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
pub enum DbMixArg {
    /// the upstream mix with its think times (docs/NOVACRON-SUITE.md#db)
    #[default]
    Upstream,
    /// one primary-key SELECT per iteration, no think time (compare with `pgbench -S`)
    SelectOnly,
    /// a primary-key SELECT and an UPDATE of the same row per iteration, no think time
    ReadWrite,
}

/// Which test to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum TestName {
    /// REST API workload (docs/NOVACRON-SUITE.md#api)
    Api,
    /// DWCP v3 migration workload (docs/NOVACRON-SUITE.md#dwcp)
    Dwcp,
    /// WebSocket realtime workload (docs/NOVACRON-SUITE.md#ws)
    Ws,
    /// Database workload (docs/NOVACRON-SUITE.md#db)
    Db,
    /// All four, one results folder
    All,
}

/// The flags of `novaload run`, as given (environment variables applied by clap). Turned into
/// a validated `RunConfig` by `config::resolve` (src/config/).
#[derive(Args, Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunArgs {
    /// The test to run. Omit it with --url (quick mode) or --scenario (runs the quick-mode URL
    /// or the api workload, see README).
    #[arg(value_enum)]
    pub test: Option<TestName>,

    /// Quick mode: load any HTTP(S) endpoint with one request per iteration.
    #[arg(long, conflicts_with = "test")]
    pub url: Option<String>,
    /// HTTP method for --url.
    #[arg(long, short = 'm', default_value = "GET")]
    pub method: String,
    /// Extra request header `Name: value` for --url (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Request body for --url (`@file` reads a file).
    #[arg(long)]
    pub body: Option<String>,

    /// A k6 `options` object as JSON, YAML or TOML (scenarios, stages, thresholds, vus,
    /// duration, iterations, tags).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Named stage set: smoke, full, 1k, 10k, 100k, soak, spike (workloads); quick mode: none.
    #[arg(long, env = "NOVALOAD_PROFILE")]
    pub profile: Option<String>,
    /// Virtual users (k6 --vus).
    #[arg(long)]
    pub vus: Option<u64>,
    /// Test duration, e.g. 30s, 5m (k6 --duration).
    #[arg(long)]
    pub duration: Option<String>,
    /// Total iterations shared by the VUs (k6 --iterations).
    #[arg(long)]
    pub iterations: Option<u64>,
    /// A ramping stage `DURATION:TARGET`, repeatable (k6 --stage 30s:100).
    #[arg(long = "stage")]
    pub stages: Vec<String>,
    /// Open model: start this many iterations per second (constant-arrival-rate).
    #[arg(long)]
    pub rate: Option<f64>,
    /// With --rate: most VUs the executor may use (default: --vus, or 100).
    #[arg(long)]
    pub max_vus: Option<u64>,
    /// Extra threshold `METRIC=EXPR` (repeatable), e.g. `http_req_duration=p(99)<250`.
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,

    /// `run all`: run the four tests side by side instead of one after another (the smoke
    /// profile always does).
    #[arg(long)]
    pub parallel: bool,

    /// Base directory for results; each run writes OUT/<UTC timestamp>/.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Do not write junit.xml (thresholds and checks as JUnit test cases for CI).
    #[arg(long)]
    pub no_junit: bool,
    /// Do not write report.html (the self-contained HTML report with plots).
    #[arg(long)]
    pub no_html: bool,
    /// No live progress line (the summary is still printed and written).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Run the VUs on N threads with one event loop each, VUs dealt out in turn (as wrk's
    /// `-t` and pgbench's `-j` threads), instead of the shared work-stealing runtime [default:
    /// shared]. With the server on the same cores, the shared runtime is faster for HTTP; N
    /// event loops suit VUs that each keep one database connection (bench/db.sh uses
    /// `--vu-threads 2` against `pgbench -j 2`). See docs/PERFORMANCE.md.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub vu_threads: Option<u16>,

    /// NovaCron REST base URL. Omitted: novaload starts its built-in target on 127.0.0.1:0.
    #[arg(long, env = "API_URL")]
    pub api_url: Option<String>,
    /// WebSocket base URL (the ws test connects to <WS_URL>/realtime).
    #[arg(long, env = "WS_URL")]
    pub ws_url: Option<String>,
    /// DWCP stream base URL (the dwcp test connects to <DWCP_WS_URL>/stream).
    #[arg(long, env = "DWCP_WS_URL")]
    pub dwcp_ws_url: Option<String>,
    /// Bearer token sent to NovaCron. A secret: never printed, logged or exported.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PostgreSQL URL for `run db --db-mode direct`. A secret (may hold a password).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// db test: through the REST API (`api`) or as SQL on the database (`direct`). Default:
    /// direct when --database-url/DATABASE_URL is set, else api.
    #[arg(long, value_enum)]
    pub db_mode: Option<DbMode>,
    /// db --db-mode direct: PostgreSQL pool size, max connections [default: 20].
    #[arg(long)]
    pub pool_size: Option<u32>,
    /// db --db-mode direct: the upstream operation mix, or a back-to-back mix without think
    /// time to compare with pgbench: one primary-key SELECT per iteration (`pgbench -S`), or
    /// that SELECT plus an UPDATE of the row (bench/db.sh's pgbench script). In those, each VU
    /// keeps one connection for the run when --pool-size >= VUs, as a pgbench client does.
    #[arg(long, value_enum, default_value_t = DbMixArg::Upstream)]
    pub db_mix: DbMixArg,

    /// ws test: loopback source addresses to bind, comma-separated (default: planned from the
    /// peak, ~10,000 connections per address: binding gets slow as an address fills).
    #[arg(long, value_delimiter = ',')]
    pub source_ips: Vec<std::net::IpAddr>,
    /// ws test: how long each session stays open, `MIN..MAX` (uniform, e.g. 30s..60s) or one
    /// duration [default: upstream's 30s..60s]. A session longer than the run holds its
    /// connection to the end, e.g. `--ws-session 10m` to keep 100,000 open for minutes.
    #[arg(long, value_name = "DURATION[..DURATION]")]
    pub ws_session: Option<String>,

    /// Request timeout (k6's default is 60s): a deadline for the whole request, from connect
    /// to the last body byte.
    #[arg(long, default_value = "60s")]
    pub timeout: String,
    /// Redirects followed per request (k6's default is 10; 0 never follows: the 3xx is the
    /// answer). Each hop is its own request in the metrics; a loop or more hops is a
    /// `redirect` error. Scenario files: `maxRedirects`.
    #[arg(long, value_name = "N")]
    pub max_redirects: Option<u32>,
    /// Body bytes kept per response for checks and JSON parsing (e.g. 4MiB, 512KiB, 0); the
    /// rest is read, counted in data_received and dropped. 0 keeps none (k6's
    /// `discardResponseBodies`, also honoured in scenario files). Default 4MiB.
    #[arg(long, value_name = "SIZE")]
    pub response_body_limit: Option<String>,
    /// Extra PEM CA certificate(s) to trust for HTTPS/WSS.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// Do not verify TLS certificates (as k6 --insecure-skip-tls-verify).
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,

    /// Serve live Prometheus metrics (with trace exemplars) on ADDR at /metrics.
    #[arg(long, env = "NOVALOAD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// OTLP endpoint for traces and metrics (grpc: http://host:4317, http: http://host:4318).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// OTLP protocol: grpc or http/protobuf.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", default_value = "grpc")]
    pub otlp_protocol: String,
    /// service.name of novaload's spans and metrics.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "novaload")]
    pub service_name: String,
    /// Fraction of iterations traced (0..1); default from OTEL_TRACES_SAMPLER_ARG, else 1.
    #[arg(long)]
    pub trace_sample_ratio: Option<f64>,
    /// Turn all live telemetry off: no /metrics, no OTLP, no spans (results are unaffected).
    #[arg(long, conflicts_with_all = ["metrics_listen", "otlp_endpoint"])]
    pub no_telemetry: bool,
    /// Turn spans off (metrics stay on). Spans are only created when an OTLP endpoint is set.
    #[arg(long)]
    pub no_traces: bool,
    /// Run id (a label on every signal); default: generated. Shards of one distributed run
    /// must pass the same run id (`novaload merge` refuses shards of different runs).
    #[arg(long, env = "NOVALOAD_RUN_ID")]
    pub run_id: Option<String>,

    // --- distributed runs (docs: deploy/kubernetes/README.md) ---
    /// Run only segment i of N (1-based) of every scenario: VUs, iterations and arrivals are
    /// split exactly (k6 execution-segment arithmetic). Merge shards with `novaload merge`.
    #[arg(long, env = "NOVALOAD_SEGMENT", conflicts_with = "execution_segment")]
    pub segment: Option<String>,
    /// With env JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs): run segment INDEX+1 of N.
    #[arg(long, value_name = "N", conflicts_with_all = ["segment", "execution_segment"])]
    pub segment_count: Option<u64>,
    /// k6's --execution-segment, e.g. `1/4:2/4` (also `0.25:0.5`, `25%:50%`).
    #[arg(long)]
    pub execution_segment: Option<String>,
    /// k6's --execution-segment-sequence, e.g. `0,1/4,2/4,3/4,1`; every shard must pass the same.
    #[arg(long, requires = "execution_segment")]
    pub execution_segment_sequence: Option<String>,
    /// Wait until this RFC 3339 instant (e.g. 2025-01-01T12:00:00Z) before starting the load,
    /// so shards on several machines start together.
    #[arg(long, value_name = "RFC3339", env = "NOVALOAD_START_AT")]
    pub start_at: Option<String>,
    /// Split the run over N child processes of novaload (segments 1/N..N/N), then merge their
    /// results into one folder. Chosen automatically when a ws run needs more connections than
    /// one process may open.
    #[arg(long, value_name = "N")]
    pub local_workers: Option<u64>,
    /// Write results to exactly this folder (used by --local-workers for its shards).
    #[arg(long, hide = true)]
    pub results_dir: Option<PathBuf>,
}

impl RunArgs {
    /// The values clap gives when a flag is absent, for code that builds `RunArgs` itself
    /// (tests, embedding): `Default` alone would leave e.g. the method and timeout empty.
    /// Environment variables are not read here.
    pub fn with_defaults() -> Self {
        Self {
            method: "GET".into(),
            out: PathBuf::from("results"),
            timeout: "60s".into(),
            otlp_protocol: "grpc".into(),
            service_name: "novaload".into(),
            ..Self::default()
        }
    }

    /// Quick mode (`--url`) writing under `out`, quiet: the usual start of an in-process run.
    pub fn quick(url: &str, out: &std::path::Path) -> Self {
        Self {
            url: Some(url.to_string()),
            out: out.to_path_buf(),
            quiet: true,
            ..Self::with_defaults()
        }
    }
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A results folder (results/<timestamp>).
    pub dir: PathBuf,
    /// Also regenerate report.html (from the JSON summaries and the `<test>.json` time series).
    #[arg(long)]
    pub html: bool,
}
