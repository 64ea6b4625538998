//! `skyport storage migrate`: copies a SQLite installation's state into the PostgreSQL
//! database the configuration names, all or nothing, so that replicas can share it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use skyport_core::config::StorageBackend;
use skyport_store_postgres as postgres;

/// `skyport storage ...`.
#[derive(Debug, Args)]
pub(super) struct StorageArgs {
    #[command(subcommand)]
    command: StorageCommand,
}

#[derive(Debug, Subcommand)]
enum StorageCommand {
    /// Copy `<from>/skyport.db` (SQLite) into the PostgreSQL database that `--config`'s
    /// `[storage]` names: its schema migrated first, every table copied in one
    /// transaction, refused unless that database is empty.
    Migrate {
        /// The configuration with `[storage] backend = "postgres"`.
        #[arg(long)]
        config: PathBuf,
        /// The state directory holding the SQLite database (default: the
        /// configuration's `server.state_dir`).
        #[arg(long)]
        from: Option<PathBuf>,
    },
}

/// Runs `skyport storage`.
pub(super) fn run(args: StorageArgs) -> anyhow::Result<i32> {
    let StorageCommand::Migrate { config, from } = args.command;
    let config = super::load_config(Some(&config), None)?;
    anyhow::ensure!(
        config.storage.backend == StorageBackend::Postgres,
        "the configuration's [storage] backend is not \"postgres\": nothing to migrate to"
    );
    let from = from.unwrap_or_else(|| config.server.state_dir.clone());
    let mut tables = Vec::new();
    for (table, columns) in postgres::schema::TABLES {
        let rows = skyport_store_sqlite::dump::rows(&from, table, columns)
            .with_context(|| format!("reading {}", from.display()))?;
        tables.push((*table, *columns, rows));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let password = postgres::db::password(&config.storage, &config.server.state_dir)?;
        let db = postgres::Pg::connect(&config.storage, password.as_deref()).await?;
        postgres::schema::migrate(&db)
            .await
            .context("migrating the PostgreSQL schema")?;
        let copied = postgres::schema::import(&db, &tables).await?;
        for (table, rows) in copied {
            println!("{table:<16} {rows} rows");
        }
        println!(
            "migrated {} into PostgreSQL",
            from.join("skyport.db").display()
        );
        Ok(0)
    })
}
