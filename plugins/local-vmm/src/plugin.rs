//! The plugin as the SDK sees it: its description, its start, and its ops.

use super::*;

pub(crate) fn id_param(params: &Value) -> Result<String, PluginError> {
    params
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| err(error_code::INVALID_INPUT, "missing \"id\""))
}

/// The plugin as the SDK sees it: a shared handle, because boots run in background tasks.
struct LocalVmmPlugin(Arc<LocalVmm>);

impl Plugin for LocalVmmPlugin {
    fn describe() -> Description {
        Description {
            name: "local-vmm".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: "provider".into(),
            summary: "virtual machines on this host through QEMU".into(),
            ops: [
                "health@1",
                "regions@1",
                "instance.create@1",
                "instance.find@1",
                "instance.get@1",
                "instance.list@1",
                "instance.stop@1",
                "instance.start@1",
                "instance.terminate@1",
                "instance.console@1",
                "instance.resize@1",
                "images.list@1",
                "images.register@1",
                "images.remove@1",
                "instance.reboot@1",
                "instance.status@1",
                "instance.pause@1",
                "instance.resume@1",
                "instance.debug.cmdline@1",
                "inventory.list@1",
                "snapshots.list@1",
            ]
            .map(String::from)
            .to_vec(),
            config_schema: json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "image_library": {"type": "string"},
                    "images": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["name", "kernel", "initrd"],
                            "properties": {
                                "name": {"type": "string"},
                                "kernel": {"type": "string"},
                                "initrd": {"type": "string"},
                                "disk": {"type": "string"},
                                "cmdline": {"type": "string"},
                                "snapshot_boot": {"type": "boolean"}
                            }
                        }
                    },
                    "state_dir": {"type": "string"},
                    "accelerator": {"enum": ["auto", "tcg", "kvm"]},
                    "region": {"type": "string"},
                    "max_concurrent_boots": {"type": "integer", "minimum": 1},
                    "ready_timeout_secs": {"type": "integer", "minimum": 1},
                    "qemu": {"type": "string"},
                    "qemu_img": {"type": "string"},
                    "snapshots": {"type": "boolean"},
                    "network": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "mode": {"enum": ["auto", "bridge", "user"]},
                            "bridge": {"type": "string"},
                            "cidr": {"type": "string"},
                            "nat": {"type": "boolean"}
                        }
                    }
                }
            }),
        }
    }

    fn init(config: Value, host: Host) -> Result<Self, PluginError> {
        let config: VmmConfig = serde_json::from_value(config)
            .map_err(|e| err(error_code::INVALID_CONFIG, e.to_string()))?;
        // Relative paths resolve as every relative path of the configuration does: against
        // the gateway's state directory, wherever the gateway was started.
        let state_dir = match &config.state_dir {
            Some(dir) => host.resolve_config_path(dir)?,
            None => host.state_dir()?,
        };
        // Absolute: the programs it is handed to do not all run where the gateway was
        // started (dnsmasq changes to `/` before it writes its pid file).
        let state_dir = std::path::absolute(&state_dir).map_err(|e| {
            err(
                error_code::INVALID_CONFIG,
                format!("{}: {e}", state_dir.display()),
            )
        })?;
        let mut configured_images = config.images.clone();
        for files in &mut configured_images {
            files.kernel = host.resolve_config_path(&files.kernel)?;
            files.initrd = host.resolve_config_path(&files.initrd)?;
            if let Some(disk) = &files.disk {
                files.disk = Some(host.resolve_config_path(disk)?);
            }
        }
        let image_library = host.resolve_config_path(&config.image_library)?;
        std::fs::create_dir_all(vm::vms_root(&state_dir)).map_err(|e| {
            err(
                error_code::INVALID_CONFIG,
                format!("{}: {e}", state_dir.display()),
            )
        })?;
        let launcher = Launcher {
            qemu: config.qemu.clone(),
            qemu_img: config.qemu_img.clone(),
            accel: choose_accelerator(&config.accelerator),
        };
        log::info!(
            "local-vmm: accelerator {}, state in {}",
            launcher.accel,
            state_dir.display()
        );
        let images = ImageLibrary::new(image_library, &configured_images, config.qemu_img.clone())
            .map_err(|e| err(error_code::INVALID_CONFIG, e))?;
        let network = HostNetwork::new(config.network.clone(), state_dir.join("network"))
            .map_err(|e| err(error_code::INVALID_CONFIG, e))?;
        log::info!("local-vmm: network {}", network.describe());
        let vmm = LocalVmm {
            snapshots: Snapshots::new(&state_dir),
            images,
            boots: Arc::new(Semaphore::new(config.max_concurrent_boots.max(1))),
            config,
            launcher,
            state_dir,
            vms: Arc::default(),
            network,
        };
        vmm.reattach();
        let vmm = Arc::new(vmm);
        vmm.resume_pending_boots();
        Ok(LocalVmmPlugin(vmm))
    }

    async fn call(self: Arc<Self>, call: OpCall) -> Result<Value, PluginError> {
        let vmm = &self.0;
        match (call.op.as_str(), call.version) {
            (ops::HEALTH, 1) => Ok(serde_json::to_value(vmm.health()).unwrap_or_default()),
            (ops::REGIONS, 1) => Ok(json!([{
                "name": vmm.config.region,
                "zones": [vmm.zone()],
                "cidr": vmm.network.cidr().to_string(),
            }])),
            ("instance.create", 1) => vmm.create(&call.params).await,
            ("instance.find", 1) => vmm.find(&call.params),
            ("instance.get", 1) => Ok(vmm.view(&vmm.get(&id_param(&call.params)?)?)),
            ("instance.list", 1) => Ok(vmm.list()),
            ("inventory.list", 1) => Ok(vmm.inventory()),
            ("snapshots.list", 1) => Ok(vmm.snapshots.list()),
            ("instance.stop", 1) => vmm.stop(&id_param(&call.params)?).await,
            ("instance.start", 1) => vmm.start(&id_param(&call.params)?).await,
            ("instance.terminate", 1) => vmm.terminate(&id_param(&call.params)?).await,
            ("instance.resize", 1) => vmm.resize(&call.params),
            ("images.list", 1) => Ok(vmm.images()),
            ("images.register", 1) => {
                let files: ImageFiles = serde_json::from_value(call.params.clone())
                    .map_err(|e| err(error_code::INVALID_INPUT, format!("images.register: {e}")))?;
                let image = vmm.images.register(&files).await?;
                log::info!("image {} registered", image.name);
                Ok(
                    json!({"name": image.name, "disk_template": image.disk.is_some(),
                           "snapshot_boot": image.snapshot_boot, "source": image.source}),
                )
            }
            ("images.remove", 1) => {
                let name = call
                    .params
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                vmm.remove_image(name)
            }
            ("instance.reboot", 1) => vmm.reboot(&id_param(&call.params)?).await,
            ("instance.status", 1) => {
                vmm.qmp_control(&id_param(&call.params)?, "query-status")
                    .await
            }
            ("instance.pause", 1) => vmm.qmp_control(&id_param(&call.params)?, "stop").await,
            ("instance.resume", 1) => vmm.qmp_control(&id_param(&call.params)?, "cont").await,
            ("instance.debug.cmdline", 1) => vmm.command_line(&id_param(&call.params)?),
            ("instance.console", 1) => {
                let tail = call
                    .params
                    .get("tail_bytes")
                    .and_then(Value::as_u64)
                    .unwrap_or(64 * 1024);
                vmm.console(&id_param(&call.params)?, tail as usize)
            }
            _ => Err(call.unsupported()),
        }
    }
}

export_plugin!(LocalVmmPlugin, name = "local-vmm", kind = Provider);
