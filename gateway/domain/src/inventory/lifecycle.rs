//! Lifecycle events: one metering event per instance change, whoever made it, also
//! published to the webhooks that want `instance.lifecycle`.

use std::sync::Arc;

use serde_json::json;
use skyport_core::clock::SharedClock;
use skyport_core::ids::{rfc3339_millis, time_ordered_uuid};
use skyport_plugin_api::ops::MeterEvent;

use super::InstanceRecord;
use crate::events::{Event, EventService};
use crate::metering_tap::MeteringTap;

/// Who made a change: a caller through the API, or the provider by itself (a guest that
/// powered off, a QEMU that died, an instance gone from its cloud).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// A tenant's API call.
    Api,
    /// The provider, noticed by a read or by the inventory sync.
    Provider,
}

impl Initiator {
    fn as_str(self) -> &'static str {
        match self {
            Initiator::Api => "api",
            Initiator::Provider => "provider",
        }
    }
}

/// Meters instance changes through the tap, timed by the clock, and publishes them.
#[derive(Clone)]
pub struct LifecycleMeter {
    tap: MeteringTap,
    clock: SharedClock,
    events: Option<Arc<EventService>>,
}

impl LifecycleMeter {
    /// A meter sending through `tap`, events timed by `clock`.
    pub fn new(tap: MeteringTap, clock: SharedClock) -> Self {
        Self {
            tap,
            clock,
            events: None,
        }
    }

    /// Also publishes every change as an `instance.lifecycle` event to `events`.
    pub fn with_events(mut self, events: Arc<EventService>) -> Self {
        self.events = Some(events);
        self
    }

    /// Emits one `instance.lifecycle` event for `record` (in its new state) and returns
    /// once every metering plugin stored it durably (or it is in the tap's retry backlog),
    /// so the API call that caused the change answers only then: a created VM is never
    /// unbilled.
    pub async fn emit(&self, record: &InstanceRecord, event: &str, initiated_by: Initiator) {
        let id = time_ordered_uuid(self.clock.wall()).to_string();
        self.emit_as(id, record, event, initiated_by).await;
    }

    /// Emits `record`'s `run` event like [`LifecycleMeter::emit`], under an id derived
    /// from the instance's (`<instance id>.run`): a create finished twice (resumed by a
    /// retry on another replica after its first replica metered it and died, or recovered
    /// at start) meters its `run` again as a duplicate, which the ledger stores once.
    pub async fn emit_run(&self, record: &InstanceRecord, initiated_by: Initiator) {
        let id = format!("{}.run", record.id);
        self.emit_as(id, record, "run", initiated_by).await;
    }

    async fn emit_as(
        &self,
        id: String,
        record: &InstanceRecord,
        event: &str,
        initiated_by: Initiator,
    ) {
        let mut attributes = record.meter_attributes();
        attributes.insert("event".into(), json!(event));
        attributes.insert("state".into(), json!(record.state));
        attributes.insert("initiated_by".into(), json!(initiated_by.as_str()));
        let now = self.clock.wall();
        let event = MeterEvent {
            id,
            record_type: "instance.lifecycle".into(),
            time: rfc3339_millis(now),
            tenant: record.tenant.clone(),
            department: record.department.clone(),
            attributes: serde_json::Value::Object(attributes),
        };
        if let Some(events) = &self.events {
            let data = event.attributes.clone();
            events
                .publish_or_log(Event {
                    id: event.id.clone(),
                    kind: "instance.lifecycle".into(),
                    subject: Some(record.id.clone()),
                    time: event.time.clone(),
                    tenant: Some(record.tenant.clone()),
                    department: record.department.clone(),
                    data,
                })
                .await;
        }
        self.tap.record_durable(event).await;
    }
}
