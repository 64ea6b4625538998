//! One connection to a plugin, whoever is at the other end (a local plugin process, or a
//! plugin host on another machine): its frame writer, the calls waiting for results, the
//! reader that dispatches the plugin's messages (results, logs, metrics, host calls) and
//! notices a call stuck past its deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::RStr;
use skyport_plugin_api::abi::{
    error_code, CompletionSink, CompletionSink_TO, HostServices, LogLevel, MetricKind, OpRequest,
    OpResult, PluginError,
};
use skyport_plugin_api::sdk::CompletionReceiver;
use skyport_plugin_api::Description;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::wire::{self, read_frame, FromChild, ToChild, WireResult};
use crate::host::GatewayHost;
use crate::loader::ManifestInfo;

/// How long past its deadline a call may stay unanswered before its process is replaced.
pub const STUCK_GRACE: Duration = Duration::from_secs(10);

/// What a child reported once its library was loaded.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The manifest.
    pub manifest: ManifestInfo,
    /// The description.
    pub description: Description,
    /// sha256 of the loaded bytes.
    pub sha256: String,
}

/// The child's first answer: loaded, or refused.
pub(super) type FirstAnswer = Result<Loaded, (String, Option<String>, String)>;

/// A call waiting for its result.
pub(super) struct Pending {
    op: String,
    deadline: Instant,
    result: oneshot::Sender<OpResult>,
}

/// Writes queued frames to a child, each one whole, until the queue closes or the child
/// stops reading. Senders never wait: a call or a cancel dropped half way never leaves
/// half a frame on the socket.
pub(super) async fn write_frames(
    mut writer: impl AsyncWrite + Unpin,
    mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    while let Some(frame) = frames.recv().await {
        if writer.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// The connection to one running process.
pub(super) struct Connection {
    /// Frames for [`write_frames`].
    pub(super) outbox: mpsc::UnboundedSender<Vec<u8>>,
    pub(super) pending: Mutex<HashMap<u64, Pending>>,
    /// Set once the process is going: new calls are refused.
    pub(super) closed: AtomicBool,
    /// Where the child's first answer (`Ready` or `Refused`) goes.
    pub(super) first: Mutex<Option<oneshot::Sender<FirstAnswer>>>,
    /// The process's id.
    pub(super) pid: Option<u32>,
}

impl Connection {
    /// A connection whose frames go to `outbox` and whose first answer goes to `first`.
    pub(super) fn new(
        outbox: mpsc::UnboundedSender<Vec<u8>>,
        first: oneshot::Sender<FirstAnswer>,
        pid: Option<u32>,
    ) -> Arc<Self> {
        Arc::new(Self {
            outbox,
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            first: Mutex::new(Some(first)),
            pid,
        })
    }

    /// Asks the plugin to stop work on call `id`, if there is a connection.
    pub(super) fn cancel_on(connection: Option<Arc<Self>>, id: u64) {
        if let Some(connection) = connection {
            connection.send(&ToChild::Cancel { id });
        }
    }

    /// Queues `message`; false once the child no longer reads.
    pub(super) fn send(&self, message: &ToChild) -> bool {
        self.outbox.send(wire::encode(message)).is_ok()
    }

    /// Fails every call in flight with `error`; the ops that were in flight.
    pub(super) fn fail_all(&self, error: impl Fn(&str) -> PluginError) -> Vec<String> {
        self.closed.store(true, Ordering::SeqCst);
        let drained: Vec<Pending> = lock(&self.pending).drain().map(|(_, p)| p).collect();
        drained
            .into_iter()
            .map(|p| {
                let _ = p.result.send(OpResult::RErr(error(&p.op)));
                p.op
            })
            .collect()
    }
}

/// Sends a call on `connection` (none: `unavailable`); the receiver resolves with its
/// result, or with `UNAVAILABLE` if the connection ends first. Never waits: the frame is
/// queued whole.
pub(super) fn start_call_on(
    connection: Option<Arc<Connection>>,
    request: &OpRequest,
    timeout: Duration,
    unavailable: impl Fn() -> PluginError,
) -> Result<CompletionReceiver, PluginError> {
    let connection = connection.ok_or_else(&unavailable)?;
    let (tx, rx) = oneshot::channel();
    {
        let mut pending = lock(&connection.pending);
        if connection.closed.load(Ordering::SeqCst) {
            return Err(unavailable());
        }
        pending.insert(
            request.id,
            Pending {
                op: format!("{}@{}", request.op, request.version),
                deadline: Instant::now() + timeout,
                result: tx,
            },
        );
    }
    if !connection.send(&ToChild::from(request)) {
        lock(&connection.pending).remove(&request.id);
        return Err(unavailable());
    }
    Ok(rx)
}

/// Answers a plugin's host call over the connection.
struct HostReply {
    id: u64,
    connection: Arc<Connection>,
}

impl CompletionSink for HostReply {
    fn complete(&self, result: OpResult) {
        self.connection.send(&ToChild::HostReply {
            id: self.id,
            result: WireResult::from(result),
        });
    }
}

/// Reads a process's messages until its stream ends, or until a call is stuck.
pub(super) async fn relay(
    read_half: impl AsyncRead + Unpin,
    connection: Arc<Connection>,
    host: Option<Arc<GatewayHost>>,
) -> Ended {
    let reading = async {
        let mut reader = BufReader::new(read_half);
        loop {
            match read_frame::<FromChild>(&mut reader).await {
                Ok(Some(message)) => dispatch(message, &connection, host.as_deref()),
                Ok(None) | Err(_) => {
                    // Whoever waits for a first answer learns that none will come.
                    lock(&connection.first).take();
                    return Ended::Stream;
                }
            }
        }
    };
    let watching = async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Some(op) = stuck_call(&connection) {
                return Ended::Stuck(op);
            }
        }
    };
    // Two long-lived futures: a frame is never cut off half read by the watchdog.
    tokio::select! {
        ended = reading => ended,
        stuck = watching => stuck,
    }
}

