//! `bastion attest`: check SEV-SNP evidence from files, as a peer would before admitting a node.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};
use bastion_attestation::{Policy, TrustAnchors, Verdict, Verifier};
use serde::Serialize;

#[derive(clap::Subcommand)]
pub(crate) enum AttestCommand {
    /// Verify an SNP attestation report and its VCEK/VLEK against the pinned AMD roots
    /// (Milan, Genoa, Turin). Prints one JSON object and exits 0 when accepted; exits 1 with
    /// the reason otherwise.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// The 1184-byte attestation report, as raw bytes or hex text.
    #[arg(long, value_name = "FILE")]
    report: PathBuf,
    /// The VCEK or VLEK certificate that signed it, DER or PEM.
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Verification policy (TOML); it must set [min_tcb] (or allow_any_tcb = true). Without one
    /// the safe defaults apply (no debug, no migration agent, VMPL 0) but any measurement and
    /// any TCB are accepted, and the output says "measurement_checked": false.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The time certificates must be valid at, RFC 3339 (e.g. 2026-01-01T00:00:00Z). Default: now.
    #[arg(long, value_name = "RFC3339-TIME")]
    at: Option<String>,
    /// REPORT_DATA the report must carry (128 hex digits). Default: not checked.
    #[arg(long, value_name = "HEX")]
    expect_report_data: Option<String>,
}

/// What `verify` prints: the verdict and what it was checked against.
#[derive(Serialize)]
struct Output<'a> {
    verdict: &'static str,
    /// The policy file, or null when none was given.
    policy_file: Option<String>,
    /// The time certificate validity was checked at.
    at: String,
    #[serde(flatten)]
    details: &'a Verdict,
}

pub(crate) fn run(cmd: AttestCommand) -> anyhow::Result<()> {
    match cmd {
        AttestCommand::Verify(args) => verify(args),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let report = read_report(&args.report)?;
    let cert = std::fs::read(&args.cert)
        .with_context(|| format!("read certificate {}", args.cert.display()))?;
    let policy = match &args.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read policy {}", path.display()))?;
            Policy::from_toml(&text).with_context(|| format!("policy {}", path.display()))?
        }
        None => Policy::any_measurement_dangerous(),
    };
    let (at, at_text) = match &args.at {
        Some(text) => (parse_rfc3339(text)?, text.clone()),
        None => {
            let now = SystemTime::now();
            (
                now,
                time::OffsetDateTime::from(now)
                    .format(&time::format_description::well_known::Rfc3339)?,
            )
        }
    };
    let expected = args
        .expect_report_data
        .as_deref()
        .map(parse_report_data)
        .transpose()?;
    // AMD's roots need a policy with a minimum TCB; refused here, before any evidence is read.
    let verifier =
        Verifier::try_new(policy, TrustAnchors::amd()).with_context(|| match &args.policy {
            Some(path) => format!("policy {}", path.display()),
            None => "the default policy".into(),
        })?;
    let verdict = verifier
        .verify(&report, &cert, expected.as_ref(), at)
        .map_err(|e| {
            let code = e.code();
            anyhow::Error::new(e).context(format!(
                "refused ({code}): report {} with certificate {}",
                args.report.display(),
                args.cert.display()
            ))
        })?;
    let out = Output {
        verdict: "accepted",
        policy_file: args.policy.as_ref().map(|p| p.display().to_string()),
        at: at_text,
        details: &verdict,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Raw bytes, or hex text (whitespace ignored) as published by most tools.
fn read_report(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("read report {}", path.display()))?;
    let text: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !text.is_empty() && text.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(&text)
            .with_context(|| format!("report {}: odd-length hex text", path.display()));
    }
    Ok(bytes)
}

fn parse_rfc3339(text: &str) -> anyhow::Result<SystemTime> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| {
            format!("--at {text:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z")
        })?;
    Ok(t.into())
}

fn parse_report_data(text: &str) -> anyhow::Result<[u8; 64]> {
    let bytes = hex::decode(text.trim()).with_context(|| "--expect-report-data is not hex")?;
    match <[u8; 64]>::try_from(bytes.as_slice()) {
        Ok(a) => Ok(a),
        Err(_) => bail!(
            "--expect-report-data has {} bytes, expected 64 (128 hex digits)",
            bytes.len()
        ),
    }
}
