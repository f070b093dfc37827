//! `bastion privacy`: the accountants from the command line.
//!
//! ```text
//! bastion privacy epsilon --q 0.01 --sigma 1.0 --steps 10000 --delta 1e-5 [--accountant prv]
//! {"epsilon":6.18776...,"accountant":"pld","q":0.01,"sigma":1.0,"steps":10000,"delta":1e-5}
//! bastion privacy sigma --q 0.01 --steps 3000 --delta 1e-5 --epsilon 3
//! {"sigma":1.03302...,"epsilon":2.99998...,"accountant":"pld", ...}
//! ```
//!
//! Each prints one JSON object on stdout. Invalid parameters are rejected by the accountant
//! itself, so the messages are the library's (they name the parameter and the value).

use anyhow::{bail, Context};
use bastion_dp::accountant::{self, calibrate_sigma, AccountantKind};
use serde_json::json;

#[derive(clap::Subcommand)]
pub(crate) enum PrivacyCommand {
    /// Epsilon spent by `steps` Poisson-sampled Gaussian steps.
    Epsilon(EpsilonArgs),
    /// Smallest noise multiplier whose epsilon stays at or under a target.
    Sigma(SigmaArgs),
}

/// Which accountant answers. `prv` and `pld` both name the tight one (the default).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum AccountantArg {
    /// Rényi DP: simple, looser.
    Rdp,
    /// Tight privacy-loss accountant (PLD; an upper bound within ~0.1% of exact).
    Prv,
    /// Same as `prv`.
    Pld,
}

impl From<AccountantArg> for AccountantKind {
    fn from(a: AccountantArg) -> Self {
        match a {
            AccountantArg::Rdp => AccountantKind::Rdp,
            AccountantArg::Prv | AccountantArg::Pld => AccountantKind::Pld,
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct EpsilonArgs {
    /// Poisson sampling rate, in (0, 1].
    #[arg(long, allow_hyphen_values = true)]
    q: f64,
    /// Noise multiplier (noise std / clipping norm), positive.
    #[arg(long, allow_hyphen_values = true)]
    sigma: f64,
    /// Number of steps, at least 1.
    #[arg(long, allow_hyphen_values = true)]
    steps: u64,
    /// Target delta, in (0, 1).
    #[arg(long, allow_hyphen_values = true)]
    delta: f64,
    /// Accountant to use.
    #[arg(long, value_enum, default_value_t = AccountantArg::Prv)]
    accountant: AccountantArg,
}

#[derive(clap::Args)]
pub(crate) struct SigmaArgs {
    /// Poisson sampling rate, in (0, 1].
    #[arg(long, allow_hyphen_values = true)]
    q: f64,
    /// Number of steps, at least 1.
    #[arg(long, allow_hyphen_values = true)]
    steps: u64,
    /// Target delta, in (0, 1).
    #[arg(long, allow_hyphen_values = true)]
    delta: f64,
    /// Target epsilon, positive.
    #[arg(long, allow_hyphen_values = true)]
    epsilon: f64,
    /// Accountant to calibrate with.
    #[arg(long, value_enum, default_value_t = AccountantArg::Prv)]
    accountant: AccountantArg,
}

pub(crate) fn run(cmd: PrivacyCommand) -> anyhow::Result<()> {
    let out = match cmd {
        PrivacyCommand::Epsilon(a) => {
            let kind = AccountantKind::from(a.accountant);
            let mut acct = accountant::create(kind);
            acct.compose(a.q, a.sigma, a.steps)
                .context("invalid privacy parameters")?;
            let eps = acct
                .epsilon(a.delta)
                .context("invalid privacy parameters")?;
            if !eps.is_finite() {
                bail!(
                    "epsilon is unbounded for q {}, sigma {}, {} steps at delta {}",
                    a.q,
                    a.sigma,
                    a.steps,
                    a.delta
                );
            }
            json!({
                "epsilon": eps,
                "accountant": kind.name(),
                "q": a.q,
                "sigma": a.sigma,
                "steps": a.steps,
                "delta": a.delta,
            })
        }
        PrivacyCommand::Sigma(a) => {
            let kind = AccountantKind::from(a.accountant);
            let c = calibrate_sigma(kind, a.q, a.steps, a.delta, a.epsilon)
                .context("cannot calibrate noise")?;
            json!({
                "sigma": c.sigma,
                "epsilon": c.epsilon,
                "accountant": kind.name(),
                "q": a.q,
                "steps": a.steps,
                "delta": a.delta,
                "target_epsilon": a.epsilon,
            })
        }
    };
    println!("{out}");
    Ok(())
}
