//! A completion callback backed by a oneshot channel: exactly-once on both sides.

use std::sync::Mutex;

use abi_stable::sabi_trait::TD_Opaque;
use tokio::sync::oneshot;

use crate::abi::{CompletionBox, CompletionSink, CompletionSink_TO, OpResult};

/// The receiving end of [`completion_channel`]. Resolves to `Err` if the callback was
/// dropped without being called (a plugin bug the caller reports as `INTERNAL`).
pub type CompletionReceiver = oneshot::Receiver<OpResult>;

struct OneshotCompletion(Mutex<Option<oneshot::Sender<OpResult>>>);

impl CompletionSink for OneshotCompletion {
    fn complete(&self, result: OpResult) {
        let sender = match self.0.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(sender) = sender {
            // The receiver may be gone (caller timed out): that is not the plugin's error.
            let _ = sender.send(result);
        }
    }
}

/// A completion callback to hand across the boundary and the receiver of its one result.
pub fn completion_channel() -> (CompletionBox, CompletionReceiver) {
    let (tx, rx) = oneshot::channel();
    let sink = CompletionSink_TO::from_value(OneshotCompletion(Mutex::new(Some(tx))), TD_Opaque);
    (sink, rx)
}
