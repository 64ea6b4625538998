//! `[server]`: listeners, the state directory, logging and the HTTP limits.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// TLS listener address.
    pub listen: SocketAddr,
    /// Plain-HTTP metrics and health listener address.
    pub metrics_listen: SocketAddr,
    /// State directory (certificates, database, plugin state).
    pub state_dir: PathBuf,
    /// `text` or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Connections whose request headers are not complete within this many seconds are closed.
    #[serde(default = "default_header_timeout")]
    pub header_read_timeout_secs: u64,
    /// Requests with larger headers get 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// How long shutdown waits for in-flight requests.
    #[serde(default = "default_drain")]
    pub drain_timeout_secs: u64,
    /// How often every plugin is asked for its health (`health@1`); an unhealthy provider's
    /// requests fail fast with 503 and the reason until it answers healthy again.
    #[serde(default = "default_health_probe")]
    pub health_probe_interval_secs: u64,
    /// Most connections open at once on the API listener; unset: what the process's
    /// descriptor limit leaves after a reserve for everything else.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Most connections open at once from one client address.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// New connections one client address may open per second (and twice as many at once);
    /// past it a connection is closed before its TLS handshake.
    #[serde(default = "default_new_connections_per_peer_per_sec")]
    pub new_connections_per_peer_per_sec: u32,
    /// Time allowed for a TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
    /// A connection with no request in flight and no bytes moving for this long is closed
    /// (HTTP/1 and HTTP/2 alike).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Time allowed for reading a request body.
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout_secs: u64,
    /// Most request-body bytes being read at once across every connection, charged as
    /// they arrive; a body whose next bytes find no room within 2 s gets 503.
    #[serde(default = "default_max_buffered_body_bytes")]
    pub max_buffered_body_bytes: usize,
}

fn default_max_connections_per_peer() -> usize {
    512
}
fn default_new_connections_per_peer_per_sec() -> u32 {
    64
}
fn default_handshake_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_body_read_timeout() -> u64 {
    30
}
fn default_max_buffered_body_bytes() -> usize {
    64 << 20
}

fn default_health_probe() -> u64 {
    30
}

fn default_log_format() -> String {
    "text".into()
}
fn default_header_timeout() -> u64 {
    10
}
fn default_max_header_bytes() -> usize {
    16 * 1024
}
fn default_drain() -> u64 {
    10
}
