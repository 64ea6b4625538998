//! A plugin host on another port (`skyport plugin-host --serve`, mutual TLS) serving
//! `local-vmm` to two replicas that share PostgreSQL: a VM made through one is seen
//! through the other; when the host dies both fail fast and make nothing, and they
//! serve again once it is back.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skyport_e2e::plugin_host::PluginHost;
use skyport_e2e::replicas::storage;
use skyport_e2e::{assert_guest_image_prepared, Gateway, GatewayOptions};
use skyport_store_postgres::testkit::PostgresServer;

/// `local-vmm`'s health as `gw` reports it.
async fn vmm_health(gw: &Gateway, token: &str) -> Value {
    let providers = gw.get_json("/v1/providers", token).await;
    providers["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "local-vmm")
        .map(|p| p["health"].clone())
        .unwrap_or(Value::Null)
}

/// Waits (up to 20 s) until `gw` reports `local-vmm` healthy or not, as `healthy` says.
async fn wait_health(gw: &Gateway, token: &str, healthy: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health = vmm_health(gw, token).await;
        if health["healthy"] == healthy || Instant::now() > deadline {
            return health;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_host_serves_both_replicas_and_its_loss_fails_fast_making_nothing() {
    assert_guest_image_prepared();
    let server = PostgresServer::start().unwrap();
    let url = server.create_database("skyport").await.unwrap();
    let mut host = PluginHost::start_local_vmm();
    let config = host.gateway_config(&skyport_e2e::default_config());
    let options = || GatewayOptions {
        config: Some(config.clone()),
        extra: storage(&server, &url),
    };
    let a = Gateway::start_with(options());
    let b = Gateway::start_replica(&a, options());
    let token = a.token("demo", None, &[]);
    let admin = a.token("demo", None, &["admin"]);

    // A VM the host runs, made through A, is running through B.
    let created = a.create_running(&token, "sp.micro").await;
    let path = format!("/v1/instances/{}", created["id"].as_str().unwrap());
    let seen = b.get_json(&path, &token).await;
    assert_eq!(seen["state"], "running", "{seen}");

    // The host dies: both replicas report local-vmm unhealthy, naming its host, and a
    // create fails fast (503) and leaves no record.
    host.kill();
    for gw in [&a, &b] {
        let health = wait_health(gw, &admin, false).await;
        assert_eq!(health["healthy"], false, "{health}\n{}", gw.log());
        let reason = health["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(&host.address), "{reason}");
    }
    let started = Instant::now();
    let refused = b
        .post(
            "/v1/instances",
            &token,
            Some(json!({"image": "skyport-tiny", "instance_type": "sp.micro"})),
        )
        .await;
    assert_eq!(refused.status(), 503, "{}", refused.text().await.unwrap());
    assert!(started.elapsed() < Duration::from_secs(5), "fail fast");

    // The host is back: both replicas reconnect, and only the first VM was ever made.
    host.resume();
    for gw in [&a, &b] {
        let health = wait_health(gw, &admin, true).await;
        assert_eq!(health["healthy"], true, "{health}\n{}", host.log());
    }
    let listed = a.get_json("/v1/instances", &token).await;
    let ids: Vec<&str> = listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [created["id"].as_str().unwrap()], "{listed}");
    assert_eq!(b.delete(&path, &token).await.status(), 200);
}
