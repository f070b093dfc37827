//! The parties' commands: `bastion party keygen`, `bastion data push|delete|spent`,
//! `bastion job submit`, `bastion model fetch`, `bastion status`.
//!
//! Every command but `keygen` connects to a node's party port with the party's key
//! (`--key`, from `keygen`) and first checks the node's attestation against `--policy`
//! (a `verify.toml`: a verification policy, as `bastion attest verify --policy` reads, with an
//! optional `[trust]` table; see `bastion_attestation::tls::VerifyFile`). Nothing is sent
//! before the node passed. Results are one JSON object on stdout.

use std::path::PathBuf;

use anyhow::Context;
use bastion_attestation::tls::{PartyIdentity, VerifyFile};
use bastion_party::{Client, DatasetMeta, PushEvent};
use serde_json::json;

#[derive(clap::Subcommand)]
pub(crate) enum PartyCommand {
    /// Make a party's key pair (ECDSA P-256) in a new PEM file readable only by you, and print
    /// its fingerprint: what the node's operator lists under [[parties]] as `key`.
    Keygen {
        /// The key file to create (never overwritten).
        #[arg(long, value_name = "KEY.pem")]
        out: PathBuf,
    },
}

#[derive(clap::Subcommand)]
pub(crate) enum DataCommand {
    /// Push a dataset to a node (its data owner only). Resumes by itself when the connection
    /// drops. Prints the SHA-256 of the content as the node sealed it.
    Push(PushArgs),
    /// Delete a dataset from a node (its data owner only).
    Delete(NamedArgs),
    /// The privacy budget spent on a dataset, from the node's ledger (its data owner only).
    Spent(NamedArgs),
}

#[derive(clap::Subcommand)]
pub(crate) enum JobCommand {
    /// Submit a job (model owners). The job.toml must name its datasets in a top-level
    /// `datasets = [...]`; each one's owner must allow this model owner.
    Submit {
        #[command(flatten)]
        remote: Remote,
        /// The job.
        #[arg(long, value_name = "job.toml")]
        job: PathBuf,
    },
}

/// Which node, as whom, trusting what.
#[derive(clap::Args)]
pub(crate) struct Remote {
    /// The node's party address (host:port: its `party_listen`).
    #[arg(long, value_name = "ADDR")]
    node: String,
    /// This party's key (PEM, made by `bastion party keygen`).
    #[arg(long, value_name = "KEY.pem")]
    key: PathBuf,
    /// What the node must prove before anything is sent: a verification policy (the format
    /// of `bastion attest verify --policy`), plus `[trust]` for a simulated TEE.
    #[arg(long, value_name = "verify.toml")]
    policy: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct PushArgs {
    #[command(flatten)]
    remote: Remote,
    /// The dataset file.
    #[arg(long, value_name = "FILE")]
    dataset: PathBuf,
    /// Its format: medmnist-npz, jsonl, text-lines, ...
    #[arg(long)]
    format: String,
    /// jsonl: the field holding the text.
    #[arg(long)]
    field: Option<String>,
    /// medmnist-npz: the split to train on.
    #[arg(long)]
    split: Option<String>,
    /// The dataset's name, as the node lists it under this data owner.
    #[arg(long)]
    name: String,
    /// The privacy budget the node must enforce for this dataset.
    #[arg(long, value_name = "EPSILON")]
    budget_epsilon: f64,
    /// The delta of that budget.
    #[arg(long)]
    delta: f64,
    /// A model owner (its key's SHA-256, as `bastion party keygen` printed it) allowed to
    /// train on this dataset; repeat for several. Sealed with the data: the node's operator
    /// cannot add to it. None: no job may use the dataset.
    #[arg(long = "allow-model-owner", value_name = "KEY")]
    allow_model_owners: Vec<String>,
}

#[derive(clap::Args)]
pub(crate) struct NamedArgs {
    #[command(flatten)]
    remote: Remote,
    /// The dataset.
    #[arg(long)]
    name: String,
}

/// `bastion model fetch`.
#[derive(clap::Args)]
pub(crate) struct FetchArgs {
    #[command(flatten)]
    remote: Remote,
    /// A new (or empty) directory for the released model and its receipt.json.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// `bastion status`.
#[derive(clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    remote: Remote,
}

impl Remote {
    fn client(&self) -> anyhow::Result<Client> {
        let identity = PartyIdentity::load(&self.key)?;
        let verifier = VerifyFile::load_verifier(&self.policy)?;
        Ok(Client::new(self.node.clone(), &identity, verifier)?)
    }
}

fn block_on<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(work)
}

