//! Group sync: reconciling the ledger with what the providers actually run.
//!
//! On a schedule the plugin asks the host for every provider's inventory
//! (`inventory.instances@1`: each VM with its Skyport id, tenant and state). A disagreement
//! must be seen by two consecutive syncs before it is acted on, so that a change the tap is
//! about to deliver (an API stop in flight) is not mistaken for one it missed:
//!
//! - an instance a provider runs that the ledger does not show running gets a synthesized
//!   `discovered` event at the time it was **first detected**, flagged
//!   `DiscoveredWithoutStart`;
//! - an instance the ledger shows running that its provider no longer runs gets a
//!   synthesized `vanished` event at the **last time a sync saw it running** (or its last
//!   event, if no sync ever saw it), flagged `VanishedWithoutStop`: a termination that bills
//!   no time the ledger cannot vouch for.
//!
//! Instances of a provider that did not answer are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{json, Value};
use skyport_plugin_api::ops::MeterEvent;

use crate::ledger::Ledger;
#[cfg(test)]
use crate::ledger::SqliteLedger;
use crate::validate::Limits;

/// Events after which the ledger considers an instance running.
const RUNNING_EVENTS: [&str; 5] = ["run", "start", "resize", "reboot", "discovered"];
/// Provider states that count as running.
const RUNNING_STATES: [&str; 3] = ["pending", "running", "stopping"];

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SyncOutcome {
    /// Instances metered from first detection.
    pub discovered: Vec<String>,
    /// Instances given a synthesized termination.
    pub vanished: Vec<String>,
    /// Disagreements seen once, to be confirmed by the next sync.
    pub suspected: usize,
    /// Providers that did not answer (their instances were left alone).
    pub skipped_providers: Vec<String>,
}

