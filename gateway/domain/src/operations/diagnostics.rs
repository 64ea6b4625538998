//! Operators' diagnostics: any op of any loaded plugin, called with the operator's own
//! identity in its context (`POST /admin/plugins/{name}/ops/{op}`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use skyport_core::error::GatewayError;
use skyport_core::tenancy::TenantContext;
use skyport_plugin_host::Plugins;

use crate::call_context;

/// Deadline of an operator's plugin call unless the operator sets one.
pub const DIAGNOSTIC_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest deadline an operator may set.
pub const MAX_DIAGNOSTIC_TIMEOUT: Duration = Duration::from_secs(300);

/// Plugin calls for operators.
pub struct Diagnostics {
    plugins: Arc<dyn Plugins>,
}

impl Diagnostics {
    /// Diagnostics over `plugins`.
    pub fn new(plugins: Arc<dyn Plugins>) -> Self {
        Self { plugins }
    }

    /// Calls `op` (`op` or `op@version`, version 1 when not given) on `plugin`, with
    /// `timeout` as its deadline ([`DIAGNOSTIC_TIMEOUT`] when not given; at most
    /// [`MAX_DIAGNOSTIC_TIMEOUT`]).
    pub async fn call(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        plugin: &str,
        op: &str,
        params: Value,
        timeout: Option<Duration>,
    ) -> Result<Value, GatewayError> {
        let timeout = timeout.unwrap_or(DIAGNOSTIC_TIMEOUT);
        if timeout.is_zero() || timeout > MAX_DIAGNOSTIC_TIMEOUT {
            return Err(GatewayError::invalid(format!(
                "timeout_secs must be 1 to {}",
                MAX_DIAGNOSTIC_TIMEOUT.as_secs()
            )));
        }
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
                timeout,
            )
            .await
    }
}
