//! Starting a plugin's process: the child's command line, environment, limits and user,
//! its first answer (the plugin loaded, or refused), and its standard error relayed to
//! the gateway's log. [`super::supervisor`] watches it from then on.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::sync::oneshot;

use super::wire::{Limits, Purpose, ToChild};
use crate::host::GatewayHost;
use crate::loader::Refusal;

use super::connection::{lock, relay, write_frames, Connection, Ended, FirstAnswer, Loaded};

/// How long a child may take to load its library and run the plugin's `init`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of a child's standard error kept for the report of its death.
pub(super) const STDERR_TAIL: usize = 20;
/// The longest line of a child's standard error logged as one line (longer ones are cut
/// into pieces of this size).
pub(super) const STDERR_LINE: u64 = 4096;
/// Environment variables every child gets (everything else is scrubbed).
pub(super) const BASE_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

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

/// A started child that answered `Ready`, with its messages being relayed.
pub(super) struct Running {
    pub(super) child: Child,
    pub(super) connection: Arc<Connection>,
    pub(super) relay: tokio::task::JoinHandle<Ended>,
    pub(super) loaded: Loaded,
    pub(super) stderr: Arc<Mutex<VecDeque<String>>>,
}

/// Starts `spec`'s process for `purpose`, relays its messages (to `host`, if any) and
/// waits for its first answer.
pub(super) async fn launch(
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
    let connection = Connection::new(frames_tx, first_tx, child.id());
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

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

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
