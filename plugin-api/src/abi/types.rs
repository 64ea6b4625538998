//! Message, error and callback types that cross the boundary.

// abi_stable 0.11's `#[sabi_trait]` expands to impls the non_local_definitions lint flags,
// and to the unsafe impls and calls of its FFI-safe trait objects: the one place in this
// crate whose expansion is unsafe code (the crate root denies it everywhere else).
#![allow(non_local_definitions, unsafe_code)]

use abi_stable::{
    sabi_trait,
    std_types::{RBox, RResult, RStr, RString},
    StableAbi,
};

/// Error codes every plugin and the host understand. Codes are strings so that a newer
/// plugin's new code reaches an older host intact (it is then treated as `INTERNAL`).
pub mod error_code {
    /// The plugin panicked; the host marks the plugin unhealthy.
    pub const PANICKED: &str = "PANICKED";
    /// The operation name or schema version is not served by this plugin.
    pub const UNSUPPORTED_OP: &str = "UNSUPPORTED_OP";
    /// Parameters were malformed or invalid.
    pub const INVALID_INPUT: &str = "INVALID_INPUT";
    /// The resource does not exist.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// The resource is in a state that does not allow the operation.
    pub const CONFLICT: &str = "CONFLICT";
    /// The backend refused for lack of capacity or quota.
    pub const LIMIT_EXCEEDED: &str = "LIMIT_EXCEEDED";
    /// The backend is throttling; retry later.
    pub const THROTTLED: &str = "THROTTLED";
    /// The backend cannot serve now (missing tool, endpoint down).
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    /// The deadline passed before the operation finished.
    pub const TIMEOUT: &str = "TIMEOUT";
    /// The host cancelled the operation.
    pub const CANCELLED: &str = "CANCELLED";
    /// Configuration given to `instantiate` was refused.
    pub const INVALID_CONFIG: &str = "INVALID_CONFIG";
    /// Anything else.
    pub const INTERNAL: &str = "INTERNAL";
}

/// A typed error: a code from [`error_code`], a message safe to log, and whether a retry
/// may succeed.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// One of [`error_code`].
    pub code: RString,
    /// Human-readable message. The host shows it to callers only for `INVALID_INPUT`,
    /// `NOT_FOUND`, `CONFLICT`, `LIMIT_EXCEEDED` and `UNAVAILABLE` (so write those for
    /// tenants); for every other code it is logged and a generic message is sent.
    pub message: RString,
    /// Whether the same request may succeed later.
    pub retryable: bool,
}

impl PluginError {
    /// An error with `code` and `message`, not retryable.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: RString::from(message.into()),
            retryable: false,
        }
    }

    /// The same error marked retryable.
    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for PluginError {}

/// Result of an operation: a JSON document or a typed error.
pub type OpResult = RResult<RString, PluginError>;

/// One message-shaped call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct OpRequest {
    /// Unique per host process; `cancel` names it.
    pub id: u64,
    /// Operation name, e.g. `health` or `instance.create`.
    pub op: RString,
    /// Schema version of `params` and of the result.
    pub version: u32,
    /// Parameters as a JSON document.
    pub params: RString,
    /// Call context as a JSON document ([`crate::sdk::CallContext`]).
    pub context: RString,
    /// Deadline in milliseconds since the Unix epoch; 0 means none.
    pub deadline_unix_ms: u64,
}

/// Severity of a log line sent to the host.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors.
    Error = 1,
    /// Warnings.
    Warn = 2,
    /// Informational.
    Info = 3,
    /// Debugging.
    Debug = 4,
    /// Tracing.
    Trace = 5,
}

/// How a metric value is applied.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Added to a counter.
    Counter = 1,
    /// Sets a gauge.
    Gauge = 2,
}

/// Receives the result of one call, exactly once.
#[sabi_trait]
pub trait CompletionSink: Send + Sync {
    /// Delivers the result. Only the first call counts; later calls are ignored.
    fn complete(&self, result: OpResult);
}

/// An owned completion callback.
pub type CompletionBox = CompletionSink_TO<'static, RBox<()>>;

/// Services the host offers to a plugin.
#[sabi_trait]
pub trait HostServices: Send + Sync {
    /// Writes a log line into the host's log, tagged with the plugin's name.
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>);
    /// Records a metric sample; `labels` is a JSON object of string values.
    fn metric(&self, kind: MetricKind, name: RStr<'_>, value: f64, labels: RStr<'_>);
    /// A generic call into the host (e.g. another plugin's inventory). Completes exactly once.
    fn call(&self, request: OpRequest, completion: CompletionBox);
}

/// The host's services, owned by the plugin.
pub type HostBox = HostServices_TO<'static, RBox<()>>;

/// One instantiated plugin.
#[sabi_trait]
pub trait PluginInstance: Send + Sync {
    /// Starts a call without blocking; the result arrives through `completion`, exactly once.
    fn start(&self, request: OpRequest, completion: CompletionBox);
    /// Asks the plugin to stop work on a call; it still completes it (with `CANCELLED`).
    fn cancel(&self, request_id: u64);
    /// Stops the instance: finishes or cancels work and stops its runtime. Called once,
    /// from a thread outside any async runtime.
    fn shutdown(&self);
}

/// An owned plugin instance.
pub type PluginBox = PluginInstance_TO<'static, RBox<()>>;
