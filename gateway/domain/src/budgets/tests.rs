//! Budgets over the fake world: a local-vmm hour is 0.02 EUR, an ec2 hour 0.01, and the
//! world's clock (2026-11-23T11:39:01Z) leaves 180.35 hours in November, so one local
//! `sp.micro` commits 3.61 EUR to the month's end.

use std::sync::Arc;

use rust_decimal::Decimal;
use serde_json::Map;
use skyport_core::config::{BudgetConfig, BudgetMode};
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_core::tenancy::TenantContext;
use skyport_core::tenancy::TenantDirectory;

use super::*;
use crate::catalog::changes::Kind;
use crate::catalog::instance_type;
use crate::inventory::InstanceRecord;
use crate::operations::instances::{Action, CreateSpec, FirstBoot};
use crate::testkit::{caller, World};

fn budget(name: &str, department: Option<&str>, amount: &str, mode: BudgetMode) -> BudgetConfig {
    BudgetConfig {
        name: name.into(),
        tenant: "demo".into(),
        department: department.map(str::to_owned),
        amount: amount.parse().unwrap(),
        thresholds: vec!["50%".into(), "1.00".into()],
        mode,
        approval_above: None,
    }
}

async fn world_with(budgets: Vec<BudgetConfig>) -> World {
    let world = World::new().await;
    set_budgets(&world, budgets).await;
    world
}

/// Puts `budgets` in force through the catalog, as `/admin/budgets` does.
async fn set_budgets(world: &World, budgets: Vec<BudgetConfig>) {
    for budget in budgets {
        let name = budget.name.clone();
        world
            .catalog
            .put(Kind::Budget, &name, serde_json::to_value(budget).unwrap())
            .await
            .unwrap();
    }
}

fn local_micro(department: &str) -> CreateSpec {
    CreateSpec {
        image: "skyport-tiny".into(),
        instance_type: instance_type("sp.micro").unwrap(),
        provider: "local-vmm".into(),
        region: "local-1".into(),
        name: None,
        tags: Map::new(),
        department: Some(department.into()),
        key_name: None,
        client_token: None,
        first_boot: FirstBoot::default(),
        lease: None,
        offering: None,
    }
}

/// Orders a local `sp.micro` for `department` as `ctx`.
async fn order(
    world: &World,
    ctx: &TenantContext,
    department: &str,
) -> Result<InstanceRecord, GatewayError> {
    world
        .instances
        .create(ctx, "order", local_micro(department))
        .await
}

#[test]
fn thresholds_and_budgets_are_checked_with_clear_messages() {
    assert_eq!(
        Threshold::parse("80%").unwrap().of(Decimal::from(200)),
        Decimal::from(160)
    );
    assert_eq!(Threshold::parse(" 12.50 ").unwrap().label(), "12.50");
    for bad in ["0%", "-5", "1001%", "eighty", "", "0.001"] {
        assert!(Threshold::parse(bad)
            .unwrap_err()
            .contains("use a percentage"));
    }
    let tenants = TenantDirectory::new(
        crate::config_check::parse(skyport_core::config::EMBEDDED_DEFAULT)
            .unwrap()
            .tenants,
    );
    let cases = [
        (
            budget("Bad Name", None, "1.00", BudgetMode::Alert),
            "use 1-63",
        ),
        (
            budget("cents", None, "1.001", BudgetMode::Alert),
            "whole cents",
        ),
        (budget("zero", None, "0", BudgetMode::Alert), "above 0"),
        (
            BudgetConfig {
                tenant: "nobody".into(),
                ..budget("who", None, "1.00", BudgetMode::Alert)
            },
            "tenant 'nobody' is not configured",
        ),
        (
            budget("dept", Some("sales"), "1.00", BudgetMode::Alert),
            "sales",
        ),
        (
            BudgetConfig {
                thresholds: vec!["lots".into()],
                ..budget("thresholds", None, "1.00", BudgetMode::Alert)
            },
            "threshold 'lots'",
        ),
        (
            BudgetConfig {
                approval_above: Some("most".into()),
                ..budget("approvals", None, "1.00", BudgetMode::Alert)
            },
            "approval_above: threshold 'most'",
        ),
    ];
    for (config, expected) in cases {
        let problem = Budget::check(config, &tenants).unwrap_err();
        assert!(problem.contains(expected), "{problem}");
    }
    let twice = [
        budget("same", None, "1.00", BudgetMode::Alert),
        budget("same", None, "2.00", BudgetMode::Alert),
    ];
    let problems = duplicate_names(&twice);
    assert_eq!(problems[0].path, "budgets[1].name");
}

