//! `skyport instances ...`: the native instance API from the command line, with progress
//! output while waiting for a state.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::token;
use crate::tls::dev_certs;
use skyport_core::config::Config;

/// Arguments shared by every `instances` command.
#[derive(Debug, Args)]
pub(super) struct InstancesArgs {
    #[command(subcommand)]
    command: InstancesCommand,
    #[command(flatten)]
    gateway: GatewayArgs,
}

/// Which gateway to call, and as whom (shared by the commands that use the native API).
#[derive(Debug, Args)]
pub(super) struct GatewayArgs {
    /// Gateway URL.
    #[arg(long, default_value = "https://127.0.0.1:8443", global = true)]
    url: String,
    /// Tenant to act as (a development token is minted with the state directory's key).
    #[arg(long, default_value = "demo", global = true)]
    tenant: String,
    /// Department claim of that token.
    #[arg(long, global = true)]
    dept: Option<String>,
    /// State directory holding certs/ (CA and JWT key).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum InstancesCommand {
    /// List the tenant's instances.
    List,
    /// Create an instance; with --wait, follow it until it runs.
    Create {
        /// Image name.
        #[arg(long, default_value = "skyport-tiny")]
        image: String,
        /// Instance type.
        #[arg(long = "type", default_value = "sp.micro")]
        instance_type: String,
        /// Region.
        #[arg(long)]
        region: Option<String>,
        /// Name.
        #[arg(long)]
        name: Option<String>,
        /// Wait until running, printing each state change.
        #[arg(long)]
        wait: bool,
    },
    /// Show one instance.
    Get {
        /// Instance id.
        id: String,
    },
    /// Start a stopped instance.
    Start {
        /// Instance id.
        id: String,
        /// Wait until running.
        #[arg(long)]
        wait: bool,
    },
    /// Stop a running instance.
    Stop {
        /// Instance id.
        id: String,
        /// Wait until stopped.
        #[arg(long)]
        wait: bool,
    },
    /// Change the type of a stopped instance.
    Resize {
        /// Instance id.
        id: String,
        /// New instance type.
        #[arg(long = "type")]
        instance_type: String,
    },
    /// Print the serial console.
    Console {
        /// Instance id.
        id: String,
    },
    /// Terminate an instance.
    Terminate {
        /// Instance id.
        id: String,
    },
}

/// A native-API client acting as one tenant with a development token.
pub(super) struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    /// A client for the gateway at `args.url`, as `args.tenant` (and `args.dept`), trusting
    /// the CA and minting the token with the key under `args.state_dir` (default: the
    /// embedded one).
    pub(super) fn connect(args: GatewayArgs) -> anyhow::Result<Self> {
        let GatewayArgs {
            url,
            tenant,
            dept,
            state_dir,
        } = args;
        let state_dir = state_dir.unwrap_or(Config::embedded().server.state_dir);
        let ca = std::fs::read(state_dir.join("certs").join(dev_certs::files::CA))
            .with_context(|| format!("reading the CA under {}", state_dir.display()))?;
        let token = token::mint(&state_dir, &Config::embedded(), &tenant, dept)?;
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
            .timeout(Duration::from_secs(200))
            .build()?;
        Ok(Self {
            http,
            url: url.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// Sends one request; a non-2xx answer is an error with the problem's detail.
    pub(super) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.context("calling the gateway")?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "{status}: {}",
                value["detail"].as_str().unwrap_or("no detail")
            );
        }
        Ok(value)
    }

    /// Polls until `state`, printing each change; bounded by 180 s.
    async fn follow(&self, id: &str, target: &str) -> anyhow::Result<Value> {
        let waited = tokio::time::timeout(Duration::from_secs(180), self.reach(id, target)).await;
        waited.unwrap_or_else(|_| bail!("{id} did not reach {target} within 180 s"))
    }

    /// Polls until `state`, printing each change.
    async fn reach(&self, id: &str, target: &str) -> anyhow::Result<Value> {
        let mut last = String::new();
        loop {
            let v = self
                .send(reqwest::Method::GET, &format!("/v1/instances/{id}"), None)
                .await?;
            let state = v["state"].as_str().unwrap_or("?").to_string();
            if state != last {
                eprintln!("{id}: {state}");
                last = state.clone();
            }
            if state == target {
                return Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Runs an `instances` command.
pub(super) fn run(args: InstancesArgs) -> anyhow::Result<i32> {
    let client = Client::connect(args.gateway)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        use reqwest::Method as M;
        let out = match args.command {
            InstancesCommand::List => {
                // Every page, as one list.
                let mut all = Vec::new();
                let mut path = "/v1/instances?limit=1000".to_string();
                loop {
                    let page = client.send(M::GET, &path, None).await?;
                    all.extend(page["instances"].as_array().cloned().unwrap_or_default());
                    match page["next_token"].as_str() {
                        Some(token) => path = format!("/v1/instances?limit=1000&next_token={token}"),
                        None => break json!({ "instances": all }),
                    }
                }
            }
            InstancesCommand::Create { image, instance_type, region, name, wait } => {
                let created = client
                    .send(
                        M::POST,
                        "/v1/instances",
                        Some(json!({"image": image, "instance_type": instance_type, "region": region, "name": name})),
                    )
                    .await?;
                let id = created["id"].as_str().unwrap_or_default().to_string();
                if wait { client.follow(&id, "running").await? } else { created }
            }
            InstancesCommand::Get { id } => client.send(M::GET, &format!("/v1/instances/{id}"), None).await?,
            InstancesCommand::Start { id, wait } => {
                let v = client.send(M::POST, &format!("/v1/instances/{id}/start"), None).await?;
                if wait { client.follow(&id, "running").await? } else { v }
            }
            InstancesCommand::Stop { id, wait } => {
                let v = client.send(M::POST, &format!("/v1/instances/{id}/stop"), None).await?;
                if wait { client.follow(&id, "stopped").await? } else { v }
            }
            InstancesCommand::Resize { id, instance_type } => {
                client
                    .send(M::PATCH, &format!("/v1/instances/{id}"), Some(json!({"instance_type": instance_type})))
                    .await?
            }
            InstancesCommand::Console { id } => {
                let v = client.send(M::GET, &format!("/v1/instances/{id}/console"), None).await?;
                print!("{}", v["output"].as_str().unwrap_or(""));
                return Ok(0);
            }
            InstancesCommand::Terminate { id } => client.send(M::DELETE, &format!("/v1/instances/{id}"), None).await?,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        Ok(0)
    })
}
