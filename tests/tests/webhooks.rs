//! Event webhooks end to end: tenants and operators subscribe HTTPS endpoints (a test
//! endpoint with a CA of its own), events arrive as signed CloudEvents, budget thresholds
//! fire once each, tenants see only their own events, and an endpoint that is down while
//! the gateway is killed with SIGKILL still gets every event once it is back.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};
use skyport_e2e::webhook_receiver::{verify, WebhookReceiver};
use skyport_e2e::{
    default_config, expect_problem, run_cli, temp_state_dir, Gateway, GatewayOptions, Signal,
};

/// One cent per API request, so that a few requests cross a threshold.
const RATE_CARD: &str = r#"rate_card = { currency = "USD", rates = [
  { sku = "sp.micro", unit = "hour", price = "0.01" },
  { sku = "api.requests", unit = "1000-requests", price = "10" } ] }"#;

fn config(receiver: &WebhookReceiver) -> String {
    default_config().replace(
        "file = \"libskyport_metering.so\"",
        &format!(
            "file = \"libskyport_metering.so\"\nconfig = {{ {} }}",
            RATE_CARD.replace('\n', " ")
        ),
    ) + &format!(
        r#"
[[budgets]]
name = "demo-watch"
tenant = "demo"
amount = "100.00"
thresholds = ["0.03", "0.05"]
mode = "alert"

[[budgets]]
name = "acme-watch"
tenant = "acme"
amount = "100.00"
thresholds = ["0.02"]
mode = "alert"

[webhooks]
ca_file = "{}"
initial_backoff_secs = 1
max_backoff_secs = 2
timeout_secs = 2
poll_interval_ms = 100
"#,
        receiver.ca_file.display()
    )
}

/// Replaces `[inventory]`'s look at budgets with one every second.
fn with_fast_budget_checks(config: String) -> String {
    if config.contains("[inventory]") {
        config.replace("[inventory]", "[inventory]\nbudget_check_secs = 1")
    } else {
        config + "\n[inventory]\nbudget_check_secs = 1\n"
    }
}

async fn subscribe(gw: &Gateway, path: &str, token: &str, body: Value) -> Value {
    let response = gw.post(path, token, Some(body)).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    response.json().await.unwrap()
}

/// Waits until `check` holds, up to `secs` seconds.
async fn until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..secs * 10 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {secs} s");
}

/// The events that arrived at `path`, each verified with `secret`, by id (duplicates,
/// which at-least-once delivery allows, counted).
fn events_at(
    receiver: &WebhookReceiver,
    path: &str,
    secret: &str,
) -> (BTreeMap<String, Value>, usize) {
    let received = receiver.received(path);
    let mut events = BTreeMap::new();
    for r in &received {
        let event = verify(secret, r).unwrap_or_else(|e| panic!("{path}: {e}: {r:?}"));
        assert_eq!(r.headers["content-type"], "application/cloudevents+json");
        assert_eq!(event["specversion"], "1.0");
        events.insert(event["id"].as_str().unwrap().to_string(), event);
    }
    (events, received.len())
}

