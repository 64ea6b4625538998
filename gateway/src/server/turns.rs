//! CPU turns for TLS handshakes: a burst of new connections takes turns on the CPU instead
//! of crowding out the requests of connections already open.
//!
//! A turn is held for one poll of the handshake, the step that does its CPU work (key
//! exchange, signature), and never while the handshake waits for its client: a client that
//! sends nothing, or half a handshake, holds no turn and keeps no one else waiting.

use std::future::Future;
use std::sync::Arc;
use std::task::ready;

use tokio::sync::Semaphore;
use tokio_util::sync::PollSemaphore;

/// Turns shared by every handshake of a listener.
#[derive(Clone)]
pub(crate) struct CpuTurns(Arc<Semaphore>);

impl CpuTurns {
    /// At most `turns` handshake steps on the CPU at once.
    pub(crate) fn new(turns: usize) -> Self {
        Self(Arc::new(Semaphore::new(turns.max(1))))
    }

    /// As many turns as the cores the gateway may use.
    pub(crate) fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// Runs `work`, polling it only while holding a turn (first come, first served).
    pub(crate) async fn run<F: Future>(&self, work: F) -> F::Output {
        let mut turns = PollSemaphore::new(Arc::clone(&self.0));
        let mut work = std::pin::pin!(work);
        std::future::poll_fn(|cx| {
            let _turn = ready!(turns.poll_acquire(cx)).expect("the semaphore is never closed");
            work.as_mut().poll(cx)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn work_waiting_for_its_peer_holds_no_turn() {
        let turns = CpuTurns::new(1);
        // Work that never completes, as a client that never sends its handshake.
        let silent = tokio::spawn({
            let turns = turns.clone();
            async move { turns.run(std::future::pending::<()>()).await }
        });
        tokio::task::yield_now().await;
        let answered = tokio::time::timeout(Duration::from_secs(5), turns.run(async { 7 })).await;
        assert_eq!(answered.ok(), Some(7));
        silent.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_polls_at_once_than_turns() {
        let turns = CpuTurns::new(2);
        let polling = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (turns, polling, most) = (turns.clone(), polling.clone(), most.clone());
                tokio::spawn(async move {
                    for _ in 0..20 {
                        turns
                            .run(std::future::poll_fn(|_| {
                                let now = polling.fetch_add(1, Ordering::SeqCst) + 1;
                                most.fetch_max(now, Ordering::SeqCst);
                                // CPU work, long enough for the other workers to overlap.
                                std::thread::sleep(Duration::from_micros(200));
                                polling.fetch_sub(1, Ordering::SeqCst);
                                std::task::Poll::Ready(())
                            }))
                            .await;
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} polls at once with 2 turns");
    }
}
