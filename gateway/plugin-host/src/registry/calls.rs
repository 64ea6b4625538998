//! A call into an instance: its deadline, its cancellation on timeout, a panic or a
//! crash turning the instance unhealthy, and the plugin's errors mapped to the gateway's.

use super::*;

impl PluginRegistry {
    pub(super) async fn call_handle(
        &self,
        handle: &Arc<PluginHandle>,
        op: &str,
        version: u32,
        params: String,
        context: CallContext,
        timeout: Duration,
    ) -> Result<serde_json::Value, GatewayError> {
        let running = InFlight::on_current(handle);
        self.call_running(
            &handle.name,
            &running.0,
            &handle.health,
            op,
            version,
            params,
            context,
            timeout,
        )
        .await
    }

    /// Calls `op@version` on one running version of plugin `name`; a panic marks `health`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn call_running(
        &self,
        name: &str,
        running: &Running,
        health: &HealthCell,
        op: &str,
        version: u32,
        params: String,
        context: CallContext,
        timeout: Duration,
    ) -> Result<serde_json::Value, GatewayError> {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let deadline = self.clock.wall() + timeout;
        let request = OpRequest {
            id,
            op: op.into(),
            version,
            params: params.into(),
            context: serde_json::to_string(&context).unwrap_or_default().into(),
            deadline_unix_ms: deadline
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        let started = self.clock.monotonic();
        let receiver: CompletionReceiver = match &running.backend {
            Backend::InProcess(instance) => {
                let (completion, receiver) = completion_channel();
                instance.start(request, completion);
                receiver
            }
            Backend::Process(process) => refused_as_result(process.start_call(&request, timeout)),
            Backend::Remote(remote) => refused_as_result(remote.start_call(&request, timeout)),
        };
        let outcome = tokio::time::timeout(timeout, receiver).await;
        let took = self.clock.monotonic().saturating_sub(started);
        self.call_series.observe(name, took.as_secs_f64());
        let (code, result) = match outcome {
            Err(_elapsed) => {
                match &running.backend {
                    Backend::InProcess(instance) => instance.cancel(id),
                    Backend::Process(process) => process.cancel(id),
                    Backend::Remote(remote) => remote.cancel(id),
                }
                (
                    error_code::TIMEOUT.to_string(),
                    Err(GatewayError::new(
                        ErrorKind::Timeout,
                        format!("plugin '{}' did not answer {op} within {timeout:?}", name),
                    )),
                )
            }
            Ok(Err(_dropped)) => (
                error_code::INTERNAL.to_string(),
                Err(GatewayError::internal(format!(
                    "plugin '{}' dropped the completion of {op}",
                    name
                ))),
            ),
            Ok(Ok(RResult::ROk(json))) => match serde_json::from_str(json.as_str()) {
                Ok(value) => ("ok".to_string(), Ok(value)),
                Err(e) => (
                    error_code::INTERNAL.to_string(),
                    Err(GatewayError::internal(format!(
                        "plugin '{}' returned invalid JSON for {op}: {e}",
                        name
                    ))),
                ),
            },
            Ok(Ok(RResult::RErr(err))) => {
                if err.code.as_str() == error_code::PANICKED {
                    tracing::error!(plugin = %name, op, error = %err, "plugin panicked; marked unhealthy");
                    health.set(false, Some(format!("panicked in {op}")));
                }
                (err.code.to_string(), Err(map_plugin_error(name, op, &err)))
            }
        };
        self.call_series.count(name, op, &code);
        result
    }
}

/// Maps a plugin's typed error to a gateway error. Messages are shown for the codes whose
/// messages plugins write for callers (see `PluginError::message`).
/// A call's receiver, or one already holding the refusal to start it.
fn refused_as_result(
    started: Result<CompletionReceiver, skyport_plugin_api::abi::PluginError>,
) -> CompletionReceiver {
    started.unwrap_or_else(|refused| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(OpResult::RErr(refused));
        rx
    })
}

pub(super) fn map_plugin_error(
    plugin: &str,
    op: &str,
    err: &skyport_plugin_api::PluginError,
) -> GatewayError {
    let shown = err.message.to_string();
    let mapped = match err.code.as_str() {
        error_code::INVALID_INPUT => GatewayError::invalid(shown),
        error_code::NOT_FOUND => GatewayError::not_found(shown),
        error_code::CONFLICT => GatewayError::new(ErrorKind::Conflict, shown),
        error_code::LIMIT_EXCEEDED => GatewayError::new(ErrorKind::Conflict, shown),
        error_code::UNAVAILABLE => GatewayError::new(ErrorKind::Unavailable, shown),
        error_code::THROTTLED => GatewayError::new(
            ErrorKind::Unavailable,
            format!("provider '{plugin}' is throttling; retry later"),
        ),
        error_code::TIMEOUT => {
            GatewayError::new(ErrorKind::Timeout, format!("provider '{plugin}' timed out"))
        }
        error_code::UNSUPPORTED_OP => GatewayError::new(
            ErrorKind::NotImplemented,
            format!("plugin '{plugin}' does not support {op}"),
        ),
        error_code::PANICKED => GatewayError::new(
            ErrorKind::Internal,
            format!("plugin '{plugin}' failed while serving {op}; it is now marked unhealthy"),
        ),
        _ => GatewayError::new(
            ErrorKind::Upstream,
            format!("plugin '{plugin}' failed while serving {op}"),
        ),
    };
    let mut mapped = mapped.with_cause(format!("{plugin}: {err}"));
    mapped.retryable = err.retryable;
    mapped
}
