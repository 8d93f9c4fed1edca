//! `novaload target`: the NovaCron-compatible reference server (see issue 6).
//! Placeholder until the target lands.

/// Placeholder arguments until the target lands.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {}

/// Placeholder entry until the target lands.
pub async fn run(_args: TargetArgs) -> anyhow::Result<()> {
    anyhow::bail!("the reference target is not built yet")
}
