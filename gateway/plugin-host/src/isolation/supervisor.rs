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
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
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
use skyport_plugin_api::Description;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::wire::{self, FromChild, Limits, Purpose, ToChild, WireResult};
use crate::health::HealthCell;
use crate::host::GatewayHost;
use crate::loader::{ManifestInfo, Refusal};

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
const STDERR_TAIL: usize = 20;
/// The longest line of a child's standard error logged as one line (longer ones are cut
/// into pieces of this size).
const STDERR_LINE: u64 = 4096;
/// How long a process must have served for its next crash to restart it without waiting.
const CALM_UPTIME: Duration = Duration::from_secs(60);
/// Environment variables every child gets (everything else is scrubbed).
const BASE_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// Everything needed to start one plugin instance's process.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// The executable that hosts plugins (`skyport`, run as `skyport plugin-host`).
    pub exe: PathBuf,
    /// Instance name.
    pub name: String,
    /// The library as configured (named in refusals and logs).
    pub file: PathBuf,
    /// What the child opens: the gateway's pinned copy of `file`, or `file` itself.
    pub library: PathBuf,
    /// The sha256 the library must have.
    pub sha256: Option<String>,
    /// Its configuration, JSON.
    pub config: String,
    /// Its own state directory.
    pub state_dir: PathBuf,
    /// Its limits.
    pub limits: Limits,
    /// The user to run as.
    pub user: Option<String>,
    /// Extra environment variables passed through by name.
    pub env: Vec<String>,
}

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

/// A started child that answered `Ready`, with its messages being relayed.
struct Running {
    child: Child,
    connection: Arc<Connection>,
    relay: tokio::task::JoinHandle<Ended>,
    loaded: Loaded,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

/// The child's first answer: loaded, or refused.
type FirstAnswer = Result<Loaded, (String, Option<String>, String)>;

/// Starts `spec`'s process for `purpose`, relays its messages (to `host`, if any) and
/// waits for its first answer.
async fn launch(
    spec: &ChildSpec,
    purpose: Purpose,
    host: Option<Arc<GatewayHost>>,
) -> Result<Running, Refusal> {
    let refuse = |plugin: &str, version: Option<String>, reason: String| Refusal {
        plugin: plugin.to_string(),
        version,
        file: spec.file.clone(),
        reason,
    };
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| refuse(&spec.name, None, format!("cannot make a socket: {e}")))?;
    let mut command = Command::new(&spec.exe);
    command
        .arg("plugin-host")
        .env_clear()
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group: a terminal's Ctrl-C reaches the gateway, which stops
        // its plugins in order, not every plugin at once.
        .process_group(0)
        .kill_on_drop(true);
    for name in BASE_ENV
        .iter()
        .copied()
        .chain(spec.env.iter().map(String::as_str))
    {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    if let Some(user) = &spec.user {
        let (uid, gid) = lookup_user(user).map_err(|e| refuse(&spec.name, None, e))?;
        // Its home is its state directory: the gateway's home is not its to read.
        command.uid(uid).gid(gid).env("HOME", &spec.state_dir);
    }
    let mut child = command.spawn().map_err(|e| {
        refuse(
            &spec.name,
            None,
            format!("cannot start {}: {e}", spec.exe.display()),
        )
    })?;
    // The command holds the child's end of the socket: only once it is dropped does the
    // child's death end the stream.
    drop(command);
    let stderr = Arc::new(Mutex::new(VecDeque::new()));
    if let Some(pipe) = child.stderr.take() {
        tokio::spawn(relay_stderr(spec.name.clone(), pipe, Arc::clone(&stderr)));
    }
    ours.set_nonblocking(true)
        .map_err(|e| refuse(&spec.name, None, e.to_string()))?;
    let stream = UnixStream::from_std(ours).map_err(|e| refuse(&spec.name, None, e.to_string()))?;
    let (read_half, write_half) = stream.into_split();
    let (first_tx, first_rx) = oneshot::channel::<FirstAnswer>();
    let (frames_tx, frames_rx) = mpsc::unbounded_channel();
    tokio::spawn(write_frames(write_half, frames_rx));
    let connection = Arc::new(Connection {
        outbox: frames_tx,
        pending: Mutex::new(HashMap::new()),
        closed: AtomicBool::new(false),
        first: Mutex::new(Some(first_tx)),
        pid: child.id(),
    });
    let relay = tokio::spawn(relay(read_half, Arc::clone(&connection), host));
    let init = ToChild::Init {
        purpose,
        name: spec.name.clone(),
        file: spec.library.to_string_lossy().into_owned(),
        sha256: spec.sha256.clone(),
        config: spec.config.clone(),
        state_dir: spec.state_dir.to_string_lossy().into_owned(),
        limits: spec.limits.clone(),
    };
    connection.send(&init);
    match tokio::time::timeout(START_TIMEOUT, first_rx).await {
        Ok(Ok(Ok(loaded))) => Ok(Running {
            child,
            connection,
            relay,
            loaded,
            stderr,
        }),
        Ok(Ok(Err((plugin, version, reason)))) => {
            relay.abort();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            Err(refuse(&plugin, version, reason))
        }
        Ok(Err(_ended)) => {
            // The stream ended before any answer: the process died while loading.
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .ok()
                .and_then(Result::ok);
            let how = status.map_or("ended".to_string(), describe_exit);
            let tail = lock(&stderr).back().cloned();
            let reason = match tail {
                Some(line) => format!("its process {how} while loading it (last output: {line})"),
                None => format!("its process {how} while loading it"),
            };
            Err(refuse(&spec.name, None, reason))
        }
        Err(_elapsed) => {
            relay.abort();
            let _ = child.kill().await;
            Err(refuse(
                &spec.name,
                None,
                format!("its process did not finish loading and init within {START_TIMEOUT:?}"),
            ))
        }
    }
}

/// Runs the loader's checks and `describe()` on a library in a process of its own, so
/// that a library that crashes while loading takes only that process down.
pub async fn check_in_child(spec: &ChildSpec) -> Result<Loaded, Refusal> {
    let mut checked = launch(spec, Purpose::Check, None).await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), checked.child.wait()).await;
    checked.relay.abort();
    Ok(checked.loaded)
}

