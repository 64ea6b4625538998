//! Instance operations: create, read, list, start/stop/reboot/terminate, resize, console
//! and tags, tenant-scoped, with the inventory as the map from Skyport ids to provider
//! VMs. Every state change an operation causes is metered here ([`LifecycleMeter`]).

mod actions;
mod admission;
mod adopt;
mod lease;
#[cfg(test)]
mod lease_tests;
mod observe;
mod provider;
mod recovery;
pub mod tags;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

use serde_json::{Map, Value};
use skyport_core::clock::SharedClock;
use skyport_core::config::LeaseTerms;
use skyport_core::error::{Detail, ErrorKind, GatewayError, Resource};
use skyport_core::ids::rfc3339_millis;
use skyport_core::metrics::Metrics;
use skyport_core::tenancy::{TenantContext, TenantDirectory};
use skyport_plugin_api::ops::provider::MAX_USER_DATA_BYTES;
use skyport_plugin_host::Plugins;

pub use actions::Action;
pub use admission::Adding;
pub use adopt::Adoption;
pub use observe::{LISTING_BATCH_MIN, LISTING_FRESH_FOR};
pub use provider::PROVIDER_TIMEOUT;
pub use recovery::Recovered;
pub use tags::MAX_TAGS;

use super::context;
use crate::budgets::BudgetService;
use crate::catalog::{instance_type, parse_instance_type, CatalogService, InstanceType};
use crate::instance_leases::InstanceLeaseStore;
use crate::inventory::claims::Claims;
use crate::inventory::lifecycle::{Initiator, LifecycleMeter};
use crate::inventory::{
    is_instance_id, new_instance_id, Admission, InstanceRecord, InventoryStore,
};
use crate::leases::{LeaseStore, SoleHolder};
use crate::placement::Decision;
use provider::Provider;

/// Longest wait for a state a request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(120);

/// How often a wait asks the provider again.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// What a create asks for, whichever front end it came through.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    /// Image name.
    pub image: String,
    /// Instance type.
    pub instance_type: InstanceType,
    /// Provider instance, as placement decided.
    pub provider: String,
    /// Region, as placement decided.
    pub region: String,
    /// Name.
    pub name: Option<String>,
    /// Tags.
    pub tags: Map<String, Value>,
    /// Department asked for (checked against the credential's).
    pub department: Option<String>,
    /// Key pair (checked by the caller).
    pub key_name: Option<String>,
    /// Idempotency token.
    pub client_token: Option<String>,
    /// What the guest gets at its first boot.
    pub first_boot: FirstBoot,
    /// How long it may run before it is stopped or terminated; none: no lease.
    pub lease: Option<LeaseTerms>,
    /// The offering it is ordered as (recorded on the instance, and in its bill lines).
    pub offering: Option<String>,
}

/// What a guest is given at its first boot: the public key of the key pair its create
/// named, and the caller's user data (kept with the instance, as EC2 keeps it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirstBoot {
    /// OpenSSH public keys to authorise for the guest's login user.
    pub ssh_public_keys: Vec<String>,
    /// User data, base64 (checked by [`FirstBoot::with_user_data`]).
    pub user_data: Option<String>,
}

impl FirstBoot {
    /// Adds user data given as `bytes`: at most [`MAX_USER_DATA_BYTES`], as on EC2.
    pub fn with_user_data(mut self, bytes: &[u8]) -> Result<Self, GatewayError> {
        if bytes.len() > MAX_USER_DATA_BYTES {
            return Err(GatewayError::invalid(format!(
                "user data is {} bytes; at most {MAX_USER_DATA_BYTES} are allowed",
                bytes.len()
            )));
        }
        self.user_data = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        Ok(self)
    }
}

