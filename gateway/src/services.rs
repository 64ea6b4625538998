//! What the front doors translate requests into: the domain's services, and the facts of
//! the running gateway an API shows. Built by [`crate::wiring`].

use std::sync::Arc;

use skyport_auth::access_keys::AccessKeys;
use skyport_core::clock::SharedClock;
use skyport_core::config::Config;
use skyport_core::tenancy::TenantDirectory;
use skyport_domain::approvals::ApprovalService;
use skyport_domain::budgets::BudgetService;
use skyport_domain::catalog::CatalogService;
use skyport_domain::events::EventService;
use skyport_domain::inventory::sync::InventorySync;
use skyport_domain::operations::deployments::DeploymentService;
use skyport_domain::operations::diagnostics::Diagnostics;
use skyport_domain::operations::images::ImageService;
use skyport_domain::operations::instances::InstanceService;
use skyport_domain::operations::key_pairs::KeyPairService;
use skyport_domain::operations::metering::MeteringService;
use skyport_domain::placement::PlacementService;
use skyport_domain::regions::Regions;
use skyport_domain::sessions::SessionService;
use skyport_domain::sla::SlaService;
use skyport_plugin_host::PluginRegistry;

/// What the front doors translate requests into: the domain's services, and the facts of
/// the running gateway an API shows.
pub struct Services {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// Tenants and departments.
    pub tenants: Arc<TenantDirectory>,
    /// Regions served now.
    pub regions: Arc<Regions>,
    /// The catalog.
    pub catalog: Arc<CatalogService>,
    /// Placement.
    pub placement: Arc<PlacementService>,
    /// Instances.
    pub instances: Arc<InstanceService>,
    /// Budgets.
    pub budgets: Arc<BudgetService>,
    /// Orders waiting for approval.
    pub approvals: ApprovalService,
    /// Events and the webhooks they go to.
    pub events: Arc<EventService>,
    /// The providers' service level.
    pub sla: Arc<SlaService>,
    /// Web console sessions.
    pub sessions: Arc<SessionService>,
    /// Deployments.
    pub deployments: DeploymentService,
    /// SSH key pairs.
    pub key_pairs: KeyPairService,
    /// Images.
    pub images: ImageService,
    /// Bills and usage.
    pub metering: MeteringService,
    /// Operators' plugin calls.
    pub diagnostics: Diagnostics,
    /// EC2 access keys.
    pub access_keys: Arc<AccessKeys>,
    /// The inventory sync (also unmanaged VMs and their adoption).
    pub sync: Arc<InventorySync>,
    /// The loaded plugins, for the listings that show their manifests.
    pub plugins: Arc<PluginRegistry>,
    /// Time.
    pub clock: SharedClock,
}
