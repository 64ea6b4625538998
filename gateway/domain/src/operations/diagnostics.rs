//! Operators' diagnostics: any op of any loaded plugin, called with the operator's own
//! identity in its context (`POST /admin/plugins/{name}/ops/{op}`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skyport_core::error::GatewayError;
use skyport_core::tenancy::TenantContext;
use skyport_plugin_host::Plugins;

use crate::call_context;

/// Deadline of an operator's plugin call.
const DIAGNOSTIC_TIMEOUT: Duration = Duration::from_secs(30);

/// Plugin calls for operators.
pub struct Diagnostics {
    plugins: Arc<dyn Plugins>,
}

impl Diagnostics {
    /// Diagnostics over `plugins`.
    pub fn new(plugins: Arc<dyn Plugins>) -> Self {
        Self { plugins }
    }

    /// Calls `op` (`op` or `op@version`, version 1 when not given) on `plugin`.
    pub async fn call(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        plugin: &str,
        op: &str,
        params: Value,
    ) -> Result<Value, GatewayError> {
        let (op, version) = match op.split_once('@') {
            Some((op, v)) => (
                op,
                v.parse::<u32>()
                    .map_err(|_| GatewayError::invalid(format!("bad op version '{v}'")))?,
            ),
            None => (op, 1),
        };
        self.plugins
            .call(
                plugin,
                op,
                version,
                params,
                call_context(ctx, request_id),
                DIAGNOSTIC_TIMEOUT,
            )
            .await
    }
}
