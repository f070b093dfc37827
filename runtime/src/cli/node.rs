//! `bastion node --config node.toml`: runs one node until its job ends. The coordinator
//! prints the job report as one JSON line on stdout.

use anyhow::Context;
use bastion_actors::config::NodeConfig;
use bastion_actors::node::run_node;
use std::path::PathBuf;

#[derive(clap::Args)]
pub(crate) struct NodeArgs {
    /// The node's configuration (TOML; unknown fields are refused).
    #[arg(long)]
    config: PathBuf,
}

pub(crate) fn run(args: NodeArgs) -> anyhow::Result<()> {
    let config = NodeConfig::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime
        .block_on(run_node(config))
        .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(report) = &outcome.report {
        println!("{}", serde_json::to_string(report)?);
    }
    // Tasks still blocked on sockets must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    anyhow::ensure!(!outcome.failed, "job failed: {}", outcome.reason);
    tracing::info!(reason = %outcome.reason, "node done");
    Ok(())
}
