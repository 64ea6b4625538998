//! The instance operations over fake providers, in-memory stores and a manual clock.

use skyport_core::error::{Detail, ErrorKind, Resource};

use super::*;
use crate::catalog::instance_type;
use crate::testkit::{caller, CreateAnswer, World};

pub(super) fn spec(provider: &str, region: &str) -> CreateSpec {
    CreateSpec {
        image: "skyport-tiny".into(),
        instance_type: instance_type("sp.micro").unwrap(),
        provider: provider.into(),
        region: region.into(),
        name: None,
        tags: Map::new(),
        department: None,
        key_name: None,
        client_token: None,
        first_boot: FirstBoot::default(),
        lease: None,
        offering: Some("dev-vm".into()),
    }
}

#[tokio::test]
async fn a_create_hands_its_key_and_user_data_to_the_provider_and_records_its_addresses() {
    let world = World::new().await;
    let demo = caller("demo", None);
    let first_boot = FirstBoot {
        ssh_public_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE test".into()],
        ..FirstBoot::default()
    }
    .with_user_data(b"#!/bin/sh\necho hi\n")
    .unwrap();
    let created = world
        .instances
        .create(
            &demo,
            "req-1",
            CreateSpec {
                first_boot,
                ..spec("local-vmm", "local-1")
            },
        )
        .await
        .unwrap();
    let sent = &world.plugins.calls_of("instance.create@1")[0].params;
    assert_eq!(
        sent["ssh_public_keys"][0],
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE test"
    );
    assert_eq!(sent["user_data"], "IyEvYmluL3NoCmVjaG8gaGkK");
    let address = |r: &InstanceRecord| r.network.as_ref().and_then(|n| n.private_ip.clone());
    assert_eq!(address(&created).as_deref(), Some("10.0.0.1"));
    let stored = world.instances.lookup(&demo, &created.id).await.unwrap();
    assert_eq!(address(&stored).as_deref(), Some("10.0.0.1"), "recorded");
    let (_, terminated) = world
        .instances
        .act(&demo, "req-2", &created.id, Action::Terminate)
        .await
        .unwrap();
    assert_eq!(
        terminated.network, None,
        "a terminated instance has no address"
    );
    let stored = world.instances.lookup(&demo, &created.id).await.unwrap();
    assert_eq!(stored.network, None, "and none is recorded");
}

#[test]
fn user_data_past_the_ec2_limit_is_refused() {
    let refused = FirstBoot::default()
        .with_user_data(&vec![b'x'; MAX_USER_DATA_BYTES + 1])
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::InvalidInput);
    assert!(refused.public.contains("16385 bytes"), "{}", refused.public);
}

#[tokio::test]
async fn a_created_instance_is_recorded_metered_changed_and_terminated() {
    let world = World::new().await;
    let demo = caller("demo", Some("finance"));
    let created = world
        .instances
        .create(&demo, "req-1", spec("local-vmm", "local-1"))
        .await
        .unwrap();
    assert_eq!(created.state, "running");
    assert_eq!(created.remote_id.as_deref(), Some("vm-1"));
    assert_eq!(created.department.as_deref(), Some("finance"));
    assert_eq!(created.created_at, "2026-11-23T11:39:01.000Z");
    let provider_calls = world.plugins.calls_of("instance.create@1");
    assert_eq!(provider_calls[0].tenant.as_deref(), Some("demo"));
    assert_eq!(provider_calls[0].params["memory_mib"], 128);
    // The provider contract: Skyport's id, the idempotency key and the tags go along.
    assert_eq!(provider_calls[0].params["skyport_id"], created.id.as_str());
    assert_eq!(
        provider_calls[0].params["idempotency_key"],
        created.id.as_str()
    );
    assert!(provider_calls[0].params["tags"].is_object());

    let (before, stopped) = world
        .instances
        .act(&demo, "req-2", &created.id, Action::Stop)
        .await
        .unwrap();
    assert_eq!(
        (before.as_str(), stopped.state.as_str()),
        ("running", "stopped")
    );
    let resized = world
        .instances
        .resize(
            &demo,
            "req-3",
            &created.id,
            instance_type("sp.small").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resized.instance_type, "sp.small");
    world
        .instances
        .act(&demo, "req-4", &created.id, Action::Terminate)
        .await
        .unwrap();
    let refused = world
        .instances
        .act(&demo, "req-5", &created.id, Action::Start)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Conflict);
    assert_eq!(refused.detail, Some(Detail::WrongState(Resource::Instance)));

    let events: Vec<String> = world
        .lifecycle_events()
        .into_iter()
        .map(|(event, id, by)| {
            assert_eq!((id.as_str(), by.as_str()), (created.id.as_str(), "api"));
            event
        })
        .collect();
    assert_eq!(events, ["run", "stop", "resize", "terminate"]);
}

