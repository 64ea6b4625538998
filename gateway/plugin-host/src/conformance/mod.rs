//! The provider conformance kit (`skyport plugins test`): the whole provider contract
//! (`skyport_plugin_api::ops::provider`) run against one loaded plugin, as the gateway
//! would call it, with a report an author can act on.
//!
//! It checks shapes (every answer parses as the contract's type), errors (unknown op,
//! bad params, unknown instance), idempotency (a create sent twice is one instance),
//! concurrency (gets at once), deadlines (every call within its contract deadline) and one
//! instance's whole life: create, running, listed, terminated. The instance is real: run
//! the kit against a test account or a local backend.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use skyport_core::clock::SharedClock;
use skyport_core::error::{ErrorKind, GatewayError};
use skyport_plugin_api::ops::provider::{
    self as contract, CreateInstance, ImageView, InstanceRef, InstanceState, InstanceView,
    InventoryItem, PLACEMENT_OPS,
};
use skyport_plugin_api::ops::{Health, Region};
use skyport_plugin_api::sdk::CallContext;

use crate::plugins::Plugins;

mod report;

use report::Kit;
pub use report::{Check, Report};

/// How long the kit waits for a created instance to run, and a terminated one to go.
pub const STATE_WAIT: Duration = Duration::from_secs(180);

/// `op@1` with `params`, within the contract's `deadline`.
async fn call(
    plugins: &dyn Plugins,
    plugin: &str,
    op: &str,
    params: Value,
    deadline: Duration,
) -> Result<Value, GatewayError> {
    plugins
        .call(plugin, op, 1, params, CallContext::default(), deadline)
        .await
}

/// `instance.get@1` of `id`.
async fn get_raw(plugins: &dyn Plugins, plugin: &str, id: &str) -> Result<Value, GatewayError> {
    let params = json!(InstanceRef { id: id.to_string() });
    call(
        plugins,
        plugin,
        contract::INSTANCE_GET,
        params,
        contract::INSTANCE_DEADLINE,
    )
    .await
}

/// `instance.get@1` of `id`, as the contract's view.
async fn get_view(plugins: &dyn Plugins, plugin: &str, id: &str) -> Result<InstanceView, String> {
    let answer = get_raw(plugins, plugin, id)
        .await
        .map_err(|e| said(contract::INSTANCE_GET, &e))?;
    typed(contract::INSTANCE_GET, answer)
}

/// The answer as the contract's `T`, or what is wrong with it.
fn typed<T: DeserializeOwned>(op: &str, answer: Value) -> Result<T, String> {
    serde_json::from_value(answer.clone())
        .map_err(|e| format!("{op}@1 answered {answer}, which is not the contract's shape: {e}"))
}

fn said(op: &str, e: &GatewayError) -> String {
    format!(
        "{op}@1 failed: {} ({})",
        e.cause.as_deref().unwrap_or(&e.public),
        e.kind.slug()
    )
}

/// An error of `kind` from `op`, or what came instead.
fn expect_error(
    op: &str,
    answer: Result<Value, GatewayError>,
    kind: ErrorKind,
) -> Result<((), String), String> {
    match answer {
        Err(e) if e.kind == kind => Ok(((), String::new())),
        Err(e) => Err(format!(
            "{op}@1 should fail with {}, but failed with {}: {}",
            kind.slug(),
            e.kind.slug(),
            e.cause.as_deref().unwrap_or(&e.public)
        )),
        Ok(v) => Err(format!(
            "{op}@1 should fail with {}, but answered {v}",
            kind.slug()
        )),
    }
}