#[tokio::test]
async fn admins_manage_budgets_through_the_catalog_with_its_validation() {
    let world = world_with(vec![]).await;
    let put = |name: &str, body: serde_json::Value| {
        let catalog = std::sync::Arc::clone(&world.catalog);
        let name = name.to_string();
        async move { catalog.put(Kind::Budget, &name, body).await }
    };
    // The path names it; a body naming another is refused, as is a bad budget.
    let (new, stored) = put(
        "finance-cap",
        serde_json::json!({"tenant": "demo", "department": "finance", "amount": "5.00",
                           "mode": "enforce"}),
    )
    .await
    .unwrap();
    assert!(new);
    assert_eq!(stored["name"], "finance-cap");
    assert_eq!(world.budgets.list().1.len(), 1, "in force at once");
    let other = put(
        "x",
        serde_json::json!({"name": "y", "tenant": "demo", "amount": "1.00"}),
    )
    .await
    .unwrap_err();
    assert!(other.public.contains("budgets.x.name"), "{}", other.public);
    let bad = put(
        "sales",
        serde_json::json!({"tenant": "demo", "department": "sales", "amount": "1.00"}),
    )
    .await
    .unwrap_err();
    assert_eq!(bad.kind, ErrorKind::InvalidInput);
    assert!(
        bad.public.contains("budgets.sales") && bad.public.contains("does not belong"),
        "{}",
        bad.public
    );
    assert!(world.catalog.object(Kind::Budget, "sales").is_err());
    world
        .catalog
        .delete(Kind::Budget, "finance-cap")
        .await
        .unwrap();
    assert!(world.budgets.list().1.is_empty());
}

#[tokio::test]
async fn an_enforced_department_budget_refuses_the_order_that_would_cross_it() {
    let world = world_with(vec![
        budget("finance-cap", Some("finance"), "5.00", BudgetMode::Enforce),
        budget("demo-watch", None, "1.00", BudgetMode::Alert),
    ])
    .await;
    let demo = caller("demo", None);
    order(&world, &demo, "finance").await.unwrap();
    let refused = order(&world, &demo, "finance").await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::BudgetExceeded);
    for part in [
        "budget 'finance-cap' of department 'finance'",
        "5.00 EUR for 2026-11",
        "0.00 spent and 3.61 committed",
        "1.39 EUR is left",
        "this order would cost 3.61 EUR",
    ] {
        assert!(refused.public.contains(part), "{part}: {}", refused.public);
    }
    assert_eq!(world.local_vms.lock().unwrap().len(), 1, "nothing created");
    // Another department orders freely; the tenant-wide budget only alerts.
    order(&world, &demo, "engineering").await.unwrap();
    // Spend so far counts: with 2.00 spent, not even the first would fit.
    *world.spent.lock().unwrap() = "2.00".into();
    let fresh = world_with(vec![budget(
        "finance-cap",
        Some("finance"),
        "5.00",
        BudgetMode::Enforce,
    )])
    .await;
    *fresh.spent.lock().unwrap() = "2.00".into();
    let refused = order(&fresh, &demo, "finance").await.unwrap_err();
    assert!(
        refused.public.contains("3.00 EUR is left"),
        "{}",
        refused.public
    );
}

