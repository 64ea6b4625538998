//! A future that runs to its end even when its caller drops it: what a write needs, since
//! hyper drops a request's future with its connection, which would stop a write between
//! its steps (a VM made and not yet recorded).
//!
//! It runs inline, on the connection's task, and counts in a [`TaskTracker`] while it
//! does (shutdown waits for it). Only when it is dropped unfinished is what remains of it
//! moved onto a task of its own in that tracker: a write whose client stays, the usual
//! case, costs no task spawn, no cross-thread wake-up and no copy of its future.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

/// `future`, counted in `tracker` until it ends, run to its end even if dropped first.
/// It comes boxed (where it is made, so that it is copied once), as a task would need it.
pub(crate) fn run_to_end<F>(tracker: &TaskTracker, future: Pin<Box<F>>) -> RunToEnd<F>
where
    F: Future + Send + ?Sized + 'static,
    F::Output: Send + 'static,
{
    RunToEnd {
        running: Some((future, tracker.token())),
    }
}

/// See [`run_to_end`].
pub(crate) struct RunToEnd<F: Future + Send + ?Sized + 'static>
where
    F::Output: Send + 'static,
{
    /// The future while it has not ended, and its place in the tracker.
    running: Option<(Pin<Box<F>>, TaskTrackerToken)>,
}

impl<F> Future for RunToEnd<F>
where
    F: Future + Send + ?Sized + 'static,
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let (future, _) = self
            .running
            .as_mut()
            .expect("a RunToEnd is not polled after it ends");
        // A future that panicked has ended too: it is not moved onto a task of its own
        // (where it would only panic again), and its panic goes on to the caller.
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                self.running = None;
                Poll::Ready(output)
            }
            Err(panic) => {
                self.running = None;
                std::panic::resume_unwind(panic)
            }
        }
    }
}

impl<F> Drop for RunToEnd<F>
where
    F: Future + Send + ?Sized + 'static,
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        let Some((future, token)) = self.running.take() else {
            return;
        };
        // Its first poll on the new task registers that task's waker; the old one's wakes
        // nothing. (A runtime being torn down drops it, as it drops every task.)
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            token.task_tracker().spawn_on(future, &runtime);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_future_that_ends_inline_leaves_nothing_in_the_tracker() {
        let tracker = TaskTracker::new();
        let run = run_to_end(&tracker, Box::pin(async { 7 }));
        assert_eq!(tracker.len(), 1, "counted while it runs");
        assert_eq!(run.await, 7);
        assert!(tracker.is_empty());
    }

    #[tokio::test]
    async fn a_future_dropped_unfinished_runs_to_its_end_and_shutdown_waits_for_it() {
        let tracker = TaskTracker::new();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (step_one, ended) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (one, end) = (Arc::clone(&step_one), Arc::clone(&ended));
        let mut run = run_to_end(
            &tracker,
            Box::pin(async move {
                one.store(true, Ordering::SeqCst);
                let _ = released.await;
                end.store(true, Ordering::SeqCst);
            }),
        );
        // One poll: the first step is done, the second waits.
        let waker = futures::task::noop_waker();
        assert!(Pin::new(&mut run)
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        assert!(step_one.load(Ordering::SeqCst));
        drop(run);
        assert_eq!(tracker.len(), 1, "what remains runs on in the tracker");
        release.send(()).expect("the moved future still listens");
        tracker.close();
        tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait())
            .await
            .expect("the moved future ends");
        assert!(ended.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_panic_reaches_the_caller_once_and_nothing_runs_on() {
        let tracker = TaskTracker::new();
        let mut run = run_to_end(&tracker, Box::pin(async { panic!("the write failed") }));
        let waker = futures::task::noop_waker();
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let _ = Pin::new(&mut run).poll(&mut Context::from_waker(&waker));
        }));
        assert!(panicked.is_err());
        drop(run);
        assert!(tracker.is_empty(), "nothing was moved onto a task");
    }

    #[tokio::test]
    async fn a_future_never_polled_runs_too_when_dropped() {
        let tracker = TaskTracker::new();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        drop(run_to_end(
            &tracker,
            Box::pin(async move { flag.store(true, Ordering::SeqCst) }),
        ));
        tracker.close();
        tracker.wait().await;
        assert!(ran.load(Ordering::SeqCst));
    }
}
