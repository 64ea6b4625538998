//! What every [`Ledger`] must do, as a suite a backend runs against itself:
//! `conformance::run(|| Box::new(MyLedger::new(..)) as Box<dyn Ledger + Send>)`. Each
//! check gets a fresh, empty ledger with the built-in record types registered.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::json;
use skyport_plugin_api::ops::MeterEvent;

use super::Ledger;
use crate::record_types::built_in;
use crate::validate::Limits;

/// 2026-11-23T12:00:00Z.
pub(crate) fn noon() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_435_200)
}

/// An `api.request` event.
pub(crate) fn request(id: &str, tenant: &str, department: Option<&str>, time: &str) -> MeterEvent {
    MeterEvent {
        id: id.into(),
        record_type: "api.request".into(),
        time: time.into(),
        tenant: tenant.into(),
        department: department.map(str::to_owned),
        attributes: json!({"route": "/v1/whoami", "status": 200}),
    }
}

/// An `api.request.count` event: `count` requests of one minute.
pub(crate) fn request_count(
    id: &str,
    tenant: &str,
    department: Option<&str>,
    time: &str,
    count: u64,
) -> MeterEvent {
    MeterEvent {
        record_type: "api.request.count".into(),
        attributes: json!({"route": "/v1/whoami", "status": 200, "count": count}),
        ..request(id, tenant, department, time)
    }
}

/// An `instance.lifecycle` event of demo's finance department: `event` (`run`, `stop`,
/// ...) of a `sp.micro` on local-vmm.
pub(crate) fn lifecycle(id: &str, instance: &str, event: &str, time: &str) -> MeterEvent {
    MeterEvent {
        id: id.into(),
        record_type: "instance.lifecycle".into(),
        time: time.into(),
        tenant: "demo".into(),
        department: Some("finance".into()),
        attributes: json!({"event": event, "instance_id": instance, "provider": "local-vmm",
                           "region": "local-1", "instance_type": "sp.micro", "vcpus": 1,
                           "memory_mib": 128}),
    }
}

/// Runs every check, each on a new ledger from `new_ledger`; panics naming the first that
/// fails.
pub fn run(new_ledger: impl Fn() -> Box<dyn Ledger + Send>) {
    let fresh = || {
        let mut ledger = new_ledger();
        for t in built_in() {
            ledger.register(&t, noon()).unwrap();
        }
        ledger
    };
    an_event_is_stored_once_whatever_the_retries(fresh());
    refused_events_are_audited_and_the_rest_of_the_batch_is_kept(fresh());
    record_types_are_registered_once(fresh());
    a_period_is_finalized_once(fresh());
    queries_see_what_was_stored_and_received_in_their_window(fresh());
    group_sync_bookkeeping_is_kept(fresh());
}

fn an_event_is_stored_once_whatever_the_retries(mut ledger: Box<dyn Ledger + Send>) {
    let batch = vec![
        request("e-1", "demo", None, "2026-11-23T11:59:00.000Z"),
        request("e-2", "demo", None, "2026-11-23T11:59:01.000Z"),
    ];
    let first = ledger.ingest(&batch, &Limits::default(), noon()).unwrap();
    assert_eq!((first.accepted, first.duplicates), (2, 0));
    let mut again = batch.clone();
    again.push(request("e-1", "demo", None, "2026-11-23T11:59:00.000Z"));
    let second = ledger.ingest(&again, &Limits::default(), noon()).unwrap();
    assert_eq!(
        (second.accepted, second.duplicates),
        (0, 3),
        "an_event_is_stored_once_whatever_the_retries"
    );
    assert_eq!(ledger.stats().unwrap().events["api.request"], 2);
}

fn refused_events_are_audited_and_the_rest_of_the_batch_is_kept(
    mut ledger: Box<dyn Ledger + Send>,
) {
    let unknown = MeterEvent {
        record_type: "storage.volume".into(),
        ..request("e-2", "demo", None, "2026-11-23T11:59:00.000Z")
    };
    let future = request("e-3", "demo", None, "2026-11-24T12:00:00.000Z");
    let outcome = ledger
        .ingest(
            &[
                request("e-1", "demo", None, "2026-11-23T11:59:00.000Z"),
                unknown,
                future,
            ],
            &Limits::default(),
            noon(),
        )
        .unwrap();
    assert_eq!(outcome.accepted, 1);
    let refused: Vec<&str> = outcome.rejected.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        refused,
        ["e-2", "e-3"],
        "refused_events_are_audited_and_the_rest_of_the_batch_is_kept"
    );
    let stats = ledger.stats().unwrap();
    assert_eq!((stats.events["api.request"], stats.rejections), (1, 2));
}

fn record_types_are_registered_once(mut ledger: Box<dyn Ledger + Send>) {
    let mut lifecycle_type = built_in().remove(1);
    assert!(
        !ledger.register(&lifecycle_type, noon()).unwrap(),
        "record_types_are_registered_once: the same definition again is a no-op"
    );
    lifecycle_type.state_key.push("region".into());
    assert!(ledger.register(&lifecycle_type, noon()).is_err());
    let mut storage = built_in().remove(0);
    storage.id = "storage.volume".into();
    assert!(ledger.register(&storage, noon()).unwrap());
    let types = ledger.record_types().unwrap();
    assert_eq!(
        types.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "api.request",
            "api.request.count",
            "instance.lifecycle",
            "storage.volume"
        ]
    );
    assert_eq!(types["instance.lifecycle"], built_in().remove(1));
}

