//! Reports from samples, and the recorder over a manual clock.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use skyport_core::clock::ManualClock;

use super::memory::MemorySla;
use super::*;

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn minute(n: u64) -> String {
    skyport_core::ids::rfc3339_millis(
        std::time::UNIX_EPOCH + Duration::from_secs(1_796_083_200 + n * 60),
    )
}

#[test]
fn availability_counts_minutes_across_replicas_and_latency_takes_bucket_bounds() {
    let mut samples = Vec::new();
    // 10 minutes; replica r1 probes each; minute 3 had an unhealthy probe on r2 only,
    // minute 7 failed every call (on both replicas), minute 8 failed one call of two.
    for n in 0..10 {
        let mut s = MinuteSample::new("ec2", "us-east", minute(n), "r1");
        s.probes = 1;
        s.calls = 1;
        s.latency[6] = 1; // <= 100 ms
        if n == 7 {
            s.errors = 1;
        }
        samples.push(s);
    }
    let mut r2 = MinuteSample::new("ec2", "us-east", minute(3), "r2");
    r2.probes = 1;
    r2.unhealthy_probes = 1;
    samples.push(r2);
    let mut r2 = MinuteSample::new("ec2", "us-east", minute(7), "r2");
    r2.calls = 2;
    r2.errors = 2;
    r2.latency[15] = 2; // <= 60 s
    samples.push(r2);
    let mut r2 = MinuteSample::new("ec2", "us-east", minute(8), "r2");
    r2.calls = 1;
    r2.errors = 1;
    r2.latency[16] = 1; // beyond the last bound
    samples.push(r2);
    samples.push(MinuteSample::new("local-vmm", "local-1", minute(0), "r1"));

    // A 1,000-minute month at 99.5% allows 5 unavailable minutes: 2 are not a breach.
    let report = report("2026-12", &samples, dec("99.5"), 1_000);
    assert_eq!(report.sites.len(), 2);
    let ec2 = &report.sites[0];
    assert_eq!(
        (ec2.provider.as_str(), ec2.region.as_str()),
        ("ec2", "us-east")
    );
    assert_eq!((ec2.minutes_observed, ec2.minutes_available), (10, 8));
    assert_eq!(ec2.availability, Some(dec("80")));
    assert_eq!(ec2.allowed_unavailable_minutes, 5);
    assert!(!ec2.breached, "the month can still meet its target");
    let tight = super::report("2026-12", &samples, dec("99.9"), 1_000);
    assert!(tight.sites[0].breached, "1 minute allowed, 2 unavailable");
    assert_eq!((ec2.calls, ec2.errors), (13, 4));
    assert_eq!(ec2.error_rate, Some(dec("30.769")));
    assert_eq!(ec2.p50_ms, Some(100));
    assert_eq!(ec2.p99_ms, Some(60_000));
    let local = &report.sites[1];
    assert_eq!(local.availability, Some(dec("100")));
    assert!(!local.breached);
    assert_eq!((local.error_rate, local.p50_ms), (None, None));
}

#[tokio::test]
async fn the_recorder_writes_each_minute_once_it_has_passed() {
    let clock = ManualClock::at_unix(1_796_083_200 + 30);
    let store = Arc::new(MemorySla::default());
    let recorder = SlaRecorder::new(store.clone(), "r1".into(), clock.clone());
    recorder.record_call("ec2", "us-east", false, Duration::from_millis(40));
    recorder.record_call("ec2", "us-east", true, Duration::from_millis(4000));
    recorder.record_probe("ec2", "us-east", true);
    assert_eq!(
        recorder.flush(false).await.unwrap(),
        0,
        "the minute is not over"
    );
    clock.advance(Duration::from_secs(30));
    recorder.record_probe("ec2", "us-east", false);
    assert_eq!(recorder.flush(false).await.unwrap(), 1);
    let written = store.between(&minute(0), &minute(2)).await.unwrap();
    assert_eq!(written.len(), 1);
    let first = &written[0];
    assert_eq!((first.calls, first.errors, first.probes), (2, 1, 1));
    assert_eq!(first.latency[5], 1, "40 ms is in the 50 ms bucket");
    assert_eq!(first.latency[11], 1, "4 s is in the 5 s bucket");
    assert_eq!(recorder.pending().len(), 1, "the next minute is still open");
    assert_eq!(recorder.flush(true).await.unwrap(), 1);
    assert!(recorder.pending().is_empty());
}

#[tokio::test]
async fn a_breach_is_published_once_per_site_and_month() {
    use crate::events::memory::MemoryEvents;
    use crate::events::{DeliveryQuery, EventService, EventStore, NewSubscription};
    use skyport_core::tenancy::{IdentitySource, TenantContext};

    let clock = ManualClock::at_unix(1_796_083_200 + 30);
    let recorder = Arc::new(SlaRecorder::new(
        Arc::new(MemorySla::default()),
        "r1".into(),
        clock.clone(),
    ));
    // 99.999% of December's 44,640 minutes allows none unavailable.
    let sla = SlaService::new(Arc::clone(&recorder), dec("99.999"), clock.clone());
    let store = Arc::new(MemoryEvents::default());
    let events = EventService::new(store.clone(), clock.clone());
    let ops = TenantContext {
        tenant: "ops".into(),
        department: None,
        roles: vec!["admin".into()],
        subject: "oncall".into(),
        source: IdentitySource::Jwt,
        operator: true,
    };
    events
        .subscribe(
            &ops,
            true,
            NewSubscription {
                url: "https://pager.example/sla".into(),
                events: vec!["sla.breach".into()],
                description: None,
            },
        )
        .await
        .unwrap();
    recorder.record_probe("ec2", "us-east", true);
    assert_eq!(sla.announce_breaches(&events).await.unwrap(), 0);
    clock.advance(Duration::from_secs(60));
    recorder.record_probe("ec2", "us-east", false);
    assert_eq!(sla.announce_breaches(&events).await.unwrap(), 1);
    assert_eq!(sla.announce_breaches(&events).await.unwrap(), 0, "once");
    let sent = store
        .deliveries(&DeliveryQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sent.len(), 1);
    let event: serde_json::Value = serde_json::from_str(&sent[0].payload).unwrap();
    assert_eq!(event["type"], "io.skyport.sla.breach");
    assert_eq!(event["data"]["site"]["availability"], "50");
    assert!(sla.report(Some("2026-13")).await.is_err());
}

#[tokio::test]
async fn the_memory_store_passes_the_conformance_suite() {
    conformance::run(&MemorySla::default()).await;
}