#[tokio::test]
async fn a_leased_order_costs_its_hours_to_its_lease_only() {
    let world = world_with(vec![budget(
        "finance-cap",
        Some("finance"),
        "1.00",
        BudgetMode::Enforce,
    )])
    .await;
    let demo = caller("demo", None);
    // Without a lease: 3.61 EUR to the month's end, beyond 1.00. With a 10-hour lease:
    // 0.20 EUR, within it.
    assert_eq!(
        order(&world, &demo, "finance").await.unwrap_err().kind,
        ErrorKind::BudgetExceeded
    );
    let leased = CreateSpec {
        lease: Some(skyport_core::config::LeaseTerms {
            duration_secs: 36_000,
            on_expiry: skyport_core::config::LeaseAction::Stop,
            warn_before_secs: None,
        }),
        ..local_micro("finance")
    };
    world.instances.create(&demo, "r1", leased).await.unwrap();
    // Running, it commits its 10 hours only, not the month's 180.
    let status = world.budgets.status(&demo, "r2").await.unwrap();
    assert_eq!(status[0].committed, "0.20".parse::<Decimal>().unwrap());
    // Extending the lease is an order too: 100 hours more (2.00) is beyond what is left.
    let id = world.inventory.list("demo").await.unwrap()[0].id.clone();
    let refused = world
        .instances
        .extend_lease(&demo, "r3", &id, 360_000)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::BudgetExceeded, "{refused:?}");
    world
        .instances
        .extend_lease(&demo, "r4", &id, 3_600)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_department_credential_never_sees_the_tenant_figures_in_a_refusal() {
    let world = world_with(vec![budget("demo-cap", None, "1.00", BudgetMode::Enforce)]).await;
    *world.spent.lock().unwrap() = "0.50".into();
    let finance = caller("demo", Some("finance"));
    let refused = order(&world, &finance, "finance").await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::BudgetExceeded);
    assert!(
        refused.public.contains("tenant-wide budget 'demo-cap'")
            && refused.public.contains("3.61 EUR")
            && !refused.public.contains("0.50"),
        "{}",
        refused.public
    );
}

#[tokio::test]
async fn concurrent_orders_never_pass_a_budget_together() {
    let world = Arc::new(
        world_with(vec![budget(
            "finance-cap",
            Some("finance"),
            "10.00",
            BudgetMode::Enforce,
        )])
        .await,
    );
    let demo = caller("demo", Some("finance"));
    let orders = (0..10).map(|i| {
        let world = Arc::clone(&world);
        let demo = demo.clone();
        tokio::spawn(async move {
            world
                .instances
                .create(&demo, &format!("r{i}"), local_micro("finance"))
                .await
        })
    });
    let mut passed = 0;
    for order in orders {
        match order.await.unwrap() {
            Ok(_) => passed += 1,
            Err(e) => assert_eq!(e.kind, ErrorKind::BudgetExceeded, "{e:?}"),
        }
    }
    // 10.00 holds two 3.61 commitments, not three.
    assert_eq!(passed, 2);
}

#[tokio::test]
async fn starting_a_stopped_instance_is_an_order_too() {
    let world = world_with(vec![]).await;
    let demo = caller("demo", None);
    let first = order(&world, &demo, "finance").await.unwrap();
    world
        .instances
        .act(&demo, "r2", &first.id, Action::Stop)
        .await
        .unwrap();
    order(&world, &demo, "finance").await.unwrap();
    set_budgets(
        &world,
        vec![budget(
            "finance-cap",
            Some("finance"),
            "5.00",
            BudgetMode::Enforce,
        )],
    )
    .await;
    let refused = world
        .instances
        .act(&demo, "r4", &first.id, Action::Start)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::BudgetExceeded, "{refused:?}");
    let still = world.instances.lookup(&demo, &first.id).await.unwrap();
    assert_eq!(still.state, "stopped");
}

