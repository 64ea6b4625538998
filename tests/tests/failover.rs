//! A replica killed in the middle of a burst: two replicas share PostgreSQL (stores and
//! the metering ledger) in front of one remote cloud (moto); replica A is killed with
//! SIGKILL while creates and reads are in flight, the client retries through B with the
//! same idempotency keys, then A restarts.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde_json::{json, Value};
use skyport_e2e::ec2::{access_key, scenario, Moto};
use skyport_e2e::replicas::{bill_of, bills_path, storage, with_shared_ledger};
use skyport_e2e::{Gateway, GatewayOptions};
use skyport_store_postgres::testkit::PostgresServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_burst_loses_nothing_acknowledged_and_makes_nothing_twice() {
    let server = PostgresServer::start().unwrap();
    let url = server.create_database("skyport").await.unwrap();
    let moto = Moto::start();
    let config = with_shared_ledger(&skyport_e2e::default_config(), &server, &url);
    let options = || GatewayOptions {
        config: Some(config.clone()),
        extra: format!(
            "{}{}",
            storage(&server, &url),
            moto.provider_config("aws-us-east-1")
        ),
    };
    let mut a = Gateway::start_with(options());
    let b = Gateway::start_replica(&a, options());
    let key = access_key(&a, "demo").await;

    // Ten RunInstances, each with its own ClientToken, and ten DescribeInstances through
    // A; A is killed once it has answered three creates. The scenario retries every
    // token through B and checks that each ends as one instance, the same through either
    // replica, with one VM in the cloud.
    let said = scenario(
        &a,
        "failover",
        json!({"key": key, "region": "aws-us-east-1", "pid": a.pid(), "creates": 10,
               "kill_after": 3, "other_endpoint": format!("https://{}", b.api),
               "moto": moto.endpoint}),
    );
    let outcome: Value = serde_json::from_str(said.lines().last().unwrap()).unwrap();
    let instances: Vec<String> = outcome["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    assert_eq!(instances.len(), 10, "{said}");
    assert!(outcome["retried"].as_u64().unwrap() >= 1, "{said}");

    // A restarts; every instance is terminated through it.
    a.kill9_and_restart();
    let demo = a.token("demo", None, &[]);
    for id in &instances {
        let path = format!("/v1/instances/{id}");
        assert_eq!(a.delete(&path, &demo).await.status(), 200, "{}", b.log());
    }

    // The ledger: each instance ran once and was terminated once, whichever replica
    // created, resumed or ended it.
    let operator = a.token("acme", None, &["admin"]);
    let events = a
        .post_json(
            "/admin/plugins/metering/ops/ledger.events",
            &operator,
            Some(json!({"tenant": "demo", "limit": 100000})),
        )
        .await["result"]
        .clone();
    let mut lifecycle: BTreeMap<(String, String), usize> = BTreeMap::new();
    for event in events.as_array().unwrap() {
        if event["type"] == "instance.lifecycle" {
            let attributes = &event["attributes"];
            let key = (
                attributes["instance_id"].as_str().unwrap().to_string(),
                attributes["event"].as_str().unwrap().to_string(),
            );
            *lifecycle.entry(key).or_default() += 1;
        }
    }
    for id in &instances {
        for event in ["run", "terminate"] {
            let count = lifecycle.get(&(id.clone(), event.to_string()));
            assert_eq!(count, Some(&1), "{id} {event}: {lifecycle:?}");
        }
    }
    assert_eq!(lifecycle.len(), 20, "{lifecycle:?}");

    // The bill is the same document through either replica (demo is quiet now: wait
    // until its last requests are in the ledger).
    let bills_path = bills_path();
    let mut last = Value::Null;
    for _ in 0..50 {
        let (_, bill) = bill_of(&a.get_json(&bills_path, &operator).await, "demo");
        if bill == last {
            break;
        }
        last = bill;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (_, from_b) = bill_of(&b.get_json(&bills_path, &operator).await, "demo");
    assert!(last["total"].is_string(), "{last}");
    assert_eq!(last.to_string(), from_b.to_string());
}
