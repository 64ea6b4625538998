//! `skyport token`: mints a development JWT with the key created on first start.

use std::io::Write;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use anyhow::Context;
use clap::Args;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

use crate::tls::dev_certs;
use skyport_core::clock::{Clock, SystemClock};
use skyport_core::config::Config;

/// Arguments of `skyport token`.
#[derive(Debug, Args)]
pub(super) struct TokenArgs {
    /// Tenant claim.
    #[arg(long)]
    tenant: String,
    /// Department claim.
    #[arg(long)]
    dept: Option<String>,
    /// Comma-separated roles, e.g. `admin`.
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Subject claim.
    #[arg(long, default_value = "dev-user")]
    sub: String,
    /// Configuration file (for issuer, audience and the default state directory).
    #[arg(long)]
    config: Option<PathBuf>,
    /// State directory holding certs/jwt-signing-key.pem.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Print this many distinct tokens, one per line (each with its own `jti`), e.g. for
    /// benchmarks that need a new token on every request.
    #[arg(long, default_value_t = 1)]
    count: u32,
}

/// The claims of a development token.
pub(super) fn dev_claims(
    config: &Config,
    sub: &str,
    tenant: &str,
    dept: Option<String>,
    roles: Vec<String>,
    ttl: u64,
) -> anyhow::Result<serde_json::Value> {
    let now = SystemClock::new()
        .wall()
        .duration_since(UNIX_EPOCH)?
        .as_secs();
    let mut claims = serde_json::json!({
        "iss": config.auth.jwt.issuer,
        "aud": config.auth.jwt.audience,
        "sub": sub,
        "tenant": tenant,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    });
    if let Some(dept) = dept {
        claims["dept"] = dept.into();
    }
    if !roles.is_empty() {
        claims["roles"] = roles.into();
    }
    Ok(claims)
}

/// The development signing key under `state_dir/certs` and its header.
pub(super) fn dev_key(state_dir: &std::path::Path) -> anyhow::Result<(Header, EncodingKey)> {
    let key_path = state_dir
        .join("certs")
        .join(dev_certs::files::JWT_SIGNING_KEY);
    let pem = std::fs::read(&key_path).with_context(|| {
        format!(
            "reading {} (start `skyport serve` once, or run `skyport certs init --out {}`)",
            key_path.display(),
            state_dir.join("certs").display()
        )
    })?;
    let key = EncodingKey::from_ec_pem(&pem).context("parsing the development signing key")?;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(dev_certs::DEV_JWT_KID.to_string());
    Ok((header, key))
}

/// Mints one development token for `tenant`.
pub(super) fn mint(
    state_dir: &std::path::Path,
    config: &Config,
    tenant: &str,
    dept: Option<String>,
) -> anyhow::Result<String> {
    let (header, key) = dev_key(state_dir)?;
    let claims = dev_claims(config, "dev-user", tenant, dept, Vec::new(), 3600)?;
    Ok(encode(&header, &claims, &key)?)
}

/// Prints the token(s).
pub(super) fn run(args: TokenArgs) -> anyhow::Result<i32> {
    let config = super::load_config(args.config.as_deref(), None)?;
    let state_dir = args.state_dir.unwrap_or(config.server.state_dir.clone());
    let (header, key) = dev_key(&state_dir)?;
    let mut claims = dev_claims(
        &config,
        &args.sub,
        &args.tenant,
        args.dept,
        args.roles,
        args.ttl,
    )?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..args.count.max(1) {
        if args.count > 1 {
            claims["jti"] = format!("{}-{i}", claims["iat"]).into();
        }
        writeln!(out, "{}", encode(&header, &claims, &key)?)?;
    }
    out.flush()?;
    Ok(0)
}