fn a_period_is_finalized_once(ledger: Box<dyn Ledger + Send>) {
    let at = ledger.finalize("2026-10", noon()).unwrap();
    assert!(at.starts_with("2026-11-23T12:00:00"), "{at}");
    assert!(
        ledger
            .finalize("2026-10", noon() + Duration::from_secs(60))
            .is_err(),
        "a_period_is_finalized_once"
    );
    ledger.finalize("2026-09", noon()).unwrap();
    let periods: Vec<String> = ledger
        .finalized_periods()
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(periods, ["2026-09", "2026-10"]);
}

fn queries_see_what_was_stored_and_received_in_their_window(mut ledger: Box<dyn Ledger + Send>) {
    let limits = Limits::default();
    ledger
        .ingest(
            &[
                request("r-1", "demo", Some("finance"), "2026-11-23T10:00:00.000Z"),
                request("r-2", "demo", Some("finance"), "2026-11-23T11:00:00.000Z"),
                request("r-3", "demo", None, "2026-11-23T11:30:00.000Z"),
                request("r-4", "acme", None, "2026-11-22T11:30:00.000Z"),
                request_count(
                    "c-1",
                    "demo",
                    Some("finance"),
                    "2026-11-23T11:31:00.000Z",
                    40,
                ),
                request_count("c-2", "demo", None, "2026-11-23T09:00:00.000Z", 7),
                request_count("c-3", "acme", None, "2026-11-22T11:31:00.000Z", 5),
                lifecycle("l-1", "i-1", "running", "2026-11-23T09:00:00.000Z"),
                lifecycle("l-2", "i-1", "stopped", "2026-11-23T10:00:00.000Z"),
            ],
            &limits,
            noon(),
        )
        .unwrap();
    // Received later: invisible to a bill as of before it arrived.
    ledger
        .ingest(
            &[lifecycle(
                "l-3",
                "i-2",
                "running",
                "2026-11-23T11:00:00.000Z",
            )],
            &limits,
            noon() + Duration::from_secs(3600),
        )
        .unwrap();
    let day = ("2026-11-23T00:00:00.000Z", "2026-11-24T00:00:00.000Z");
    assert_eq!(ledger.tenants(day.0, day.1).unwrap(), ["demo"]);
    let received_by_noon = "2026-11-23T12:00:00.001Z";
    let rows = ledger
        .lifecycle_rows("demo", day.1, received_by_noon)
        .unwrap();
    let states: Vec<&str> = rows
        .iter()
        .map(|(_, a, _)| a["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["running", "stopped"],
        "queries_see_what_was_stored_and_received_in_their_window: lifecycle rows"
    );
    assert_eq!(rows[0].0.as_deref(), Some("finance"));
    let counts = ledger
        .api_request_counts("demo", "2026-11-23T10:30:00.000Z", day.1, received_by_noon)
        .unwrap();
    // One request each, plus finance's count of 40; demo's count of 7 is before 10:30
    // and acme's is the day before.
    assert_eq!(counts, [(None, 1), (Some("finance".to_string()), 41)]);
    let mut heads: Vec<(String, String)> = ledger
        .lifecycle_heads()
        .unwrap()
        .into_iter()
        .map(|h| {
            (
                h.instance_id,
                h.attributes["event"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    heads.sort();
    assert_eq!(
        heads,
        [
            ("i-1".into(), "stopped".into()),
            ("i-2".into(), "running".into())
        ]
    );
    let events = ledger.events("demo", 2).unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["r-1", "r-2"],
        "events come in ledger order, at most the limit"
    );
}

fn group_sync_bookkeeping_is_kept(mut ledger: Box<dyn Ledger + Send>) {
    assert_eq!(ledger.last_seen("i-1").unwrap(), None);
    ledger.mark_seen("i-1", "2026-11-23T10:00:00.000Z").unwrap();
    ledger.mark_seen("i-1", "2026-11-23T11:00:00.000Z").unwrap();
    assert_eq!(
        ledger.last_seen("i-1").unwrap().as_deref(),
        Some("2026-11-23T11:00:00.000Z"),
        "group_sync_bookkeeping_is_kept: the latest sighting"
    );
    let first: BTreeMap<String, (String, String)> = [
        (
            "i-1".to_string(),
            ("vanished".to_string(), "t1".to_string()),
        ),
        (
            "i-2".to_string(),
            ("unbilled".to_string(), "t1".to_string()),
        ),
    ]
    .into();
    ledger.set_suspects(&first).unwrap();
    assert_eq!(ledger.suspects().unwrap(), first);
    let second: BTreeMap<String, (String, String)> = [(
        "i-3".to_string(),
        ("vanished".to_string(), "t2".to_string()),
    )]
    .into();
    ledger.set_suspects(&second).unwrap();
    assert_eq!(ledger.suspects().unwrap(), second, "replaced, not merged");
}