#[tokio::test]
async fn status_shows_spend_commitments_forecast_and_fired_thresholds() {
    let world = world_with(vec![
        budget("finance-cap", Some("finance"), "10.00", BudgetMode::Enforce),
        budget("demo-watch", None, "100.00", BudgetMode::Alert),
    ])
    .await;
    *world.spent.lock().unwrap() = "2.00".into();
    let demo = caller("demo", None);
    order(&world, &demo, "finance").await.unwrap();
    let all = world.budgets.status(&demo, "r2").await.unwrap();
    assert_eq!(all.len(), 2);
    // By name.
    assert_eq!(all[0].name, "demo-watch");
    let finance = &all[1];
    assert_eq!(finance.name, "finance-cap");
    assert_eq!(
        (finance.period.as_str(), finance.currency.as_str()),
        ("2026-11", "EUR")
    );
    let money = |s: &str| s.parse::<Decimal>().unwrap();
    assert_eq!(finance.spent, money("2.00"));
    assert_eq!(finance.committed, money("3.61"));
    assert_eq!(finance.forecast, money("5.61"));
    assert_eq!(finance.remaining, money("4.39"));
    let fired: Vec<(&str, bool)> = finance
        .thresholds
        .iter()
        .map(|t| (t.threshold.as_str(), t.fired))
        .collect();
    assert_eq!(fired, [("50%", false), ("1.00", true)]);
    // A department's credential sees its department's budgets only.
    let engineering = caller("demo", Some("engineering"));
    assert!(world
        .budgets
        .status(&engineering, "r3")
        .await
        .unwrap()
        .is_empty());
    assert!(world
        .budgets
        .status(&caller("acme", None), "r4")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn each_threshold_is_announced_once_per_month() {
    use crate::events::memory::MemoryEvents;
    use crate::events::{DeliveryQuery, EventService, EventStore, NewSubscription};

    let world = world_with(vec![budget(
        "finance-cap",
        Some("finance"),
        "10.00",
        BudgetMode::Enforce,
    )])
    .await;
    let store = Arc::new(MemoryEvents::default());
    let events = EventService::new(store.clone(), world.clock.clone());
    let sub = events
        .subscribe(
            &caller("demo", Some("finance")),
            false,
            NewSubscription {
                url: "https://finance.example/hooks".into(),
                events: vec!["budget.*".into()],
                description: None,
            },
        )
        .await
        .unwrap();
    *world.spent.lock().unwrap() = "2.00".into();
    assert_eq!(world.budgets.announce_thresholds(&events).await, 1, "1.00");
    assert_eq!(world.budgets.announce_thresholds(&events).await, 0, "once");
    // The spend cache holds figures for 5 s.
    world.clock.advance(std::time::Duration::from_secs(6));
    *world.spent.lock().unwrap() = "6.00".into();
    assert_eq!(world.budgets.announce_thresholds(&events).await, 1, "50%");
    let delivered = store
        .deliveries(&DeliveryQuery {
            subscription_id: Some(sub.id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut thresholds: Vec<String> = delivered
        .iter()
        .map(|d| {
            let event: serde_json::Value = serde_json::from_str(&d.payload).unwrap();
            assert_eq!(event["type"], "io.skyport.budget.threshold");
            assert_eq!(event["data"]["budget"], "finance-cap");
            event["data"]["threshold"].as_str().unwrap().to_string()
        })
        .collect();
    thresholds.sort();
    assert_eq!(thresholds, ["1.00", "50%"]);
}

#[tokio::test]
async fn an_order_past_a_budgets_approval_threshold_needs_an_approver() {
    let world = world_with(vec![BudgetConfig {
        approval_above: Some("50%".into()),
        ..budget("finance-gate", Some("finance"), "10.00", BudgetMode::Alert)
    }])
    .await;
    let finance = caller("demo", Some("finance"));
    let micro = OrderItem {
        instance_type: "sp.micro".into(),
        provider: "local-vmm".into(),
        lease_secs: None,
    };
    // 3.61 EUR to the month's end: below 5.00 with nothing spent.
    let gate = |ctx: TenantContext, department: &'static str| {
        let (budgets, item) = (Arc::clone(&world.budgets), micro.clone());
        async move {
            budgets
                .approval_needed(&ctx, "r1", Some(department), &[item])
                .await
                .unwrap()
        }
    };
    assert_eq!(gate(finance.clone(), "finance").await, None);
    *world.spent.lock().unwrap() = "2.00".into();
    world.clock.advance(std::time::Duration::from_secs(6));
    let why = gate(finance.clone(), "finance").await.unwrap();
    assert!(
        why.contains("3.61 EUR") && why.contains("'finance-gate'") && why.contains("50%"),
        "{why}"
    );
    // Another department's orders are not its business.
    assert_eq!(
        gate(caller("demo", Some("research")), "research").await,
        None
    );
}