impl CreateSpec {
    /// What placement `decision` decided (image, instance type, provider, region), with no
    /// name, tags, department, key pair or idempotency token yet.
    pub fn decided(decision: &Decision) -> Result<Self, GatewayError> {
        Ok(Self {
            image: decision
                .params
                .text("image")
                .unwrap_or_default()
                .to_string(),
            instance_type: parse_instance_type(decision.instance_type())?,
            provider: decision.provider.clone(),
            region: decision.region.clone(),
            name: None,
            tags: Map::new(),
            department: None,
            key_name: None,
            client_token: None,
            first_boot: FirstBoot::default(),
            lease: None,
            offering: Some(decision.offering.clone()),
        })
    }
}

/// The instance operations.
pub struct InstanceService {
    inventory: Arc<dyn InventoryStore>,
    claims: Claims,
    plugins: Arc<dyn Plugins>,
    tenants: Arc<TenantDirectory>,
    catalog: Arc<CatalogService>,
    meter: LifecycleMeter,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    /// Where a create in flight is leased (`create:<id>`), so that a retry through another
    /// replica resumes it only once its creator is gone; and who this gateway is there.
    leases: Arc<dyn LeaseStore>,
    holder: String,
    /// The budgets orders are checked against, when there are any.
    budgets: Option<Arc<BudgetService>>,
    /// Where instances' leases are kept.
    instance_leases: Option<Arc<dyn InstanceLeaseStore>>,
    /// Where lease warnings and expiries are published.
    events: Option<Arc<crate::events::EventService>>,
    /// What counts the providers' op outcomes and latencies.
    sla: Option<Arc<crate::sla::SlaRecorder>>,
    /// Each provider's last `inventory.list`, shared by the listings of every tenant for
    /// [`observe::LISTING_FRESH_FOR`] (see [`InstanceService::refresh_listing`]).
    listings: observe::ProviderListings,
}

/// How long a create's lease lasts unrenewed; its creator renews it every third of that
/// while the provider works, so a replica that dies gives its creates up this long after.
pub const CREATE_LEASE: Duration = Duration::from_secs(15);

/// The lease that a create of instance `id` (or its recovery) holds.
pub fn create_lease(id: &str) -> String {
    format!("create:{id}")
}

