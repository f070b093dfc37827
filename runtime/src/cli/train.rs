//! `bastion train` (placeholder until the engine lands).

#[derive(clap::Args)]
pub(crate) struct TrainArgs {}

pub(crate) fn run(_args: TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
