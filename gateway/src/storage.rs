//! The gateway's stores, opened on the engine `[storage]` names: SQLite in the state
//! directory (the embedded default) or a PostgreSQL database shared by replicas, whose
//! schema is migrated here, before anything serves.

use std::sync::Arc;

use anyhow::Context;
use skyport_auth::access_keys::AccessKeyStore;
use skyport_core::config::{Config, StorageBackend};
use skyport_domain::approvals::ApprovalStore;
use skyport_domain::catalog::changes::CatalogChangeStore;
use skyport_domain::events::EventStore;
use skyport_domain::instance_leases::InstanceLeaseStore;
use skyport_domain::inventory::InventoryStore;
use skyport_domain::leases::{LeaseStore, SoleHolder};
use skyport_domain::operations::deployments::DeploymentStore;
use skyport_domain::operations::key_pairs::KeyPairStore;
use skyport_domain::placement::audit::PlacementAuditStore;
use skyport_domain::sessions::SessionStore;
use skyport_domain::sla::SlaStore;
use skyport_store_postgres as postgres;
use skyport_store_sqlite as sqlite;

/// Every store of the gateway.
pub struct Stores {
    /// Instance records and idempotency tokens.
    pub inventory: Arc<dyn InventoryStore>,
    /// EC2 access keys.
    pub access_keys: Arc<dyn AccessKeyStore>,
    /// Tenants' key pairs.
    pub key_pairs: Arc<dyn KeyPairStore>,
    /// Administrators' catalog changes.
    pub catalog: Arc<dyn CatalogChangeStore>,
    /// Placement decisions.
    pub placements: Arc<dyn PlacementAuditStore>,
    /// Deployments.
    pub deployments: Arc<dyn DeploymentStore>,
    /// Leases for run-once work (the gateway's own on SQLite).
    pub leases: Arc<dyn LeaseStore>,
    /// Instances' leases (when they are stopped or terminated).
    pub instance_leases: Arc<dyn InstanceLeaseStore>,
    /// Orders waiting for approval.
    pub approvals: Arc<dyn ApprovalStore>,
    /// Webhook subscriptions and the outbox of deliveries.
    pub events: Arc<dyn EventStore>,
    /// The providers' SLA minute samples.
    pub sla: Arc<dyn SlaStore>,
    /// Web console sessions.
    pub sessions: Arc<dyn SessionStore>,
}

impl Stores {
    /// Opens (and migrates) every store on `config`'s engine.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        match config.storage.backend {
            StorageBackend::Sqlite => Self::open_sqlite(config),
            StorageBackend::Postgres => Self::open_postgres(config).await,
        }
    }

    /// Only the SLA samples (for `skyport sla`).
    pub async fn sla(config: &Config) -> anyhow::Result<Arc<dyn SlaStore>> {
        Ok(match config.storage.backend {
            StorageBackend::Sqlite => Arc::new(
                sqlite::SqliteSla::open(&config.server.state_dir)
                    .with_context(|| format!("opening {}", config.server.state_dir.display()))?,
            ),
            StorageBackend::Postgres => {
                Arc::new(postgres::PgSla::new(Self::connect_postgres(config).await?))
            }
        })
    }

    /// Only the access keys (for `skyport keys`).
    pub async fn access_keys(config: &Config) -> anyhow::Result<Arc<dyn AccessKeyStore>> {
        Ok(match config.storage.backend {
            StorageBackend::Sqlite => Arc::new(
                sqlite::SqliteAccessKeys::open(&config.server.state_dir)
                    .with_context(|| format!("opening {}", config.server.state_dir.display()))?,
            ),
            StorageBackend::Postgres => Arc::new(postgres::PgAccessKeys::new(
                Self::connect_postgres(config).await?,
            )),
        })
    }

    fn open_sqlite(config: &Config) -> anyhow::Result<Self> {
        let dir = &config.server.state_dir;
        Ok(Self {
            inventory: Arc::new(
                sqlite::SqliteInventory::open(dir).context("opening the inventory")?,
            ),
            access_keys: Arc::new(
                sqlite::SqliteAccessKeys::open(dir).context("opening the access keys")?,
            ),
            key_pairs: Arc::new(
                sqlite::SqliteKeyPairs::open(dir).context("opening the key pairs")?,
            ),
            catalog: Arc::new(
                sqlite::SqliteCatalogChanges::open(dir).context("opening the catalog changes")?,
            ),
            placements: Arc::new(
                sqlite::SqlitePlacementAudit::open(dir).context("opening the placement audit")?,
            ),
            deployments: Arc::new(
                sqlite::SqliteDeployments::open(dir).context("opening the deployments")?,
            ),
            leases: Arc::new(SoleHolder),
            instance_leases: Arc::new(
                sqlite::SqliteInstanceLeases::open(dir).context("opening the instance leases")?,
            ),
            approvals: Arc::new(
                sqlite::SqliteApprovals::open(dir).context("opening the approvals")?,
            ),
            events: Arc::new(sqlite::SqliteEvents::open(dir).context("opening the webhooks")?),
            sla: Arc::new(sqlite::SqliteSla::open(dir).context("opening the SLA samples")?),
            sessions: Arc::new(
                sqlite::SqliteSessions::open(dir).context("opening the console sessions")?,
            ),
        })
    }

    /// A pool on the configured database, its schema brought to this build's version.
    async fn connect_postgres(config: &Config) -> anyhow::Result<postgres::Pg> {
        let password = postgres::db::password(&config.storage, &config.server.state_dir)?;
        let db = postgres::Pg::connect(&config.storage, password.as_deref()).await?;
        let found = postgres::schema::migrate(&db)
            .await
            .context("migrating the PostgreSQL schema")?;
        tracing::info!(
            schema_found = found,
            schema = postgres::schema::latest(),
            "storage: PostgreSQL"
        );
        Ok(db)
    }

    async fn open_postgres(config: &Config) -> anyhow::Result<Self> {
        let db = Self::connect_postgres(config).await?;
        Ok(Self {
            inventory: Arc::new(postgres::PgInventory::new(db.clone())),
            access_keys: Arc::new(postgres::PgAccessKeys::new(db.clone())),
            key_pairs: Arc::new(postgres::PgKeyPairs::new(db.clone())),
            catalog: Arc::new(postgres::PgCatalogChanges::new(db.clone())),
            placements: Arc::new(postgres::PgPlacementAudit::new(db.clone())),
            deployments: Arc::new(postgres::PgDeployments::new(db.clone())),
            leases: Arc::new(postgres::PgLeases::new(db.clone())),
            instance_leases: Arc::new(postgres::PgInstanceLeases::new(db.clone())),
            approvals: Arc::new(postgres::PgApprovals::new(db.clone())),
            events: Arc::new(postgres::PgEvents::new(db.clone())),
            sla: Arc::new(postgres::PgSla::new(db.clone())),
            sessions: Arc::new(postgres::PgSessions::new(db)),
        })
    }
}
