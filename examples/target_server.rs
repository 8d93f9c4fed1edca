//! `novaload target` as a standalone binary, for benchmarks (bench/target.sh) independent of
//! the main CLI's wiring: `cargo run --release --example target_server -- --listen 127.0.0.1:0`.
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: novaload::novacron::TargetArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    novaload::novacron::run(Cli::parse().args).await
}
