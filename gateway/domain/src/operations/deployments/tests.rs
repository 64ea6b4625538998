//! Deployments over fake providers, in-memory stores and a manual clock.

use super::*;
use crate::testkit::{caller, CreateAnswer, World};

fn web_dr() -> OrderRequest {
    OrderRequest {
        offering: "web-dr".into(),
        preferences: Default::default(),
        department: None,
        image_regions: None,
    }
}

#[tokio::test]
async fn every_resource_is_placed_apart_created_and_stored_for_its_tenant() {
    let world = World::new().await;
    let demo = caller("demo", None);
    let spec = DeploymentSpec {
        name: Some("shop".into()),
        tags: Default::default(),
    };
    let (deployment, decisions) = world
        .deployments
        .create(&demo, "req-1", &web_dr(), spec)
        .await
        .unwrap();
    assert_eq!(deployment.resources.len(), 2);
    assert_ne!(decisions[0].region, decisions[1].region);
    assert_eq!(deployment.created_at, "2026-11-23T11:39:01.000Z");
    let view = world
        .deployments
        .get(&demo, "req-2", &deployment.id)
        .await
        .unwrap();
    assert_eq!(view["resources"][0]["state"], "running");
    assert_eq!(view["resources"][1]["state"], "running");
    let names: Vec<_> = world
        .instances
        .records(&demo)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.name)
        .collect();
    assert!(names.contains(&"shop-primary".to_string()), "{names:?}");
    let acme = caller("acme", None);
    assert!(world
        .deployments
        .get(&acme, "req-3", &deployment.id)
        .await
        .is_err());
    assert!(world
        .deployments
        .list(&acme, "req-4")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_failure_part_way_terminates_what_was_created_and_says_so() {
    let world = World::new().await;
    // The primary goes to ec2 (cheaper), the standby to local-vmm, which now refuses.
    *world.local_creates.lock().unwrap() = CreateAnswer::Fails;
    let demo = caller("demo", None);
    let failed = world
        .deployments
        .create(&demo, "req-1", &web_dr(), DeploymentSpec::default())
        .await
        .unwrap_err();
    assert!(
        failed.public.contains("resource 'standby'"),
        "{}",
        failed.public
    );
    assert!(
        failed.public.contains("rolled back: terminated i-"),
        "{}",
        failed.public
    );
    let left: Vec<String> = world.ec2_vms.lock().unwrap().values().cloned().collect();
    assert_eq!(left, ["terminated"]);
    assert!(world
        .deployments
        .list(&demo, "req-2")
        .await
        .unwrap()
        .is_empty());
}
