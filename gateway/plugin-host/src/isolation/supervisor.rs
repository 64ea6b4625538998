//! The gateway's side of process isolation: starting a plugin's process, talking to it,
//! and watching it.
//!
//! A [`ProcessPlugin`] owns one plugin instance's process for the life of the gateway:
//! it fails the calls in flight at once when the process dies (naming the plugin and the
//! ops), logs what is known of the death (signal, ops in flight, the last lines of its
//! standard error), counts it, and starts the process again with a growing pause; after
//! [`MAX_CRASHES`] crashes within [`CRASH_WINDOW`] it leaves the plugin down with the
//! reason in its health. A process whose calls stay unanswered [`STUCK_GRACE`] past their
//! deadline is killed and replaced the same way.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::RStr;
use arc_swap::{ArcSwap, ArcSwapOption};
use skyport_plugin_api::abi::{
    error_code, CompletionSink, CompletionSink_TO, HostServices, LogLevel, MetricKind, OpRequest,
    OpResult, PluginError,
};
use skyport_plugin_api::sdk::CompletionReceiver;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub(super) use super::launch::FirstAnswer;
pub use super::launch::{
    check_in_child, describe_exit, lookup_user, signal_name, ChildSpec, Loaded,
};
use super::launch::{launch, read_frame, Running};
use super::wire::{self, FromChild, Purpose, ToChild, WireResult};
use crate::health::HealthCell;
use crate::host::GatewayHost;
use crate::loader::Refusal;

/// How long a child may take to load its library and run the plugin's `init`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process told to stop may take before it is killed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long past its deadline a call may stay unanswered before its process is replaced.
pub const STUCK_GRACE: Duration = Duration::from_secs(10);
/// Crashes within [`CRASH_WINDOW`] after which a plugin stays down.
pub const MAX_CRASHES: usize = 5;
/// See [`MAX_CRASHES`].
pub const CRASH_WINDOW: Duration = Duration::from_secs(300);
/// Lines of a child's standard error kept for the report of its death.
pub(super) const STDERR_TAIL: usize = 20;
/// The longest line of a child's standard error logged as one line (longer ones are cut
/// into pieces of this size).
pub(super) const STDERR_LINE: u64 = 4096;
/// How long a process must have served for its next crash to restart it without waiting.
const CALM_UPTIME: Duration = Duration::from_secs(60);
/// Environment variables every child gets (everything else is scrubbed).
pub(super) const BASE_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

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

