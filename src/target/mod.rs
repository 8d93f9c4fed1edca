//! `novaload target`: the NovaCron-compatible reference server (see issue 6).
//! Placeholder until the target lands.

/// Placeholder arguments until the target lands.
#[derive(clap::Args, Debug, Clone)]
pub struct TargetArgs {
    #[arg(long, default_value_t = 1000)]
    pub seed_vms: u64,
}

impl TargetArgs {
    pub fn embedded() -> Self {
        Self { seed_vms: 1000 }
    }
}

/// Placeholder handle.
pub struct TargetHandle;

impl TargetHandle {
    pub fn base_url(&self) -> String {
        String::new()
    }
    pub async fn shutdown(self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Placeholder until the target lands.
pub async fn spawn(
    _args: TargetArgs,
    _p: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
) -> anyhow::Result<TargetHandle> {
    anyhow::bail!("the reference target is not built yet")
}

/// Placeholder entry until the target lands.
pub async fn run(_args: TargetArgs) -> anyhow::Result<()> {
    anyhow::bail!("the reference target is not built yet")
}
