//! Monthly reports, and breaches as events.

use std::sync::Arc;

use rust_decimal::Decimal;
use serde_json::json;
use skyport_core::clock::SharedClock;
use skyport_core::error::GatewayError;
use skyport_core::ids::rfc3339_millis;

use super::{report, SlaRecorder, SlaReport};
use crate::budgets::Month;
use crate::events::{Event, EventService};

/// The providers' service level.
pub struct SlaService {
    recorder: Arc<SlaRecorder>,
    target: Decimal,
    clock: SharedClock,
}

impl SlaService {
    /// Reports from `recorder`'s store (and its minutes not yet written), against
    /// `target` (percent).
    pub fn new(recorder: Arc<SlaRecorder>, target: Decimal, clock: SharedClock) -> Self {
        Self {
            recorder,
            target,
            clock,
        }
    }

    /// The recorder that counts ops and probes.
    pub fn recorder(&self) -> &Arc<SlaRecorder> {
        &self.recorder
    }

    /// The report of `period` (`YYYY-MM`; the current month when `None`).
    pub async fn report(&self, period: Option<&str>) -> Result<SlaReport, GatewayError> {
        let month = match period {
            None => Month::of(self.clock.wall()),
            Some(text) => Month::parse(text).ok_or_else(|| {
                GatewayError::invalid(format!("period '{text}' is not a month (YYYY-MM)"))
            })?,
        };
        let (from, to) = (rfc3339_millis(month.start), rfc3339_millis(month.end));
        let mut samples = self.recorder.store().between(&from, &to).await?;
        samples.extend(
            self.recorder
                .pending()
                .into_iter()
                .filter(|s| s.minute >= from && s.minute < to),
        );
        let minutes = month
            .end
            .duration_since(month.start)
            .unwrap_or_default()
            .as_secs()
            / 60;
        Ok(report(&month.label(), &samples, self.target, minutes))
    }

    /// Publishes `sla.breach` for each provider region that can no longer meet the target
    /// this month (more unavailable minutes than the month allows), once per region and
    /// month: how many it published.
    pub async fn announce_breaches(&self, events: &EventService) -> Result<usize, GatewayError> {
        let report = self.report(None).await?;
        let mut published = 0;
        for site in report.sites.iter().filter(|s| s.breached) {
            let key = format!(
                "sla.breach/{}/{}/{}",
                site.provider, site.region, report.period
            );
            let event = Event {
                id: key.clone(),
                kind: "sla.breach".into(),
                subject: Some(format!("{}/{}", site.provider, site.region)),
                time: rfc3339_millis(self.clock.wall()),
                tenant: None,
                department: None,
                data: json!({ "period": report.period, "site": site }),
            };
            if events.publish_once(&key, event).await? {
                tracing::warn!(provider = %site.provider, region = %site.region,
                    availability = ?site.availability, target = %site.target,
                    "a provider region is below its availability target");
                published += 1;
            }
        }
        Ok(published)
    }
}

impl SlaService {
    /// Looks for breaches every `every`, on whichever replica holds the `sla-breaches`
    /// lease in `leases` as `holder`.
    pub fn spawn_breach_watch(
        self: Arc<Self>,
        events: Arc<EventService>,
        leases: Arc<dyn crate::leases::LeaseStore>,
        holder: String,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        crate::leases::every_on_one_replica(leases, "sla-breaches", holder, every, move || {
            let (this, events) = (Arc::clone(&self), Arc::clone(&events));
            async move {
                if let Err(e) = this.announce_breaches(&events).await {
                    tracing::warn!(error = %e.public, "looking for SLA breaches failed");
                }
            }
        })
    }
}
