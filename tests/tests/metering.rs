//! The metering plugin behind the gateway's tap: a durable ledger that stores every event
//! once (requests as counts), refuses bad events with an audit entry, and the tap's retries of unacknowledged
//! batches.
#![forbid(unsafe_code)]

use serde_json::{json, Value};
use skyport_e2e::{Gateway, GatewayOptions};

async fn metering_op(gw: &Gateway, admin: &str, op: &str, params: Value) -> Value {
    gw.post_json(
        &format!("/admin/plugins/metering/ops/{op}"),
        admin,
        Some(params),
    )
    .await["result"]
        .clone()
}

/// The tenant's ledger events of `record_type`, polled until `enough` says they are (the
/// tap flushes every 100 ms) or 10 s passed.
async fn poll_ledger(
    gw: &Gateway,
    admin: &str,
    tenant: &str,
    record_type: &str,
    enough: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events = metering_op(gw, admin, "ledger.events", json!({"tenant": tenant})).await;
        let found: Vec<Value> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == record_type)
            .cloned()
            .collect();
        if enough(&found) || std::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The tenant's ledger events of `record_type`, once at least `at_least` are there.
async fn ledger_events(
    gw: &Gateway,
    admin: &str,
    tenant: &str,
    record_type: &str,
    at_least: usize,
) -> Vec<Value> {
    poll_ledger(gw, admin, tenant, record_type, |found| {
        found.len() >= at_least
    })
    .await
}

/// The tenant's request counts (`api.request.count` events), once they account for at
/// least `at_least` requests.
async fn request_counts(gw: &Gateway, admin: &str, tenant: &str, at_least: u64) -> Vec<Value> {
    poll_ledger(gw, admin, tenant, "api.request.count", |found| {
        skyport_e2e::requests_metered(found, None) >= at_least
    })
    .await
}

fn event(id: &str, record_type: &str, time: &str, attributes: Value) -> Value {
    json!({"id": id, "type": record_type, "time": time, "tenant": "demo", "attributes": attributes})
}