impl InstanceService {
    /// Instances recorded in `inventory`, run by `plugins`, within the quotas of
    /// `tenants` and their plans in `catalog`, every change metered by `meter`.
    pub fn new(
        inventory: Arc<dyn InventoryStore>,
        plugins: Arc<dyn Plugins>,
        tenants: Arc<TenantDirectory>,
        catalog: Arc<CatalogService>,
        meter: LifecycleMeter,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Self {
        Self {
            inventory,
            claims: Claims::default(),
            plugins,
            tenants,
            catalog,
            meter,
            metrics,
            clock,
            leases: Arc::new(SoleHolder),
            holder: "sole".into(),
            budgets: None,
            instance_leases: None,
            events: None,
            sla: None,
            listings: observe::ProviderListings::new(),
        }
    }

    /// Counts every provider op's outcome and latency in `recorder` (the providers' SLA).
    pub fn with_sla(mut self, recorder: Arc<crate::sla::SlaRecorder>) -> Self {
        self.sla = Some(recorder);
        self
    }

    /// Publishes every lifecycle change, lease warning and lease expiry to `events`.
    pub fn with_events(mut self, events: Arc<crate::events::EventService>) -> Self {
        self.meter = self.meter.with_events(Arc::clone(&events));
        self.events = Some(events);
        self
    }

    /// Leases creates in flight in `leases` as `holder` (replicas sharing their storage).
    pub fn with_leases(mut self, leases: Arc<dyn LeaseStore>, holder: String) -> Self {
        self.leases = leases;
        self.holder = holder;
        self
    }

    /// The provider `record` lives on, called for `ctx`'s request `request_id`.
    fn provider<'a>(
        &'a self,
        name: &'a str,
        region: &'a str,
        context: skyport_plugin_api::sdk::CallContext,
    ) -> Provider<'a> {
        Provider {
            plugins: &*self.plugins,
            name,
            region,
            context,
            sla: self.sla.as_deref(),
            clock: &self.clock,
        }
    }

    /// The department a create bills: the credential's own, or one the caller asks for
    /// when the credential names none; it must belong to the tenant.
    pub fn department_for(
        &self,
        ctx: &TenantContext,
        asked: Option<String>,
    ) -> Result<Option<String>, GatewayError> {
        let department = match (&ctx.department, asked) {
            (Some(own), Some(asked)) if *own != asked => {
                return Err(GatewayError::forbidden(format!(
                    "a credential of department '{own}' cannot create for department '{asked}'"
                )))
            }
            (own, asked) => asked.or_else(|| own.clone()),
        };
        self.tenants
            .check_member(&ctx.tenant, department.as_deref())?;
        Ok(department)
    }

    /// Creates an instance where placement decided ([`CreateSpec::decided`]), within the
    /// tenant's quotas: the inventory row first (so a crash in between is visible), then
    /// the provider call, then the `run` lifecycle event. A repeated `client_token`
    /// returns the instance it created.
    pub async fn create(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        spec: CreateSpec,
    ) -> Result<InstanceRecord, GatewayError> {
        tags::check(&spec.tags)?;
        tags::check_name(spec.name.as_deref())?;
        if let Some(terms) = &spec.lease {
            self.check_lease(ctx, terms)?;
        }
        let department = self.department_for(ctx, spec.department)?;
        let itype = spec.instance_type;
        let record = InstanceRecord {
            id: new_instance_id(),
            tenant: ctx.tenant.to_string(),
            department,
            provider: spec.provider,
            region: spec.region,
            remote_id: None,
            image: spec.image,
            instance_type: itype.name.to_string(),
            name: spec.name,
            tags: spec.tags,
            state: "pending".into(),
            created_at: rfc3339_millis(self.clock.wall()),
            key_name: spec.key_name,
            client_token: spec.client_token,
            network: None,
            user_data: spec.first_boot.user_data.clone(),
            offering: spec.offering.clone(),
        };
        // The token's lookup, the quota and budget checks and the insert in one admission,
        // atomic in the store: concurrent orders, on any replica, never pass a quota or a
        // budget together, nor a token twice.
        let adding = Adding {
            instance_type: itype,
            provider: &record.provider,
            lease_secs: spec.lease.map(|t| t.duration_secs),
        };
        let check = self
            .admission(ctx, request_id, record.department.as_deref(), &[adding])
            .await?;
        let record = match self.inventory.admit(record.clone(), check).await? {
            Admission::Inserted => {
                if let Some(terms) = &spec.lease {
                    // A create whose lease could not be kept is undone: never an
                    // instance priced as leased running without one.
                    if let Err(e) = self.grant_lease(&record, terms).await {
                        if let Err(undo) = self.inventory.delete(&record.id).await {
                            tracing::warn!(instance = %record.id, error = %undo.public,
                                "removing a create whose lease failed failed too");
                        }
                        return Err(e);
                    }
                }
                record
            }
            Admission::Existing(existing) => {
                // Another department's instance is neither shown nor made again.
                if !ctx.sees_department(existing.department.as_deref()) {
                    return Err(GatewayError::new(
                        ErrorKind::Conflict,
                        "this client token was used for another order; use a token of your own",
                    ));
                }
                return self
                    .resume(ctx, request_id, *existing, &spec.first_boot)
                    .await;
            }
        };
        self.lease_and_finish(ctx, request_id, record, itype, &spec.first_boot)
            .await
    }

    /// `record` (found by its client token) as a retry of its create should answer it:
    /// as it is when the provider answered its create; otherwise (its creator died before
    /// the answer) its create resumed here, with the same idempotency key, once the
    /// creator's lease has expired; 409 before.
    pub async fn resume(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        record: InstanceRecord,
        first_boot: &FirstBoot,
    ) -> Result<InstanceRecord, GatewayError> {
        if record.remote_id.is_some() || record.state != "pending" {
            return Ok(record);
        }
        let itype = instance_type(&record.instance_type).ok_or_else(|| {
            GatewayError::internal(format!(
                "instance {} has an unknown type {}",
                record.id, record.instance_type
            ))
        })?;
        let id = record.id.clone();
        let resumed = self
            .lease_and_finish(ctx, request_id, record, itype, first_boot)
            .await;
        if resumed.is_ok() {
            tracing::info!(instance = %id, "a create never answered was resumed by its retry");
        }
        resumed
    }

    /// Claims `record` here and leases it among replicas, then finishes its create while
    /// renewing the lease; 409 while another operation or replica holds it.
    async fn lease_and_finish(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        record: InstanceRecord,
        itype: InstanceType,
        first_boot: &FirstBoot,
    ) -> Result<InstanceRecord, GatewayError> {
        let _claim = self
            .claims
            .claim(&record.id)
            .map_err(|_| in_progress(&record.id))?;
        let lease = create_lease(&record.id);
        if !self
            .leases
            .acquire(&lease, &self.holder, CREATE_LEASE)
            .await?
        {
            return Err(in_progress(&record.id));
        }
        let finished = self
            .while_leased(
                &lease,
                self.finish_create(ctx, request_id, record, itype, first_boot),
            )
            .await;
        if let Err(e) = self.leases.release(&lease, &self.holder).await {
            tracing::debug!(lease, error = %e.public, "releasing a create's lease failed; it expires");
        }
        finished
    }

    /// Runs `work` while renewing lease `name` every third of [`CREATE_LEASE`].
    async fn while_leased<T>(&self, name: &str, work: impl std::future::Future<Output = T>) -> T {
        let renew = async {
            loop {
                tokio::time::sleep(CREATE_LEASE / 3).await;
                if let Err(e) = self.leases.acquire(name, &self.holder, CREATE_LEASE).await {
                    tracing::warn!(lease = name, error = %e.public, "renewing a create's lease failed");
                }
            }
        };
        tokio::select! {
            done = work => done,
            _ = renew => unreachable!("renewing a lease never ends"),
        }
    }

    /// The provider's part of a create admitted as `record`: the call (made once more,
    /// with the same idempotency key, when it timed out), the answer recorded, the `run`
    /// event. A create that fails leaves no record.
    async fn finish_create(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        mut record: InstanceRecord,
        itype: InstanceType,
        first_boot: &FirstBoot,
    ) -> Result<InstanceRecord, GatewayError> {
        let provider = self.provider(&record.provider, &record.region, context(ctx, request_id));
        let mut created = provider.create(&record, itype, first_boot).await;
        if matches!(&created, Err(e) if matches!(e.kind, ErrorKind::Timeout | ErrorKind::Unavailable))
        {
            // The provider may have made the VM and not said so: the same create again
            // (same idempotency key) answers that VM instead of leaving it orphaned. After
            // a pause: a plugin being restarted gets a moment to come back.
            tokio::time::sleep(CREATE_RETRY_PAUSE).await;
            created = provider.create(&record, itype, first_boot).await;
        }
        let created = match created {
            Ok(created) => created,
            Err(e) => {
                self.inventory.delete(&record.id).await?;
                return Err(e);
            }
        };
        record.remote_id = Some(created.id);
        record.state = created.state;
        // Metered before it is recorded as answered: a replica that dies in between
        // leaves the create to be resumed, which meters the same `run` again, once.
        self.meter.emit_run(&record, Initiator::Api).await;
        self.inventory
            .update(&record.id, record.remote_id.clone(), &record.state, None)
            .await?;
        if created.network.is_some() {
            record.network = created.network;
            self.inventory
                .set_network(&record.id, record.network.clone())
                .await?;
        }
        Ok(record)
    }

    /// The tenant's instance created with idempotency token `token`, if any.
    pub async fn by_client_token(
        &self,
        ctx: &TenantContext,
        token: &str,
    ) -> Result<Option<InstanceRecord>, GatewayError> {
        Ok(self
            .inventory
            .by_client_token(&ctx.tenant, token)
            .await?
            .filter(|r| ctx.sees_department(r.department.as_deref())))
    }

    /// The tenant's instance `id` as last recorded: 400 for a malformed id, 404 for an
    /// unknown one (also for another tenant's).
    pub async fn lookup(
        &self,
        ctx: &TenantContext,
        id: &str,
    ) -> Result<InstanceRecord, GatewayError> {
        if !is_instance_id(id) {
            return Err(GatewayError::invalid(format!(
                "'{id}' is not an instance id (i- and 17 hex digits)"
            ))
            .with_detail(Detail::MalformedId(Resource::Instance)));
        }
        self.inventory
            .get(&ctx.tenant, id)
            .await?
            .filter(|r| ctx.sees_department(r.department.as_deref()))
            .ok_or_else(|| not_found(id))
    }

    /// The tenant's instance `id` as last recorded, or `None` (also for another tenant's,
    /// or another department's when the caller acts for a department).
    pub async fn find(
        &self,
        ctx: &TenantContext,
        id: &str,
    ) -> Result<Option<InstanceRecord>, GatewayError> {
        Ok(self
            .inventory
            .get(&ctx.tenant, id)
            .await?
            .filter(|r| ctx.sees_department(r.department.as_deref())))
    }

    /// The tenant's instances as last recorded (the caller's department's only, when it
    /// acts for one), in id order (nothing asked of providers).
    pub async fn records(&self, ctx: &TenantContext) -> Result<Vec<InstanceRecord>, GatewayError> {
        let mut records = self.inventory.list(&ctx.tenant).await?;
        records.retain(|r| ctx.sees_department(r.department.as_deref()));
        Ok(records)
    }

    /// The tenant's instance `id`, refreshed from its provider.
    pub async fn get(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        id: &str,
    ) -> Result<InstanceRecord, GatewayError> {
        let record = self.lookup(ctx, id).await?;
        self.refresh(ctx, request_id, record).await
    }

    /// Every instance of the tenant in id order, each refreshed from its provider.
    pub async fn list(
        &self,
        ctx: &TenantContext,
        request_id: &str,
    ) -> Result<Vec<InstanceRecord>, GatewayError> {
        let records = self.records(ctx).await?;
        self.refresh_listing(ctx, request_id, records).await
    }

    /// Polls until `record` reaches `target` (`running`, `stopped` or `terminated`), at
    /// most [`MAX_WAIT`].
    pub async fn wait_for(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        record: InstanceRecord,
        target: &str,
    ) -> Result<InstanceRecord, GatewayError> {
        if !matches!(target, "running" | "stopped" | "terminated") {
            return Err(GatewayError::invalid(
                "wait must be running, stopped or terminated",
            ));
        }
        // The deadline is checked between polls, never in the middle of one: a refresh
        // that commits (and meters) a transition always runs to its end.
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        let mut record = record;
        while record.state != target {
            if tokio::time::Instant::now() >= deadline {
                return Err(GatewayError::new(
                    ErrorKind::Timeout,
                    format!(
                        "instance {} did not reach {target} within {MAX_WAIT:?}",
                        record.id
                    ),
                ));
            }
            tokio::time::sleep(WAIT_POLL).await;
            record = self.refresh(ctx, request_id, record).await?;
        }
        Ok(record)
    }
}

/// How long a create that timed out or found its provider unavailable waits before it
/// asks once more.
const CREATE_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// 409: the create of `id` is being made (here, or by another replica that holds its
/// lease); a retry with the same client token answers it once it is made.
fn in_progress(id: &str) -> GatewayError {
    GatewayError::new(
        ErrorKind::Conflict,
        format!(
            "instance {id} is still being created; retry with the same client token in a few seconds"
        ),
    )
}

/// 404 for instance `id`.
fn not_found(id: &str) -> GatewayError {
    GatewayError::not_found(format!("instance {id} not found"))
        .with_detail(Detail::NotFound(Resource::Instance))
}
