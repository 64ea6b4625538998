//! Deployments: every resource of a multi-resource offering (e.g. `web-dr`), placed together
//! and created all or none. A create that fails part-way terminates what it had created
//! before reporting the failure, so a tenant never keeps half a deployment.

use std::path::Path;
use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::instances::{self as ops, Action, CreateSpec};
use crate::auth::TenantContext;
use crate::db::Db;
use crate::error::GatewayError;
use crate::placement::{self, audit::Mode, Decision, OrderRequest};
use crate::state::AppState;

/// One created resource of a deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployedResource {
    /// The blueprint's name for it.
    pub resource: String,
    /// The instance created.
    pub instance: String,
    /// Where it went.
    pub provider: String,
    /// Its region.
    pub region: String,
    /// Its placement record (`GET /admin/placements/{id}`).
    pub placement: String,
}

/// A deployment as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    /// `d-` and 17 hex digits.
    pub id: String,
    /// Owner.
    pub tenant: String,
    /// Department charged.
    pub department: Option<String>,
    /// The offering ordered.
    pub offering: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Its resources, in blueprint order.
    pub resources: Vec<DeployedResource>,
}

/// The deployments table in the gateway database.
#[derive(Clone)]
pub struct DeploymentStore {
    db: Db,
}

/// A new deployment id: `d-` and 17 hex digits.
fn new_deployment_id() -> String {
    crate::ids::new_id("d")
}

impl DeploymentStore {
    /// Opens (and creates) the table in `<state_dir>/skyport.db`.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let db = Db::open(
            state_dir,
            "deployments",
            "CREATE TABLE IF NOT EXISTS deployments (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                created_at TEXT NOT NULL,
                record TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS deployments_by_tenant ON deployments (tenant, created_at);",
        )?;
        Ok(Self { db })
    }

    async fn insert(&self, deployment: &Deployment) -> Result<(), GatewayError> {
        let row = (
            deployment.id.clone(),
            deployment.tenant.clone(),
            deployment.created_at.clone(),
            serde_json::to_string(deployment).map_err(GatewayError::internal)?,
        );
        self.db
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO deployments (id, tenant, created_at, record) VALUES (?1, ?2, ?3, ?4)",
                    params![row.0, row.1, row.2, row.3],
                )
            })
            .await?;
        Ok(())
    }

    /// `tenant`'s deployment `id`; another tenant's is not found.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Option<Deployment>, GatewayError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let text: Option<String> = self
            .db
            .with(move |conn| {
                conn.query_row(
                    "SELECT record FROM deployments WHERE id = ?1 AND tenant = ?2",
                    [id, tenant],
                    |row| row.get(0),
                )
                .optional()
            })
            .await?;
        text.map(|t| serde_json::from_str(&t).map_err(GatewayError::internal))
            .transpose()
    }

    /// `tenant`'s deployments, oldest first.
    pub async fn list(&self, tenant: &str) -> Result<Vec<Deployment>, GatewayError> {
        let tenant = tenant.to_string();
        let texts: Vec<String> = self
            .db
            .with(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT record FROM deployments WHERE tenant = ?1 ORDER BY created_at, id",
                )?;
                let rows = stmt.query_map([tenant], |row| row.get(0))?;
                rows.collect()
            })
            .await?;
        texts
            .iter()
            .map(|t| serde_json::from_str(t).map_err(GatewayError::internal))
            .collect()
    }
}

/// What a deployment order carries besides the offering.
#[derive(Debug, Clone, Default)]
pub struct DeploymentSpec {
    /// Name prefix; each instance is named `<name>-<resource>`.
    pub name: Option<String>,
    /// Tags for every instance.
    pub tags: Map<String, Value>,
}

/// Places every resource of `order`, checks the tenant's quotas against all of them
/// together, then creates them in blueprint order. If one fails, the ones already created
/// are terminated and the error says which; nothing is left running.
pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    order: &OrderRequest,
    spec: DeploymentSpec,
) -> Result<(Deployment, Vec<Decision>), GatewayError> {
    let decisions = placement::decide(state, ctx, request_id, order).await?;
    let decided = decisions
        .iter()
        .map(CreateSpec::decided)
        .collect::<Result<Vec<_>, _>>()?;
    let types: Vec<_> = decided.iter().map(|d| d.instance_type).collect();
    ops::check_quota(state, ctx, &types).await?;

    let mut resources: Vec<DeployedResource> = Vec::with_capacity(decisions.len());
    for (decision, decided) in decisions.iter().zip(decided) {
        let placement_id = state
            .placements
            .record(&ctx.tenant, request_id, Mode::Create, decision)
            .await?;
        let created = ops::create(
            state,
            ctx,
            request_id,
            CreateSpec {
                name: spec
                    .name
                    .as_ref()
                    .map(|n| format!("{n}-{}", decision.resource)),
                tags: spec.tags.clone(),
                department: order.department.clone(),
                ..decided
            },
        )
        .await;
        match created {
            Ok(record) => resources.push(DeployedResource {
                resource: decision.resource.clone(),
                instance: record.id,
                provider: record.provider,
                region: record.region,
                placement: placement_id,
            }),
            Err(e) => {
                let undone = roll_back(state, ctx, request_id, &resources).await;
                return Err(GatewayError {
                    public: format!(
                        "resource '{}' could not be created on {}/{}: {}; {}",
                        decision.resource, decision.provider, decision.region, e.public, undone
                    ),
                    ..e
                });
            }
        }
    }
    let deployment = Deployment {
        id: new_deployment_id(),
        tenant: ctx.tenant.to_string(),
        department: order.department.clone(),
        offering: order.offering.clone(),
        created_at: crate::ids::rfc3339_millis(SystemTime::now()),
        resources,
    };
    if let Err(e) = state.deployments.insert(&deployment).await {
        let undone = roll_back(state, ctx, request_id, &deployment.resources).await;
        return Err(GatewayError {
            public: format!("the deployment could not be stored; {undone}"),
            ..e
        });
    }
    Ok((deployment, decisions))
}

/// Terminates `created`, most recent first; says what was undone (and what could not be,
/// which is also logged for the operator).
async fn roll_back(
    state: &AppState,
    ctx: &TenantContext,
    request_id: &str,
    created: &[DeployedResource],
) -> String {
    if created.is_empty() {
        return "nothing had been created".into();
    }
    let mut terminated = Vec::new();
    let mut left = Vec::new();
    for r in created.iter().rev() {
        match ops::act(state, ctx, request_id, &r.instance, Action::Terminate).await {
            Ok(_) => terminated.push(r.instance.as_str()),
            Err(e) => {
                tracing::error!(request_id, instance = %r.instance, error = %e.public,
                    cause = e.cause.as_deref().unwrap_or_default(),
                    "could not roll back a deployment's instance; terminate it by hand");
                left.push(r.instance.as_str());
            }
        }
    }
    let mut said = Vec::new();
    if !terminated.is_empty() {
        said.push(format!("rolled back: terminated {}", terminated.join(", ")));
    }
    if !left.is_empty() {
        said.push(format!(
            "could not terminate {} (the operator is alerted)",
            left.join(", ")
        ));
    }
    said.join("; ")
}
