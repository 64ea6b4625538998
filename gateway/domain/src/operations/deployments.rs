//! Deployments: every resource of a multi-resource offering (e.g. `web-dr`), placed together
//! and created all or none. A create that fails part-way terminates what it had created
//! before reporting the failure, so a tenant never keeps half a deployment.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use skyport_core::clock::SharedClock;
use skyport_core::error::GatewayError;
use skyport_core::ids::rfc3339_millis;
use skyport_core::tenancy::{IdentitySource, TenantContext};

use super::instances::{Action, Adding, CreateSpec, InstanceService};
use crate::budgets::OrderItem;
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
    /// `creating` while its resources are being made, `ready` once all are.
    #[serde(default)]
    pub status: DeploymentStatus,
    /// While `creating`: every resource the deployment will make, in blueprint order.
    /// Each is created with idempotency token [`resource_token`], so a deployment
    /// abandoned part-way (its gateway killed) can be found and undone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub planned: Vec<String>,
}

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// Its resources are being created.
    Creating,
    /// Every resource was created.
    #[default]
    Ready,
}

impl DeploymentStatus {
    /// `creating` or `ready`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Ready => "ready",
        }
    }
}

/// The idempotency token deployment `id` creates its resource `resource` with.
pub fn resource_token(id: &str, resource: &str) -> String {
    format!("skyport-deployment:{id}:{resource}")
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

    /// Replaces stored deployment `deployment.id` (its status and resources).
    async fn update(&self, deployment: &Deployment) -> Result<(), GatewayError>;

    /// Deletes deployment `id`.
    async fn delete(&self, id: &str) -> Result<(), GatewayError>;

    /// Every deployment still `creating` that was created before `before` (RFC 3339), of
    /// every tenant, each taken by this call: a deployment is returned to one caller
    /// only, whichever process asks, so one recovery undoes it.
    async fn take_abandoned(&self, before: &str) -> Result<Vec<Deployment>, GatewayError>;
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
    /// are terminated and the error says which; nothing is left running. The deployment is
    /// journalled (`creating`) before its first resource, each resource made with its
    /// [`resource_token`]: if the gateway dies part-way, [`Self::recover_abandoned`] finds
    /// and terminates what was made.
    pub async fn create(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        order: &OrderRequest,
        spec: DeploymentSpec,
    ) -> Result<(Deployment, Vec<Decision>), GatewayError> {
        if self.instances.requires_approval(&order.offering) {
            return Err(InstanceService::approval_refusal(&order.offering));
        }
        let decisions = self.placement.decide(ctx, request_id, order).await?;
        let decided = decisions
            .iter()
            .map(CreateSpec::decided)
            .collect::<Result<Vec<_>, _>>()?;
        let lease_secs = self
            .instances
            .lease_terms(&order.offering, None)
            .map(|t| t.duration_secs);
        let adding: Vec<Adding<'_>> = decided
            .iter()
            .map(|d| Adding {
                instance_type: d.instance_type,
                provider: &d.provider,
                lease_secs,
            })
            .collect();
        let department = order.department.as_deref().or(ctx.department.as_deref());
        let items: Vec<OrderItem> = adding
            .iter()
            .map(|a| OrderItem {
                instance_type: a.instance_type.name.to_string(),
                provider: a.provider.to_string(),
                lease_secs: a.lease_secs,
            })
            .collect();
        let why = self
            .instances
            .budget_approval(ctx, request_id, department, &items)
            .await?;
        if let Some(why) = why {
            return Err(InstanceService::budget_approval_refusal(&why));
        }
        self.instances
            .check_admission(ctx, request_id, department, &adding)
            .await?;

        let mut deployment = Deployment {
            id: new_deployment_id(),
            tenant: ctx.tenant.to_string(),
            department: order.department.clone(),
            offering: order.offering.clone(),
            created_at: rfc3339_millis(self.clock.wall()),
            resources: Vec::with_capacity(decisions.len()),
            status: DeploymentStatus::Creating,
            planned: decisions.iter().map(|d| d.resource.clone()).collect(),
        };
        self.store.insert(&deployment).await?;
        for (decision, decided) in decisions.iter().zip(decided) {
            let created = match self
                .placement
                .record(ctx, request_id, Mode::Create, decision)
                .await
            {
                Ok(placement_id) => self
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
                            client_token: Some(resource_token(&deployment.id, &decision.resource)),
                            lease: self.instances.lease_terms(&decision.offering, None),
                            ..decided
                        },
                    )
                    .await
                    .map(|record| (record, placement_id)),
                Err(e) => Err(e),
            };
            match created {
                Ok((record, placement_id)) => deployment.resources.push(DeployedResource {
                    resource: decision.resource.clone(),
                    instance: record.id,
                    provider: record.provider,
                    region: record.region,
                    placement: placement_id,
                }),
                Err(e) => {
                    let undone = self.abandon(ctx, request_id, &deployment).await;
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
        deployment.status = DeploymentStatus::Ready;
        deployment.planned.clear();
        if let Err(e) = self.store.update(&deployment).await {
            let undone = self.abandon(ctx, request_id, &deployment).await;
            return Err(GatewayError {
                public: format!("the deployment could not be stored; {undone}"),
                ..e
            });
        }
        Ok((deployment, decisions))
    }

    /// Undoes a deployment that could not be finished: its resources terminated, its
    /// journal removed (unless that fails too: then recovery finds it later). Says what
    /// was undone.
    async fn abandon(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        deployment: &Deployment,
    ) -> String {
        let undone = self.roll_back(ctx, request_id, &deployment.resources).await;
        if let Err(e) = self.store.delete(&deployment.id).await {
            tracing::warn!(deployment = %deployment.id, error = %e.public,
                "an abandoned deployment's journal could not be removed; recovery will");
        }
        undone
    }

    /// Undoes every deployment left `creating` since before `before` (its gateway died
    /// part-way): each resource its journal planned that was made (found by its
    /// [`resource_token`]) is terminated, and the journal removed. Each deployment is
    /// taken by one recovery only, whichever replica runs it. Returns the ids undone.
    pub async fn recover_abandoned(&self, before: SystemTime) -> Result<Vec<String>, GatewayError> {
        let abandoned = self.store.take_abandoned(&rfc3339_millis(before)).await?;
        let mut undone = Vec::with_capacity(abandoned.len());
        for mut deployment in abandoned {
            let ctx = TenantContext {
                tenant: deployment.tenant.as_str().into(),
                department: deployment.department.clone(),
                roles: Vec::new(),
                subject: "skyport-recovery".into(),
                source: IdentitySource::Mtls,
                operator: false,
            };
            deployment.resources.clear();
            for resource in &deployment.planned {
                let token = resource_token(&deployment.id, resource);
                let made = self.instances.by_client_token(&ctx, &token).await?;
                if let Some(record) = made.filter(|r| r.state != "terminated") {
                    deployment.resources.push(DeployedResource {
                        resource: resource.clone(),
                        instance: record.id,
                        provider: record.provider,
                        region: record.region,
                        placement: String::new(),
                    });
                }
            }
            let said = self.abandon(&ctx, "recovery", &deployment).await;
            tracing::warn!(deployment = %deployment.id, tenant = %deployment.tenant, undone = %said,
                "a deployment its gateway left part-made was undone");
            undone.push(deployment.id);
        }
        Ok(undone)
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
