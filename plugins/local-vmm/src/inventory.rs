//! What this host runs: the managed VMs with their liveness, the QEMU processes nobody
//! manages (orphans), and re-attaching to the VMs of an earlier start.

use super::*;

impl LocalVmm {
    /// Every managed VM, its liveness checked (a dead QEMU shows as `stopped`).
    pub(crate) fn list(&self) -> Value {
        let ids: Vec<String> = self
            .vms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let mut list: Vec<Value> = ids
            .iter()
            .filter_map(|id| self.get(id).ok())
            .map(|spec| self.view(&spec))
            .collect();
        list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        Value::Array(list)
    }

    /// [`list`](Self::list) plus orphans: QEMU processes launched from this state
    /// directory that no VM directory accounts for (its directory was removed, or its spec
    /// names another pid). They are reported, `"orphan": true`, never touched: an operator
    /// decides whether to kill them or restore their directory.
    pub(crate) fn inventory(&self) -> Value {
        let mut list = self.list();
        let orphans = self.orphans();
        if let Value::Array(items) = &mut list {
            items.extend(orphans.iter().map(|(pid, id)| {
                json!({"id": id, "state": "running", "region": self.config.region, "orphan": true, "pid": pid})
            }));
        }
        list
    }

    pub(crate) fn orphans(&self) -> Vec<(u32, String)> {
        let vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
        vm::qemus_under(&vm::vms_root(&self.state_dir))
            .into_iter()
            .filter(|(pid, id)| {
                vms.get(id)
                    .is_none_or(|spec| spec.pid.is_some_and(|known| known != *pid))
            })
            .collect()
    }

    /// Loads every VM directory: live QEMUs are re-attached, dead ones become `stopped`.
    pub(crate) fn reattach(&self) {
        let root = vm::vms_root(&self.state_dir);
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        // A QEMU launched just before the previous gateway died may not have its pid in
        // the spec yet: it is found by its pid file's place and its `-name`.
        let launched: HashMap<String, u32> = vm::qemus_under(&root)
            .into_iter()
            .map(|(pid, id)| (id, pid))
            .collect();
        let mut vms = self.vms.lock().unwrap_or_else(|p| p.into_inner());
        for entry in entries.flatten() {
            let dir = VmDir(entry.path());
            let Ok(mut spec) = dir.load() else {
                log::warn!("orphan VM directory {} (no readable spec)", dir.0.display());
                continue;
            };
            let live_pid = spec
                .pid
                .filter(|pid| vm::is_our_qemu(*pid, &spec.id))
                .or_else(|| launched.get(&spec.id).copied());
            if live_pid.is_some() && live_pid != spec.pid {
                spec.pid = live_pid;
                let _ = dir.save(&spec);
            }
            if live_pid.is_some() {
                // init runs inside the plugin's runtime context, outside any task.
                let answer = tokio::runtime::Handle::current().block_on(qmp::execute(
                    &dir.qmp(),
                    "query-status",
                    None,
                    Duration::from_secs(5),
                ));
                match answer {
                    Ok(status) => log::info!(
                        "VM {} re-attached (pid {:?}, QMP status {})",
                        spec.id,
                        spec.pid,
                        status["status"].as_str().unwrap_or("unknown")
                    ),
                    Err(e) => {
                        // Ours (its command line names it) but unreachable: it cannot be
                        // controlled, so it is stopped rather than left running unbilled.
                        log::warn!(
                            "VM {}: QEMU alive but QMP silent ({e}); stopping it",
                            spec.id
                        );
                        if let Some(pid) = spec.pid {
                            let _ = tokio::runtime::Handle::current().block_on(vm::power_off(
                                &dir,
                                pid,
                                &spec.id,
                                Duration::from_secs(1),
                            ));
                        }
                        spec.state = VmState::Stopped;
                        spec.pid = None;
                        let _ = dir.save(&spec);
                    }
                }
            } else if spec.state == VmState::Pending {
                // Asked to run but never launched: resume_pending_boots boots it.
                log::info!("VM {} was not launched yet; booting it", spec.id);
            } else if matches!(spec.state, VmState::Running | VmState::Stopping) {
                log::warn!("VM {} found dead; marked stopped", spec.id);
                spec.state = VmState::Stopped;
                spec.pid = None;
                let _ = dir.save(&spec);
            }
            vms.insert(spec.id.clone(), spec);
        }
        drop(vms);
        for (pid, id) in self.orphans() {
            log::warn!(
                "orphan QEMU pid {pid} (VM {id}): no VM directory accounts for it; \
                 kill it or restore {}",
                self.dir(&id).0.display()
            );
        }
    }
}
