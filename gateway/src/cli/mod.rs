//! The `skyport` command line.

mod bill;
mod certs;
mod check;
mod console;
mod instances;
mod keys;
mod placement;
pub mod serve;
mod sla;
mod storage;
mod token;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Skyport: one cloud in front of many.
#[derive(Debug, Parser)]
#[command(name = "skyport", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the gateway (TLS API listener and plain-HTTP metrics listener).
    Serve(serve::ServeArgs),
    /// Print a development JWT signed with the key under <state-dir>/certs/.
    Token(token::TokenArgs),
    /// Print a one-time development sign-in link to the web console (only while the
    /// gateway uses the development JWT key).
    Console(console::ConsoleArgs),
    /// Plugin tools.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Instances through the native API (create, list, stop, start, resize, console, terminate).
    Instances(instances::InstancesArgs),
    /// Placement of orders by offering: `explain` where one would go, creating nothing.
    Placement(placement::PlacementArgs),
    /// A tenant's bill (json, focus, csr), or `finalize` a period, offline from the ledger.
    Bill(bill::BillArgs),
    /// EC2 access keys (SigV4) for tenants: create, list, revoke.
    Keys(keys::KeysArgs),
    /// The providers' service level for a month: availability, errors, latency (exit 3
    /// when a provider region is below the target).
    Sla(sla::SlaArgs),
    /// Storage tools: `migrate` a SQLite installation to PostgreSQL.
    Storage(storage::StorageArgs),
    /// Certificate tools.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Host one plugin in this process. Without options: talking to the gateway over
    /// standard input (the gateway starts it so). With `--serve FILE`: on this machine
    /// for every gateway that connects over mutual TLS (docs/scale-out.md).
    PluginHost {
        /// The host's configuration (listen address, TLS, the plugin and its config).
        #[arg(long, value_name = "FILE")]
        serve: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Run the provider conformance kit against FILE: load it as the gateway does, call
    /// the whole provider contract (one real instance is created and terminated) and print
    /// a pass/fail report (exit 0 when it conforms, 1 otherwise).
    Test {
        /// The plugin library (.so).
        file: PathBuf,
        /// The plugin's configuration: a TOML file holding what its `[[plugins]]` entry's
        /// `config` table would.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where it runs: `process` (the default) or `in-process`.
        #[arg(long, default_value = "process")]
        isolation: String,
        /// Its state directory (default: a temporary one, removed afterwards).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Run exactly the loader's checks on FILE and print a one-line verdict (exit 0 or 1).
    Check {
        /// The plugin library (.so).
        file: PathBuf,
        /// Expected sha256 of the file.
        #[arg(long)]
        sha256: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate FILE and print every error with its key path (exit 0 or 1).
    Check {
        /// The configuration file (TOML).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Create development certificates and keys in DIR (existing files are kept).
    Init {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The configuration an offline command uses: `--config FILE` or the embedded default,
/// with `--state-dir` overriding `server.state_dir`.
fn load_config(
    file: Option<&std::path::Path>,
    state_dir: Option<&std::path::Path>,
) -> anyhow::Result<skyport_core::config::Config> {
    let mut config = match file {
        Some(path) => skyport_domain::config_check::load(path)
            .map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display()))?,
        None => skyport_core::config::Config::embedded(),
    };
    if let Some(dir) = state_dir {
        config.server.state_dir = dir.to_path_buf();
    }
    Ok(config)
}

/// Runs the command line; returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Token(args) => token::run(args),
        Command::Console(args) => console::run(args),
        Command::Instances(args) => instances::run(args),
        Command::Placement(args) => placement::run(args),
        Command::Bill(args) => bill::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Sla(args) => sla::run(args),
        Command::Storage(args) => storage::run(args),
        Command::Plugins {
            command: PluginsCommand::Check { file, sha256 },
        } => check::plugin(&file, sha256.as_deref()),
        Command::Plugins {
            command:
                PluginsCommand::Test {
                    file,
                    config,
                    isolation,
                    state_dir,
                },
        } => check::conformance(&file, config.as_deref(), &isolation, state_dir),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => check::config(&file),
        Command::Certs {
            command: CertsCommand::Init { out },
        } => certs::init(&out),
        Command::PluginHost { serve: None } => Ok(skyport_plugin_host::isolation::child::run()),
        Command::PluginHost { serve: Some(file) } => {
            Ok(skyport_plugin_host::isolation::remote_host::run(&file))
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("skyport: {e:#}");
            1
        }
    }
}
