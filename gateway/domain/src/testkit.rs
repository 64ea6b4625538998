//! A small world for unit tests of the domain and of what builds on it (feature
//! `testkit`): two fake providers (`local-vmm` in `local-1`, `ec2` in `aws-us-east-1`)
//! that keep their VMs in memory, a fake metering plugin with a rate card, in-memory
//! stores, the embedded configuration's tenants and catalog, and a manual clock. Never
//! part of a gateway that serves.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use skyport_core::clock::ManualClock;
use skyport_core::config::Config;
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::metrics::Metrics;
use skyport_core::tenancy::{IdentitySource, TenantContext, TenantDirectory};
use skyport_plugin_host::testkit::FakePlugins;
use skyport_plugin_host::Plugins;

use crate::budgets::BudgetService;
use crate::catalog::changes::memory::MemoryCatalogChanges;
use crate::catalog::CatalogService;
use crate::instance_leases::memory::MemoryInstanceLeases;
use crate::inventory::lifecycle::LifecycleMeter;
use crate::inventory::memory::MemoryInventory;
use crate::metering_tap::MeteringTap;
use crate::operations::deployments::memory::MemoryDeployments;
use crate::operations::deployments::DeploymentService;
use crate::operations::instances::InstanceService;
use crate::operations::key_pairs::memory::MemoryKeyPairs;
use crate::operations::key_pairs::KeyPairService;
use crate::placement::audit::memory::MemoryPlacementAudit;
use crate::placement::rules::RuleSet;
use crate::placement::PlacementService;
use crate::regions::{RegionView, Regions, FEDERATED_REGION};

/// The ops a fake provider serves.
const PROVIDER_OPS: &[&str] = &[
    "health@1",
    "regions@1",
    "instance.create@1",
    "instance.find@1",
    "instance.get@1",
    "instance.start@1",
    "instance.stop@1",
    "instance.reboot@1",
    "instance.terminate@1",
    "instance.resize@1",
    "instance.console@1",
    "images.list@1",
    "inventory.list@1",
];

/// A fake provider's VMs: remote id -> state.
pub type Vms = Arc<Mutex<BTreeMap<String, String>>>;

/// How a fake provider answers `instance.create@1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CreateAnswer {
    /// A VM, `running` at once (one per idempotency key).
    #[default]
    Running,
    /// An error.
    Fails,
    /// A result without the VM's id (a provider breaking the contract).
    WithoutId,
}

/// A fake provider's view of VM `id`: its state and, unless it is terminated, an address
/// derived from its id (`vm-3` is 10.0.0.3).
fn view(id: &str, state: &str) -> Value {
    let host = id.rsplit('-').next().unwrap_or("0");
    if state == "terminated" {
        return json!({"id": id, "state": state});
    }
    json!({"id": id, "state": state, "network": {"private_ip": format!("10.0.0.{host}")}})
}

/// A provider that keeps its VMs in `vms`; creates answer as `creates` says.
fn provider(
    vms: Vms,
    prefix: &'static str,
    creates: Arc<Mutex<CreateAnswer>>,
) -> impl Fn(&str, &Value) -> Result<Value, GatewayError> {
    let by_key: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    move |op, params| {
        if op == "instance.create@1" {
            match *creates.lock().unwrap() {
                CreateAnswer::Running => {}
                CreateAnswer::Fails => {
                    return Err(GatewayError::new(
                        ErrorKind::Upstream,
                        "the fake provider refuses to create",
                    ))
                }
                CreateAnswer::WithoutId => return Ok(json!({"state": "running"})),
            }
        }
        let mut vms = vms.lock().unwrap();
        let id = params["id"].as_str().unwrap_or_default().to_string();
        let known = |vms: &BTreeMap<String, String>| {
            vms.get(&id)
                .cloned()
                .ok_or_else(|| GatewayError::not_found(format!("no VM {id}")))
        };
        match op {
            "instance.create@1" => {
                let key = params["idempotency_key"].as_str().unwrap_or_default();
                let mut by_key = by_key.lock().unwrap();
                if let Some(id) = by_key.get(key) {
                    return Ok(view(id, &vms[id]));
                }
                let id = format!("{prefix}-{}", vms.len() + 1);
                vms.insert(id.clone(), "running".into());
                by_key.insert(key.to_string(), id.clone());
                Ok(view(&id, "running"))
            }
            "instance.find@1" => {
                let key = params["idempotency_key"].as_str().unwrap_or_default();
                Ok(match by_key.lock().unwrap().get(key) {
                    Some(id) => view(id, &vms[id]),
                    None => Value::Null,
                })
            }
            "instance.get@1" => Ok(view(&id, &known(&vms)?)),
            "instance.start@1" | "instance.stop@1" | "instance.terminate@1" => {
                known(&vms)?;
                let state = match op {
                    "instance.start@1" => "running",
                    "instance.stop@1" => "stopped",
                    _ => "terminated",
                };
                vms.insert(id.clone(), state.into());
                Ok(view(&id, state))
            }
            "instance.reboot@1" | "instance.resize@1" => {
                Ok(json!({"id": id, "state": known(&vms)?}))
            }
            "instance.console@1" => Ok(json!({"output": format!("console of {id}")})),
            // The nameless image is one a tenant must never be shown.
            "images.list@1" => Ok(json!([{"name": "skyport-tiny"}, {"disk_template": {}}])),
            "inventory.list@1" => Ok(Value::Array(
                vms.iter()
                    .filter(|(_, s)| *s != "terminated")
                    .map(|(id, state)| json!({"id": id, "state": state}))
                    .collect(),
            )),
            other => Err(GatewayError::invalid(format!("fake provider: no {other}"))),
        }
    }
}

