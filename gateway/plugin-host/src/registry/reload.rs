//! Hot reload: a new version of an instance started beside the running one, taking over
//! only once healthy, the old one drained.

use super::*;

/// How long a replaced version may take to finish its calls in flight before it is
/// stopped anyway.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A new version took over.
    Replaced {
        /// Its version.
        version: String,
        /// sha256 of its library.
        sha256: String,
    },
    /// The file holds the bytes already running (only when asked to reload on change).
    Unchanged,
}

/// Why a reload left the running version in place.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// No instance has that name.
    #[error("no plugin named '{0}' is loaded")]
    NotLoaded(String),
    /// The new version was refused (the loader's one line).
    #[error("{0}")]
    Refused(Refusal),
    /// The new version started but did not answer healthy.
    #[error("the new version is not healthy: {0}")]
    Unhealthy(String),
    /// The new version serves other regions than the running one: inventory, placement
    /// and the region list were built on the old set, so such a change needs a restart.
    #[error("the new version serves regions {new}, the running one {old}: a change of regions takes a restart of the gateway")]
    RegionsChanged {
        /// What the running version serves.
        old: String,
        /// What the new one serves.
        new: String,
    },
}

impl PluginRegistry {
    /// Replaces instance `name`'s running version with its configured file, as it is now
    /// (`if_changed`: only when the file's bytes differ from what runs). The new version
    /// starts beside the old and must answer `health@1` healthy; only then does it take new
    /// calls, while the old finishes its calls in flight (at most [`DRAIN_LIMIT`]) and
    /// stops. A new version that is refused or unhealthy is stopped, and the old keeps
    /// serving.
    pub async fn reload(&self, name: &str, if_changed: bool) -> Result<Reloaded, ReloadError> {
        let handle = self
            .get(name)
            .ok_or_else(|| ReloadError::NotLoaded(name.to_string()))?;
        let _one_at_a_time = handle.reloading.lock().await;
        let old = handle.running();
        if if_changed {
            let file = handle.file.clone();
            let unchanged = tokio::task::spawn_blocking(move || std::fs::read(&file))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|bytes| crate::loader::sha256_hex(&bytes) == old.sha256)
                .unwrap_or(true);
            if unchanged {
                return Ok(Reloaded::Unchanged);
            }
        }
        // The new version reports to a health cell of its own until it has proved itself.
        let trial = Arc::new(HealthCell::detached(name));
        let new = self
            .start_version(name, &handle.config, &handle.file, &trial)
            .await
            .map_err(ReloadError::Refused)?;
        let trial_health = Arc::new(HealthCell::detached(name));
        let answer = self
            .call_running(
                name,
                &new,
                &trial_health,
                ops::HEALTH,
                1,
                "{}".into(),
                CallContext::default(),
                Duration::from_secs(10),
            )
            .await;
        let unhealthy = match answer.map(serde_json::from_value::<Health>) {
            Ok(Ok(Health { healthy: true, .. })) => None,
            Ok(Ok(Health { reason, .. })) => {
                Some(reason.unwrap_or_else(|| "no reason given".into()))
            }
            Ok(Err(e)) => Some(format!("health answer malformed: {e}")),
            Err(e) => Some(e.cause.clone().unwrap_or(e.public.clone())),
        };
        if let Some(reason) = unhealthy {
            Arc::clone(&new).shutdown(name).await;
            return Err(ReloadError::Unhealthy(reason));
        }
        if let Err(changed) = self.same_regions(name, &old, &new, &trial_health).await {
            Arc::clone(&new).shutdown(name).await;
            return Err(changed);
        }
        match &new.backend {
            Backend::Process(process) => process.report_health_to(Arc::clone(&handle.health)),
            Backend::Remote(remote) => remote.report_health_to(Arc::clone(&handle.health)),
            Backend::InProcess(_) => {}
        }
        handle.running.store(Arc::clone(&new));
        handle.health.set(true, None);
        if let Backend::Process(process) = &old.backend {
            process.retire();
        }
        tracing::info!(plugin = %name, from = %old.manifest.version, to = %new.manifest.version, sha256 = %new.sha256, "plugin reloaded; the old version drains");
        let name = name.to_string();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
            while old.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            old.shutdown(&name).await;
        });
        Ok(Reloaded::Replaced {
            version: new.manifest.version.clone(),
            sha256: new.sha256.clone(),
        })
    }

    /// Whether `new` serves the regions `old` does (both asked `regions@1`; a plugin that
    /// serves neither has none).
    async fn same_regions(
        &self,
        name: &str,
        old: &Running,
        new: &Running,
        health: &HealthCell,
    ) -> Result<(), ReloadError> {
        let regions_op = format!("{}@1", ops::REGIONS);
        let mut answers = Vec::new();
        for (which, running) in [("old", old), ("new", new)] {
            if !running.ops.contains(&regions_op) {
                answers.push("none".to_string());
                continue;
            }
            let answer = self
                .call_running(
                    name,
                    running,
                    health,
                    ops::REGIONS,
                    1,
                    "{}".into(),
                    CallContext::default(),
                    Duration::from_secs(10),
                )
                .await;
            let answer = match (which, answer) {
                (_, Ok(answer)) => answer,
                // A running version that cannot answer (crashed, down for good) is what a
                // reload is there to replace: nothing to compare with.
                ("old", Err(e)) => {
                    tracing::warn!(plugin = %name, error = %e.public,
                        "the running version did not answer regions@1; the new one is not compared with it");
                    return Ok(());
                }
                (_, Err(e)) => {
                    return Err(ReloadError::Unhealthy(format!(
                        "regions@1 failed: {}",
                        e.cause.clone().unwrap_or(e.public.clone())
                    )))
                }
            };
            let regions: Vec<ops::Region> = serde_json::from_value(answer)
                .map_err(|e| ReloadError::Unhealthy(format!("regions@1 answer malformed: {e}")))?;
            let mut names: Vec<String> = regions
                .iter()
                .map(|r| format!("{} ({})", r.name, r.zones.join(", ")))
                .collect();
            names.sort();
            answers.push(format!("[{}]", names.join(", ")));
        }
        if answers[0] == answers[1] {
            Ok(())
        } else {
            Err(ReloadError::RegionsChanged {
                old: answers.remove(0),
                new: answers.remove(0),
            })
        }
    }
}
