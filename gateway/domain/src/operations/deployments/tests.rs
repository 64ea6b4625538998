//! Deployments over fake providers, in-memory stores and a manual clock.

use super::*;
use crate::testkit::{caller, CreateAnswer, World};
use skyport_core::clock::Clock;

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

#[tokio::test]
async fn a_deployment_its_gateway_abandoned_is_found_and_undone() {
    let world = World::new().await;
    let demo = caller("demo", None);
    // The gateway died after its journal and the primary's create, before the standby.
    let id = "d-00000000000000042";
    let made = world
        .instances
        .create(
            &demo,
            "req-1",
            CreateSpec {
                image: "skyport-tiny".into(),
                instance_type: crate::catalog::instance_type("sp.micro").unwrap(),
                provider: "ec2".into(),
                region: "aws-us-east-1".into(),
                name: None,
                tags: Map::new(),
                department: None,
                key_name: None,
                client_token: Some(resource_token(id, "primary")),
                first_boot: Default::default(),
                lease: None,
                offering: None,
            },
        )
        .await
        .unwrap();
    let journal = Deployment {
        id: id.into(),
        tenant: "demo".into(),
        department: None,
        offering: "web-dr".into(),
        created_at: rfc3339_millis(world.clock.wall()),
        resources: Vec::new(),
        status: DeploymentStatus::Creating,
        planned: vec!["primary".into(), "standby".into()],
    };
    world.deployment_store.insert(&journal).await.unwrap();
    // Still in flight (not before the cutoff): left alone.
    let now = world.clock.wall();
    assert!(world
        .deployments
        .recover_abandoned(now)
        .await
        .unwrap()
        .is_empty());
    let later = now + std::time::Duration::from_secs(1);
    assert_eq!(
        world.deployments.recover_abandoned(later).await.unwrap(),
        [id]
    );
    let after = world.instances.get(&demo, "req-2", &made.id).await.unwrap();
    assert_eq!(after.state, "terminated");
    assert!(world
        .deployments
        .list(&demo, "req-3")
        .await
        .unwrap()
        .is_empty());
    // Taken once: nothing is left for another recovery.
    assert!(world
        .deployments
        .recover_abandoned(later)
        .await
        .unwrap()
        .is_empty());
}
