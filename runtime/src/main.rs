//! `bastion`: the BastionAI command. Each subcommand lives in its own module under `cli/`;
//! this file only parses arguments and reports errors.

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "bastion",
    version,
    about = "Confidential, differentially private training"
)]
struct Bastion {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Privacy accounting: epsilon for a schedule, or the noise for a target epsilon.
    #[command(subcommand)]
    Privacy(cli::privacy::PrivacyCommand),
    /// Attestation: verify SEV-SNP reports.
    #[command(subcommand)]
    Attest(cli::attest::AttestCommand),
    /// Train the ResNet cancer example with DP-SGD on one node.
    Train(cli::train::TrainArgs),
    /// Run one node of a training group.
    Node(cli::node::NodeArgs),
    /// Privacy receipts: verify a job's signed receipt against its released model.
    #[command(subcommand)]
    Receipt(cli::receipt::ReceiptCommand),
    /// A local multi-node group on loopback.
    #[command(subcommand)]
    Cluster(cli::cluster::ClusterCommand),
    /// GPT-2 checkpoints: perplexity, greedy generation, non-private pretraining on public
    /// text.
    #[command(subcommand)]
    Model(cli::model::ModelCommand),
    /// Parties (data owners, model owners, operators): make a key.
    #[command(subcommand)]
    Party(cli::party::PartyCommand),
    /// Data owners: push, delete, or read the spent budget of a dataset on a node.
    #[command(subcommand)]
    Data(cli::party::DataCommand),
    /// Model owners: submit a job to a node.
    #[command(subcommand)]
    Job(cli::party::JobCommand),
    /// Any party: the job's state on a node (state, step, nodes).
    Status(cli::party::StatusArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Bastion::parse();
    let result = match args.command {
        Command::Privacy(cmd) => cli::privacy::run(cmd),
        Command::Attest(cmd) => cli::attest::run(cmd),
        Command::Train(cmd) => cli::train::run(cmd),
        Command::Node(cmd) => cli::node::run(cmd),
        Command::Receipt(cmd) => cli::receipt::run(cmd),
        Command::Cluster(cmd) => cli::cluster::run(cmd),
        Command::Model(cmd) => cli::model::run(cmd),
        Command::Party(cmd) => cli::party::run_party(cmd),
        Command::Data(cmd) => cli::party::run_data(cmd),
        Command::Job(cmd) => cli::party::run_job(cmd),
        Command::Status(cmd) => cli::party::run_status(cmd),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