/// Hourly prices: `local-vmm` 0.02, `ec2` 0.01, so `ec2` is the cheaper. Bills total
/// `spent` (in EUR), whoever asks.
fn metering(
    spent: Arc<Mutex<String>>,
) -> impl Fn(&str, &Value) -> Result<Value, GatewayError> + Send + Sync + 'static {
    move |op, params| metering_answer(&spent.lock().unwrap(), op, params)
}

fn metering_answer(spent: &str, op: &str, params: &Value) -> Result<Value, GatewayError> {
    match op {
        "bill.get@1" => Ok(json!({"tenant": params["tenant"], "currency": "EUR", "total": spent})),
        "meter.batch@1" => Ok(json!({"stored": true})),
        "rates.get@1" => {
            let rates: Vec<Value> = params["pairs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let price = if p["provider"] == "ec2" { "0.01" } else { "0.02" };
                    json!({"provider": p["provider"], "sku": p["sku"], "unit": "hour", "price": price})
                })
                .collect();
            Ok(json!({"currency": "EUR", "rates": rates}))
        }
        other => Err(GatewayError::invalid(format!("fake metering: no {other}"))),
    }
}

/// The world: services over fakes.
pub struct World {
    /// The configuration it was made from.
    pub config: Config,
    /// Its clock, at 2026-11-23T11:39:01Z until moved.
    pub clock: Arc<ManualClock>,
    /// Tenants.
    pub tenants: Arc<TenantDirectory>,
    /// `skyport`, `local-1` and `aws-us-east-1`.
    pub regions: Arc<Regions>,
    /// The catalog.
    pub catalog: Arc<CatalogService>,
    /// The tap (its receiving end is dropped: durable events go straight to the plugins).
    pub tap: MeteringTap,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Key pairs over an in-memory store.
    pub key_pairs: KeyPairService,
    /// The fake plugins.
    pub plugins: Arc<FakePlugins>,
    /// `local-vmm`'s VMs.
    pub local_vms: Vms,
    /// `ec2`'s VMs.
    pub ec2_vms: Vms,
    /// How `local-vmm` answers creates.
    pub local_creates: Arc<Mutex<CreateAnswer>>,
    /// The inventory's store.
    pub inventory: Arc<MemoryInventory>,
    /// The placement audit's store.
    pub audit: Arc<MemoryPlacementAudit>,
    /// Placement.
    pub placement: Arc<PlacementService>,
    /// Instances.
    pub instances: Arc<InstanceService>,
    /// Deployments.
    pub deployments: DeploymentService,
    /// The deployments' store.
    pub deployment_store: Arc<MemoryDeployments>,
    /// Budgets.
    pub budgets: Arc<BudgetService>,
    /// Instance leases' store.
    pub instance_leases: Arc<MemoryInstanceLeases>,
    /// What every bill totals, as the fake metering plugin answers.
    pub spent: Arc<Mutex<String>>,
}

impl World {
    /// The embedded configuration with `edit` applied to its text.
    pub async fn with_config(edit: impl Fn(String) -> String) -> Self {
        let config =
            crate::config_check::parse(&edit(skyport_core::config::EMBEDDED_DEFAULT.to_string()))
                .expect("test configuration");
        Self::from_config(config).await
    }

    /// The embedded configuration as shipped.
    pub async fn new() -> Self {
        Self::with_config(|c| c).await
    }

