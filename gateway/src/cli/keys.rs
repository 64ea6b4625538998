//! `skyport keys`: EC2 access keys (create, list, revoke), written straight to the gateway
//! database in the state directory, so they work whether or not a gateway is running. A
//! running gateway sees a new key at once and stops honouring a revoked one within
//! `auth::access_keys::LOOKUP_TTL`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use skyport_auth::access_keys::AccessKeys;
use skyport_auth::TenantDirectory;
use skyport_core::clock::SystemClock;

/// `skyport keys ...`.
#[derive(Debug, Args)]
pub(super) struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    /// Configuration file (default: the embedded configuration).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// State directory (overrides server.state_dir).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create an access key for a tenant; the secret is printed once, never again.
    Create {
        /// Tenant the key acts for.
        #[arg(long)]
        tenant: String,
        /// Department its requests bill.
        #[arg(long)]
        dept: Option<String>,
    },
    /// List access keys (never their secrets).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke an access key.
    Revoke {
        /// The access key id.
        access_key_id: String,
    },
}

/// Runs `skyport keys`.
pub(super) fn run(args: KeysArgs) -> anyhow::Result<i32> {
    let config = super::load_config(args.config.as_deref(), args.state_dir.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = AccessKeys::new(
            crate::storage::Stores::access_keys(&config).await?,
            SystemClock::shared(),
        );
        match args.command {
            KeysCommand::Create { tenant, dept } => {
                // A key for nobody would only fail later.
                TenantDirectory::new(config.tenants.clone())
                    .check_member(&tenant, dept.as_deref())
                    .map_err(|e| anyhow::anyhow!("{}", e.public))?;
                let new = store
                    .create(&tenant, dept.as_deref())
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.public))?;
                println!("access_key_id     {}", new.key.access_key_id);
                println!("secret_access_key {}", new.secret_access_key);
                println!("tenant            {}", new.key.tenant);
                if let Some(d) = &new.key.department {
                    println!("department        {d}");
                }
                eprintln!(
                    "The secret is shown only now. Use it with, for example:\n  \
                     AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY=<secret> \
                     aws ec2 describe-instances --region local-1 \
                     --endpoint-url https://{} --ca-bundle <state-dir>/certs/ca.pem",
                    new.key.access_key_id, config.server.listen
                );
            }
            KeysCommand::List { tenant } => {
                let keys = store
                    .list(tenant.as_deref())
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.public))?;
                for k in keys {
                    println!(
                        "{}  tenant={}  department={}  created={}  {}",
                        k.access_key_id,
                        k.tenant,
                        k.department.as_deref().unwrap_or("-"),
                        k.created_at,
                        k.revoked_at
                            .map(|r| format!("revoked={r}"))
                            .unwrap_or_else(|| "active".into())
                    );
                }
            }
            KeysCommand::Revoke { access_key_id } => {
                let key = store
                    .revoke(&access_key_id)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", e.public))?;
                println!("{} revoked", key.access_key_id);
            }
        }
        Ok(0)
    })
}