#[tokio::test]
async fn the_ledger_stores_each_request_once_and_audits_refused_events() {
    let gw = Gateway::start();
    let plugins = gw
        .get_json("/admin/plugins", &gw.token("ops", None, &["admin"]))
        .await;
    assert!(
        plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "metering" && p["kind"] == "metering"),
        "{plugins}"
    );
    // Operators act as tenant ops here, so demo's ledger holds only demo's requests.
    let admin = gw.token("ops", None, &["admin"]);
    let demo = gw.token("demo", Some("finance"), &[]);
    for _ in 0..5 {
        assert_eq!(gw.get("/v1/whoami", &demo).await.status(), 200);
    }
    // Counted, not one event each: at most one event per minute they straddle.
    let counts = request_counts(&gw, &admin, "demo", 5).await;
    assert_eq!(
        skyport_e2e::requests_metered(&counts, None),
        5,
        "{counts:?}"
    );
    assert!((1..=2).contains(&counts.len()), "{counts:?}");
    assert!(counts
        .iter()
        .all(|e| e["attributes"]["route"] == "/v1/whoami"
            && e["attributes"]["status"] == 200
            && e["attributes"]["method"] == "GET"
            && e["attributes"]["identity_source"] == "jwt"
            && e["department"] == "finance"
            && e["time"].as_str().unwrap().ends_with(":00.000Z")));
    let types = metering_op(&gw, &admin, "record_types.list", json!({})).await;
    assert_eq!(types.as_array().unwrap().len(), 3, "{types}");

    // A batch straight to the plugin: one good event, its duplicate, and three bad ones.
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let good = event(
        "t-good",
        "instance.lifecycle",
        &now,
        json!({"instance_id": "i-1", "vcpus": 1}),
    );
    let batch = json!({"sequence": 1, "events": [
        good,
        good,
        event("t-unknown", "storage.volume", &now, json!({})),
        event("t-future", "api.request", "2099-01-01T00:00:00Z", json!({})),
        event("t-negative", "instance.lifecycle", &now, json!({"instance_id": "i-1", "vcpus": -2})),
    ]});
    let outcome = metering_op(&gw, &admin, "meter.batch", batch.clone()).await;
    assert_eq!(outcome["accepted"], 1, "{outcome}");
    assert_eq!(outcome["duplicates"], 1, "{outcome}");
    let reasons: Vec<&str> = outcome["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 3, "{outcome}");
    assert!(reasons[0].contains("unregistered record type 'storage.volume'"));
    assert!(reasons[1].contains("in the future"));
    assert!(reasons[2].contains("negative or absurd"));
    // The same batch again (a retry): nothing new stored, refusals audited again.
    let retried = metering_op(&gw, &admin, "meter.batch", batch).await;
    assert_eq!(
        (retried["accepted"].as_u64(), retried["duplicates"].as_u64()),
        (Some(0), Some(2))
    );
    let stats = metering_op(&gw, &admin, "ledger.stats", json!({})).await;
    assert_eq!(stats["events"]["instance.lifecycle"], 1, "{stats}");
    assert_eq!(stats["rejections"], 6, "{stats}");
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains(r#"skyport_plugin_reported{plugin="metering",name="events_rejected"} 6"#),
        "{metrics}"
    );

    // Record types can be registered at run time, and not silently redefined.
    let volume = json!({"id": "storage.volume", "primary_key": ["volume_id"],
                        "state_key": ["size_gib"], "group_key": ["tenant"]});
    let first = gw
        .post("/admin/record-types", &admin, Some(volume.clone()))
        .await;
    assert_eq!(first.status(), 201);
    let again = gw.post("/admin/record-types", &admin, Some(volume)).await;
    assert_eq!(again.status(), 200, "the same definition again is a no-op");
    let conflict = gw
        .post(
            "/admin/record-types",
            &admin,
            Some(json!({"id": "storage.volume", "primary_key": ["other"]})),
        )
        .await;
    let problem = skyport_e2e::expect_problem(conflict, 409).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("already registered differently"),
        "{problem}"
    );
    let listed = gw.get_json("/admin/record-types", &admin).await;
    assert_eq!(
        listed["record_types"].as_array().unwrap().len(),
        4,
        "{listed}"
    );
    skyport_e2e::expect_problem(gw.get("/admin/record-types", &demo).await, 403).await;
    let stored = metering_op(
        &gw,
        &admin,
        "meter.batch",
        json!({"sequence": 9, "events": [event("t-volume", "storage.volume", &now, json!({"volume_id": "v-1", "size_gib": 10}))]}),
    )
    .await;
    assert_eq!(stored["accepted"], 1, "{stored}");
    // acme's own admin requests are in acme's ledger, never in demo's.
    assert!(request_counts(&gw, &admin, "demo", 0)
        .await
        .iter()
        .all(|e| e["tenant"] == "demo"));
}

