//! Deployments: every resource of a multi-resource offering (e.g. `web-dr`), placed together
//! and created all or none. A create that fails part-way terminates what it had created
//! before reporting the failure, so a tenant never keeps half a deployment.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use skyport_core::clock::SharedClock;
use skyport_core::error::GatewayError;
use skyport_core::ids::rfc3339_millis;
use skyport_core::tenancy::TenantContext;

use super::instances::{Action, CreateSpec, InstanceService};
use crate::placement::{audit::Mode, Decision, OrderRequest, PlacementService};

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
#[cfg(any(test, feature = "testkit"))]
pub mod memory;
#[cfg(test)]
mod tests;

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

/// Where deployments are kept.
#[async_trait]
pub trait DeploymentStore: Send + Sync {
    /// Stores a new deployment.
    async fn insert(&self, deployment: &Deployment) -> Result<(), GatewayError>;

    /// `tenant`'s deployment `id`; another tenant's is not found.
    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Deployment>, GatewayError>;

    /// `tenant`'s deployments, oldest first (by creation time, then id).
    async fn list(&self, tenant: &str) -> Result<Vec<Deployment>, GatewayError>;
}

/// A new deployment id: `d-` and 17 hex digits.
fn new_deployment_id() -> String {
    skyport_core::ids::new_id("d")
}

/// What a deployment order carries besides the offering.
#[derive(Debug, Clone, Default)]
pub struct DeploymentSpec {
    /// Name prefix; each instance is named `<name>-<resource>`.
    pub name: Option<String>,
    /// Tags for every instance.
    pub tags: Map<String, Value>,
}

/// Deployments: orders of multi-resource offerings, all or none.
pub struct DeploymentService {
    placement: Arc<PlacementService>,
    instances: Arc<InstanceService>,
    store: Arc<dyn DeploymentStore>,
    clock: SharedClock,
}

impl DeploymentService {
    /// Deployments placed by `placement`, created by `instances`, kept in `store`.
    pub fn new(
        placement: Arc<PlacementService>,
        instances: Arc<InstanceService>,
        store: Arc<dyn DeploymentStore>,
        clock: SharedClock,
    ) -> Self {
        Self {
            placement,
            instances,
            store,
            clock,
        }
    }

    /// The caller's deployment `id` as JSON, each resource with its instance's state now
    /// (another tenant's is not found).
    pub async fn get(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        id: &str,
    ) -> Result<Value, GatewayError> {
        let deployment = self
            .store
            .get(&ctx.tenant, id)
            .await?
            .ok_or_else(|| GatewayError::not_found(format!("no deployment '{id}'")))?;
        Ok(self.view(ctx, request_id, &deployment).await)
    }

    /// The caller's deployments as JSON, oldest first.
    pub async fn list(
        &self,
        ctx: &TenantContext,
        request_id: &str,
    ) -> Result<Vec<Value>, GatewayError> {
        let mut views = Vec::new();
        for deployment in self.store.list(&ctx.tenant).await? {
            views.push(self.view(ctx, request_id, &deployment).await);
        }
        Ok(views)
    }

    /// A deployment as stored, each resource with its instance's state now.
    async fn view(&self, ctx: &TenantContext, request_id: &str, deployment: &Deployment) -> Value {
        let mut body = json!(deployment);
        for resource in body["resources"].as_array_mut().into_iter().flatten() {
            let id = resource["instance"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let now = self
                .instances
                .get(ctx, request_id, &id)
                .await
                .map(|r| r.state)
                .unwrap_or_else(|_| "unknown".into());
            resource["state"] = json!(now);
        }
        body
    }

    /// Places every resource of `order`, checks the tenant's quotas against all of them
    /// together, then creates them in blueprint order. If one fails, the ones already created
    /// are terminated and the error says which; nothing is left running.
    pub async fn create(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        order: &OrderRequest,
        spec: DeploymentSpec,
    ) -> Result<(Deployment, Vec<Decision>), GatewayError> {
        let decisions = self.placement.decide(ctx, request_id, order).await?;
        let decided = decisions
            .iter()
            .map(CreateSpec::decided)
            .collect::<Result<Vec<_>, _>>()?;
        let types: Vec<_> = decided.iter().map(|d| d.instance_type).collect();
        self.instances.check_quota(ctx, &types).await?;

        let mut resources: Vec<DeployedResource> = Vec::with_capacity(decisions.len());
        for (decision, decided) in decisions.iter().zip(decided) {
            let placement_id = self
                .placement
                .record(ctx, request_id, Mode::Create, decision)
                .await?;
            let created = self
                .instances
                .create(
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
                    let undone = self.roll_back(ctx, request_id, &resources).await;
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
            created_at: rfc3339_millis(self.clock.wall()),
            resources,
        };
        if let Err(e) = self.store.insert(&deployment).await {
            let undone = self.roll_back(ctx, request_id, &deployment.resources).await;
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
        &self,
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
            match self
                .instances
                .act(ctx, request_id, &r.instance, Action::Terminate)
                .await
            {
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
}
