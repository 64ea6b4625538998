//! The provider ops the instance operations call, in one place: their names, payloads and
//! answers (`instance.*@1`, see `docs/plugin-authoring.md`).

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use skyport_core::clock::SharedClock;
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_plugin_api::ops::provider::{
    self as contract, ConsoleOutput, ConsoleRequest, CreateInstance, FindInstance, InstanceNetwork,
    InstanceRef, InstanceState, InstanceView, ResizeInstance,
};
use skyport_plugin_api::sdk::CallContext;
use skyport_plugin_host::Plugins;

use super::FirstBoot;
use crate::catalog::InstanceType;
use crate::inventory::InstanceRecord;
use crate::sla::{provider_failed, SlaRecorder};

/// Deadline of one provider call.
pub const PROVIDER_TIMEOUT: std::time::Duration = contract::INSTANCE_DEADLINE;

/// One provider instance, as the instance operations call it.
pub(super) struct Provider<'a> {
    pub(super) plugins: &'a dyn Plugins,
    pub(super) name: &'a str,
    /// The region the instance is in (for the SLA).
    pub(super) region: &'a str,
    pub(super) context: CallContext,
    /// Counts each op's outcome and latency, when the SLA is recorded.
    pub(super) sla: Option<&'a SlaRecorder>,
    pub(super) clock: &'a SharedClock,
}

/// What a provider says of one of its VMs (a validated [`InstanceView`]).
pub(super) struct Observed {
    /// Its id at the provider.
    pub(super) id: String,
    /// Its EC2-named state.
    pub(super) state: String,
    /// Its addresses, as the provider reports them.
    pub(super) network: Option<InstanceNetwork>,
}

impl From<InstanceView> for Observed {
    fn from(view: InstanceView) -> Self {
        // A terminated instance has released its addresses, whatever the provider says.
        let network = match view.state {
            InstanceState::Terminated => None,
            _ => view.network.filter(|n| *n != InstanceNetwork::default()),
        };
        Self {
            id: view.id,
            state: view.state.as_str().to_string(),
            network,
        }
    }
}

impl Provider<'_> {
    /// Calls `op@1` with `params` and checks the answer against the contract's `T`: a
    /// malformed answer is 502 naming the provider and the op (the detail is logged).
    async fn call<T: DeserializeOwned>(
        &self,
        op: &str,
        params: &impl Serialize,
    ) -> Result<T, GatewayError> {
        let params = serde_json::to_string(params).expect("contract params serialise");
        let started = self.clock.monotonic();
        let answer = self
            .plugins
            .call_json(
                self.name,
                op,
                1,
                params,
                self.context.clone(),
                PROVIDER_TIMEOUT,
            )
            .await;
        let took = self.clock.monotonic().saturating_sub(started);
        let result = answer.and_then(|answer| {
            serde_json::from_value(answer).map_err(|e| {
                GatewayError::new(
                    ErrorKind::Upstream,
                    format!(
                        "provider '{}' answered {op}@1 with a malformed result",
                        self.name
                    ),
                )
                .with_cause(format!("{}: {op}@1: {e}", self.name))
            })
        });
        if let Some(sla) = self.sla {
            let failed = matches!(&result, Err(e) if provider_failed(e.kind));
            sla.record_call(self.name, self.region, failed, took);
        }
        result
    }

    /// An [`InstanceView`] answer, with a non-empty id.
    async fn view(&self, op: &str, params: &impl Serialize) -> Result<Observed, GatewayError> {
        let view: InstanceView = self.call(op, params).await?;
        if view.id.is_empty() {
            return Err(GatewayError::new(
                ErrorKind::Upstream,
                format!("provider '{}' answered {op}@1 with an empty id", self.name),
            ));
        }
        Ok(Observed::from(view))
    }

    /// `instance.create@1` for `record` (its id is the idempotency key: one Skyport
    /// instance is never more than one VM, however often its create is sent), with what
    /// its guest gets at first boot.
    pub(super) async fn create(
        &self,
        record: &InstanceRecord,
        itype: InstanceType,
        first_boot: &FirstBoot,
    ) -> Result<Observed, GatewayError> {
        let tags = record
            .tags
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect();
        let params = CreateInstance {
            skyport_id: record.id.clone(),
            idempotency_key: record.id.clone(),
            image: record.image.clone(),
            instance_type: itype.name.to_string(),
            vcpus: itype.vcpus,
            memory_mib: itype.memory_mib,
            tags,
            ssh_public_keys: first_boot.ssh_public_keys.clone(),
            user_data: first_boot.user_data.clone(),
        };
        self.view(contract::INSTANCE_CREATE, &params).await
    }

    /// `instance.find@1`: the VM the create of `record` made, if the provider has it.
    pub(super) async fn find(
        &self,
        record: &InstanceRecord,
    ) -> Result<Option<Observed>, GatewayError> {
        let found: Option<InstanceView> = self
            .call(
                contract::INSTANCE_FIND,
                &FindInstance {
                    idempotency_key: record.id.clone(),
                },
            )
            .await?;
        match found {
            Some(view) if view.id.is_empty() => Err(GatewayError::new(
                ErrorKind::Upstream,
                format!(
                    "provider '{}' answered instance.find@1 with an empty id",
                    self.name
                ),
            )),
            found => Ok(found.map(Observed::from)),
        }
    }

    /// `inventory.list@1`: the state of every VM the provider manages, by its id (the
    /// processes it runs but does not manage, `"orphan": true`, left out). Malformed items
    /// are skipped: an instance missing from the answer is asked for on its own.
    pub(super) async fn inventory_states(&self) -> Result<HashMap<String, String>, GatewayError> {
        let listed: Vec<serde_json::Value> = self
            .call(contract::INVENTORY_LIST, &serde_json::json!({}))
            .await?;
        Ok(listed
            .iter()
            .filter(|vm| vm["orphan"].as_bool() != Some(true))
            .filter_map(|vm| {
                let state: InstanceState = serde_json::from_value(vm["state"].clone()).ok()?;
                Some((vm["id"].as_str()?.to_string(), state.as_str().to_string()))
            })
            .collect())
    }

    /// `instance.get@1`.
    pub(super) async fn get(&self, remote_id: &str) -> Result<Observed, GatewayError> {
        self.view(
            contract::INSTANCE_GET,
            &InstanceRef {
                id: remote_id.to_string(),
            },
        )
        .await
    }

    /// `instance.start|stop|reboot|terminate@1`.
    pub(super) async fn act(&self, op: &str, remote_id: &str) -> Result<Observed, GatewayError> {
        self.view(
            op,
            &InstanceRef {
                id: remote_id.to_string(),
            },
        )
        .await
    }

    /// `instance.resize@1`.
    pub(super) async fn resize(
        &self,
        remote_id: &str,
        itype: InstanceType,
    ) -> Result<(), GatewayError> {
        let params = ResizeInstance {
            id: remote_id.to_string(),
            instance_type: itype.name.to_string(),
            vcpus: itype.vcpus,
            memory_mib: itype.memory_mib,
        };
        self.call::<serde_json::Value>(contract::INSTANCE_RESIZE, &params)
            .await
            .map(|_| ())
    }

    /// `instance.console@1`: the tail of the serial console.
    pub(super) async fn console(&self, remote_id: &str) -> Result<String, GatewayError> {
        let params = ConsoleRequest {
            id: remote_id.to_string(),
            tail_bytes: 65536,
        };
        let out: ConsoleOutput = self.call(contract::INSTANCE_CONSOLE, &params).await?;
        Ok(out.output)
    }
}
