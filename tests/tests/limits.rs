//! Per-tenant rate limits, the per-tenant read cache and HTTP-level limits.
#![forbid(unsafe_code)]

use std::time::Duration;

use skyport_e2e::{default_config, expect_problem, Gateway, GatewayOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn small_burst_config() -> String {
    default_config()
        .replace(
            "requests_per_second = 100\nburst = 200",
            "requests_per_second = 1\nburst = 5",
        )
        .replace(
            "header_read_timeout_secs = 10",
            "header_read_timeout_secs = 2",
        )
}

#[tokio::test]
async fn burst_exhaustion_is_429_with_retry_after_while_another_tenant_is_unaffected() {
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(small_burst_config()),
        ..Default::default()
    });
    let client = gw.client();
    let demo = gw.token("demo", None, &[]);
    for i in 0..5 {
        let r = client
            .get(gw.url("/v1/whoami"))
            .bearer_auth(&demo)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i} is within the burst");
        assert_eq!(r.headers()["ratelimit-limit"], "5");
    }
    let refused = client
        .get(gw.url("/v1/whoami"))
        .bearer_auth(&demo)
        .send()
        .await
        .unwrap();
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    assert_eq!(refused.headers()["ratelimit-limit"], "5");
    assert!(refused.headers().contains_key("ratelimit-reset"));
    let body = expect_problem(refused, 429).await;
    assert!(body["detail"].as_str().unwrap().contains("demo"));

    let acme = gw.token("acme", None, &[]);
    let r = client
        .get(gw.url("/v1/whoami"))
        .bearer_auth(&acme)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "acme has its own bucket");

    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("skyport_rate_limited_total{tenant=\"demo\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn one_tenants_cached_response_is_never_served_to_another() {
    let gw = Gateway::start();
    let client = gw.client();
    let get = |token: String| {
        let request = client.get(gw.url("/v1/regions")).bearer_auth(token);
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["x-skyport-cache"].to_str().unwrap().to_string()
        }
    };
    assert_eq!(get(gw.token("demo", None, &[])).await, "miss");
    assert_eq!(get(gw.token("demo", None, &[])).await, "hit");
    assert_eq!(
        get(gw.token("acme", None, &[])).await,
        "miss",
        "acme must not hit demo's entry"
    );
    assert_eq!(get(gw.token("acme", None, &[])).await, "hit");
    // A department-scoped token of demo has its own entries too.
    assert_eq!(get(gw.token("demo", Some("finance"), &[])).await, "miss");
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("skyport_cache_lookups_total{result=\"hit\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn client_sent_cache_header_cannot_fake_a_hit() {
    let gw = Gateway::start();
    let r = gw
        .client()
        .get(gw.url("/v1/regions"))
        .bearer_auth(gw.token("demo", None, &[]))
        .header("x-skyport-cache", "hit")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-skyport-cache"], "miss");
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let gw = Gateway::start();
    let client = reqwest::Client::builder()
        .http1_only()
        .tls_certs_only([reqwest::Certificate::from_pem(
            &std::fs::read(gw.cert_path("ca.pem")).unwrap(),
        )
        .unwrap()])
        .build()
        .unwrap();
    let big = "x".repeat(40 * 1024);
    let r = client
        .get(gw.url("/v1/whoami"))
        .header("x-padding", big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
}

#[tokio::test]
async fn headers_not_finished_in_time_close_the_connection() {
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(small_burst_config()),
        ..Default::default()
    });
    let mut tls = gw.tls_connect(None).await;
    tls.write_all(b"GET /v1/whoami HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let mut buf = Vec::new();
    // header_read_timeout_secs = 2 in this config: the gateway must close well within 10 s.
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 10 s");
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("200 OK"), "{text}");
}
