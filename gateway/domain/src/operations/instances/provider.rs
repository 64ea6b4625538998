//! The provider ops the instance operations call, in one place: their names, payloads and
//! answers (`instance.*@1`, see `docs/plugin-authoring.md`).

use std::time::Duration;

use serde_json::{json, Value};
use skyport_core::error::GatewayError;
use skyport_plugin_api::sdk::CallContext;
use skyport_plugin_host::Plugins;

use crate::catalog::InstanceType;

/// Deadline of one provider call.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(60);

/// One provider instance, as the instance operations call it.
pub(super) struct Provider<'a> {
    pub(super) plugins: &'a dyn Plugins,
    pub(super) name: &'a str,
    pub(super) context: CallContext,
}

/// What a provider says of one of its VMs.
pub(super) struct Observed {
    /// Its id at the provider.
    pub(super) id: Option<String>,
    /// Its EC2-named state, when the provider said.
    pub(super) state: Option<String>,
}

impl Observed {
    fn from(answer: &Value) -> Self {
        Self {
            id: answer["id"].as_str().map(str::to_owned),
            state: answer["state"].as_str().map(str::to_owned),
        }
    }
}

impl Provider<'_> {
    async fn call(&self, op: &str, params: Value) -> Result<Value, GatewayError> {
        self.plugins
            .call(
                self.name,
                op,
                1,
                params,
                self.context.clone(),
                PROVIDER_TIMEOUT,
            )
            .await
    }

    /// `instance.create@1`.
    pub(super) async fn create(
        &self,
        image: &str,
        itype: InstanceType,
    ) -> Result<Observed, GatewayError> {
        let answer = self
            .call(
                "instance.create",
                json!({
                    "image": image,
                    "instance_type": itype.name,
                    "vcpus": itype.vcpus,
                    "memory_mib": itype.memory_mib,
                }),
            )
            .await?;
        Ok(Observed::from(&answer))
    }

    /// `instance.get@1`.
    pub(super) async fn get(&self, remote_id: &str) -> Result<Observed, GatewayError> {
        Ok(Observed::from(
            &self.call("instance.get", json!({"id": remote_id})).await?,
        ))
    }

    /// `instance.start|stop|reboot|terminate@1`.
    pub(super) async fn act(&self, op: &str, remote_id: &str) -> Result<Observed, GatewayError> {
        Ok(Observed::from(
            &self.call(op, json!({"id": remote_id})).await?,
        ))
    }

    /// `instance.resize@1`.
    pub(super) async fn resize(
        &self,
        remote_id: &str,
        itype: InstanceType,
    ) -> Result<(), GatewayError> {
        self.call(
            "instance.resize",
            json!({"id": remote_id, "instance_type": itype.name, "vcpus": itype.vcpus, "memory_mib": itype.memory_mib}),
        )
        .await
        .map(|_| ())
    }

    /// `instance.console@1`: the tail of the serial console.
    pub(super) async fn console(&self, remote_id: &str) -> Result<String, GatewayError> {
        let out = self
            .call(
                "instance.console",
                json!({"id": remote_id, "tail_bytes": 65536}),
            )
            .await?;
        Ok(out["output"].as_str().unwrap_or_default().to_string())
    }
}
