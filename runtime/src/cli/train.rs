//! `bastion train`: one party on one machine. It runs the same node, Supervisor, Trainer and
//! ledgers as a group (a group of one on loopback), so single-process training takes the very
//! code path a multi-party job does: per-sample clipping, noise, the durable ledger, the
//! release. Takes the same flags as `bastion cluster up`, with one node by default.

#[derive(clap::Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    up: super::cluster::UpArgs,
}

pub(crate) fn run(args: TrainArgs) -> anyhow::Result<()> {
    super::cluster::up(args.up.single())
}
