//! An example provider for Skyport: each instance is a process on the Skyport host running
//! its image's command (`sleep infinity` by default). It keeps the whole provider contract
//! (`skyport_plugin_api::ops::provider`): typed params and answers, idempotent creates,
//! the contract's errors, its inventory. Configuration:
//! `{ region = "proc-1", images = { sleeper = ["sleep", "infinity"] } }`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use skyport_plugin_api::abi::error_code;
use skyport_plugin_api::ops::provider::{
    CreateInstance, ImageView, InstanceRef, InstanceState, InstanceView, InventoryItem,
};
use skyport_plugin_api::ops::{Health, Region};
use skyport_plugin_api::{export_plugin, Description, Host, OpCall, Plugin, PluginError};

/// One instance: its process while it runs.
struct Instance {
    idempotency_key: String,
    image: String,
    process: Option<Child>,
    state: InstanceState,
}

struct Processes {
    region: String,
    images: BTreeMap<String, Vec<String>>,
    instances: Mutex<BTreeMap<String, Instance>>,
    next_id: AtomicU64,
}

fn error(code: &str, message: impl Into<String>) -> PluginError {
    PluginError::new(code, message)
}

fn answer<T: serde::Serialize>(value: T) -> Result<serde_json::Value, PluginError> {
    serde_json::to_value(value).map_err(|e| error(error_code::INTERNAL, e.to_string()))
}

impl Processes {
    fn spawn(&self, image: &str) -> Result<Child, PluginError> {
        let argv = self.images.get(image).ok_or_else(|| {
            error(
                error_code::INVALID_INPUT,
                format!("unknown image '{image}'"),
            )
        })?;
        Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                error(
                    error_code::UNAVAILABLE,
                    format!("cannot start {}: {e}", argv[0]),
                )
            })
    }

    fn view(id: &str, instance: &mut Instance) -> InstanceView {
        // A process that ended by itself leaves its instance stopped.
        if let Some(process) = &mut instance.process {
            if matches!(process.try_wait(), Ok(Some(_))) {
                instance.process = None;
                instance.state = InstanceState::Stopped;
            }
        }
        InstanceView {
            id: id.to_string(),
            state: instance.state,
            // Processes on the host have no address of their own.
            network: None,
        }
    }

    fn create(&self, p: CreateInstance) -> Result<InstanceView, PluginError> {
        let mut instances = self.instances.lock().unwrap();
        // A create seen before answers the instance it made.
        if let Some((id, instance)) = instances
            .iter_mut()
            .find(|(_, i)| i.idempotency_key == p.idempotency_key)
        {
            return Ok(Self::view(id, instance));
        }
        let process = self.spawn(&p.image)?;
        let id = format!("proc-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        log::info!("{id} ({}) runs as pid {}", p.skyport_id, process.id());
        let mut instance = Instance {
            idempotency_key: p.idempotency_key,
            image: p.image,
            process: Some(process),
            state: InstanceState::Running,
        };
        let view = Self::view(&id, &mut instance);
        instances.insert(id, instance);
        Ok(view)
    }

    /// Runs `change` on instance `id` and answers its view.
    fn with(
        &self,
        id: &str,
        change: impl FnOnce(&Self, &mut Instance) -> Result<(), PluginError>,
    ) -> Result<InstanceView, PluginError> {
        let mut instances = self.instances.lock().unwrap();
        let instance = instances
            .get_mut(id)
            .ok_or_else(|| error(error_code::NOT_FOUND, format!("no instance {id}")))?;
        Self::view(id, instance);
        change(self, instance)?;
        Ok(Self::view(id, instance))
    }

    fn stop(instance: &mut Instance, to: InstanceState) {
        if let Some(mut process) = instance.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
        instance.state = to;
    }
}