fn print(value: serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

pub(crate) fn run_party(cmd: PartyCommand) -> anyhow::Result<()> {
    match cmd {
        PartyCommand::Keygen { out } => {
            let identity = PartyIdentity::generate()?;
            identity.save(&out)?;
            eprintln!(
                "wrote {} (keep it private); give the node's operator this key:",
                out.display()
            );
            println!("{}", identity.fingerprint());
            Ok(())
        }
    }
}

pub(crate) fn run_data(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Push(args) => push(args),
        DataCommand::Delete(args) => {
            let client = args.remote.client()?;
            block_on(async { Ok(client.delete(&args.name).await?) })?;
            print(json!({ "deleted": args.name }))
        }
        DataCommand::Spent(args) => {
            let client = args.remote.client()?;
            let spent = block_on(async { Ok(client.spent(&args.name).await?) })?;
            print(json!({
                "dataset": args.name,
                "epsilon_spent": spent.epsilon_spent,
                "epsilon_budget": spent.epsilon_budget,
                "delta": spent.delta,
            }))
        }
    }
}

pub(crate) fn run_job(cmd: JobCommand) -> anyhow::Result<()> {
    match cmd {
        JobCommand::Submit { remote, job } => {
            let text = std::fs::read_to_string(&job)
                .with_context(|| format!("read the job {}", job.display()))?;
            let client = remote.client()?;
            let job_id = block_on(async { Ok(client.submit_job(&text).await?) })?;
            print(json!({ "job_id": job_id }))
        }
    }
}

pub(crate) fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let status = block_on(async { Ok(client.status().await?) })?;
    print(serde_json::to_value(status)?)
}

/// `bastion model fetch`: the release as JSON for `bastion model`'s printer.
pub(crate) fn fetch(args: FetchArgs) -> anyhow::Result<serde_json::Value> {
    let client = args.remote.client()?;
    let fetched = block_on(async { Ok(client.fetch_release(&args.out).await?) })?;
    Ok(json!({
        "job_id": fetched.job_id,
        "dir": args.out.display().to_string(),
        "files": fetched.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
    }))
}

fn push(args: PushArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let meta = DatasetMeta {
        name: args.name.clone(),
        format: args.format.clone(),
        field: args.field.clone(),
        split: args.split.clone(),
        epsilon_budget: args.budget_epsilon,
        delta: args.delta,
        allow_model_owners: args.allow_model_owners.clone(),
    };
    let bar = super::progress::stderr_bar(
        "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    );
    bar.set_message(format!("pushing {}", args.name));
    let mut on_event = |event: PushEvent| match event {
        PushEvent::Held { held, total } => {
            bar.set_length(total);
            bar.set_position(held);
        }
        PushEvent::Reconnecting { attempt, error } => {
            // Shown on a terminal and off it: a resumed push is worth knowing about.
            bar.suspend(|| eprintln!("connection lost ({error}); reconnecting (attempt {attempt})"))
        }
        _ => {}
    };
    let outcome = block_on(async {
        client
            .push(&meta, &args.dataset, &mut on_event)
            .await
            .with_context(|| format!("pushing {} as {:?}", args.dataset.display(), args.name))
    });
    bar.finish_and_clear();
    let outcome = outcome?;
    print(json!({
        "dataset": args.name,
        "sealed_sha256": outcome.sealed_sha256,
        "sha256": outcome.sha256,
        "bytes": outcome.len,
        "connections": outcome.begins.len(),
    }))
}