fn types(events: &BTreeMap<String, Value>) -> Vec<String> {
    let mut types: Vec<String> = events
        .values()
        .map(|e| {
            let kind = e["type"].as_str().unwrap().to_string();
            match kind.as_str() {
                "io.skyport.instance.lifecycle" => {
                    format!("{kind}:{}", e["data"]["event"].as_str().unwrap())
                }
                "io.skyport.budget.threshold" => {
                    format!("{kind}:{}", e["data"]["threshold"].as_str().unwrap())
                }
                _ => kind,
            }
        })
        .collect();
    types.sort();
    types
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_cloudevents_reach_only_their_tenant_once_each_across_an_outage_and_a_kill9() {
    skyport_e2e::assert_guest_image_prepared();
    let dir = temp_state_dir("webhooks");
    let mut receiver = WebhookReceiver::start(&dir).await;
    let mut gw = Gateway::start_with(GatewayOptions {
        config: Some(with_fast_budget_checks(config(&receiver))),
        ..Default::default()
    });
    let (demo, acme) = (gw.token("demo", None, &[]), gw.token("acme", None, &[]));
    let ops = gw.token("ops", None, &["admin"]);

    // Bad subscriptions are refused with the reason.
    for (body, status) in [
        (
            json!({"url": "http://127.0.0.1:1/in", "events": ["*"]}),
            400,
        ),
        (
            json!({"url": receiver.url("/x"), "events": ["instance.deleted"]}),
            400,
        ),
        (
            json!({"url": receiver.url("/x"), "events": ["provider.health"]}),
            403,
        ),
        (json!({"url": receiver.url("/x")}), 400),
    ] {
        let problem =
            expect_problem(gw.post("/v1/webhooks", &demo, Some(body)).await, status).await;
        assert!(problem["detail"].as_str().is_some(), "{problem}");
    }

    let demo_sub = subscribe(
        &gw,
        "/v1/webhooks",
        &demo,
        json!({"url": receiver.url("/demo"), "events": ["instance.*", "budget.*"],
               "description": "demo's runbooks"}),
    )
    .await;
    let acme_sub = subscribe(
        &gw,
        "/v1/webhooks",
        &acme,
        json!({"url": receiver.url("/acme"), "events": ["*"]}),
    )
    .await;
    let ops_sub = subscribe(
        &gw,
        "/admin/webhooks",
        &ops,
        json!({"url": receiver.url("/ops"), "events": ["budget.threshold"]}),
    )
    .await;
    let secret = |s: &Value| s["secret"].as_str().unwrap().to_string();
    assert!(secret(&demo_sub).starts_with("whsec_"));
    let demo_id = demo_sub["id"].as_str().unwrap();
    // Listed without the secret; another tenant's is not there.
    let listed = gw.get_json("/v1/webhooks", &demo).await;
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1, "{listed}");
    assert!(listed["webhooks"][0].get("secret").is_none(), "{listed}");
    expect_problem(gw.get(&format!("/v1/webhooks/{demo_id}"), &acme).await, 404).await;
    expect_problem(
        gw.delete(&format!("/v1/webhooks/{demo_id}"), &acme).await,
        404,
    )
    .await;
    assert_eq!(
        gw.get_json("/admin/webhooks", &ops).await["webhooks"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // A VM's run, then (with the endpoint down and the gateway killed) its stop, then,
    // with the endpoint back, its termination.
    let vm = gw.create_running(&demo, "sp.micro").await;
    let path = format!("/v1/instances/{}", vm["id"].as_str().unwrap());
    until(30, "the run event", || {
        !receiver.received("/demo").is_empty()
    })
    .await;
    receiver.down();
    let stopped = gw
        .post_json(&format!("{path}/stop?wait=stopped"), &demo, None)
        .await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    // Some API calls: demo crosses 0.03 and 0.05, acme 0.02.
    for _ in 0..6 {
        gw.get("/v1/whoami", &demo).await;
        gw.get("/v1/whoami", &acme).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    gw.kill9_and_restart();
    tokio::time::sleep(Duration::from_secs(2)).await;
    receiver.up().await;
    assert_eq!(gw.delete(&path, &demo).await.status(), 200);

    let expected_demo = [
        "io.skyport.budget.threshold:0.03",
        "io.skyport.budget.threshold:0.05",
        "io.skyport.instance.lifecycle:run",
        "io.skyport.instance.lifecycle:stop",
        "io.skyport.instance.lifecycle:terminate",
    ];
    let demo_secret = secret(&demo_sub);
    for waited in 0.. {
        let got = types(&events_at(&receiver, "/demo", &demo_secret).0);
        if got == expected_demo {
            break;
        }
        if waited == 900 {
            let deliveries = gw
                .get_json(&format!("/v1/webhooks/{demo_id}/deliveries"), &demo)
                .await;
            panic!(
                "demo's events in 90 s: {got:?}\n{deliveries:#}\n{}",
                gw.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acme_secret = secret(&acme_sub);
    until(30, "acme's threshold", || {
        !events_at(&receiver, "/acme", &acme_secret).0.is_empty()
    })
    .await;
    let ops_secret = secret(&ops_sub);
    until(30, "the operators' thresholds", || {
        events_at(&receiver, "/ops", &ops_secret).0.len() == 3
    })
    .await;
    // Nothing more arrives: each threshold fired once, the kill repeated nothing that
    // deduplication would not catch.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (demo_events, _) = events_at(&receiver, "/demo", &demo_secret);
    assert_eq!(types(&demo_events), expected_demo);
    for event in demo_events.values() {
        assert_eq!(event["tenant"], "demo", "{event}");
        assert_eq!(event["source"], "/skyport");
    }
    let (acme_events, _) = events_at(&receiver, "/acme", &acme_secret);
    assert_eq!(
        types(&acme_events),
        ["io.skyport.budget.threshold:0.02"],
        "acme's subscription never gets demo's events"
    );
    let (ops_events, _) = events_at(&receiver, "/ops", &ops_secret);
    let tenants: BTreeSet<&str> = ops_events
        .values()
        .map(|e| e["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, BTreeSet::from(["acme", "demo"]));

    // What was delivered shows on the subscription; the stop's first attempts failed.
    let deliveries = gw
        .get_json(&format!("/v1/webhooks/{demo_id}/deliveries"), &demo)
        .await;
    let deliveries = deliveries["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 5, "{deliveries:#?}");
    assert!(
        deliveries.iter().all(|d| d["status"] == "delivered"),
        "{deliveries:#?}"
    );
    let stop = deliveries
        .iter()
        .find(|d| d["event"]["data"]["event"] == "stop")
        .unwrap();
    assert!(stop["attempts"].as_u64().unwrap() >= 2, "{stop}");
    expect_problem(
        gw.get(&format!("/v1/webhooks/{demo_id}/deliveries"), &acme)
            .await,
        404,
    )
    .await;
    let dead = gw
        .get_json("/admin/webhooks/deliveries?status=dead", &ops)
        .await;
    assert_eq!(dead["deliveries"], json!([]), "{dead}");
    expect_problem(gw.get("/admin/webhooks/deliveries", &demo).await, 403).await;

    // The providers' SLA counts the VM's ops: the API now, the CLI from storage once
    // the gateway has written its minutes (at the latest when it stops).
    let sla = gw.get_json("/admin/sla", &ops).await;
    let local = sla["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["provider"] == "local-vmm" && s["region"] == "local-1")
        .unwrap_or_else(|| panic!("{sla:#}"))
        .clone();
    // (Those before the SIGKILL, in a minute not yet written, went with the process.)
    assert!(local["calls"].as_u64().unwrap() >= 1, "{local}");
    assert_eq!(local["errors"], 0, "{local}");
    assert!(local["p99_ms"].as_u64().is_some(), "{local}");
    assert_eq!(sla["target"], "99.5", "{sla}");
    expect_problem(gw.get("/admin/sla?period=2026-13", &ops).await, 400).await;
    expect_problem(gw.get("/admin/sla", &demo).await, 403).await;

    // Unsubscribing stops deliveries.
    let deleted = gw.delete(&format!("/v1/webhooks/{demo_id}"), &demo).await;
    assert_eq!(deleted.status(), 200);
    assert!(gw.get_json("/v1/webhooks", &demo).await["webhooks"]
        .as_array()
        .unwrap()
        .is_empty());

    gw.signal(Signal::TERM);
    assert_eq!(gw.wait_exit(Duration::from_secs(30)), Some(0));
    let state_dir = gw.state_dir.to_string_lossy().into_owned();
    let config = gw.state_dir.join("skyport.toml");
    let (code, table) = run_cli(&[
        "sla",
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        &state_dir,
    ]);
    assert_eq!(code, 0, "{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with("local-vmm") && l.contains("local-1"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.ends_with("ok"), "{table}");
    let _ = std::fs::remove_dir_all(&dir);
}
