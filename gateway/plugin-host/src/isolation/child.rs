//! The plugin's side of process isolation: `skyport plugin-host`, started by the gateway
//! with a Unix socket as its standard input. It applies its limits, loads the library
//! through the same loader and ABI as the gateway would, and relays calls, results, logs,
//! metrics and host calls over the socket. It exits when the socket closes, so a child
//! never outlives its gateway's connection.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr};
use skyport_plugin_api::abi::{
    error_code, CompletionBox, CompletionSink, CompletionSink_TO, HostServices, HostServices_TO,
    LogLevel, MetricKind, OpRequest, OpResult, PluginBox, PluginError,
};

use super::wire::{self, FromChild, Limits, Purpose, ToChild, WireResult};
use crate::loader::{load_library, validate_config};

/// The writing end, shared by the plugin's threads; each frame is written whole.
#[derive(Clone)]
struct Outbox(Arc<Mutex<BufWriter<UnixStream>>>);

impl Outbox {
    fn send(&self, message: &FromChild) {
        let mut writer = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A write fails only when the gateway is gone; the reader then sees the end of
        // the stream and the child exits.
        let _ = wire::write_blocking(&mut *writer, message).and_then(|()| writer.flush());
    }
}

/// Delivers one call's result to the gateway.
struct RemoteCompletion {
    id: u64,
    outbox: Outbox,
}

impl CompletionSink for RemoteCompletion {
    fn complete(&self, result: OpResult) {
        self.outbox.send(&FromChild::Complete {
            id: self.id,
            result: WireResult::from(result),
        });
    }
}

/// The host services a plugin in a child sees: each one a message to the gateway.
struct RemoteHost {
    outbox: Outbox,
    host_calls: Arc<Mutex<HashMap<u64, CompletionBox>>>,
    next_host_call: AtomicU64,
}

impl HostServices for RemoteHost {
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        self.outbox.send(&FromChild::log(level, target, message));
    }

    fn metric(&self, kind: MetricKind, name: RStr<'_>, value: f64, labels: RStr<'_>) {
        self.outbox
            .send(&FromChild::metric(kind, name, value, labels));
    }

    fn call(&self, request: OpRequest, completion: CompletionBox) {
        let id = self.next_host_call.fetch_add(1, Ordering::Relaxed);
        self.host_calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, completion);
        self.outbox.send(&FromChild::host_call(id, &request));
    }
}

