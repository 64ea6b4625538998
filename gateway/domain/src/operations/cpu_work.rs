//! CPU-heavy work (generating an RSA key, say) off the async workers and within a budget:
//! at most one such job per tenant at a time, and at most one fewer than the machine has
//! cores across tenants, so that neither one tenant's burst nor everyone's at once leaves
//! the request workers without a core.

use std::sync::Arc;

use skyport_core::error::GatewayError;
use tokio::sync::Semaphore;

use crate::inventory::claims::Admissions;

/// The budget for CPU-heavy jobs.
pub struct CpuWork {
    global: Arc<Semaphore>,
    per_tenant: Admissions,
}

impl Default for CpuWork {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores.saturating_sub(1).max(1))
    }
}

impl CpuWork {
    /// At most `concurrent` jobs at once.
    pub fn new(concurrent: usize) -> Self {
        Self {
            global: Arc::new(Semaphore::new(concurrent.max(1))),
            per_tenant: Admissions::default(),
        }
    }

    /// Runs `job` for `tenant` on the blocking pool, in its turn.
    pub async fn run<T: Send + 'static>(
        &self,
        tenant: &str,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, GatewayError> {
        // The tenant's own queue first: one tenant's burst waits behind itself, and holds
        // at most one place in the shared queue.
        let _turn = self.per_tenant.enter(tenant).await;
        let _core = Arc::clone(&self.global)
            .acquire_owned()
            .await
            .map_err(GatewayError::internal)?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(GatewayError::internal)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_job_per_tenant_and_the_global_limit_hold() {
        let work = Arc::new(CpuWork::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let job = |running: Arc<AtomicUsize>, most: Arc<AtomicUsize>| {
            move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
            }
        };
        // Ten jobs of one tenant run one at a time.
        let same: Vec<_> = (0..10)
            .map(|_| {
                let (work, job) = (Arc::clone(&work), job(running.clone(), most.clone()));
                tokio::spawn(async move { work.run("a", job).await })
            })
            .collect();
        for task in same {
            task.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        // Ten tenants' jobs run two at a time.
        let many: Vec<_> = (0..10)
            .map(|i| {
                let (work, job) = (Arc::clone(&work), job(running.clone(), most.clone()));
                tokio::spawn(async move { work.run(&format!("t{i}"), job).await })
            })
            .collect();
        for task in many {
            task.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
