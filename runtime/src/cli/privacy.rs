//! `bastion privacy` (placeholder until its issue lands).

#[derive(clap::Subcommand)]
pub(crate) enum PrivacyCommand {}

pub(crate) fn run(cmd: PrivacyCommand) -> anyhow::Result<()> {
    match cmd {}
}