/// Runs the child until the gateway closes the socket or says to shut down; the exit code.
pub fn run() -> i32 {
    let socket = match std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(UnixStream::from)
    {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("skyport plugin-host: standard input is not usable: {e}");
            return 2;
        }
    };
    // The socket now lives only in descriptors closed on exec: programs the plugin starts
    // (a VM monitor, a shell) neither inherit it nor keep it open after this process dies.
    if let Err(e) = std::fs::File::open("/dev/null")
        .and_then(|null| rustix::stdio::dup2_stdin(&null).map_err(std::io::Error::from))
    {
        eprintln!("skyport plugin-host: cannot close standard input: {e}");
        return 2;
    }
    let (mut reader, outbox) = match socket.try_clone() {
        Ok(write_half) => (
            BufReader::new(socket),
            Outbox(Arc::new(Mutex::new(BufWriter::new(write_half)))),
        ),
        Err(e) => {
            eprintln!("skyport plugin-host: {e}");
            return 2;
        }
    };
    let init = match wire::read_blocking::<ToChild>(&mut reader) {
        Ok(Some(init @ ToChild::Init { .. })) => init,
        Ok(_) | Err(_) => {
            eprintln!("skyport plugin-host: is started by the gateway, which speaks first");
            return 2;
        }
    };
    let ToChild::Init {
        purpose,
        name,
        file,
        sha256,
        config,
        state_dir,
        limits,
    } = init
    else {
        unreachable!("matched above");
    };
    if let Err(e) = apply_limits(&limits) {
        outbox.send(&FromChild::Refused {
            plugin: name,
            version: None,
            reason: format!("cannot apply its limits: {e}"),
        });
        return 1;
    }
    let library = match load_library(std::path::Path::new(&file), &name, sha256.as_deref()) {
        Ok(library) => library,
        Err(refusal) => {
            outbox.send(&FromChild::Refused {
                plugin: refusal.plugin,
                version: refusal.version,
                reason: refusal.reason,
            });
            return 1;
        }
    };
    let ready = FromChild::Ready {
        manifest: library.manifest.clone(),
        description: Box::new(library.description.clone()),
        sha256: library.sha256.clone(),
    };
    if purpose == Purpose::Check {
        outbox.send(&ready);
        return 0;
    }
    let refuse = |reason: String| {
        outbox.send(&FromChild::Refused {
            plugin: name.clone(),
            version: Some(library.manifest.version.clone()),
            reason,
        });
        1
    };
    let config_json: serde_json::Value = match serde_json::from_str(&config) {
        Ok(value) => value,
        Err(e) => return refuse(format!("config is not JSON: {e}")),
    };
    if let Err(reason) = validate_config(&library.description.config_schema, &config_json) {
        return refuse(reason);
    }
    if let Err(e) = std::fs::create_dir_all(&state_dir) {
        return refuse(format!("cannot use its state directory {state_dir}: {e}"));
    }
    // From here on a thread of its own reads the socket: the plugin's `init` may call the
    // host and wait for the answer, which only that thread can deliver. Once the instance
    // exists, that thread starts calls on it directly (one thread hop fewer per call).
    let host_calls: Arc<Mutex<HashMap<u64, CompletionBox>>> = Arc::default();
    let instance: Arc<OnceLock<PluginBox>> = Arc::default();
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    {
        let (host_calls, instance, outbox) = (
            Arc::clone(&host_calls),
            Arc::clone(&instance),
            outbox.clone(),
        );
        std::thread::Builder::new()
            .name("plugin-host-reader".into())
            .spawn(move || {
                read_socket(reader, &host_calls, &instance, &outbox);
                let _ = done_tx.send(());
            })
            .expect("a thread for the socket");
    }
    let host = HostServices_TO::from_value(
        RemoteHost {
            outbox: outbox.clone(),
            host_calls,
            next_host_call: AtomicU64::new(1),
        },
        TD_Opaque,
    );
    match (library.module.instantiate())(RStr::from(config.as_str()), host) {
        RResult::ROk(started) => {
            let _ = instance.set(started);
        }
        RResult::RErr(e) => return refuse(format!("init failure: {e}")),
    };
    outbox.send(&ready);
    // Until the gateway says to stop or goes away.
    let _ = done.recv();
    if let Some(instance) = instance.get() {
        instance.shutdown();
    }
    0
}

/// Reads the gateway's messages until it says to stop or goes away: calls are started on
/// the instance, cancels passed on, host replies delivered.
fn read_socket(
    mut reader: BufReader<UnixStream>,
    host_calls: &Mutex<HashMap<u64, CompletionBox>>,
    instance: &OnceLock<PluginBox>,
    outbox: &Outbox,
) {
    loop {
        match wire::read_blocking::<ToChild>(&mut reader) {
            Ok(Some(ToChild::HostReply { id, result })) => {
                let waiting = host_calls
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Some(completion) = waiting {
                    completion.complete(OpResult::from(result));
                }
            }
            Ok(Some(ToChild::Start {
                id,
                op,
                version,
                params,
                context,
                deadline_unix_ms,
            })) => {
                let completion = CompletionSink_TO::from_value(
                    RemoteCompletion {
                        id,
                        outbox: outbox.clone(),
                    },
                    TD_Opaque,
                );
                let request = wire::op_request(id, op, version, params, context, deadline_unix_ms);
                match instance.get() {
                    Some(instance) => instance.start(request, completion),
                    // The gateway sends calls only after `Ready`.
                    None => completion.complete(OpResult::RErr(PluginError::new(
                        error_code::UNAVAILABLE,
                        "the plugin is still starting",
                    ))),
                }
            }
            Ok(Some(ToChild::Cancel { id })) => {
                if let Some(instance) = instance.get() {
                    instance.cancel(id);
                }
            }
            Ok(Some(ToChild::Init { .. })) => {}
            Ok(Some(ToChild::Shutdown)) | Ok(None) | Err(_) => return,
        }
    }
}

/// Sets the data-segment and descriptor limits on this process (hard and soft), before
/// any plugin code runs, so the plugin cannot raise them again.
fn apply_limits(limits: &Limits) -> std::io::Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    if let Some(mib) = limits.max_memory_mib {
        let bytes = mib.saturating_mul(1 << 20);
        setrlimit(
            Resource::Data,
            Rlimit {
                current: Some(bytes),
                maximum: Some(bytes),
            },
        )?;
    }
    if let Some(files) = limits.max_open_files {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(files),
                maximum: Some(files),
            },
        )?;
    }
    Ok(())
}
