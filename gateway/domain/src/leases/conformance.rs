//! What every [`LeaseStore`] must do, as a suite a backend runs against itself. `wait`
//! lets the given time pass (a manual clock's advance, or a real sleep).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::LeaseStore;

/// Runs every check on `store`; panics naming the first that fails.
pub async fn run<W, F>(store: Arc<dyn LeaseStore>, wait: W)
where
    W: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let ttl = Duration::from_millis(1500);
    // One holder at a time; the holder renews.
    assert!(store.acquire("sync:a", "replica-1", ttl).await.unwrap());
    assert!(!store.acquire("sync:a", "replica-2", ttl).await.unwrap());
    assert!(store.acquire("sync:a", "replica-1", ttl).await.unwrap());
    // Leases are independent by name.
    assert!(store.acquire("sync:b", "replica-2", ttl).await.unwrap());
    // An expired lease is taken over, and its old holder no longer has it.
    wait(Duration::from_millis(1600)).await;
    assert!(store.acquire("sync:a", "replica-2", ttl).await.unwrap());
    assert!(!store.acquire("sync:a", "replica-1", ttl).await.unwrap());
    // Only its holder gives a lease up; then anyone takes it at once.
    store.release("sync:a", "replica-1").await.unwrap();
    assert!(!store.acquire("sync:a", "replica-3", ttl).await.unwrap());
    store.release("sync:a", "replica-2").await.unwrap();
    assert!(store.acquire("sync:a", "replica-3", ttl).await.unwrap());
}
