//! Placement over fake providers (`ec2` is cheaper than `local-vmm` on the fake rate card),
//! in-memory stores and a manual clock.

use skyport_core::error::ErrorKind;

use super::*;
use crate::testkit::{caller, World};

fn raw(preferences: &[(&str, &str)]) -> OrderRequest {
    OrderRequest {
        offering: RAW.into(),
        preferences: preferences
            .iter()
            .map(|(k, v)| (k.to_string(), ParamValue::Text(v.to_string())))
            .collect(),
        department: None,
        image_regions: None,
    }
}

const IMAGE: (&str, &str) = ("image", "skyport-tiny");
const MICRO: (&str, &str) = ("instance_type", "sp.micro");

#[tokio::test]
async fn the_cheapest_provider_wins_and_the_decision_is_recorded() {
    let world = World::new().await;
    let demo = caller("demo", None);
    let (id, decision) = world
        .placement
        .place(&demo, "req-1", &raw(&[IMAGE, MICRO]))
        .await
        .unwrap();
    assert_eq!(
        (decision.provider.as_str(), decision.region.as_str()),
        ("ec2", "aws-us-east-1")
    );
    assert_eq!(decision.currency.as_deref(), Some("EUR"));
    let loser = decision
        .candidates
        .iter()
        .find(|c| c.provider == "local-vmm")
        .unwrap();
    assert!(loser.lost.is_some());
    let record = world.placement.audit_record(&id).await.unwrap();
    assert_eq!(record["mode"], "create");
    assert_eq!(record["tenant"], "demo");
    assert_eq!(record["created_at"], "2026-11-23T11:39:01.000Z");
}

#[tokio::test]
async fn a_region_preference_binds_and_an_unknown_region_is_refused() {
    let world = World::new().await;
    let demo = caller("demo", None);
    let (_, local) = world
        .placement
        .place(&demo, "req-1", &raw(&[IMAGE, MICRO, ("region", "local-1")]))
        .await
        .unwrap();
    assert_eq!(local.provider, "local-vmm");
    let unknown = world
        .placement
        .decide(&demo, "req-2", &raw(&[IMAGE, MICRO, ("region", "mars-1")]))
        .await
        .unwrap_err();
    assert_eq!(unknown.kind, ErrorKind::InvalidInput);
    assert!(unknown.public.contains("local-1"), "{}", unknown.public);
}

#[tokio::test]
async fn an_unhealthy_provider_loses_with_its_reason_and_alone_it_is_a_503() {
    let world = World::new().await;
    let demo = caller("demo", None);
    world.plugins.set_health("ec2", false, Some("maintenance"));
    let decisions = world
        .placement
        .decide(&demo, "req-1", &raw(&[IMAGE, MICRO]))
        .await
        .unwrap();
    assert_eq!(decisions[0].provider, "local-vmm");
    let ec2 = decisions[0]
        .candidates
        .iter()
        .find(|c| c.provider == "ec2")
        .unwrap();
    assert!(ec2.lost.as_deref().unwrap().contains("maintenance"));
    world.plugins.set_health("local-vmm", false, None);
    let none = world
        .placement
        .decide(&demo, "req-2", &raw(&[IMAGE, MICRO]))
        .await
        .unwrap_err();
    assert_eq!(none.kind, ErrorKind::Unavailable);
}

#[tokio::test]
async fn an_explanation_records_every_decision_and_creates_nothing() {
    let world = World::new().await;
    let demo = caller("demo", None);
    let order = OrderRequest {
        offering: "web-dr".into(),
        ..raw(&[])
    };
    let explained = world
        .placement
        .explain(&demo, "req-1", &order)
        .await
        .unwrap();
    assert_eq!(explained.len(), 2);
    assert_ne!(
        explained[0].1.region, explained[1].1.region,
        "separated by region"
    );
    assert_eq!(world.audit.entries().len(), 2);
    assert!(world
        .audit
        .entries()
        .iter()
        .all(|e| e.mode == Mode::Explain));
    assert!(world.plugins.calls_of("instance.create@1").is_empty());
    let one = world
        .placement
        .decide_one(&demo, "req-2", &order)
        .await
        .unwrap_err();
    assert!(
        one.public.contains("POST /v1/deployments"),
        "{}",
        one.public
    );
}

#[tokio::test]
async fn a_plan_decides_what_its_tenants_may_order() {
    let world = World::with_config(|c| {
        c.replace(
            "offerings = [\"dev-vm\", \"prod-vm\", \"web-dr\"]",
            "offerings = [\"dev-vm\"]\nregions = [\"local-1\"]\nraw = false",
        )
    })
    .await;
    let demo = caller("demo", None);
    let prod = OrderRequest {
        offering: "prod-vm".into(),
        ..raw(&[])
    };
    let refused = world
        .placement
        .decide(&demo, "req-1", &prod)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Forbidden);
    let raw_refused = world
        .placement
        .decide(&demo, "req-2", &raw(&[IMAGE, MICRO]))
        .await;
    assert_eq!(raw_refused.unwrap_err().kind, ErrorKind::Forbidden);
    let dev = OrderRequest {
        offering: "dev-vm".into(),
        ..raw(&[])
    };
    let decided = world
        .placement
        .decide_one(&demo, "req-3", &dev)
        .await
        .unwrap();
    assert_eq!(
        decided.region, "local-1",
        "the plan's only region, though dearer"
    );
}

#[tokio::test]
async fn a_provider_missing_an_op_of_the_contract_is_never_a_candidate() {
    let world = World::new().await;
    // The cheaper provider stops listing instance.create@1.
    world.plugins.withdraw_op("ec2", "instance.create@1");
    let demo = caller("demo", None);
    let (_, decision) = world
        .placement
        .place(&demo, "req-1", &raw(&[IMAGE, MICRO]))
        .await
        .unwrap();
    assert_eq!(decision.provider, "local-vmm");
    assert!(decision.candidates.iter().all(|c| c.provider != "ec2"));
}
