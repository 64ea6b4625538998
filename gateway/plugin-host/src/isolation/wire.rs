//! The messages between the gateway and a plugin's process, and their framing.
//!
//! One Unix stream socket per child (its standard input). Every message is one frame: a
//! little-endian `u32` length, then that many bytes of JSON. Op parameters, contexts and
//! results stay the JSON text the ABI already carries; they are embedded as strings, so
//! neither side parses them on the way through.

use std::io::{self, Read, Write};

use tokio::io::AsyncReadExt;

use abi_stable::std_types::RStr;
use serde::{Deserialize, Serialize};
use skyport_plugin_api::abi::{LogLevel, MetricKind, OpRequest, OpResult, PluginError};
use skyport_plugin_api::Description;

use crate::loader::ManifestInfo;

/// The largest frame either side accepts (a frame names its length before its bytes).
pub const MAX_FRAME: usize = 64 << 20;
/// What a frame's body reserves before its bytes arrive.
pub const INITIAL_BODY: usize = 64 << 10;

/// What the child must do with the library it is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Run the loader's checks and `describe()`, answer, and exit.
    Check,
    /// Load, instantiate and serve calls until told to shut down.
    Serve,
}

/// Resource limits the child applies to itself before the library is opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest data segment (heap and private mappings), MiB (`RLIMIT_DATA`).
    pub max_memory_mib: Option<u64>,
    /// Most open descriptors (`RLIMIT_NOFILE`).
    pub max_open_files: Option<u64>,
}

/// Messages from the gateway to a child.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToChild {
    /// The first message: which library, for what.
    Init {
        /// What to do.
        purpose: Purpose,
        /// The configured instance name (or the file stem).
        name: String,
        /// The library.
        file: String,
        /// A sha256 the file must have.
        sha256: Option<String>,
        /// The instance's configuration, JSON (serve only).
        config: String,
        /// The instance's own state directory (serve only).
        state_dir: String,
        /// Limits to apply before loading.
        limits: Limits,
    },
    /// Start a call.
    Start {
        /// Call id, unique per child.
        id: u64,
        /// Operation.
        op: String,
        /// Operation version.
        version: u32,
        /// Parameters, JSON.
        params: String,
        /// Call context, JSON.
        context: String,
        /// Deadline, ms since the Unix epoch (0: none).
        deadline_unix_ms: u64,
    },
    /// Ask the plugin to stop work on a call.
    Cancel {
        /// The call.
        id: u64,
    },
    /// The answer to one of the child's host calls.
    HostReply {
        /// The host call's id.
        id: u64,
        /// The host's answer.
        result: WireResult,
    },
    /// Stop the instance and exit.
    Shutdown,
}

/// Messages from a child to the gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum FromChild {
    /// The library passed every check (and, to serve, was instantiated).
    Ready {
        /// Its manifest.
        manifest: ManifestInfo,
        /// Its description.
        description: Box<Description>,
        /// sha256 of the bytes that were loaded.
        sha256: String,
    },
    /// The library was refused: the loader's one line, or the plugin's `init` failure.
    Refused {
        /// Plugin name, from the manifest when it was readable.
        plugin: String,
        /// Plugin version, when the manifest was readable.
        version: Option<String>,
        /// Why.
        reason: String,
    },
    /// A call's result.
    Complete {
        /// The call.
        id: u64,
        /// Its result.
        result: WireResult,
    },
    /// A log line.
    Log {
        /// `LogLevel` as its number.
        level: u8,
        /// The plugin's log target.
        target: String,
        /// The line.
        message: String,
    },
    /// A metric sample.
    Metric {
        /// 1 counter, 2 gauge.
        kind: u8,
        /// Metric name.
        name: String,
        /// Value.
        value: f64,
        /// Labels, a JSON object.
        labels: String,
    },
    /// A call into the host.
    HostCall {
        /// Id, unique per child, echoed by the reply.
        id: u64,
        /// Operation.
        op: String,
        /// Version.
        version: u32,
        /// Parameters, JSON.
        params: String,
    },
}

impl FromChild {
    /// A plugin's log line, as sent to the gateway.
    pub fn log(level: LogLevel, target: RStr<'_>, message: RStr<'_>) -> Self {
        Self::Log {
            level: level as u8,
            target: target.to_string(),
            message: message.to_string(),
        }
    }

    /// A plugin's metric sample, as sent to the gateway.
    pub fn metric(kind: MetricKind, name: RStr<'_>, value: f64, labels: RStr<'_>) -> Self {
        Self::Metric {
            kind: kind as u8,
            name: name.to_string(),
            value,
            labels: labels.to_string(),
        }
    }

    /// A plugin's host call `request`, under host-call id `id`.
    pub fn host_call(id: u64, request: &OpRequest) -> Self {
        Self::HostCall {
            id,
            op: request.op.to_string(),
            version: request.version,
            params: request.params.to_string(),
        }
    }
}