/// Acts on one message from a child.
fn dispatch(message: FromChild, connection: &Arc<Connection>, host: Option<&GatewayHost>) {
    match message {
        FromChild::Complete { id, result } => {
            if let Some(pending) = lock(&connection.pending).remove(&id) {
                let _ = pending.result.send(OpResult::from(result));
            }
        }
        FromChild::Ready {
            manifest,
            description,
            sha256,
        } => {
            if let Some(first) = lock(&connection.first).take() {
                let _ = first.send(Ok(Loaded {
                    manifest,
                    description: *description,
                    sha256,
                }));
            }
        }
        FromChild::Refused {
            plugin,
            version,
            reason,
        } => {
            if let Some(first) = lock(&connection.first).take() {
                let _ = first.send(Err((plugin, version, reason)));
            }
        }
        FromChild::Log {
            level,
            target,
            message,
        } => {
            let level = match level {
                1 => LogLevel::Error,
                2 => LogLevel::Warn,
                3 => LogLevel::Info,
                4 => LogLevel::Debug,
                _ => LogLevel::Trace,
            };
            if let Some(host) = host {
                host.log(
                    level,
                    RStr::from(target.as_str()),
                    RStr::from(message.as_str()),
                );
            }
        }
        FromChild::Metric {
            kind,
            name,
            value,
            labels,
        } => {
            let kind = if kind == 2 {
                MetricKind::Gauge
            } else {
                MetricKind::Counter
            };
            if let Some(host) = host {
                host.metric(
                    kind,
                    RStr::from(name.as_str()),
                    value,
                    RStr::from(labels.as_str()),
                );
            }
        }
        FromChild::HostCall {
            id,
            op,
            version,
            params,
        } => {
            let completion = CompletionSink_TO::from_value(
                HostReply {
                    id,
                    connection: Arc::clone(connection),
                },
                TD_Opaque,
            );
            let request = wire::op_request(id, op, version, params, "{}".into(), 0);
            match host {
                Some(host) => host.call(request, completion),
                None => completion.complete(OpResult::RErr(PluginError::new(
                    error_code::UNSUPPORTED_OP,
                    "the host serves no calls while a library is only checked",
                ))),
            }
        }
    }
}

/// Why [`relay`] stopped.
pub(super) enum Ended {
    /// The stream ended: the process exited or died.
    Stream,
    /// This op stayed unanswered past its deadline and the grace.
    Stuck(String),
}

/// A call in flight past its deadline and [`STUCK_GRACE`], if any.
fn stuck_call(connection: &Connection) -> Option<String> {
    let now = Instant::now();
    lock(&connection.pending)
        .values()
        .find(|p| now > p.deadline + STUCK_GRACE)
        .map(|p| p.op.clone())
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