/// Runs the provider kit against the loaded plugin `plugin`, timing with `clock`.
pub async fn run(plugins: &dyn Plugins, plugin: &str, clock: SharedClock) -> Report {
    let mut kit = Kit {
        clock: clock.clone(),
        plugin: plugin.to_string(),
        checks: Vec::new(),
    };
    let Some(facts) = plugins.facts(plugin) else {
        kit.skip("loaded", "no such plugin is loaded");
        return Report {
            plugin: kit.plugin,
            checks: kit.checks,
        };
    };
    let p = plugin.to_string();
    let serves_all = kit
        .check("describes itself as a provider serving the contract", async {
            if !facts.is_provider() {
                return Err(format!("its kind is {}, not provider", facts.kind));
            }
            let missing = facts.missing(&PLACEMENT_OPS);
            if !missing.is_empty() {
                return Err(format!(
                    "it does not list {} among its ops; without them it is never a placement candidate",
                    missing.join(", ")
                ));
            }
            let optional = [
                "instance.start@1",
                "instance.stop@1",
                "instance.reboot@1",
                "instance.resize@1",
                "instance.console@1",
                "inventory.list@1",
            ];
            let absent = facts.missing(&optional);
            Ok((
                (),
                if absent.is_empty() {
                    String::new()
                } else {
                    format!("without {} (those actions answer 501)", absent.join(", "))
                },
            ))
        })
        .await
        .is_some();

    kit.check("health@1 answers healthy", async {
        let health: Health = typed(
            "health",
            call(plugins, &p, "health", json!({}), Duration::from_secs(10))
                .await
                .map_err(|e| said("health", &e))?,
        )?;
        if health.healthy {
            Ok(((), String::new()))
        } else {
            Err(format!(
                "it reports itself unhealthy: {}",
                health.reason.unwrap_or_else(|| "no reason given".into())
            ))
        }
    })
    .await;

    kit.check("regions@1 lists at least one region", async {
        let regions: Vec<Region> = typed(
            "regions",
            call(
                plugins,
                &p,
                "regions",
                json!({}),
                contract::LISTING_DEADLINE,
            )
            .await
            .map_err(|e| said("regions", &e))?,
        )?;
        if regions.is_empty() || regions.iter().any(|r| r.name.is_empty()) {
            return Err(format!(
                "regions@1 answered {regions:?}: at least one named region is needed"
            ));
        }
        let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
        Ok(((), names.join(", ")))
    })
    .await;

    let image = kit
        .check("images.list@1 lists at least one named image", async {
            let images: Vec<ImageView> = typed(
                contract::IMAGES_LIST,
                call(
                    plugins,
                    &p,
                    contract::IMAGES_LIST,
                    json!({}),
                    contract::LISTING_DEADLINE,
                )
                .await
                .map_err(|e| said(contract::IMAGES_LIST, &e))?,
            )?;
            let first = images
                .iter()
                .find(|i| !i.name.is_empty())
                .map(|i| i.name.clone())
                .ok_or_else(|| "images.list@1 answered no image with a name".to_string())?;
            Ok((
                first.clone(),
                format!("{} image(s); the kit uses {first}", images.len()),
            ))
        })
        .await;

    kit.check("an op it does not serve is UNSUPPORTED_OP (501)", async {
        expect_error(
            "conformance.nothing",
            call(
                plugins,
                &p,
                "conformance.nothing",
                json!({}),
                Duration::from_secs(10),
            )
            .await,
            ErrorKind::NotImplemented,
        )
    })
    .await;

    kit.check(
        "instance.create@1 with bad params is INVALID_INPUT (400)",
        async {
            expect_error(
                contract::INSTANCE_CREATE,
                call(
                    plugins,
                    &p,
                    contract::INSTANCE_CREATE,
                    json!({"image": 7}),
                    contract::INSTANCE_DEADLINE,
                )
                .await,
                ErrorKind::InvalidInput,
            )
        },
    )
    .await;

    kit.check(
        "instance.get@1 of an unknown id is NOT_FOUND (404)",
        async {
            expect_error(
                contract::INSTANCE_GET,
                call(
                    plugins,
                    &p,
                    contract::INSTANCE_GET,
                    json!(InstanceRef {
                        id: "conformance-no-such-instance".into()
                    }),
                    contract::INSTANCE_DEADLINE,
                )
                .await,
                ErrorKind::NotFound,
            )
        },
    )
    .await;

    let (Some(image), true) = (image, serves_all) else {
        for name in [
            "instance.create@1",
            "instance.create@1 again with the same key is the same instance",
            "instance.get@1 from 8 callers at once",
            "the instance reaches running",
            "inventory.list@1 lists it",
            "instance.terminate@1",
            "the terminated instance stays terminated",
        ] {
            kit.skip(name, "the checks above must pass first");
        }
        return Report {
            plugin: kit.plugin,
            checks: kit.checks,
        };
    };

    let suffix = format!(
        "{:x}",
        clock
            .wall()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let create = CreateInstance {
        skyport_id: format!("i-conformance-{suffix}"),
        idempotency_key: format!("conformance-{suffix}"),
        image,
        instance_type: "sp.micro".into(),
        vcpus: 1,
        memory_mib: 128,
        tags: [("skyport:conformance".to_string(), "true".to_string())].into(),
        ssh_public_keys: Vec::new(),
        user_data: None,
    };
    let create_once = || async {
        let view: InstanceView = typed(
            contract::INSTANCE_CREATE,
            call(
                plugins,
                &p,
                contract::INSTANCE_CREATE,
                json!(create),
                contract::INSTANCE_DEADLINE,
            )
            .await
            .map_err(|e| said(contract::INSTANCE_CREATE, &e))?,
        )?;
        if view.id.is_empty() {
            return Err("instance.create@1 answered an empty id".to_string());
        }
        Ok(view)
    };
    let Some(created) = kit
        .check("instance.create@1", async {
            let view = create_once().await?;
            Ok((
                view.clone(),
                format!("{} is {}", view.id, view.state.as_str()),
            ))
        })
        .await
    else {
        return Report {
            plugin: kit.plugin,
            checks: kit.checks,
        };
    };
    let id = created.id.clone();
    kit.check("instance.create@1 again with the same key is the same instance", async {
        let again = create_once().await?;
        if again.id == id {
            Ok(((), String::new()))
        } else {
            // The kit leaves nothing running: the duplicate goes at once.
            let _ = call(
                plugins,
                &p,
                contract::INSTANCE_TERMINATE,
                json!(InstanceRef {
                    id: again.id.clone()
                }),
                contract::INSTANCE_DEADLINE,
            )
            .await;
            Err(format!(
                "the second create made {} beside {id}: a retried create must answer the instance the key made",
                again.id
            ))
        }
    })
    .await;

    if facts.serves("instance.find@1") {
        let p = &p;
        let find = |key: String| async move {
            let found = call(
                plugins,
                p,
                contract::INSTANCE_FIND,
                json!(contract::FindInstance {
                    idempotency_key: key
                }),
                contract::LISTING_DEADLINE,
            )
            .await
            .map_err(|e| said(contract::INSTANCE_FIND, &e))?;
            typed::<Option<InstanceView>>(contract::INSTANCE_FIND, found)
        };
        kit.check(
            "instance.find@1 finds the instance by its key, and nothing for another key",
            async {
                match find(create.idempotency_key.clone()).await? {
                    Some(view) if view.id == id => {}
                    other => {
                        return Err(format!(
                            "instance.find@1 of the create's key answered {other:?}, not {id}"
                        ))
                    }
                }
                match find(format!("{}-never-used", create.idempotency_key)).await? {
                    None => Ok(((), String::new())),
                    Some(view) => Err(format!(
                        "instance.find@1 of a key no create used answered {}",
                        view.id
                    )),
                }
            },
        )
        .await;
    }

    kit.check("instance.get@1 from 8 callers at once", async {
        let answers =
            futures::future::join_all((0..8).map(|_| get_view(plugins, plugin, &id))).await;
        for answer in answers {
            let view = answer?;
            if view.id != id {
                return Err(format!("instance.get@1 of {id} answered {}", view.id));
            }
        }
        Ok(((), String::new()))
    })
    .await;

    kit.check("the instance reaches running", async {
        let deadline = clock.monotonic() + STATE_WAIT;
        loop {
            let view = get_view(plugins, plugin, &id).await?;
            match view.state {
                InstanceState::Running => return Ok(((), String::new())),
                InstanceState::Pending => {}
                other => return Err(format!("{id} went {} instead of running", other.as_str())),
            }
            if clock.monotonic() > deadline {
                return Err(format!("{id} is still pending after {STATE_WAIT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;

    if facts.serves("inventory.list@1") {
        kit.check("inventory.list@1 lists it", async {
            let items: Vec<InventoryItem> = typed(
                contract::INVENTORY_LIST,
                call(
                    plugins,
                    &p,
                    contract::INVENTORY_LIST,
                    json!({}),
                    contract::LISTING_DEADLINE,
                )
                .await
                .map_err(|e| said(contract::INVENTORY_LIST, &e))?,
            )?;
            if items.iter().any(|i| i.id == id) {
                Ok(((), format!("{} instance(s)", items.len())))
            } else {
                Err(format!("inventory.list@1 does not list {id}"))
            }
        })
        .await;
    }

    kit.check("instance.terminate@1", async {
        let view: InstanceView = typed(
            contract::INSTANCE_TERMINATE,
            call(
                plugins,
                &p,
                contract::INSTANCE_TERMINATE,
                json!(InstanceRef { id: id.clone() }),
                contract::INSTANCE_DEADLINE,
            )
            .await
            .map_err(|e| said(contract::INSTANCE_TERMINATE, &e))?,
        )?;
        match view.state {
            InstanceState::ShuttingDown | InstanceState::Terminated => {
                Ok(((), view.state.as_str().to_string()))
            }
            other => Err(format!("instance.terminate@1 answered {}", other.as_str())),
        }
    })
    .await;

    kit.check("the terminated instance stays terminated", async {
        let deadline = clock.monotonic() + STATE_WAIT;
        loop {
            match get_raw(plugins, plugin, &id).await {
                Err(e) if e.kind == ErrorKind::NotFound => {
                    return Ok(((), "gone (NOT_FOUND)".into()))
                }
                Err(e) => return Err(said(contract::INSTANCE_GET, &e)),
                Ok(answer) => {
                    let view: InstanceView = typed(contract::INSTANCE_GET, answer)?;
                    match view.state {
                        InstanceState::Terminated => return Ok(((), String::new())),
                        InstanceState::ShuttingDown => {}
                        other => {
                            return Err(format!("{id} is {} after its terminate", other.as_str()))
                        }
                    }
                }
            }
            if clock.monotonic() > deadline {
                return Err(format!("{id} is still shutting down after {STATE_WAIT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;

    Report {
        plugin: kit.plugin,
        checks: kit.checks,
    }
}