    /// The world over `config`.
    pub async fn from_config(config: Config) -> Self {
        let clock = ManualClock::at_unix(1_795_433_941);
        let (local_vms, ec2_vms) = (Vms::default(), Vms::default());
        let local_creates: Arc<Mutex<CreateAnswer>> = Arc::default();
        let spent = Arc::new(Mutex::new("0.00".to_string()));
        let plugins = Arc::new(
            FakePlugins::new()
                .with(
                    "local-vmm",
                    "provider",
                    PROVIDER_OPS,
                    provider(local_vms.clone(), "vm", local_creates.clone()),
                )
                .with(
                    "ec2",
                    "provider",
                    PROVIDER_OPS,
                    provider(ec2_vms.clone(), "i-remote", Arc::default()),
                )
                .with(
                    "metering",
                    "metering",
                    &["meter.batch@1", "rates.get@1", "bill.get@1"],
                    metering(spent.clone()),
                ),
        );
        let dyn_plugins: Arc<dyn Plugins> = plugins.clone();
        let metrics = Arc::new(Metrics::new());
        let tenants = Arc::new(TenantDirectory::new(config.tenants.clone()));
        let regions = Arc::new(Regions::new(vec![
            RegionView {
                name: FEDERATED_REGION.into(),
                kind: "federated",
                providers: vec!["local-vmm".into(), "ec2".into()],
                zones: Vec::new(),
                cidr: None,
                subnets: Vec::new(),
            },
            RegionView {
                name: "local-1".into(),
                kind: "provider",
                providers: vec!["local-vmm".into()],
                zones: vec!["local-1a".into()],
                cidr: Some("10.0.0.0/24".into()),
                subnets: Vec::new(),
            },
            RegionView {
                name: "aws-us-east-1".into(),
                kind: "provider",
                providers: vec!["ec2".into()],
                zones: vec!["us-east-1a".into()],
                cidr: Some("172.31.0.0/16".into()),
                subnets: vec![skyport_plugin_api::ops::ZoneSubnet {
                    zone: "us-east-1a".into(),
                    cidr: "172.31.0.0/20".into(),
                }],
            },
        ]));
        let catalog = Arc::new(
            CatalogService::open(
                &config,
                Arc::clone(&tenants),
                Arc::new(MemoryCatalogChanges::default()),
                clock.clone(),
            )
            .await
            .unwrap(),
        );
        let (tap, _receiver) = MeteringTap::new(64, Arc::clone(&dyn_plugins), Arc::clone(&metrics));
        let inventory = Arc::new(MemoryInventory::default());
        let audit = Arc::new(MemoryPlacementAudit::default());
        let rules = RuleSet::compile(&config.placement.rules, "placement.rules").unwrap();
        let placement = Arc::new(PlacementService::new(
            Arc::clone(&catalog),
            rules,
            Arc::clone(&tenants),
            Arc::clone(&regions),
            Arc::clone(&dyn_plugins),
            audit.clone(),
            Arc::clone(&metrics),
            clock.clone(),
        ));
        let instance_leases = Arc::new(MemoryInstanceLeases::default());
        let budgets = Arc::new(
            BudgetService::new(
                Arc::clone(&catalog),
                Arc::clone(&tenants),
                inventory.clone(),
                Arc::clone(&dyn_plugins),
                clock.clone(),
            )
            .with_instance_leases(instance_leases.clone()),
        );
        let instances = Arc::new(
            InstanceService::new(
                inventory.clone(),
                Arc::clone(&dyn_plugins),
                Arc::clone(&tenants),
                Arc::clone(&catalog),
                LifecycleMeter::new(tap.clone(), clock.clone()),
                Arc::clone(&metrics),
                clock.clone(),
            )
            .with_budgets(Arc::clone(&budgets))
            .with_instance_leases(instance_leases.clone()),
        );
        let deployment_store = Arc::new(MemoryDeployments::default());
        let deployments = DeploymentService::new(
            Arc::clone(&placement),
            Arc::clone(&instances),
            deployment_store.clone(),
            clock.clone(),
        );
        Self {
            inventory,
            key_pairs: KeyPairService::new(Arc::new(MemoryKeyPairs::default()), clock.clone()),
            config,
            clock,
            tenants,
            regions,
            catalog,
            tap,
            metrics,
            plugins,
            local_vms,
            ec2_vms,
            local_creates,
            audit,
            placement,
            instances,
            deployment_store,
            deployments,
            budgets,
            instance_leases,
            spent,
        }
    }

    /// The lifecycle events metered so far, as (event, instance id, initiator).
    pub fn lifecycle_events(&self) -> Vec<(String, String, String)> {
        self.plugins
            .calls_of("meter.batch@1")
            .into_iter()
            .flat_map(|c| c.params["events"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["type"] == "instance.lifecycle")
            .map(|e| {
                let a = &e["attributes"];
                (
                    a["event"].as_str().unwrap_or_default().to_string(),
                    a["instance_id"].as_str().unwrap_or_default().to_string(),
                    a["initiated_by"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

/// The context of a JWT caller of `tenant` (and `department`).
pub fn caller(tenant: &str, department: Option<&str>) -> TenantContext {
    TenantContext {
        tenant: Arc::from(tenant),
        department: department.map(str::to_owned),
        roles: Vec::new(),
        subject: "tester".into(),
        source: IdentitySource::Jwt,
        operator: false,
    }
}