#[tokio::test]
async fn unacknowledged_batches_are_retried_and_count_once() {
    let gw = Gateway::start_with(GatewayOptions {
        extra: format!(
            "[[plugins]]\nname = \"meter-sink\"\nfile = \"{}\"\nconfig = {{ fail_first = 3 }}\n",
            skyport_e2e::fixture("meter-sink").display()
        ),
        ..Default::default()
    });
    let demo = gw.token("demo", None, &[]);
    let admin = gw.token("ops", None, &["admin"]);
    for _ in 0..3 {
        assert_eq!(gw.get("/v1/whoami", &demo).await.status(), 200);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let count = || async {
        let dump: Value = gw
            .post("/admin/plugins/meter-sink/ops/events.dump", &admin, None)
            .await
            .json()
            .await
            .unwrap();
        let demo: Vec<Value> = dump["result"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["tenant"] == "demo")
            .cloned()
            .collect();
        skyport_e2e::requests_metered(&demo, Some("/v1/whoami"))
    };
    while count().await < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        count().await,
        3,
        "each event delivered once after the retries"
    );
    assert!(gw.log().contains("kept for retry"), "{}", gw.log());
    // The real ledger, which never failed, has them once too.
    assert_eq!(
        skyport_e2e::requests_metered(&request_counts(&gw, &admin, "demo", 3).await, None),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_vm_is_in_the_ledger_before_the_create_answers_even_across_kill9() {
    skyport_e2e::assert_guest_image_prepared();
    let mut gw = Gateway::start();
    let demo = gw.token("demo", None, &[]);
    let created = gw
        .post_json(
            "/v1/instances",
            &demo,
            Some(json!({"image": "skyport-tiny", "instance_type": "sp.small"})),
        )
        .await;
    assert_eq!(created["state"], "pending", "{created}");
    // The gateway dies the moment the create answered, before any tap flush.
    gw.kill9_and_restart();
    let admin = gw.token("ops", None, &["admin"]);
    let lifecycle = ledger_events(&gw, &admin, "demo", "instance.lifecycle", 1).await;
    assert_eq!(lifecycle.len(), 1, "{lifecycle:?}");
    let run = &lifecycle[0]["attributes"];
    assert_eq!(run["event"], "run");
    assert_eq!(run["instance_id"], created["id"]);
    assert_eq!(
        (run["vcpus"].as_u64(), run["memory_mib"].as_u64()),
        (Some(1), Some(256))
    );

    // The boot the dead gateway was waiting for is picked up again.
    let path = format!("/v1/instances/{}", created["id"].as_str().unwrap());
    let running = gw.get_json(&format!("{path}?wait=running"), &demo).await;
    assert_eq!(running["state"], "running", "{running}");
    assert_eq!(gw.delete(&path, &demo).await.status(), 200);
    let lifecycle = ledger_events(&gw, &admin, "demo", "instance.lifecycle", 2).await;
    assert_eq!(
        lifecycle[1]["attributes"]["event"], "terminate",
        "{lifecycle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_sync_meters_a_vm_the_ledger_never_heard_of_from_first_detection() {
    skyport_e2e::assert_guest_image_prepared();
    let metering = "file = \"libskyport_metering.so\"";
    // First without the metering plugin (its file is absent): the VM's run is not metered.
    let without =
        skyport_e2e::default_config().replace(metering, "file = \"libskyport_metering_absent.so\"");
    assert_ne!(
        without,
        skyport_e2e::default_config(),
        "the metering entry changed shape"
    );
    let mut gw = Gateway::start_with(GatewayOptions {
        config: Some(without),
        ..Default::default()
    });
    let demo = gw.token("demo", Some("finance"), &[]);
    let created = gw.create_running(&demo, "sp.micro").await;
    assert_eq!(created["state"], "running", "{created}");

    // Then with it, syncing every second: the VM is found and metered from then on.
    gw.replace_config(&skyport_e2e::default_config().replace(
        metering,
        &format!("{metering}\nconfig = {{ group_sync_secs = 1 }}"),
    ));
    gw.kill9_and_restart();
    let admin = gw.token("ops", None, &["admin"]);
    let lifecycle = ledger_events(&gw, &admin, "demo", "instance.lifecycle", 1).await;
    assert_eq!(lifecycle.len(), 1, "{lifecycle:?}\n{}", gw.log());
    let discovered = &lifecycle[0];
    assert_eq!(discovered["attributes"]["event"], "discovered");
    assert_eq!(discovered["attributes"]["instance_id"], created["id"]);
    assert_eq!(
        discovered["attributes"]["exception"],
        "DiscoveredWithoutStart"
    );
    assert_eq!(discovered["department"], "finance");
    let bill = gw.get_json("/v1/bill", &demo).await;
    let line = bill["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["resource_id"] == created["id"])
        .unwrap_or_else(|| panic!("no line for the VM: {bill:#}"))
        .clone();
    assert_eq!(line["exceptions"], json!(["DiscoveredWithoutStart"]));
    assert!(gw
        .metrics_text()
        .await
        .contains(r#"skyport_plugin_reported{plugin="metering",name="group_sync_discovered"} 1"#));

    // A terminate through the API is an ordinary stop for the ledger: nothing vanishes.
    let path = format!("/v1/instances/{}", created["id"].as_str().unwrap());
    assert_eq!(gw.delete(&path, &demo).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let kinds: Vec<String> = ledger_events(&gw, &admin, "demo", "instance.lifecycle", 2)
        .await
        .iter()
        .map(|e| e["attributes"]["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["discovered", "terminate"]);
}