/// The uid and gid of `user`, from the system's user database.
pub fn lookup_user(user: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("cannot read /etc/passwd to find user {user}: {e}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 3 && fields[0] == user)
        .and_then(|fields| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
        .ok_or_else(|| format!("user {user} does not exist"))
}

/// Logs a child's standard error line by line and keeps its last lines.
async fn relay_stderr(
    plugin: String,
    pipe: tokio::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut reader = BufReader::new(pipe);
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        match (&mut reader)
            .take(STDERR_LINE)
            .read_until(b'\n', &mut bytes)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&bytes).trim_end().to_string();
        tracing::warn!(target: "plugin", plugin = %plugin, "stderr: {line}");
        let mut tail = lock(&tail);
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

async fn read_frame<T: for<'de> serde::Deserialize<'de>>(
    reader: &mut (impl AsyncReadExt + Unpin),
) -> std::io::Result<Option<T>> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = wire::frame_len(header)?;
    // Grown as bytes arrive: a header alone never reserves its announced length.
    let mut body = Vec::with_capacity(len.min(wire::INITIAL_BODY));
    reader.take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    wire::decode(&body).map(Some)
}

/// The name of the signal that ended a process, if one did.
pub fn signal_name(status: ExitStatus) -> Option<&'static str> {
    Some(match status.signal()? {
        1 => "SIGHUP",
        2 => "SIGINT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => "signal",
    })
}

/// How a process ended, in words: `was killed by SIGSEGV (signal 11)`, `exited with 3`.
pub fn describe_exit(status: ExitStatus) -> String {
    match (signal_name(status), status.signal()) {
        (Some(name), Some(signal)) => format!("was killed by {name} (signal {signal})"),
        _ => format!("exited with {}", status.code().unwrap_or(-1)),
    }
}

/// A call waiting for its result.
struct Pending {
    op: String,
    deadline: Instant,
    result: oneshot::Sender<OpResult>,
}

/// Writes queued frames to a child, each one whole, until the queue closes or the child
/// stops reading. Senders never wait: a call or a cancel dropped half way never leaves
/// half a frame on the socket.
async fn write_frames(mut writer: OwnedWriteHalf, mut frames: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(frame) = frames.recv().await {
        if writer.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// The connection to one running process.
struct Connection {
    /// Frames for [`write_frames`].
    outbox: mpsc::UnboundedSender<Vec<u8>>,
    pending: Mutex<HashMap<u64, Pending>>,
    /// Set once the process is going: new calls are refused.
    closed: AtomicBool,
    /// Where the child's first answer (`Ready` or `Refused`) goes.
    first: Mutex<Option<oneshot::Sender<FirstAnswer>>>,
    /// The process's id.
    pid: Option<u32>,
}

impl Connection {
    /// Queues `message`; false once the child no longer reads.
    fn send(&self, message: &ToChild) -> bool {
        self.outbox.send(wire::encode(message)).is_ok()
    }

    /// Fails every call in flight with `error`; the ops that were in flight.
    fn fail_all(&self, error: impl Fn(&str) -> PluginError) -> Vec<String> {
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
        let connection = self.current.load_full().ok_or_else(unavailable)?;
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
        if let Some(connection) = self.current.load_full() {
            connection.send(&ToChild::Cancel { id });
        }
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
async fn relay(
    read_half: OwnedReadHalf,
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
enum Ended {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_end_is_told_by_its_signal_or_its_code() {
        assert_eq!(
            describe_exit(ExitStatus::from_raw(11)),
            "was killed by SIGSEGV (signal 11)"
        );
        assert_eq!(signal_name(ExitStatus::from_raw(6)), Some("SIGABRT"));
        assert_eq!(describe_exit(ExitStatus::from_raw(3 << 8)), "exited with 3");
        assert_eq!(signal_name(ExitStatus::from_raw(3 << 8)), None);
    }

    #[test]
    fn users_are_found_by_name_in_the_user_database() {
        assert_eq!(lookup_user("root"), Ok((0, 0)));
        let missing = lookup_user("no-such-user-here").unwrap_err();
        assert_eq!(missing, "user no-such-user-here does not exist");
    }
}
