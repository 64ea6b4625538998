//! The console's instances page in Chromium with 1,000 instances (on the `ec2` provider,
//! in front of moto): first contentful paint, the time the table of 1,000 rows is drawn,
//! and the bytes transferred, each the median of several fresh loads, beside the same page
//! with no instances (the baseline, measured in the same run). Run by `bench/console.sh`
//! against release builds.

use std::time::Instant;

use serde_json::{json, Value};
use skyport_e2e::browser::Browser;
use skyport_e2e::ec2::Moto;
use skyport_e2e::{default_config, Gateway, GatewayOptions};

/// How many instances demo has (`SKYPORT_BENCH_INSTANCES`, 1,000 unless set).
fn instances() -> usize {
    std::env::var("SKYPORT_BENCH_INSTANCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}
const LOADS: usize = 9;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Loads the instances page `LOADS` times as `tenant` sees it: (FCP ms, drawn ms, bytes).
async fn measure(gw: &Gateway, browser: &Browser, tenant: &str, rows: usize) -> (f64, f64, f64) {
    browser.sign_in(gw, tenant, &[]).await;
    let caption = format!("{rows} of {rows} instances");
    let (mut fcp, mut drawn, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..=LOADS {
        browser
            .goto(&gw.url(&format!("/console/?load={i}#/instances")))
            .await;
        browser
            .wait_for_within(
                &format!(
                    "document.querySelector('caption')?.textContent === {}",
                    json!(caption)
                ),
                std::time::Duration::from_secs(60),
            )
            .await;
        let timing: Value = browser
            .eval(
                "{fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime, \
                  drawn: performance.getEntriesByName('skyport:instances-drawn')[0]?.startTime, \
                  bytes: [performance.getEntriesByType('navigation')[0], \
                          ...performance.getEntriesByType('resource')] \
                          .filter(e => !e.name.includes('/v1/') && !e.name.includes('/console/session')) \
                          .reduce((n, e) => n + e.transferSize, 0)}",
            )
            .await;
        if i == 0 {
            continue; // the first load fills the browser's cache and the gateway's
        }
        fcp.push(timing["fcp"].as_f64().unwrap());
        drawn.push(timing["drawn"].as_f64().unwrap());
        bytes.push(timing["bytes"].as_f64().unwrap());
    }
    (median(fcp), median(drawn), median(bytes))
}

/// The median time, in ms, of `LOADS` `GET /v1/instances?limit=1000` as `tenant`, as an
/// API client sees it (the page's own read, without the browser).
async fn api_listing(gw: &Gateway, tenant: &str, rows: usize) -> f64 {
    let token = gw.token(tenant, None, &[]);
    let client = gw.client();
    let mut times = Vec::new();
    for _ in 0..LOADS {
        let started = Instant::now();
        let r = client
            .get(gw.url("/v1/instances?limit=1000"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(body["instances"].as_array().unwrap().len(), rows);
    }
    median(times)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let moto = Moto::start();
    let config = default_config().replace(
        "requests_per_second = 100\nburst = 200",
        "requests_per_second = 5000\nburst = 5000",
    );
    assert!(
        config.contains("burst = 5000"),
        "demo's limits changed shape"
    );
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        extra: moto.provider_config("aws-us-east-1"),
    });
    let token = gw.token("demo", None, &[]);
    let started = Instant::now();
    let client = gw.client();
    // Four at a time: moto (one Python process) is the slow part, and a provider busier
    // than its health probe allows answers 503 for a while; those are sent again.
    let mut made = 0;
    let count = instances();
    while made < count {
        let batch: Vec<_> = (made..(made + 4).min(count))
            .map(|i| {
                client
                    .post(gw.url("/v1/instances"))
                    .bearer_auth(&token)
                    .json(&json!({
                        "image": "skyport-tiny", "instance_type": "sp.micro",
                        "region": "aws-us-east-1", "name": format!("bench-{i:04}"),
                        "tags": {"team": format!("t{}", i % 7)},
                        "client_token": format!("bench-{i}"),
                    }))
                    .send()
            })
            .collect();
        let mut all_made = true;
        for r in futures::future::join_all(batch).await {
            let r = r.unwrap();
            let status = r.status();
            let text = r.text().await.unwrap();
            assert!(status.is_success() || status == 503, "{status} {text}");
            all_made &= status.is_success();
        }
        if all_made {
            made = (made + 4).min(count);
        } else {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    }
    eprintln!(
        "console bench: {count} instances made in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let base_api = api_listing(&gw, "acme", 0).await;
    let api = api_listing(&gw, "demo", count).await;
    eprintln!(
        "console bench: GET /v1/instances {api:.0} ms with {count}, {base_api:.0} ms with none"
    );
    let browser = Browser::start(&gw).await;
    let (base_fcp, base_drawn, base_bytes) = measure(&gw, &browser, "acme", 0).await;
    let (fcp, drawn, bytes) = measure(&gw, &browser, "demo", count).await;
    println!("console instances page, median of {LOADS} loads (Chromium, loopback):");
    println!(
        "  {count} instances: first contentful paint {fcp:.0} ms, table drawn {drawn:.0} ms, console files {bytes:.0} bytes transferred"
    );
    println!(
        "  0 instances (baseline): first contentful paint {base_fcp:.0} ms, table drawn {base_drawn:.0} ms, console files {base_bytes:.0} bytes"
    );
    println!(
        "  GET /v1/instances?limit=1000 (the page's read): {api:.0} ms with {count}, {base_api:.0} ms with none"
    );
    println!(
        "  ratios: first contentful paint {:.2}x, table drawn {:.2}x",
        fcp / base_fcp,
        drawn / base_drawn
    );
    browser.stop().await;
}