/// A result as it crosses the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireResult {
    /// JSON text.
    Ok(String),
    /// A typed error.
    Err {
        /// Error code.
        code: String,
        /// Message.
        message: String,
        /// Whether a retry may succeed.
        retryable: bool,
    },
}

impl From<OpResult> for WireResult {
    fn from(result: OpResult) -> Self {
        match result.into_result() {
            Ok(json) => Self::Ok(json.into_string()),
            Err(e) => Self::Err {
                code: e.code.into_string(),
                message: e.message.into_string(),
                retryable: e.retryable,
            },
        }
    }
}

impl From<WireResult> for OpResult {
    fn from(result: WireResult) -> Self {
        match result {
            WireResult::Ok(json) => OpResult::ROk(json.into()),
            WireResult::Err {
                code,
                message,
                retryable,
            } => OpResult::RErr(PluginError {
                code: code.into(),
                message: message.into(),
                retryable,
            }),
        }
    }
}

impl From<&OpRequest> for ToChild {
    fn from(request: &OpRequest) -> Self {
        Self::Start {
            id: request.id,
            op: request.op.to_string(),
            version: request.version,
            params: request.params.to_string(),
            context: request.context.to_string(),
            deadline_unix_ms: request.deadline_unix_ms,
        }
    }
}

/// `message` as one frame, ready to write.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut frame = vec![0u8; 4];
    serde_json::to_writer(&mut frame, message).expect("wire messages always serialise");
    let len = u32::try_from(frame.len() - 4).expect("frames are smaller than 4 GiB");
    frame[..4].copy_from_slice(&len.to_le_bytes());
    frame
}

/// The message in a frame's body.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> io::Result<T> {
    serde_json::from_slice(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The length a frame header announces, refused past [`MAX_FRAME`].
pub fn frame_len(header: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    Ok(len)
}

/// Reads one frame (blocking); `None` at a clean end of stream.
pub fn read_blocking<T: for<'de> Deserialize<'de>>(
    reader: &mut impl Read,
) -> io::Result<Option<T>> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = frame_len(header)?;
    // Grown as bytes arrive: a header alone never reserves its announced length.
    let mut body = Vec::with_capacity(len.min(INITIAL_BODY));
    reader.take(len as u64).read_to_end(&mut body)?;
    if body.len() < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    decode(&body).map(Some)
}

/// Writes one frame (blocking).
pub fn write_blocking<T: Serialize>(writer: &mut impl Write, message: &T) -> io::Result<()> {
    writer.write_all(&encode(message))
}

/// The call `id` a frame's fields describe, as the plugin (or the host) receives it.
pub fn op_request(
    id: u64,
    op: String,
    version: u32,
    params: String,
    context: String,
    deadline_unix_ms: u64,
) -> OpRequest {
    OpRequest {
        id,
        op: op.into(),
        version,
        params: params.into(),
        context: context.into(),
        deadline_unix_ms,
    }
}

/// The next frame on `reader`; `None` at a clean end of stream.
pub(super) async fn read_frame<T: for<'de> serde::Deserialize<'de>>(
    reader: &mut (impl AsyncReadExt + Unpin),
) -> std::io::Result<Option<T>> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = frame_len(header)?;
    // Grown as bytes arrive: a header alone never reserves its announced length.
    let mut body = Vec::with_capacity(len.min(INITIAL_BODY));
    reader.take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    decode(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_embedded_json_stays_text() {
        let message = ToChild::Start {
            id: 7,
            op: "instance.create".into(),
            version: 1,
            params: r#"{"image":"a \"b\""}"#.into(),
            context: "{}".into(),
            deadline_unix_ms: 9,
        };
        let frame = encode(&message);
        let back: Option<ToChild> = read_blocking(&mut frame.as_slice()).unwrap();
        match back {
            Some(ToChild::Start { id, params, .. }) => {
                assert_eq!(id, 7);
                assert_eq!(params, r#"{"image":"a \"b\""}"#);
            }
            other => panic!("{other:?}"),
        }
        let empty: Option<ToChild> = read_blocking(&mut [].as_slice()).unwrap();
        assert!(empty.is_none());
    }

    #[test]
    fn an_oversized_or_garbled_frame_is_an_error_not_a_panic() {
        let huge = (MAX_FRAME as u32 + 1).to_le_bytes();
        assert!(read_blocking::<ToChild>(&mut huge.as_slice()).is_err());
        let mut garbled = 3u32.to_le_bytes().to_vec();
        garbled.extend_from_slice(b"{x}");
        assert!(read_blocking::<ToChild>(&mut garbled.as_slice()).is_err());
        let mut cut = 10u32.to_le_bytes().to_vec();
        cut.extend_from_slice(b"{}");
        assert!(read_blocking::<ToChild>(&mut cut.as_slice()).is_err());
    }

    #[test]
    fn results_keep_code_message_and_retryable() {
        let err = OpResult::RErr(PluginError::new("THROTTLED", "slow down").retryable());
        let wire = WireResult::from(err);
        let back = OpResult::from(wire.clone());
        assert_eq!(WireResult::from(back), wire);
    }
}
