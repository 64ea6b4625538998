//! Instance leases over the fake world: granted at the create, warned, expired (the
//! instance stopped or terminated), extended within the plan's limit.

use std::time::Duration;

use skyport_core::config::{LeaseAction, LeaseTerms};
use skyport_core::error::ErrorKind;

use super::tests::spec;
use super::*;
use crate::testkit::{caller, World};

fn leased(duration_secs: u64, on_expiry: LeaseAction) -> CreateSpec {
    CreateSpec {
        lease: Some(LeaseTerms {
            duration_secs,
            on_expiry,
            warn_before_secs: None,
        }),
        ..spec("local-vmm", "local-1")
    }
}

async fn world() -> World {
    World::with_config(|c| c.replace("[plans.standard]", "[plans.standard]\nmax_lease_secs = 300"))
        .await
}

/// The lease of demo's instance `created`.
async fn lease_now(
    world: &World,
    created: &InstanceRecord,
) -> crate::instance_leases::InstanceLease {
    world
        .instances
        .lease_of(&caller("demo", None), &created.id)
        .await
        .unwrap()
        .unwrap()
}

/// A world whose plan allows 300 s leases, and demo's instance on a 100 s lease.
async fn leased_instance(on_expiry: LeaseAction) -> (World, TenantContext, InstanceRecord) {
    let world = world().await;
    let demo = caller("demo", None);
    let created = world
        .instances
        .create(&demo, "r1", leased(100, on_expiry))
        .await
        .unwrap();
    (world, demo, created)
}

#[tokio::test]
async fn a_lease_warns_then_stops_its_instance_at_expiry() {
    let (world, demo, created) = leased_instance(LeaseAction::Stop).await;
    let lease = lease_now(&world, &created).await;
    assert_eq!(lease.expires_ms - lease.granted_ms, 100_000);
    assert_eq!(
        lease.expires_ms - lease.warn_ms,
        10_000,
        "a tenth of the lease"
    );
    assert!(world
        .instances
        .lease_of(&caller("acme", None), &created.id)
        .await
        .unwrap()
        .is_none());

    world.clock.advance(Duration::from_secs(89));
    assert_eq!(world.instances.run_leases().await.unwrap(), 0);
    assert!(!lease_now(&world, &created).await.warned);
    world.clock.advance(Duration::from_secs(2));
    assert_eq!(world.instances.run_leases().await.unwrap(), 0);
    assert!(lease_now(&world, &created).await.warned);

    world.clock.advance(Duration::from_secs(10));
    assert_eq!(world.instances.run_leases().await.unwrap(), 1);
    let after = world.instances.lookup(&demo, &created.id).await.unwrap();
    assert_eq!(after.state, "stopped");
    let lease = lease_now(&world, &created).await;
    assert!(lease.expired);
    // Once expired, nothing more happens, and it cannot be extended.
    assert_eq!(world.instances.run_leases().await.unwrap(), 0);
    let refused = world
        .instances
        .extend_lease(&demo, "r2", &created.id, 60)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Conflict);
}

#[tokio::test]
async fn a_terminate_lease_terminates_and_extensions_stay_within_the_plan() {
    let (world, demo, created) = leased_instance(LeaseAction::Terminate).await;
    // Extended to 250 s in all: allowed; to 350 s: beyond the plan's 300.
    let extended = world
        .instances
        .extend_lease(&demo, "r2", &created.id, 150)
        .await
        .unwrap();
    assert_eq!(extended.expires_ms - extended.granted_ms, 250_000);
    let refused = world
        .instances
        .extend_lease(&demo, "r3", &created.id, 100)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Forbidden);
    assert!(
        refused.public.contains("at most 300 s"),
        "{}",
        refused.public
    );
    // Another tenant's instance is not found.
    let other = world
        .instances
        .extend_lease(&caller("acme", None), "r4", &created.id, 10)
        .await
        .unwrap_err();
    assert_eq!(other.kind, ErrorKind::NotFound);

    world.clock.advance(Duration::from_secs(120));
    assert_eq!(world.instances.run_leases().await.unwrap(), 0, "extended");
    world.clock.advance(Duration::from_secs(131));
    assert_eq!(world.instances.run_leases().await.unwrap(), 1);
    let after = world.instances.lookup(&demo, &created.id).await.unwrap();
    assert_eq!(after.state, "terminated");
}

#[tokio::test]
async fn leases_beyond_the_plan_or_malformed_are_refused_before_anything_is_created() {
    let world = world().await;
    let demo = caller("demo", None);
    for (spec, kind) in [
        (leased(301, LeaseAction::Stop), ErrorKind::Forbidden),
        (leased(0, LeaseAction::Stop), ErrorKind::InvalidInput),
        (
            CreateSpec {
                lease: Some(LeaseTerms {
                    duration_secs: 10,
                    on_expiry: LeaseAction::Stop,
                    warn_before_secs: Some(11),
                }),
                ..spec("local-vmm", "local-1")
            },
            ErrorKind::InvalidInput,
        ),
    ] {
        let refused = world.instances.create(&demo, "r1", spec).await.unwrap_err();
        assert_eq!(refused.kind, kind, "{refused:?}");
    }
    assert!(world.local_vms.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_instance_already_stopped_at_expiry_expires_its_lease_once() {
    let (world, demo, created) = leased_instance(LeaseAction::Stop).await;
    world
        .instances
        .act(&demo, "r2", &created.id, Action::Stop)
        .await
        .unwrap();
    world.clock.advance(Duration::from_secs(101));
    assert_eq!(world.instances.run_leases().await.unwrap(), 1);
    assert!(lease_now(&world, &created).await.expired);
    assert_eq!(world.instances.run_leases().await.unwrap(), 0);
}

#[tokio::test]
async fn an_order_leases_within_its_offering_and_gated_offerings_are_refused_elsewhere() {
    let world = World::with_config(|c| {
        c.replace(
            "user_params = [\"image\", \"instance_type\", \"region\"]",
            "user_params = [\"image\", \"instance_type\", \"region\"]\n\
             lease = { duration_secs = 3600, on_expiry = \"terminate\" }",
        )
        .replace(
            "[offerings.web-dr]",
            "[offerings.web-dr]\nrequires_approval = true",
        )
    })
    .await;
    let asked = LeaseTerms {
        duration_secs: 7200,
        on_expiry: LeaseAction::Stop,
        warn_before_secs: Some(7000),
    };
    let terms = world.instances.lease_terms("dev-vm", Some(asked)).unwrap();
    assert_eq!(
        (terms.duration_secs, terms.on_expiry, terms.warn_before_secs),
        (3600, LeaseAction::Terminate, Some(3600))
    );
    assert_eq!(
        world.instances.lease_terms("prod-vm", Some(asked)),
        Some(asked)
    );
    assert!(world.instances.requires_approval("web-dr"));
    let order = crate::placement::OrderRequest {
        offering: "web-dr".into(),
        preferences: Default::default(),
        department: None,
        image_regions: None,
    };
    let refused = world
        .deployments
        .create(&caller("demo", None), "r1", &order, Default::default())
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Forbidden);
    assert!(
        refused.public.contains("requires approval"),
        "{}",
        refused.public
    );
}
