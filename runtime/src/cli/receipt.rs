//! `bastion receipt`: check a job's signed privacy receipt offline, as a model owner or an
//! auditor holding the released model would.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use bastion_attestation::tls::VerifyFile;
use serde::Serialize;

#[derive(clap::Subcommand)]
pub(crate) enum ReceiptCommand {
    /// Verify `receipt.json` against the released model directory: the coordinator's
    /// attestation report (chain and policy), the key it binds, the signature, every signed
    /// field, the figures (epsilon recomputed from the recorded mechanism must not exceed the
    /// recorded one), and every file of the model. Prints one JSON object and exits 0 when
    /// accepted; exits 1 naming the field at fault otherwise.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// The receipt (`receipt.json` in the release directory).
    #[arg(value_name = "RECEIPT")]
    receipt: PathBuf,
    /// The released model directory the receipt describes.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// What the coordinator's report must say and chain to: a `verify.toml` (the attestation
    /// policy, with `[min_tcb]` for AMD's roots, and an explicit `[trust] simulated = true`
    /// naming the simulated chain for the simulated TEE of development).
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// The time certificates must be valid at, RFC 3339 (e.g. 2026-01-01T00:00:00Z).
    /// Default: now.
    #[arg(long, value_name = "RFC3339-TIME")]
    at: Option<String>,
}

/// Per dataset: the recorded figure and the one recomputed from the recorded history.
#[derive(Serialize)]
struct DatasetLine<'a> {
    name: &'a str,
    owner: Option<&'a str>,
    epsilon: f64,
    recomputed_epsilon: f64,
    delta: f64,
    epsilon_budget: f64,
    within_budget: bool,
}

/// What `verify` prints.
#[derive(Serialize)]
struct Output<'a> {
    verdict: &'static str,
    receipt: String,
    model: String,
    model_sha256: &'a str,
    policy_file: String,
    /// The coordinator's evidence chained to the simulated roots: nothing was
    /// hardware-protected.
    simulated: bool,
    coordinator_measurement: String,
    job: &'a bastion_receipt::JobRecord,
    privacy: &'a bastion_receipt::PrivacyRecord,
    datasets: Vec<DatasetLine<'a>>,
    nodes: &'a [bastion_receipt::NodeRecord],
}

pub(crate) fn run(cmd: ReceiptCommand) -> anyhow::Result<()> {
    match cmd {
        ReceiptCommand::Verify(args) => verify(args),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let verifier = VerifyFile::load_verifier(&args.policy)?;
    if verifier.trust().is_simulated() {
        eprintln!(
            "warning: {} trusts the SIMULATED TEE: a receipt it accepts proves no hardware protection",
            args.policy.display()
        );
    }
    let at = match &args.at {
        Some(text) => {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .with_context(|| {
                    format!("--at {text:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z")
                })?
                .into()
        }
        None => SystemTime::now(),
    };
    let bytes = std::fs::read(&args.receipt)
        .with_context(|| format!("read receipt {}", args.receipt.display()))?;
    let ok = bastion_receipt::verify(&bytes, &verifier, at, &args.model).with_context(|| {
        format!(
            "receipt {} refused (model {}, policy {})",
            args.receipt.display(),
            args.model.display(),
            args.policy.display()
        )
    })?;
    let body = &ok.body;
    let out = Output {
        verdict: "accepted",
        receipt: args.receipt.display().to_string(),
        model: args.model.display().to_string(),
        model_sha256: &body.model.sha256,
        policy_file: args.policy.display().to_string(),
        simulated: ok.verdict.simulated,
        coordinator_measurement: hex::encode(ok.verdict.measurement),
        job: &body.job,
        privacy: &body.privacy,
        datasets: body
            .datasets
            .iter()
            .zip(&ok.recomputed_epsilon)
            .map(|(d, r)| DatasetLine {
                name: &d.name,
                owner: d.owner.as_deref(),
                epsilon: d.epsilon,
                recomputed_epsilon: *r,
                delta: d.delta,
                epsilon_budget: d.epsilon_budget,
                within_budget: d.epsilon <= d.epsilon_budget,
            })
            .collect(),
        nodes: &body.nodes,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