impl Plugin for Processes {
    fn describe() -> Description {
        Description {
            name: "example-provider".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: "provider".into(),
            summary: "example provider: each instance is a process on the Skyport host".into(),
            ops: [
                "health@1",
                "regions@1",
                "images.list@1",
                "instance.create@1",
                "instance.get@1",
                "instance.start@1",
                "instance.stop@1",
                "instance.terminate@1",
                "inventory.list@1",
            ]
            .map(String::from)
            .to_vec(),
            config_schema: serde_json::json!({
                "type": "object",
                "properties": {
                    "region": {"type": "string", "pattern": "^[a-z0-9-]{1,63}$"},
                    "images": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "array", "items": {"type": "string"}, "minItems": 1
                        }
                    }
                },
                "additionalProperties": false
            }),
        }
    }

    fn init(config: serde_json::Value, _host: Host) -> Result<Self, PluginError> {
        let region = config["region"].as_str().unwrap_or("proc-1").to_string();
        let images = match config.get("images") {
            Some(images) => serde_json::from_value(images.clone())
                .map_err(|e| error(error_code::INVALID_CONFIG, e.to_string()))?,
            None => BTreeMap::from([(
                "sleeper".to_string(),
                vec!["sleep".into(), "infinity".into()],
            )]),
        };
        Ok(Self {
            region,
            images,
            instances: Mutex::default(),
            next_id: AtomicU64::new(1),
        })
    }

    async fn call(self: Arc<Self>, call: OpCall) -> Result<serde_json::Value, PluginError> {
        let id = || call.params::<InstanceRef>().map(|r| r.id);
        match (call.op.as_str(), call.version) {
            ("health", 1) => answer(Health {
                healthy: true,
                reason: None,
                notes: Vec::new(),
            }),
            ("regions", 1) => answer(vec![Region {
                name: self.region.clone(),
                zones: vec![format!("{}a", self.region)],
                cidr: None,
                subnets: Vec::new(),
            }]),
            ("images.list", 1) => answer(
                self.images
                    .keys()
                    .map(|name| ImageView {
                        name: name.clone(),
                        disk_template: serde_json::Value::Null,
                        source: serde_json::json!("command"),
                    })
                    .collect::<Vec<_>>(),
            ),
            ("instance.create", 1) => answer(self.create(call.params()?)?),
            ("instance.get", 1) => answer(self.with(&id()?, |_, _| Ok(()))?),
            ("instance.stop", 1) => answer(self.with(&id()?, |_, i| match i.state {
                InstanceState::Running => {
                    Self::stop(i, InstanceState::Stopped);
                    Ok(())
                }
                other => Err(error(
                    error_code::CONFLICT,
                    format!("it is {}", other.as_str()),
                )),
            })?),
            ("instance.start", 1) => answer(self.with(&id()?, |this, i| match i.state {
                InstanceState::Stopped => {
                    i.process = Some(this.spawn(&i.image)?);
                    i.state = InstanceState::Running;
                    Ok(())
                }
                other => Err(error(
                    error_code::CONFLICT,
                    format!("it is {}", other.as_str()),
                )),
            })?),
            ("instance.terminate", 1) => answer(self.with(&id()?, |_, i| {
                Self::stop(i, InstanceState::Terminated);
                Ok(())
            })?),
            ("inventory.list", 1) => {
                let mut instances = self.instances.lock().unwrap();
                let items: Vec<InventoryItem> = instances
                    .iter_mut()
                    .map(|(id, i)| Self::view(id, i))
                    .filter(|v| v.state != InstanceState::Terminated)
                    .map(|v| InventoryItem {
                        id: v.id,
                        state: v.state,
                        region: Some(self.region.clone()),
                    })
                    .collect();
                answer(items)
            }
            _ => Err(call.unsupported()),
        }
    }

    fn shutdown(&self) {
        // Instances are processes of this plugin's process: they end with it.
        for instance in self.instances.lock().unwrap().values_mut() {
            Self::stop(instance, InstanceState::Terminated);
        }
    }
}

export_plugin!(Processes, name = "example-provider", kind = Provider);
