//! The native door through the real stack, over the domain's test world: routing before
//! authentication, identity, tenancy, admin checks, the read cache, rate limits and the
//! instance lifecycle, as a client sees them.

use std::time::Duration;

use serde_json::json;

use crate::testkit::TestGateway;

const DEMO: Option<(&str, &str)> = Some(("demo", "billing"));
const ACME: Option<(&str, &str)> = Some(("acme", "billing"));

#[tokio::test]
async fn unknown_paths_and_methods_are_refused_before_anyone_is_authenticated() {
    let gw = TestGateway::new().await;
    let missing = gw.native("GET", "/v9/nothing", None, None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("content-type"),
        Some("application/problem+json")
    );
    let wrong = gw.native("DELETE", "/v1/whoami", None, None).await;
    assert_eq!(wrong.status, 405);
    let anonymous = gw.native("GET", "/v1/whoami", None, None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    assert!(anonymous.header("x-request-id").is_some());
}

#[tokio::test]
async fn a_verified_identity_is_the_only_one_that_counts() {
    let gw = TestGateway::new().await;
    let me = gw.native("GET", "/v1/whoami", DEMO, None).await;
    assert_eq!(me.status, 200);
    let body = me.json();
    assert_eq!(
        (body["tenant"].as_str(), body["identity_source"].as_str()),
        (Some("demo"), Some("mtls"))
    );
    let unknown = gw
        .native("GET", "/v1/whoami", Some(("nobody", "svc")), None)
        .await;
    assert_eq!(unknown.status, 403);
}

#[tokio::test]
async fn admin_routes_need_the_admin_role() {
    let gw = TestGateway::new().await;
    assert_eq!(
        gw.native("GET", "/admin/tenants", DEMO, None).await.status,
        403
    );
    let admin = gw
        .native(
            "GET",
            "/admin/tenants",
            Some(("demo", "skyport-admin")),
            None,
        )
        .await;
    assert_eq!(admin.status, 200, "{}", admin.body);
    assert!(admin.json()["tenants"].as_array().unwrap().len() >= 2);
}

#[tokio::test]
async fn a_cached_read_is_per_tenant_and_a_write_makes_it_stale() {
    let gw = TestGateway::new().await;
    let first = gw.native("GET", "/v1/regions", DEMO, None).await;
    assert_eq!(
        (first.status, first.header("x-skyport-cache")),
        (200, Some("miss"))
    );
    let again = gw.native("GET", "/v1/regions", DEMO, None).await;
    assert_eq!(again.header("x-skyport-cache"), Some("hit"));
    assert_eq!(again.body, first.body);
    let other = gw.native("GET", "/v1/regions", ACME, None).await;
    assert_eq!(
        other.header("x-skyport-cache"),
        Some("miss"),
        "never another tenant's"
    );
    let created = gw
        .native(
            "POST",
            "/v1/instances",
            DEMO,
            Some(json!({"image": "skyport-tiny", "instance_type": "sp.micro"})),
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    let after = gw.native("GET", "/v1/regions", DEMO, None).await;
    assert_eq!(
        after.header("x-skyport-cache"),
        Some("miss"),
        "the write bumped demo's generation"
    );
    gw.world.clock.advance(Duration::from_secs(11));
    let expired = gw.native("GET", "/v1/regions", ACME, None).await;
    assert_eq!(
        expired.header("x-skyport-cache"),
        Some("miss"),
        "its 10 s TTL passed on the clock"
    );
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_with_when_to_retry_and_others_do_not() {
    let gw = TestGateway::with_config(|c| {
        c.replace(
            "requests_per_second = 100\nburst = 200",
            "requests_per_second = 1\nburst = 2",
        )
    })
    .await;
    for _ in 0..2 {
        assert_eq!(gw.native("GET", "/v1/whoami", DEMO, None).await.status, 200);
    }
    let refused = gw.native("GET", "/v1/whoami", DEMO, None).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    assert_eq!(gw.native("GET", "/v1/whoami", ACME, None).await.status, 200);
    gw.world.clock.advance(Duration::from_secs(1));
    assert_eq!(gw.native("GET", "/v1/whoami", DEMO, None).await.status, 200);
}

#[tokio::test]
async fn an_instance_is_created_shown_to_its_tenant_only_and_terminated() {
    let gw = TestGateway::new().await;
    let created = gw
        .native(
            "POST",
            "/v1/instances",
            DEMO,
            Some(json!({"offering": "dev-vm", "name": "web"})),
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    let body = created.json();
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(body["placement"]["offering"], "dev-vm");
    assert!(
        body.get("remote_id").is_none(),
        "remote ids never leave the inventory"
    );
    let mine = gw
        .native("GET", &format!("/v1/instances/{id}"), DEMO, None)
        .await;
    assert_eq!(
        (mine.status, mine.json()["name"].as_str()),
        (200, Some("web"))
    );
    let theirs = gw
        .native("GET", &format!("/v1/instances/{id}"), ACME, None)
        .await;
    assert_eq!(theirs.status, 404);
    let bad = gw.native("GET", "/v1/instances/i-123", DEMO, None).await;
    assert_eq!(bad.status, 400);
    let listed = gw.native("GET", "/v1/instances", ACME, None).await;
    assert_eq!(listed.json()["instances"], json!([]));
    let gone = gw
        .native("DELETE", &format!("/v1/instances/{id}"), DEMO, None)
        .await;
    assert_eq!(
        (gone.status, gone.json()["state"].as_str()),
        (200, Some("terminated"))
    );
    let again = gw
        .native("POST", &format!("/v1/instances/{id}/start"), DEMO, None)
        .await;
    assert_eq!(again.status, 409);
}

#[tokio::test]
async fn bad_bodies_and_queries_are_400_problems_naming_what_is_wrong() {
    let gw = TestGateway::new().await;
    let not_json = gw
        .native("POST", "/v1/instances", DEMO, Some(json!("a string")))
        .await;
    assert_eq!(not_json.status, 400);
    assert!(not_json.json()["detail"]
        .as_str()
        .unwrap()
        .starts_with("invalid instance request"));
    let unknown = gw
        .native("GET", "/v1/instances?colour=red", DEMO, None)
        .await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.body.contains("colour"));
}
