//! Regions: what each provider serves, asked once at startup (`regions@1`), and the one
//! federated region spanning every provider.

use std::time::Duration;

use serde::Serialize;
use skyport_core::error::GatewayError;
use skyport_plugin_api::ops::provider::PLACEMENT_OPS;
use skyport_plugin_api::ops::{Region, ZoneSubnet, REGIONS};
use skyport_plugin_host::Plugins;

/// Name of the federated region that spans every provider.
pub const FEDERATED_REGION: &str = "skyport";

/// How long a provider has to answer `regions@1` at startup.
const REGIONS_TIMEOUT: Duration = Duration::from_secs(10);

/// A region as listed by `GET /v1/regions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionView {
    /// Region name.
    pub name: String,
    /// `federated` (the union of all providers) or `provider`.
    pub kind: &'static str,
    /// Serving providers.
    pub providers: Vec<String>,
    /// Zones.
    pub zones: Vec<String>,
    /// The region's private network (IPv4 CIDR), as its provider says (`regions@1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// The part of that network each zone uses, as its provider says; a zone not listed
    /// uses the whole network.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<ZoneSubnet>,
}

impl RegionView {
    /// Whether a provider serves it (every region but the federated one).
    pub fn is_provider_region(&self) -> bool {
        self.kind == "provider"
    }
}

/// Every region, the federated one first, then each provider's in configuration order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Regions(Vec<RegionView>);

impl Regions {
    /// Regions as given (tests, and [`Regions::gather`]).
    pub fn new(regions: Vec<RegionView>) -> Self {
        Self(regions)
    }

    /// Asks every provider that serves `regions@1` (healthy or not: a provider unhealthy
    /// at start, say one without an image yet, serves its region once it is healthy) for
    /// its regions and merges the answers under the federated region. A provider that
    /// cannot answer is logged and serves no region.
    pub async fn gather(plugins: &dyn Plugins) -> Self {
        let mut regions: Vec<RegionView> = Vec::new();
        let loaded = plugins.loaded();
        for plugin in loaded.iter().filter(|p| p.is_provider()) {
            let missing = plugin.missing(&PLACEMENT_OPS);
            if !missing.is_empty() {
                tracing::warn!(
                    plugin = %plugin.name,
                    "provider \"{}\" does not serve {}: it is never a placement candidate",
                    plugin.name,
                    missing.join(", ")
                );
            }
            if !plugin.serves("regions@1") {
                continue;
            }
            // Asked even of an unhealthy provider: its regions exist while it cannot serve.
            let answer = plugins
                .describe(
                    &plugin.name,
                    REGIONS,
                    serde_json::json!({}),
                    REGIONS_TIMEOUT,
                )
                .await
                .and_then(|v| {
                    serde_json::from_value::<Vec<Region>>(v).map_err(GatewayError::internal)
                });
            match answer {
                Ok(list) => {
                    for region in list {
                        match regions.iter_mut().find(|r| r.name == region.name) {
                            Some(existing) => existing.providers.push(plugin.name.clone()),
                            None => regions.push(RegionView {
                                name: region.name,
                                kind: "provider",
                                providers: vec![plugin.name.clone()],
                                zones: region.zones,
                                cidr: region.cidr,
                                subnets: region.subnets,
                            }),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(plugin = %plugin.name, error = %e.public, cause = ?e.cause, "regions unavailable")
                }
            }
        }
        let all = loaded
            .iter()
            .filter(|p| p.is_provider())
            .map(|p| p.name.clone())
            .collect();
        regions.insert(
            0,
            RegionView {
                name: FEDERATED_REGION.to_string(),
                kind: "federated",
                providers: all,
                zones: Vec::new(),
                cidr: None,
                subnets: Vec::new(),
            },
        );
        Self(regions)
    }

    /// Every region, the federated one first.
    pub fn all(&self) -> &[RegionView] {
        &self.0
    }

    /// Region `name`.
    pub fn get(&self, name: &str) -> Option<&RegionView> {
        self.0.iter().find(|r| r.name == name)
    }

    /// The regions providers serve (all but the federated one).
    pub fn provider_regions(&self) -> impl Iterator<Item = &RegionView> {
        self.0.iter().filter(|r| r.is_provider_region())
    }

    /// Whether a provider serves region `name`.
    pub fn serves(&self, name: &str) -> bool {
        self.provider_regions().any(|r| r.name == name)
    }

    /// Every (provider, region) pair, in configuration order.
    pub fn sites(&self) -> impl Iterator<Item = (&str, &str)> {
        self.provider_regions().flat_map(|r| {
            r.providers
                .iter()
                .map(move |p| (p.as_str(), r.name.as_str()))
        })
    }
}
