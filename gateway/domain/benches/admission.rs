//! Admission check time with budgets: 1,000 enforced budgets (500 tenants, each with a
//! tenant-wide and a department budget), every tenant with 10 running instances, and 100
//! orders in flight at once on a multi-threaded runtime. Each sample is one order's
//! whole admission as a create runs it: the quota check and, with budgets, pricing the
//! order, the spend so far and every governing budget's check over the tenant's live
//! instances (prices and spend cached, as between orders; the first order of each tenant
//! warms them). The baseline is the same orders with no budget (the quota check alone),
//! measured in the same run.
//!
//! Run: `cargo bench -p skyport-domain --bench admission --features testkit`
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Map;
use skyport_domain::catalog::instance_type;
use skyport_domain::inventory::{InstanceRecord, InventoryStore};
use skyport_domain::operations::instances::Adding;
use skyport_domain::testkit::{caller, World};

const TENANTS: usize = 500;
const LIVE_PER_TENANT: usize = 10;
const IN_FLIGHT: usize = 100;
const ORDERS_PER_TASK: usize = 200;

fn tenants_config() -> String {
    (0..TENANTS)
        .map(|t| format!("[tenants.t{t}]\ndepartments = [\"d0\", \"d1\"]\n"))
        .collect()
}

/// `[[budgets]]`: a tenant-wide and a department budget per tenant, all enforced.
fn budgets_config() -> String {
    (0..TENANTS)
        .flat_map(|t| {
            [None, Some("d0")].map(|department| {
                let name = format!("b{t}-{}", department.unwrap_or("all"));
                let department = department
                    .map(|d| format!("department = \"{d}\"\n"))
                    .unwrap_or_default();
                format!(
                    "[[budgets]]\nname = \"{name}\"\ntenant = \"t{t}\"\n{department}\
                     amount = \"100000.00\"\nthresholds = [\"80%\"]\nmode = \"enforce\"\n"
                )
            })
        })
        .collect()
}

/// A world of `TENANTS` tenants, with the budgets when `with_budgets`.
async fn world(with_budgets: bool) -> Arc<World> {
    let budgets = if with_budgets {
        budgets_config()
    } else {
        String::new()
    };
    let world = World::with_config(|c| c + &tenants_config() + &budgets).await;
    for t in 0..TENANTS {
        for i in 0..LIVE_PER_TENANT {
            let record = InstanceRecord {
                id: format!("i-{t:08x}{i:09x}"),
                tenant: format!("t{t}"),
                department: Some(format!("d{}", i % 2)),
                provider: if i % 2 == 0 { "local-vmm" } else { "ec2" }.into(),
                region: "local-1".into(),
                remote_id: Some(format!("vm-{i}")),
                image: "skyport-tiny".into(),
                instance_type: "sp.micro".into(),
                name: None,
                tags: Map::new(),
                state: "running".into(),
                created_at: "2026-11-23T11:00:00.000Z".into(),
                key_name: None,
                client_token: None,
                network: None,
                user_data: None,
                offering: None,
            };
            world
                .inventory
                .admit(record, Box::new(|_| Ok(())))
                .await
                .unwrap();
        }
    }
    Arc::new(world)
}

/// Every order's admission time, `IN_FLIGHT` orders at once, and the whole run's.
async fn run(world: &Arc<World>) -> (Vec<Duration>, Duration) {
    #[allow(clippy::disallowed_methods)] // a benchmark times itself
    let whole = Instant::now();
    let tasks = (0..IN_FLIGHT).map(|task| {
        let world = Arc::clone(world);
        tokio::spawn(async move {
            let mut samples = Vec::with_capacity(ORDERS_PER_TASK);
            let micro = instance_type("sp.micro").unwrap();
            for n in 0..ORDERS_PER_TASK {
                let tenant = format!("t{}", (task * ORDERS_PER_TASK + n) % TENANTS);
                let ctx = caller(&tenant, Some("d0"));
                let adding = [Adding {
                    instance_type: micro,
                    provider: "local-vmm",
                    lease_secs: None,
                }];
                #[allow(clippy::disallowed_methods)] // a benchmark times itself
                let started = Instant::now();
                let check = world
                    .instances
                    .admission(&ctx, "bench", Some("d0"), &adding)
                    .await
                    .unwrap();
                let live = world.inventory.list(&tenant).await.unwrap();
                check(&live).unwrap();
                samples.push(started.elapsed());
            }
            samples
        })
    });
    let mut all = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        all.extend(task.await.unwrap());
    }
    all.sort();
    (all, whole.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(label: &str, (samples, whole): &(Vec<Duration>, Duration)) -> (Duration, Duration) {
    let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
    println!(
        "{label:<40} p50 {:>8.1} µs   p99 {:>8.1} µs   {:>8.0} orders/s",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        samples.len() as f64 / whole.as_secs_f64()
    );
    (p50, p99)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (plain, governed) = (world(false).await, world(true).await);
        assert_eq!(governed.budgets.list().1.len(), 2 * TENANTS);
        // Warm the caches (prices and spend) as a running gateway's earlier orders would.
        run(&governed).await;
        for round in 1..=3 {
            let base = run(&plain).await;
            let (b50, b99) = report(&format!("round {round}: quota only (baseline)"), &base);
            let with = run(&governed).await;
            let (w50, w99) = report(&format!("round {round}: quota + 1,000 budgets"), &with);
            println!(
                "  added by budgets: p50 {:.1} µs, p99 {:.1} µs",
                (w50.as_secs_f64() - b50.as_secs_f64()) * 1e6,
                (w99.as_secs_f64() - b99.as_secs_f64()) * 1e6
            );
        }
    });
}
