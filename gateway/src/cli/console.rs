//! `skyport console`: a one-time sign-in link to the web console, signed with the
//! development key (the pattern of a notebook server's token URL).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use jsonwebtoken::encode;
use skyport_auth::claims::CONSOLE_SIGN_IN;

use super::token::{dev_claims, dev_key};

/// Arguments of `skyport console`.
#[derive(Debug, Args)]
pub(super) struct ConsoleArgs {
    /// The tenant to sign in as.
    #[arg(long)]
    tenant: String,
    /// The department, when the session should act for one.
    #[arg(long)]
    dept: Option<String>,
    /// Comma-separated roles, e.g. `admin`.
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// Who signs in.
    #[arg(long, default_value = "dev-user")]
    sub: String,
    /// The gateway's address as the browser reaches it (default: the configured listener).
    #[arg(long)]
    url: Option<String>,
    /// Configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// State directory holding certs/jwt-signing-key.pem.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

/// Prints the link.
pub(super) fn run(args: ConsoleArgs) -> anyhow::Result<i32> {
    let config = super::load_config(args.config.as_deref(), None)?;
    anyhow::ensure!(
        config.auth.jwt.keys.is_empty(),
        "development sign-in links are off: this configuration names its own JWT keys \
         ([[auth.jwt.keys]]); sign in through the identity provider"
    );
    anyhow::ensure!(
        config.console.enabled,
        "the console is off in this configuration ([console] enabled = false)"
    );
    let state_dir = args.state_dir.unwrap_or(config.server.state_dir.clone());
    let (header, key) = dev_key(&state_dir)?;
    let mut claims = dev_claims(
        &config,
        &args.sub,
        &args.tenant,
        args.dept,
        args.roles,
        config.console.sign_in_link_secs,
    )?;
    claims["jti"] = skyport_core::ids::new_id("signin").into();
    claims["skyport_use"] = CONSOLE_SIGN_IN.into();
    let ticket = encode(&header, &claims, &key).context("signing the link")?;
    let base = args
        .url
        .unwrap_or_else(|| format!("https://{}", config.server.listen));
    println!(
        "{}/console/signin?ticket={ticket}",
        base.trim_end_matches('/')
    );
    Ok(0)
}
