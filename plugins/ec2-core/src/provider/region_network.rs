//! The region's network as the cloud describes it: its default VPC and each zone's
//! default subnet, for `regions@1`, looked up within a budget and kept for a while.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use skyport_plugin_api::ops::ZoneSubnet;

use super::{refuses, Provider};
use crate::client::CallError;
use crate::network;

/// How long the cloud's answer about its default VPC is reused by `regions@1`.
pub(super) const REGION_NETWORK_TTL: Duration = Duration::from_secs(600);
/// How long `regions@1` waits for that answer (retries included) before answering without
/// it: the gateway gives `regions@1` 10 s at startup, and the region must not be lost to a
/// slow cloud.
pub(super) const REGION_NETWORK_BUDGET: Duration = Duration::from_secs(5);

/// The region's network as the cloud describes it (its default VPC).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct RegionNetwork {
    /// The default VPC's IPv4 CIDR.
    pub(super) cidr: Option<String>,
    /// Each Skyport zone's default subnet.
    pub(super) subnets: Vec<ZoneSubnet>,
}

impl Provider {
    /// The region's network: the cloud's default VPC (`DescribeVpcs`, `isDefault=true`)
    /// and its default subnet in each zone (`DescribeSubnets`), reused for
    /// [`REGION_NETWORK_TTL`]. A cloud that cannot say (no VPCs, as on older Eucalyptus
    /// clouds, or not answering within [`REGION_NETWORK_BUDGET`]) gives a region without
    /// them: `regions@1` never fails for this.
    pub(super) async fn region_network(&self) -> RegionNetwork {
        let cached = self
            .region_network
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((at, network)) = cached {
            if at.elapsed() < REGION_NETWORK_TTL {
                return network;
            }
        }
        let answer =
            tokio::time::timeout(REGION_NETWORK_BUDGET, self.lookup_region_network()).await;
        let (network, keep) = match answer {
            Ok(Ok(network)) => (network, true),
            Ok(Err(e)) => {
                log::debug!(
                    "{}: regions@1 answered without the region's network: {e:?}",
                    self.dialect.name
                );
                // A cloud refusing the calls (no VPC support) says so for a while; a
                // cloud that failed to answer is asked again next time.
                (RegionNetwork::default(), refuses(&e))
            }
            Err(_) => {
                log::debug!(
                    "{}: regions@1 answered without the region's network: no answer within {:?}",
                    self.dialect.name,
                    REGION_NETWORK_BUDGET
                );
                (RegionNetwork::default(), false)
            }
        };
        if keep {
            *self
                .region_network
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), network.clone()));
        }
        network
    }

    async fn lookup_region_network(&self) -> Result<RegionNetwork, CallError> {
        let filter = |name: &str, value: &str| {
            vec![
                ("Filter.1.Name".to_string(), name.to_string()),
                ("Filter.1.Value.1".to_string(), value.to_string()),
            ]
        };
        let vpcs = self
            .client
            .try_call("DescribeVpcs", &filter("isDefault", "true"))
            .await?;
        let Some((vpc_id, cidr)) = network::default_vpc(&vpcs) else {
            return Ok(RegionNetwork::default());
        };
        let subnets = match self
            .client
            .try_call("DescribeSubnets", &filter("vpc-id", &vpc_id))
            .await
        {
            Ok(reply) => network::zone_subnets(&reply, &vpc_id, &self.zones),
            Err(e) if refuses(&e) => {
                log::debug!(
                    "{}: the default VPC's subnets are unknown: {e:?}",
                    self.dialect.name
                );
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        Ok(RegionNetwork { cidr, subnets })
    }
}
