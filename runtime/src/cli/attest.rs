//! `bastion attest` (placeholder until its issue lands).

#[derive(clap::Subcommand)]
pub(crate) enum AttestCommand {}

pub(crate) fn run(cmd: AttestCommand) -> anyhow::Result<()> {
    match cmd {}
}