#[tokio::test]
async fn another_tenants_instance_is_not_found_and_a_malformed_id_says_so() {
    let world = World::new().await;
    let created = world
        .instances
        .create(&caller("demo", None), "req-1", spec("local-vmm", "local-1"))
        .await
        .unwrap();
    let acme = caller("acme", None);
    let hidden = world
        .instances
        .get(&acme, "req-2", &created.id)
        .await
        .unwrap_err();
    assert_eq!(hidden.kind, ErrorKind::NotFound);
    assert_eq!(hidden.detail, Some(Detail::NotFound(Resource::Instance)));
    assert!(world
        .instances
        .list(&acme, "req-3")
        .await
        .unwrap()
        .is_empty());
    let malformed = world
        .instances
        .get(&acme, "req-4", "i-123")
        .await
        .unwrap_err();
    assert_eq!(
        malformed.detail,
        Some(Detail::MalformedId(Resource::Instance))
    );
    let tags = world
        .instances
        .change_tags(&acme, &created.id, &[("k".into(), "v".into())], &[])
        .await
        .unwrap_err();
    assert_eq!(tags.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn replaced_tags_are_exactly_the_new_ones_and_checked_first() {
    let world = World::new().await;
    let demo = caller("demo", None);
    let created = local_instances(&world, 1).await.remove(0);
    let tags = |pairs: &[(&str, &str)]| -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    };
    world
        .instances
        .replace_tags(&demo, &created.id, tags(&[("a", "1"), ("b", "2")]))
        .await
        .unwrap();
    let replaced = world
        .instances
        .replace_tags(&demo, &created.id, tags(&[("b", "3")]))
        .await
        .unwrap();
    assert_eq!(replaced.tags, tags(&[("b", "3")]));
    let stored = world.instances.lookup(&demo, &created.id).await.unwrap();
    assert_eq!(stored.tags, tags(&[("b", "3")]));
    // Past the limits: refused, and the tags stay as they were.
    let too_many: Map<String, Value> = (0..=MAX_TAGS)
        .map(|i| (format!("k{i}"), Value::from("v")))
        .collect();
    let refused = world
        .instances
        .replace_tags(&demo, &created.id, too_many)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::InvalidInput);
    let stored = world.instances.lookup(&demo, &created.id).await.unwrap();
    assert_eq!(stored.tags, tags(&[("b", "3")]));
    // Another tenant's instance is not found.
    let acme = caller("acme", None);
    let hidden = world
        .instances
        .replace_tags(&acme, &created.id, tags(&[]))
        .await
        .unwrap_err();
    assert_eq!(hidden.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn a_department_caller_neither_sees_nor_touches_another_departments_instance() {
    let world = World::new().await;
    let finance = caller("demo", Some("finance"));
    let created = world
        .instances
        .create(&finance, "req-1", spec("local-vmm", "local-1"))
        .await
        .unwrap();
    let engineering = caller("demo", Some("engineering"));
    let hidden = world
        .instances
        .get(&engineering, "req-2", &created.id)
        .await
        .unwrap_err();
    assert_eq!(hidden.kind, ErrorKind::NotFound);
    let refused = world
        .instances
        .act(&engineering, "req-3", &created.id, Action::Terminate)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::NotFound);
    assert!(world
        .instances
        .list(&engineering, "req-4")
        .await
        .unwrap()
        .is_empty());
    // Its own department and the tenant as a whole see it.
    for who in [&finance, &caller("demo", None)] {
        let seen = world
            .instances
            .get(who, "req-5", &created.id)
            .await
            .unwrap();
        assert_eq!(seen.state, "running");
    }
}

#[tokio::test]
async fn quotas_count_live_instances_and_a_terminated_one_frees_its_slot() {
    let world = World::with_config(|c| {
        c.replace(
            "[tenants.acme]\ndepartments = [\"ops\"]",
            "[tenants.acme]\ndepartments = [\"ops\"]\nmax_instances = 1",
        )
    })
    .await;
    let acme = caller("acme", None);
    let first = world
        .instances
        .create(&acme, "req-1", spec("local-vmm", "local-1"))
        .await
        .unwrap();
    let refused = world
        .instances
        .create(&acme, "req-2", spec("local-vmm", "local-1"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::QuotaExceeded);
    assert!(
        refused.public.contains("max_instances is 1, 1 in use"),
        "{}",
        refused.public
    );
    world
        .instances
        .act(&acme, "req-3", &first.id, Action::Terminate)
        .await
        .unwrap();
    world
        .instances
        .create(&acme, "req-4", spec("local-vmm", "local-1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_retried_idempotency_token_returns_the_first_instance_without_a_second_create() {
    let world = World::new().await;
    let demo = caller("demo", None);
    let with_token = || CreateSpec {
        client_token: Some("token-1".into()),
        ..spec("local-vmm", "local-1")
    };
    let first = world
        .instances
        .create(&demo, "req-1", with_token())
        .await
        .unwrap();
    let again = world
        .instances
        .create(&demo, "req-2", with_token())
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(world.plugins.calls_of("instance.create@1").len(), 1);
}

#[tokio::test]
async fn a_create_the_provider_refuses_leaves_no_record_and_meters_nothing() {
    let world = World::new().await;
    world
        .plugins
        .set_health("local-vmm", false, Some("down for the test"));
    let demo = caller("demo", None);
    let refused = world
        .instances
        .create(&demo, "req-1", spec("local-vmm", "local-1"))
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Unavailable);
    assert!(world.instances.records(&demo).await.unwrap().is_empty());
    assert!(world.lifecycle_events().is_empty());
}

#[tokio::test]
async fn a_change_the_provider_made_is_recorded_and_metered_once() {
    let world = World::new().await;
    let demo = caller("demo", None);
    let created = world
        .instances
        .create(&demo, "req-1", spec("local-vmm", "local-1"))
        .await
        .unwrap();
    world
        .local_vms
        .lock()
        .unwrap()
        .insert("vm-1".into(), "stopped".into());
    let seen = world
        .instances
        .get(&demo, "req-2", &created.id)
        .await
        .unwrap();
    assert_eq!(seen.state, "stopped");
    // A second observer of the same change records and meters nothing more.
    let stale = InstanceRecord {
        state: "running".into(),
        ..seen
    };
    world.instances.observe(stale, "stopped").await.unwrap();
    let stops: Vec<_> = world
        .lifecycle_events()
        .into_iter()
        .filter(|(event, _, _)| event == "stop")
        .collect();
    assert_eq!(
        stops,
        [(
            "stop".to_string(),
            created.id.clone(),
            "provider".to_string()
        )]
    );
}

#[tokio::test]
async fn a_listing_shows_the_last_known_state_of_an_unreachable_provider() {
    let world = World::new().await;
    let demo = caller("demo", None);
    world
        .instances
        .create(&demo, "req-1", spec("local-vmm", "local-1"))
        .await
        .unwrap();
    world
        .plugins
        .set_health("local-vmm", false, Some("unreachable"));
    let listed = world.instances.list(&demo, "req-2").await.unwrap();
    assert_eq!(listed[0].state, "running");
    let single = world.instances.get(&demo, "req-3", &listed[0].id).await;
    assert_eq!(single.unwrap_err().kind, ErrorKind::Unavailable);
}

/// `count` instances of demo's on `local-vmm`, in id order.
async fn local_instances(world: &World, count: usize) -> Vec<InstanceRecord> {
    let demo = caller("demo", None);
    for i in 0..count {
        world
            .instances
            .create(
                &demo,
                &format!("req-create-{i}"),
                spec("local-vmm", "local-1"),
            )
            .await
            .unwrap();
    }
    world.instances.records(&demo).await.unwrap()
}

#[tokio::test]
async fn a_listing_asks_a_provider_holding_several_instances_once_and_each_changed_one_alone() {
    let world = World::new().await;
    let demo = caller("demo", None);
    let made = local_instances(&world, 6).await;
    let remote = |i: usize| made[i].remote_id.clone().unwrap();
    {
        let mut vms = world.local_vms.lock().unwrap();
        vms.insert(remote(1), "stopped".into()); // stopped from inside the guest
        vms.remove(&remote(4)); // gone from the provider
    }
    let gets_before = world.plugins.calls_of("instance.get@1").len();
    let listed = world.instances.list(&demo, "req-list").await.unwrap();
    let states: Vec<&str> = listed.iter().map(|r| r.state.as_str()).collect();
    assert_eq!(
        states,
        [
            "running",
            "stopped",
            "running",
            "running",
            "terminated",
            "running"
        ]
    );
    assert_eq!(world.plugins.calls_of("inventory.list@1").len(), 1);
    // Only the two the listing reported otherwise were asked for on their own.
    let asked: Vec<String> = world.plugins.calls_of("instance.get@1")[gets_before..]
        .iter()
        .map(|c| c.params["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(asked, [remote(1), remote(4)]);
    // The changes are recorded, and the addresses kept.
    let recorded = world.instances.records(&demo).await.unwrap();
    assert_eq!(recorded[1].state, "stopped");
    assert_eq!(recorded[4].state, "terminated");
    assert!(recorded[0].network.is_some());
}

#[tokio::test]
async fn listings_at_once_share_one_inventory_call_and_still_see_changes_made_through_skyport() {
    let world = World::new().await;
    let demo = caller("demo", None);
    let acme = caller("acme", None);
    let made = local_instances(&world, LISTING_BATCH_MIN).await;
    for i in 0..LISTING_BATCH_MIN {
        world
            .instances
            .create(
                &acme,
                &format!("req-acme-{i}"),
                spec("local-vmm", "local-1"),
            )
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(
        world.instances.list(&demo, "req-demo"),
        world.instances.list(&acme, "req-acme")
    );
    assert_eq!(
        (a.unwrap().len(), b.unwrap().len()),
        (LISTING_BATCH_MIN, LISTING_BATCH_MIN)
    );
    assert_eq!(world.plugins.calls_of("inventory.list@1").len(), 1);
    // A stop made through Skyport since: the kept listing says running, the inventory
    // says otherwise, so the instance is asked for on its own.
    world
        .instances
        .act(&demo, "req-stop", &made[0].id, Action::Stop)
        .await
        .unwrap();
    let listed = world.instances.list(&demo, "req-again").await.unwrap();
    assert_eq!(listed[0].state, "stopped");
    assert_eq!(world.plugins.calls_of("inventory.list@1").len(), 1);
}

#[tokio::test]
async fn a_listing_asks_each_instance_alone_when_few_or_when_the_provider_does_not_list() {
    let world = World::new().await;
    let demo = caller("demo", None);
    local_instances(&world, LISTING_BATCH_MIN - 1).await;
    let gets_before = world.plugins.calls_of("instance.get@1").len();
    world.instances.list(&demo, "req-1").await.unwrap();
    assert!(world.plugins.calls_of("inventory.list@1").is_empty());
    assert_eq!(
        world.plugins.calls_of("instance.get@1").len() - gets_before,
        LISTING_BATCH_MIN - 1
    );
    local_instances(&world, 1).await;
    world.plugins.withdraw_op("local-vmm", "inventory.list@1");
    let gets_before = world.plugins.calls_of("instance.get@1").len();
    world.instances.list(&demo, "req-2").await.unwrap();
    assert!(world.plugins.calls_of("inventory.list@1").is_empty());
    assert_eq!(
        world.plugins.calls_of("instance.get@1").len() - gets_before,
        LISTING_BATCH_MIN
    );
}

#[tokio::test]
async fn a_listing_of_many_shows_the_last_known_states_of_an_unreachable_provider() {
    let world = World::new().await;
    let demo = caller("demo", None);
    local_instances(&world, LISTING_BATCH_MIN + 1).await;
    world.local_vms.lock().unwrap().clear();
    world
        .plugins
        .set_health("local-vmm", false, Some("unreachable"));
    let listed = world.instances.list(&demo, "req-1").await.unwrap();
    assert!(listed.iter().all(|r| r.state == "running"), "{listed:?}");
}

#[tokio::test]
async fn a_listing_page_refreshes_what_it_shows_and_says_where_to_go_on() {
    let world = World::new().await;
    let demo = caller("demo", None);
    let made = local_instances(&world, 7).await;
    world
        .local_vms
        .lock()
        .unwrap()
        .insert(made[5].remote_id.clone().unwrap(), "stopped".into());
    let running = |r: &InstanceRecord| Ok::<_, GatewayError>(r.state == "running");
    let (page, next) = world
        .instances
        .listing_page(&demo, "req-1", made.clone(), 3, running, |e| e)
        .await
        .unwrap();
    let ids = |v: &[InstanceRecord]| v.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&page), ids(&made[..3]));
    assert_eq!(next.as_deref(), Some(made[2].id.as_str()));
    let (page, next) = world
        .instances
        .listing_page(&demo, "req-2", made[3..].to_vec(), 3, running, |e| e)
        .await
        .unwrap();
    // The one stopped from inside is refreshed and filtered out.
    assert_eq!(
        ids(&page),
        [made[3].id.clone(), made[4].id.clone(), made[6].id.clone()]
    );
    assert_eq!(next, None);
}

#[tokio::test(start_paused = true)]
async fn a_wait_gives_up_after_its_limit_on_a_paused_clock() {
    let world = World::new().await;
    let demo = caller("demo", None);
    let created = world
        .instances
        .create(&demo, "req-1", spec("local-vmm", "local-1"))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let gave_up = world
        .instances
        .wait_for(&demo, "req-2", created.clone(), "stopped")
        .await
        .unwrap_err();
    assert_eq!(gave_up.kind, ErrorKind::Timeout);
    assert_eq!(tokio::time::Instant::now() - started, MAX_WAIT);
    let reached = world
        .instances
        .wait_for(&demo, "req-3", created, "running")
        .await
        .unwrap();
    assert_eq!(reached.state, "running");
    assert!(world
        .instances
        .wait_for(&demo, "r", reached, "sleeping")
        .await
        .is_err());
}

#[tokio::test]
async fn a_create_answered_without_an_id_is_a_502_naming_the_provider_and_leaves_nothing() {
    let world = World::new().await;
    *world.local_creates.lock().unwrap() = CreateAnswer::WithoutId;
    let demo = caller("demo", None);
    let err = world
        .instances
        .create(&demo, "req-1", spec("local-vmm", "local-1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Upstream);
    assert_eq!(
        err.public,
        "provider 'local-vmm' answered instance.create@1 with a malformed result"
    );
    assert!(err.cause.unwrap().contains("missing field `id`"));
    // Nothing is left pending: the tenant has no instance.
    assert!(world
        .instances
        .list(&demo, "req-2")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_unmanaged_vm_is_listed_then_adopted_into_a_tenant_and_metered() {
    use crate::inventory::sync::{AdoptRequest, InventorySync};
    let world = World::new().await;
    let sync = InventorySync::new(
        world.instances.clone(),
        world.plugins.clone(),
        world.metrics.clone(),
    );
    // A VM the provider runs that Skyport never created.
    world
        .local_vms
        .lock()
        .unwrap()
        .insert("vm-77".into(), "running".into());
    let unmanaged = sync.unmanaged("local-vmm").await.unwrap();
    assert_eq!(unmanaged.len(), 1);
    assert_eq!(unmanaged[0].id, "vm-77");
    let admin = caller("demo", None);
    let request = AdoptRequest {
        tenant: "acme".into(),
        instance_type: Some("sp.micro".into()),
        region: Some("local-1".into()),
        ..Default::default()
    };
    // The fake provider does not report the image: the request must.
    let err = sync
        .adopt(&admin, "req-1", "local-vmm", "vm-77", request.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.public.starts_with("image:"), "{}", err.public);
    let adopted = sync
        .adopt(
            &admin,
            "req-2",
            "local-vmm",
            "vm-77",
            AdoptRequest {
                image: Some("skyport-tiny".into()),
                ..request.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(adopted.tenant, "acme");
    assert_eq!(adopted.state, "running");
    assert_eq!(adopted.remote_id.as_deref(), Some("vm-77"));
    // Metered from now on: its usage starts with a `run` event.
    assert!(world
        .lifecycle_events()
        .iter()
        .any(|(event, id, _)| event == "run" && *id == adopted.id));
    // It is acme's instance now, and no longer unmanaged.
    let acme = world
        .instances
        .list(&caller("acme", None), "req-3")
        .await
        .unwrap();
    assert_eq!(acme.len(), 1);
    assert!(sync.unmanaged("local-vmm").await.unwrap().is_empty());
    let again = sync
        .adopt(&admin, "req-4", "local-vmm", "vm-77", request)
        .await
        .unwrap_err();
    assert_eq!(again.kind, ErrorKind::NotFound);
    // Unknown providers are 404.
    let none = sync.unmanaged("nothing").await.unwrap_err();
    assert_eq!(none.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn an_instance_whose_create_never_finished_can_be_terminated_once_it_cannot_finish() {
    let world = World::new().await;
    let demo = caller("demo", None);
    // What a crash between the inventory row and the provider's answer leaves.
    let stuck = InstanceRecord {
        created_at: "2026-11-23T11:39:01.000Z".into(),
        ..crate::inventory::conformance::record("i-0000000000000000a", "demo")
    };
    world.inventory.insert(stuck.clone()).await.unwrap();
    // Its create could still be running: 409.
    let early = world
        .instances
        .act(&demo, "req-1", &stuck.id, Action::Terminate)
        .await
        .unwrap_err();
    assert_eq!(early.kind, ErrorKind::Conflict);
    assert!(early.public.contains("still being created"));
    // Twice the provider deadline later it cannot be: terminate closes it.
    world
        .clock
        .advance(PROVIDER_TIMEOUT * 2 + std::time::Duration::from_secs(1));
    let (before, after) = world
        .instances
        .act(&demo, "req-2", &stuck.id, Action::Terminate)
        .await
        .unwrap();
    assert_eq!(
        (before.as_str(), after.state.as_str()),
        ("pending", "terminated")
    );
    let stop = world
        .instances
        .act(&demo, "req-3", &stuck.id, Action::Stop)
        .await
        .unwrap_err();
    assert_eq!(stop.kind, ErrorKind::Conflict);
    assert!(world.plugins.calls_of("instance.terminate@1").is_empty());
}

#[tokio::test]
async fn unfinished_creates_are_adopted_when_their_vm_exists_and_removed_when_not() {
    use crate::inventory::InventoryStore as _;
    let world = World::new().await;
    let pending = |id: &str, provider: &str| InstanceRecord {
        provider: provider.into(),
        region: if provider == "ec2" {
            "aws-us-east-1"
        } else {
            "local-1"
        }
        .into(),
        ..crate::inventory::conformance::record(id, "demo")
    };
    // The gateway stopped after recording three creates: the provider made the first one's
    // VM, nothing for the second; the third's provider cannot say.
    let (made, nothing, unknown) = (
        "i-00000000000000a01",
        "i-00000000000000a02",
        "i-00000000000000a03",
    );
    for (id, provider) in [
        (made, "local-vmm"),
        (nothing, "local-vmm"),
        (unknown, "ec2"),
    ] {
        world.inventory.insert(pending(id, provider)).await.unwrap();
    }
    world
        .plugins
        .call_json(
            "local-vmm",
            "instance.create",
            1,
            serde_json::json!({"skyport_id": made, "idempotency_key": made, "image": "skyport-tiny",
                "instance_type": "sp.micro", "vcpus": 1, "memory_mib": 128, "tags": {}})
            .to_string(),
            Default::default(),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    world.plugins.withdraw_op("ec2", "instance.find@1");

    let unfinished = world.instances.unfinished_creates().await.unwrap();
    assert_eq!(unfinished.len(), 3);
    let recovered = world.instances.recover_creates(unfinished).await;
    assert_eq!(recovered.adopted, [made]);
    assert_eq!(recovered.removed, [nothing]);
    assert_eq!(recovered.left, [unknown]);
    let demo = caller("demo", None);
    let adopted = world.instances.find(&demo, made).await.unwrap().unwrap();
    assert_eq!(
        (adopted.remote_id.as_deref(), adopted.state.as_str()),
        (Some("vm-1"), "running")
    );
    assert!(world
        .instances
        .find(&demo, nothing)
        .await
        .unwrap()
        .is_none());
    // The adopted one is metered from now.
    assert!(world
        .lifecycle_events()
        .iter()
        .any(|(event, id, _)| id == made && event == "run"));
}

#[tokio::test]
async fn a_create_a_dead_replica_left_unanswered_is_resumed_by_a_retry_once_its_lease_expires() {
    let world = World::new().await;
    let demo = caller("demo", None);
    let with_token = || CreateSpec {
        client_token: Some("token-1".into()),
        ..spec("local-vmm", "local-1")
    };
    let leases = Arc::new(crate::leases::memory::MemoryLeases::new(
        world.clock.clone(),
    ));
    let replica_b = InstanceService::new(
        world.inventory.clone(),
        world.plugins.clone(),
        Arc::clone(&world.tenants),
        Arc::clone(&world.catalog),
        LifecycleMeter::new(world.tap.clone(), world.clock.clone()),
        Arc::clone(&world.metrics),
        world.clock.clone(),
    )
    .with_leases(leases.clone(), "replica-b".into());

    // Replica A admitted the create and leased it, then died before the provider answered.
    let record = InstanceRecord {
        client_token: Some("token-1".into()),
        ..crate::inventory::conformance::record(&new_instance_id(), "demo")
    };
    let check = world
        .instances
        .quota(&demo, &[instance_type("sp.micro").unwrap()]);
    world.inventory.admit(record.clone(), check).await.unwrap();
    let lease = super::create_lease(&record.id);
    assert!(leases
        .acquire(&lease, "replica-a", CREATE_LEASE)
        .await
        .unwrap());

    // The client's retry through B while A's lease stands: 409, nothing made.
    let early = replica_b
        .create(&demo, "req-2", with_token())
        .await
        .unwrap_err();
    assert_eq!(early.kind, ErrorKind::Conflict);
    assert!(
        early.public.contains("still being created"),
        "{}",
        early.public
    );
    assert!(world.plugins.calls_of("instance.create@1").is_empty());

    // Once it has expired, the retry resumes the create with the same idempotency key and
    // meters its `run` once; a further retry answers it as made.
    world.clock.advance(CREATE_LEASE + Duration::from_secs(1));
    let resumed = replica_b
        .create(&demo, "req-3", with_token())
        .await
        .unwrap();
    assert_eq!(resumed.id, record.id);
    assert_eq!(resumed.state, "running");
    let creates = world.plugins.calls_of("instance.create@1");
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0].params["idempotency_key"], record.id.as_str());
    let again = replica_b
        .create(&demo, "req-4", with_token())
        .await
        .unwrap();
    assert_eq!(again.remote_id, resumed.remote_id);
    assert_eq!(world.plugins.calls_of("instance.create@1").len(), 1);
    let runs: Vec<_> = world
        .lifecycle_events()
        .into_iter()
        .filter(|(event, id, _)| event == "run" && *id == record.id)
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
}
