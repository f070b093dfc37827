//! `bastion`: the BastionAI command. Each subcommand lives in its own module under `cli/`;
//! this file only parses arguments and reports errors.

use clap::{Parser, Subcommand};

mod cli;
mod data;

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
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Bastion::parse();
    let result = match args.command {
        Command::Privacy(cmd) => cli::privacy::run(cmd),
        Command::Attest(cmd) => cli::attest::run(cmd),
        Command::Train(cmd) => cli::train::run(cmd),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
