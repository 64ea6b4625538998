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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use skyport_plugin_api::abi::{error_code, OpRequest, PluginError};
use skyport_plugin_api::sdk::CompletionReceiver;
use tokio::time::Instant;

use super::connection::{lock, start_call_on, Connection, Ended};
pub use super::connection::{Loaded, STUCK_GRACE};
pub use super::launch::{
    check_in_child, describe_exit, lookup_user, signal_name, ChildSpec, START_TIMEOUT,
};
use super::launch::{launch, Running};
use super::wire::{Purpose, ToChild};
use crate::health::HealthCell;
use crate::host::GatewayHost;
use crate::loader::Refusal;

/// How long a process told to stop may take before it is killed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Crashes within [`CRASH_WINDOW`] after which a plugin stays down.
pub const MAX_CRASHES: usize = 5;
/// See [`MAX_CRASHES`].
pub const CRASH_WINDOW: Duration = Duration::from_secs(300);
/// How long a process must have served for its next crash to restart it without waiting.
const CALM_UPTIME: Duration = Duration::from_secs(60);

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
