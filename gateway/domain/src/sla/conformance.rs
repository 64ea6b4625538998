//! The conformance suite every [`SlaStore`] passes.

use super::{MinuteSample, SlaStore};

fn sample(provider: &str, minute: &str, replica: &str, calls: u64) -> MinuteSample {
    let mut s = MinuteSample::new(provider, "local-1", minute.into(), replica);
    s.calls = calls;
    s.errors = 1;
    s.probes = 2;
    s.unhealthy_probes = 1;
    s.latency[3] = calls;
    s
}

/// Runs every check against `store`, which must be empty.
pub async fn run(store: &dyn SlaStore) {
    let a = sample("local-vmm", "2026-11-30T23:59:00.000Z", "r1", 3);
    let b = sample("local-vmm", "2026-12-01T00:00:00.000Z", "r1", 4);
    let c = sample("local-vmm", "2026-12-01T00:00:00.000Z", "r2", 5);
    let d = sample("ec2", "2026-12-31T23:59:00.000Z", "r1", 6);
    let e = sample("ec2", "2027-01-01T00:00:00.000Z", "r1", 7);
    store.insert(&[a.clone(), b.clone()]).await.unwrap();
    store
        .insert(&[c.clone(), d.clone(), e.clone()])
        .await
        .unwrap();
    store.insert(&[]).await.unwrap();
    let mut december = store
        .between("2026-12-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z")
        .await
        .unwrap();
    december.sort_by(|x, y| (&x.minute, &x.replica).cmp(&(&y.minute, &y.replica)));
    assert_eq!(
        december,
        [b, c, d],
        "every replica's minute, whole, in the month"
    );
    assert!(store
        .between("2025-01-01T00:00:00.000Z", "2025-02-01T00:00:00.000Z")
        .await
        .unwrap()
        .is_empty());
}
