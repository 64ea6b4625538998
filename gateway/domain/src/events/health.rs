//! `provider.health` events: every replica watches the health of the plugins it has
//! loaded (what its probes and calls found) and publishes each change, for operators'
//! subscriptions; each look also counts as a probe for the providers' SLA.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use skyport_core::ids::{rfc3339_millis, time_ordered_uuid};
use skyport_plugin_host::Plugins;

use super::{Event, EventService};
use crate::sla::SlaRecorder;

/// Watches `plugins`' health as `replica`.
pub struct HealthWatch {
    plugins: Arc<dyn Plugins>,
    events: Arc<EventService>,
    replica: String,
    /// Each plugin's health when last looked at.
    last: HashMap<String, bool>,
    /// Where each look is counted as a probe of every region a provider serves.
    sla: Option<SlaProbes>,
}

/// The SLA recorder, and the (provider, region) pairs a look probes.
struct SlaProbes {
    recorder: Arc<SlaRecorder>,
    sites: Vec<(String, String)>,
}

impl HealthWatch {
    /// A watch that has seen nothing yet: the first look records, and publishes only
    /// plugins that are unhealthy from the start.
    pub fn new(plugins: Arc<dyn Plugins>, events: Arc<EventService>, replica: String) -> Self {
        Self {
            plugins,
            events,
            replica,
            last: HashMap::new(),
            sla: None,
        }
    }

    /// Also counts each look at a provider as a probe of each of its `sites` (provider,
    /// region) in `recorder`: the SLA's availability.
    pub fn with_sla(mut self, recorder: Arc<SlaRecorder>, sites: Vec<(String, String)>) -> Self {
        self.sla = Some(SlaProbes { recorder, sites });
        self
    }

    /// Publishes a `provider.health` event for each plugin whose health changed since
    /// the last look: how many.
    pub async fn look(&mut self) -> usize {
        let mut published = 0;
        for plugin in self.plugins.loaded() {
            let healthy = plugin.health.healthy;
            if let Some(SlaProbes { recorder, sites }) = &self.sla {
                for (_, region) in sites.iter().filter(|(p, _)| *p == plugin.name) {
                    recorder.record_probe(&plugin.name, region, healthy);
                }
            }
            let before = self.last.insert(plugin.name.clone(), healthy);
            if before == Some(healthy) || (before.is_none() && healthy) {
                continue;
            }
            let now = self.events.clock().wall();
            tracing::info!(plugin = %plugin.name, healthy, reason = ?plugin.health.reason, "plugin health changed");
            self.events
                .publish_or_log(Event {
                    id: time_ordered_uuid(now).to_string(),
                    kind: "provider.health".into(),
                    subject: Some(plugin.name.clone()),
                    time: rfc3339_millis(now),
                    tenant: None,
                    department: None,
                    data: json!({
                        "plugin": plugin.name,
                        "kind": plugin.kind,
                        "healthy": healthy,
                        "reason": plugin.health.reason,
                        "replica": self.replica,
                    }),
                })
                .await;
            published += 1;
        }
        published
    }

    /// Looks every `every` until the task is dropped.
    pub fn spawn(mut self, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                self.look().await;
            }
        })
    }
}