/// One plugin instance running in processes of its own, one at a time.
pub struct ProcessPlugin {
    spec: ChildSpec,
    current: ArcSwapOption<Connection>,
    /// The process now running, 0 when none is (for a kill when it will not stop).
    pid: AtomicU32,
    health: ArcSwap<HealthCell>,
    host: Arc<GatewayHost>,
    /// Set by a reload's retirement or the gateway's shutdown: no more restarts.
    stopping: AtomicBool,
    supervisor: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ProcessPlugin {
    /// Starts the first process for `spec` and returns what it loaded, with the plugin
    /// supervised from then on. Restarts load the same bytes (`spec.sha256` is pinned to
    /// what was loaded).
    pub async fn start(
        mut spec: ChildSpec,
        health: Arc<HealthCell>,
        host: GatewayHost,
    ) -> Result<(Arc<Self>, Loaded), Refusal> {
        let host = Arc::new(host);
        let running = launch(&spec, Purpose::Serve, Some(Arc::clone(&host))).await?;
        let loaded = running.loaded.clone();
        spec.sha256 = Some(loaded.sha256.clone());
        let plugin = Arc::new(Self {
            spec,
            current: ArcSwapOption::empty(),
            pid: AtomicU32::new(0),
            health: ArcSwap::new(health),
            host,
            stopping: AtomicBool::new(false),
            supervisor: Mutex::new(None),
        });
        plugin.serving(&running);
        let supervisor = tokio::spawn(Arc::clone(&plugin).supervise(running));
        *lock(&plugin.supervisor) = Some(supervisor);
        Ok((plugin, loaded))
    }

    /// Makes `running` the process that takes calls.
    fn serving(&self, running: &Running) {
        self.pid
            .store(running.connection.pid.unwrap_or(0), Ordering::SeqCst);
        self.current.store(Some(Arc::clone(&running.connection)));
    }

    /// Sends a call; the receiver resolves with its result, or with `UNAVAILABLE` if the
    /// process dies first. Never waits: the frame is queued whole.
    pub fn start_call(
        &self,
        request: &OpRequest,
        timeout: Duration,
    ) -> Result<CompletionReceiver, PluginError> {
        let unavailable = || {
            PluginError::new(
                error_code::UNAVAILABLE,
                format!(
                    "plugin '{}' is not running (it is being restarted)",
                    self.spec.name
                ),
            )
            .retryable()
        };
        start_call_on(self.current.load_full(), request, timeout, unavailable)
    }

    /// From now on crashes and restarts are reported to `health` (a reloaded version,
    /// once it takes over from the old one).
    pub fn report_health_to(&self, health: Arc<HealthCell>) {
        self.health.store(health);
    }

    /// The id of the process serving now, if one is.
    pub fn pid(&self) -> Option<u32> {
        self.current.load().as_ref().and_then(|c| c.pid)
    }

    /// Asks the plugin to stop work on call `id`.
    pub fn cancel(&self, id: u64) {
        Connection::cancel_on(self.current.load_full(), id);
    }

    /// Marks this process as on its way out (a reload replaced it): it finishes its calls
    /// but is not restarted if it dies, and its fate no longer touches the instance's
    /// health, which is the new version's now.
    pub fn retire(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.health
            .store(Arc::new(HealthCell::detached(&self.spec.name)));
    }

    /// Tells the process to stop and waits for its supervisor to finish; a process that
    /// has not stopped within [`SHUTDOWN_GRACE`] is killed.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(connection) = self.current.load_full() {
            connection.send(&ToChild::Shutdown);
        }
        let Some(mut supervisor) = lock(&self.supervisor).take() else {
            return;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut supervisor)
            .await
            .is_ok()
        {
            return;
        }
        let pid = self.pid.load(Ordering::SeqCst);
        if let Some(process) = rustix::process::Pid::from_raw(pid as i32) {
            tracing::warn!(plugin = %self.spec.name, pid, "plugin process did not stop within {SHUTDOWN_GRACE:?}; killed");
            let _ = rustix::process::kill_process(process, rustix::process::Signal::KILL);
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut supervisor)
            .await
            .is_err()
        {
            // Still starting a process or pausing before one: stopped where it is (a
            // process it holds is killed as its handle is dropped).
            supervisor.abort();
        }
    }

    /// Serves `first` until it dies, then starts the plugin again with a growing pause,
    /// until it crashes too often or the gateway stops it.
    async fn supervise(self: Arc<Self>, first: Running) {
        let mut crashes: VecDeque<Instant> = VecDeque::new();
        let mut next = Some(first);
        let mut pause = Duration::from_millis(500);
        loop {
            let served_from = Instant::now();
            let reason = match next.take() {
                Some(running) => self.serve(running).await,
                None => {
                    match launch(&self.spec, Purpose::Serve, Some(Arc::clone(&self.host))).await {
                        Ok(running) => {
                            self.serving(&running);
                            if self.stopping.load(Ordering::SeqCst) {
                                // Stopped while this one started: it stops too.
                                running.connection.send(&ToChild::Shutdown);
                            } else {
                                self.host
                                    .metrics
                                    .plugin_restarts
                                    .get_or_create(&vec![("plugin", self.spec.name.clone())])
                                    .inc();
                                tracing::info!(plugin = %self.spec.name, "plugin process restarted");
                                self.health.load().set(true, None);
                            }
                            self.serve(running).await
                        }
                        Err(refusal) => Some(format!("its restart failed: {}", refusal.reason)),
                    }
                }
            };
            let Some(reason) = reason else {
                break; // told to stop
            };
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            let now = Instant::now();
            if now.duration_since(served_from) >= CALM_UPTIME {
                pause = Duration::from_millis(500);
            }
            crashes.push_back(now);
            while crashes
                .front()
                .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
            {
                crashes.pop_front();
            }
            if crashes.len() >= MAX_CRASHES {
                let reason = format!(
                    "down for good: {} crashes within {:?}; last: {reason}",
                    crashes.len(),
                    CRASH_WINDOW
                );
                tracing::error!(plugin = %self.spec.name, "{reason}");
                self.health.load().set(false, Some(reason));
                break;
            }
            self.health
                .load()
                .set(false, Some(format!("restarting after a crash: {reason}")));
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(30));
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
        }
    }

    /// Waits for one process to end. `None` when it was told to stop, otherwise why it
    /// ended (after failing its calls in flight, counting and logging it).
    async fn serve(&self, running: Running) -> Option<String> {
        let Running {
            mut child,
            connection,
            mut relay,
            stderr,
            ..
        } = running;
        // The stream ends when the process dies; a process that exits while something it
        // started still holds its socket is noticed by its exit.
        let mut exited = None;
        let ended = tokio::select! {
            ended = &mut relay => ended.unwrap_or(Ended::Stream),
            status = child.wait() => {
                // Reaped: its pid may be another process's from now on.
                self.pid.store(0, Ordering::SeqCst);
                exited = status.ok();
                // What it wrote before it went is still read.
                match tokio::time::timeout(Duration::from_secs(1), &mut relay).await {
                    Ok(ended) => ended.unwrap_or(Ended::Stream),
                    Err(_) => {
                        relay.abort();
                        Ended::Stream
                    }
                }
            }
        };
        self.current.store(None);
        let name = self.spec.name.clone();
        let stuck = match ended {
            Ended::Stream => None,
            Ended::Stuck(op) => {
                let _ = child.start_kill();
                Some(op)
            }
        };
        // Its callers learn at once; the forensics can wait for the exit status.
        let in_flight = connection.fail_all(|op| {
            PluginError::new(
                error_code::UNAVAILABLE,
                format!("plugin '{name}' crashed while serving {op}; it is being restarted"),
            )
            .retryable()
        });
        let status = match exited {
            Some(status) => Some(status),
            None => {
                let status = match tokio::time::timeout(Duration::from_secs(10), child.wait()).await
                {
                    Ok(Ok(status)) => Some(status),
                    _ => {
                        let _ = child.kill().await;
                        child.try_wait().ok().flatten()
                    }
                };
                self.pid.store(0, Ordering::SeqCst);
                status
            }
        };
        if self.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let how = match (&stuck, status) {
            (Some(op), _) => {
                format!("was replaced: {op} stayed unanswered {STUCK_GRACE:?} past its deadline")
            }
            (None, Some(status)) => describe_exit(status),
            (None, None) => "ended".to_string(),
        };
        let label = match (&stuck, status.and_then(signal_name)) {
            (Some(_), _) => "stuck",
            (None, Some(signal)) => signal,
            (None, None) => "exit",
        };
        self.host
            .metrics
            .plugin_crashes
            .get_or_create(&vec![("plugin", name.clone()), ("how", label.to_string())])
            .inc();
        let tail: Vec<String> = lock(&stderr).iter().cloned().collect();
        tracing::error!(
            plugin = %name,
            file = %self.spec.file.display(),
            ops_in_flight = ?in_flight,
            stderr_tail = ?tail,
            "plugin process {how}"
        );
        Some(format!("its process {how}"))
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
            let request = OpRequest {
                id,
                op: op.into(),
                version,
                params: params.into(),
                context: "{}".into(),
                deadline_unix_ms: 0,
            };
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
