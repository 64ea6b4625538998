//! The SDK's implementation of the ABI's [`PluginInstance`] around an author's [`Plugin`].

use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use abi_stable::std_types::{RResult, RString};
use futures::future::{AbortHandle, Abortable};
use futures::FutureExt;

use super::{CallContext, OpCall, Plugin};
use crate::abi::{error_code, CompletionBox, OpRequest, PluginError, PluginInstance};

/// Exactly-once wrapper: the first `finish` delivers, later ones are ignored.
struct Once(Mutex<Option<CompletionBox>>);

impl Once {
    fn finish(&self, result: Result<serde_json::Value, PluginError>) {
        let completion = match self.0.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(completion) = completion {
            let result = match result {
                Ok(value) => RResult::ROk(RString::from(value.to_string())),
                Err(err) => RResult::RErr(err),
            };
            completion.complete(result);
        }
    }
}

pub(crate) fn panicked(what: &str, payload: &(dyn std::any::Any + Send)) -> PluginError {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string());
    PluginError::new(error_code::PANICKED, format!("{what} panicked: {detail}"))
}

pub(crate) struct Instance<P: Plugin> {
    pub(crate) plugin: Arc<P>,
    pub(crate) runtime: Mutex<Option<tokio::runtime::Runtime>>,
    pub(crate) handle: tokio::runtime::Handle,
    inflight: Arc<Mutex<HashMap<u64, AbortHandle>>>,
}

impl<P: Plugin> Instance<P> {
    pub(crate) fn new(plugin: P, runtime: tokio::runtime::Runtime) -> Self {
        let handle = runtime.handle().clone();
        Self {
            plugin: Arc::new(plugin),
            runtime: Mutex::new(Some(runtime)),
            handle,
            inflight: Arc::default(),
        }
    }

    fn start_inner(&self, request: OpRequest, once: Arc<Once>) -> Result<(), PluginError> {
        let params = serde_json::from_str(request.params.as_str()).map_err(|e| {
            PluginError::new(
                error_code::INVALID_INPUT,
                format!("params are not JSON: {e}"),
            )
        })?;
        let context: CallContext =
            serde_json::from_str(request.context.as_str()).unwrap_or_default();
        let call = OpCall {
            id: request.id,
            op: request.op.to_string(),
            version: request.version,
            params,
            context,
        };
        let (abort, registration) = AbortHandle::new_pair();
        let id = call.id;
        lock(&self.inflight).insert(id, abort);
        let inflight = Arc::clone(&self.inflight);
        let plugin = Arc::clone(&self.plugin);
        let op_name = format!("{}@{}", call.op, call.version);
        let at_once = self.plugin.answers_at_once(&call.op, call.version);
        let mut task: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            let work = AssertUnwindSafe(async move { plugin.call(call).await }).catch_unwind();
            let result = match Abortable::new(work, registration).await {
                Ok(Ok(result)) => result,
                Ok(Err(payload)) => Err(panicked(&op_name, payload.as_ref())),
                Err(_aborted) => Err(PluginError::new(
                    error_code::CANCELLED,
                    format!("{op_name} was cancelled by the host"),
                )),
            };
            lock(&inflight).remove(&id);
            once.finish(result);
        });
        // An op the plugin says answers at once is polled first here, on the caller's
        // thread inside this plugin's runtime context: ready, it completes without a thread
        // hop; not ready, the runtime polls it again with its own waker. Every other op is
        // polled only on this plugin's runtime, so that one that blocks stalls only the
        // plugin.
        if at_once {
            let _context = self.handle.enter();
            let waker = futures::task::noop_waker();
            if task
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                return Ok(());
            }
        }
        self.handle.spawn(task);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<P: Plugin> PluginInstance for Instance<P> {
    fn start(&self, request: OpRequest, completion: CompletionBox) {
        let once = Arc::new(Once(Mutex::new(Some(completion))));
        let guarded = catch_unwind(AssertUnwindSafe(|| {
            self.start_inner(request, Arc::clone(&once))
        }));
        match guarded {
            Ok(Ok(())) => {}
            Ok(Err(err)) => once.finish(Err(err)),
            Err(payload) => once.finish(Err(panicked("start", payload.as_ref()))),
        }
    }

    fn cancel(&self, request_id: u64) {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            if let Some(abort) = lock(&self.inflight).remove(&request_id) {
                abort.abort();
            }
        }));
    }

    fn shutdown(&self) {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            self.plugin.shutdown();
            for (_, abort) in lock(&self.inflight).drain() {
                abort.abort();
            }
            if let Some(runtime) = lock(&self.runtime).take() {
                runtime.shutdown_timeout(Duration::from_secs(5));
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk::completion::completion_channel;
    use crate::sdk::Description;
    use crate::Host;

    /// Answers every call with the name of the thread that polled it to the end.
    struct Probe;

    impl Plugin for Probe {
        fn describe() -> Description {
            Description {
                name: "probe".into(),
                version: "0".into(),
                kind: "provider".into(),
                summary: String::new(),
                ops: vec!["now@1".into(), "later@1".into()],
                config_schema: serde_json::json!({}),
            }
        }

        fn init(_: serde_json::Value, _: Host) -> Result<Self, PluginError> {
            Ok(Self)
        }

        async fn call(self: Arc<Self>, _: OpCall) -> Result<serde_json::Value, PluginError> {
            let thread = std::thread::current();
            Ok(serde_json::json!(thread.name().unwrap_or("unnamed")))
        }

        fn answers_at_once(&self, op: &str, version: u32) -> bool {
            (op, version) == ("now", 1)
        }
    }

    fn request(op: &str) -> OpRequest {
        OpRequest {
            id: 1,
            op: op.into(),
            version: 1,
            params: "{}".into(),
            context: "{}".into(),
            deadline_unix_ms: 0,
        }
    }

    #[test]
    fn an_op_that_answers_at_once_completes_on_the_callers_thread_and_others_on_the_plugins() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("plugin-runtime")
            .build()
            .unwrap();
        let instance = Instance::new(Probe, runtime);
        let caller = std::thread::Builder::new().name("caller".into());
        caller
            .spawn(move || {
                let (completion, mut done) = completion_channel();
                instance.start(request("now"), completion);
                // Completed before `start` returned, on this thread.
                let answer = done.try_recv().expect("completed within start");
                assert_eq!(answer.into_result().unwrap().as_str(), "\"caller\"");

                let (completion, done) = completion_channel();
                instance.start(request("later"), completion);
                let answer = done.blocking_recv().unwrap();
                assert_eq!(answer.into_result().unwrap().as_str(), "\"plugin-runtime\"");
                instance.shutdown();
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