fn ledger_time(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Reconciles `ledger` with `listing` (the host's `inventory.instances@1` answer) at `now`.
pub fn reconcile(
    ledger: &mut dyn Ledger,
    listing: &Value,
    now: SystemTime,
) -> Result<SyncOutcome, String> {
    let db = |e: crate::ledger::LedgerError| e.to_string();
    let at = ledger_time(now);
    let mut outcome = SyncOutcome::default();
    let mut answered = BTreeSet::new();
    let mut running: BTreeMap<String, &Value> = BTreeMap::new();
    for provider in listing["providers"].as_array().into_iter().flatten() {
        let name = provider["name"].as_str().unwrap_or_default().to_string();
        if provider["ok"].as_bool() != Some(true) {
            outcome.skipped_providers.push(name);
            continue;
        }
        answered.insert(name);
        for vm in provider["instances"].as_array().into_iter().flatten() {
            let state = vm["state"].as_str().unwrap_or_default();
            if let Some(id) = vm["instance_id"].as_str() {
                if RUNNING_STATES.contains(&state) {
                    running.insert(id.to_string(), vm);
                }
            }
        }
    }
    let heads: BTreeMap<String, _> = ledger
        .lifecycle_heads()
        .map_err(db)?
        .into_iter()
        .map(|h| (h.instance_id.clone(), h))
        .collect();
    let earlier = ledger.suspects().map_err(db)?;
    let mut suspects = BTreeMap::new();
    // A disagreement confirmed by this sync: when the previous one first saw it.
    let mut confirm = |id: &str, kind: &str| -> Option<String> {
        match earlier.get(id) {
            Some((known, first_seen)) if known == kind => Some(first_seen.clone()),
            _ => {
                suspects.insert(id.to_string(), (kind.to_string(), at.clone()));
                None
            }
        }
    };
    let mut synthesized = Vec::new();
    // Running at a provider, not in the ledger.
    for (id, vm) in &running {
        ledger.mark_seen(id, &at).map_err(db)?;
        let ledger_running = heads.get(id).is_some_and(|h| {
            RUNNING_EVENTS.contains(&h.attributes["event"].as_str().unwrap_or(""))
        });
        if ledger_running {
            continue;
        }
        match confirm(id, "discovered") {
            None => outcome.suspected += 1,
            Some(first_seen) => {
                synthesized.push(MeterEvent {
                    id: format!("sync-discovered-{id}-{first_seen}"),
                    record_type: "instance.lifecycle".into(),
                    time: first_seen,
                    tenant: vm["tenant"].as_str().unwrap_or_default().to_string(),
                    department: vm["department"].as_str().map(str::to_owned),
                    attributes: json!({
                        "event": "discovered",
                        "instance_id": id,
                        "provider": vm["provider"],
                        "region": vm["region"],
                        "instance_type": vm["instance_type"],
                        "vcpus": vm["vcpus"],
                        "memory_mib": vm["memory_mib"],
                        "state": vm["state"],
                        "initiated_by": "group-sync",
                        "exception": "DiscoveredWithoutStart",
                    }),
                });
                outcome.discovered.push(id.clone());
            }
        }
    }
    // Running in the ledger, gone at a provider that answered.
    for (id, head) in &heads {
        let event = head.attributes["event"].as_str().unwrap_or("");
        let provider = head.attributes["provider"].as_str().unwrap_or("");
        if !RUNNING_EVENTS.contains(&event)
            || !answered.contains(provider)
            || running.contains_key(id)
        {
            continue;
        }
        match confirm(id, "vanished") {
            None => outcome.suspected += 1,
            Some(_) => {
                let last_seen = ledger.last_seen(id).map_err(db)?;
                let time = last_seen
                    .filter(|seen| *seen > head.time)
                    .unwrap_or(head.time.clone());
                let mut attributes = head.attributes.clone();
                attributes["event"] = json!("vanished");
                attributes["state"] = json!("terminated");
                attributes["initiated_by"] = json!("group-sync");
                attributes["exception"] = json!("VanishedWithoutStop");
                synthesized.push(MeterEvent {
                    id: format!("sync-vanished-{id}-{time}"),
                    record_type: "instance.lifecycle".into(),
                    time,
                    tenant: head.tenant.clone(),
                    department: head.department.clone(),
                    attributes,
                });
                outcome.vanished.push(id.clone());
            }
        }
    }
    ledger.set_suspects(&suspects).map_err(db)?;
    if !synthesized.is_empty() {
        let stored = ledger
            .ingest(&synthesized, &Limits::default(), now)
            .map_err(db)?;
        if let Some(refused) = stored.rejected.first() {
            return Err(format!("synthesized event refused: {}", refused.reason));
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_types::built_in;
    use std::time::Duration;

    fn ledger(tag: &str) -> (SqliteLedger, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("sync-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut ledger = SqliteLedger::open(&dir).unwrap();
        for t in built_in() {
            ledger.register(&t, SystemTime::UNIX_EPOCH).unwrap();
        }
        (ledger, dir)
    }

    fn at(minute: u64) -> SystemTime {
        humantime::parse_rfc3339("2026-11-03T10:00:00Z").unwrap() + Duration::from_secs(minute * 60)
    }

    fn listing(running: &[&str]) -> Value {
        let instances: Vec<Value> = running
            .iter()
            .map(|id| {
                json!({"instance_id": id, "tenant": "demo", "department": "ops",
                       "provider": "local-vmm", "region": "local-1", "instance_type": "sp.micro",
                       "vcpus": 1, "memory_mib": 128, "state": "running"})
            })
            .collect();
        json!({"providers": [{"name": "local-vmm", "ok": true, "instances": instances},
                             {"name": "ec2", "ok": false, "reason": "timeout"}]})
    }

    fn lifecycle(ledger: &mut dyn Ledger, id: &str, instance: &str, event: &str, time: SystemTime) {
        let event = MeterEvent {
            id: id.into(),
            record_type: "instance.lifecycle".into(),
            time: ledger_time(time),
            tenant: "demo".into(),
            department: Some("ops".into()),
            attributes: json!({"event": event, "instance_id": instance, "provider": "local-vmm",
                               "region": "local-1", "instance_type": "sp.micro", "vcpus": 1,
                               "memory_mib": 128}),
        };
        ledger.ingest(&[event], &Limits::default(), time).unwrap();
    }

    fn events_of(ledger: &dyn Ledger, instance: &str) -> Vec<(String, String)> {
        ledger
            .events("demo", 1000)
            .unwrap()
            .into_iter()
            .filter(|e| e["attributes"]["instance_id"] == instance)
            .map(|e| {
                (
                    e["attributes"]["event"].as_str().unwrap().to_string(),
                    e["time"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// METERING.md case 6: a resource first seen by group sync is metered from first
    /// detection, flagged.
    #[test]
    fn a_resource_without_a_start_is_metered_from_first_detection() {
        let (mut ledger, dir) = ledger("discovered");
        let first = reconcile(&mut ledger, &listing(&["i-1"]), at(0)).unwrap();
        assert_eq!(
            (first.suspected, first.discovered.len()),
            (1, 0),
            "seen once: suspected"
        );
        let second = reconcile(&mut ledger, &listing(&["i-1"]), at(5)).unwrap();
        assert_eq!(second.discovered, ["i-1"]);
        assert_eq!(second.skipped_providers, ["ec2"]);
        assert_eq!(
            events_of(&ledger, "i-1"),
            [("discovered".to_string(), ledger_time(at(0)))],
            "metered from the first detection"
        );
        let head = &ledger.lifecycle_heads().unwrap()[0];
        assert_eq!(head.attributes["exception"], "DiscoveredWithoutStart");
        // Now consistent: nothing more.
        let third = reconcile(&mut ledger, &listing(&["i-1"]), at(10)).unwrap();
        assert_eq!(
            third,
            SyncOutcome {
                skipped_providers: vec!["ec2".into()],
                ..Default::default()
            }
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// METERING.md case 7: a resource gone without a stop gets a synthesized termination
    /// at the last time it was seen, flagged, and no further records.
    #[test]
    fn a_resource_gone_without_a_stop_is_terminated_when_last_seen() {
        let (mut ledger, dir) = ledger("vanished");
        lifecycle(&mut ledger, "e1", "i-1", "run", at(0));
        reconcile(&mut ledger, &listing(&["i-1"]), at(5)).unwrap();
        reconcile(&mut ledger, &listing(&["i-1"]), at(10)).unwrap(); // last seen
        let gone = reconcile(&mut ledger, &listing(&[]), at(15)).unwrap();
        assert_eq!((gone.suspected, gone.vanished.len()), (1, 0));
        let confirmed = reconcile(&mut ledger, &listing(&[]), at(20)).unwrap();
        assert_eq!(confirmed.vanished, ["i-1"]);
        assert_eq!(
            events_of(&ledger, "i-1"),
            [
                ("run".to_string(), ledger_time(at(0))),
                ("vanished".to_string(), ledger_time(at(10)))
            ]
        );
        let again = reconcile(&mut ledger, &listing(&[]), at(25)).unwrap();
        assert!(
            again.vanished.is_empty() && again.suspected == 0,
            "no further records"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_disagreement_seen_once_and_then_resolved_changes_nothing() {
        let (mut ledger, dir) = ledger("transient");
        lifecycle(&mut ledger, "e1", "i-1", "run", at(0));
        // An API stop in flight: the provider already shows it stopped, the tap has not
        // delivered the stop yet.
        assert_eq!(
            reconcile(&mut ledger, &listing(&[]), at(1))
                .unwrap()
                .suspected,
            1
        );
        lifecycle(&mut ledger, "e2", "i-1", "stop", at(1));
        let next = reconcile(&mut ledger, &listing(&[]), at(2)).unwrap();
        assert!(next.vanished.is_empty(), "{next:?}");
        // Instances of a provider that did not answer are never taken as gone.
        lifecycle(&mut ledger, "e3", "i-2", "run", at(3));
        let mut ledger_ec2 = ledger;
        let event = MeterEvent {
            id: "e4".into(),
            record_type: "instance.lifecycle".into(),
            time: ledger_time(at(3)),
            tenant: "demo".into(),
            department: None,
            attributes: json!({"event": "run", "instance_id": "i-3", "provider": "ec2",
                               "instance_type": "sp.micro"}),
        };
        ledger_ec2
            .ingest(&[event], &Limits::default(), at(3))
            .unwrap();
        for minute in 4..8 {
            let outcome = reconcile(&mut ledger_ec2, &listing(&["i-2"]), at(minute)).unwrap();
            assert!(
                outcome.vanished.is_empty() && outcome.discovered.is_empty(),
                "{outcome:?}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
