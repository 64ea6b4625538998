//! The native instance API with real QEMU VMs: lifecycle, tenant isolation, bad input.
#![forbid(unsafe_code)]

use serde_json::{json, Value};
use skyport_e2e::{expect_problem, Gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_lifecycle_is_tenant_scoped_and_hides_provider_internals() {
    skyport_e2e::assert_guest_image_prepared();
    let gw = Gateway::start();
    let demo = gw.token("demo", Some("finance"), &[]);
    let acme = gw.token("acme", None, &[]);

    let types = gw.get_json("/v1/instance-types", &demo).await;
    assert_eq!(
        types["instance_types"][0],
        json!({"name": "sp.micro", "vcpus": 1, "memory_mib": 128})
    );

    let response = gw
        .post(
            "/v1/instances?wait=running",
            &demo,
            Some(
                json!({"image": "skyport-tiny", "instance_type": "sp.micro", "region": "local-1",
                        "name": "web-1", "tags": {"env": "dev"}}),
            ),
        )
        .await;
    assert_eq!(response.status(), 202);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("vm-") && !text.contains("pid") && !text.contains("/"),
        "{text}"
    );
    let created: Value = serde_json::from_str(&text).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("i-") && id.len() == 19, "{id}");
    assert_eq!(created["state"], "running");
    assert_eq!(created["provider"], "local-vmm");
    assert_eq!(created["region"], "local-1");
    assert_eq!(created["department"], "finance");
    assert_eq!(created["memory_mib"], 128);

    let listed = gw
        .get_json("/v1/instances?tag:env=dev&state=running", &demo)
        .await;
    assert_eq!(listed["instances"].as_array().unwrap().len(), 1);
    let none = gw.get_json("/v1/instances?tag:env=prod", &demo).await;
    assert!(none["instances"].as_array().unwrap().is_empty());

    // Another tenant cannot see, stop or delete it: 404, exactly like an unknown id.
    let theirs = gw.get_json("/v1/instances", &acme).await;
    assert!(theirs["instances"].as_array().unwrap().is_empty());
    let path = format!("/v1/instances/{id}");
    expect_problem(gw.get(&path, &acme).await, 404).await;
    expect_problem(gw.post(&format!("{path}/stop"), &acme, None).await, 404).await;
    let delete = gw.delete(&path, &acme).await;
    expect_problem(delete, 404).await;
    let unknown = "i-0123456789abcdef0";
    let a = expect_problem(
        gw.get(&format!("/v1/instances/{unknown}"), &demo).await,
        404,
    )
    .await;
    let b = expect_problem(gw.get(&path, &acme).await, 404).await;
    assert_eq!(
        a["detail"].as_str().unwrap().replace(unknown, "ID"),
        b["detail"].as_str().unwrap().replace(&id, "ID")
    );

    // Stop, stop again (409), start, terminate.
    let stopped: Value = gw
        .post(&format!("{path}/stop?wait=stopped"), &demo, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stopped["state"], "stopped");
    expect_problem(gw.post(&format!("{path}/stop"), &demo, None).await, 409).await;
    let started = gw
        .post(&format!("{path}/start?wait=running"), &demo, None)
        .await;
    assert_eq!(started.status(), 202);
    let started: Value = started.json().await.unwrap();
    assert_eq!(started["state"], "running");
    let deleted = gw.delete(&path, &demo).await;
    assert_eq!(deleted.status(), 200);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(deleted["state"], "terminated");
    assert_eq!(gw.get_json(&path, &demo).await["state"], "terminated");
    expect_problem(gw.post(&format!("{path}/start"), &demo, None).await, 409).await;
}

#[tokio::test]
async fn bad_instance_requests_get_clear_400s() {
    let gw = Gateway::start();
    let demo = gw.token("demo", None, &[]);
    let bad_type = gw
        .post(
            "/v1/instances",
            &demo,
            Some(json!({"image": "skyport-tiny", "instance_type": "sp.huge"})),
        )
        .await;
    let body = expect_problem(bad_type, 400).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("sp.huge") && detail.contains("sp.micro, sp.small, sp.medium, sp.large"),
        "{detail}"
    );

    let bad_image = gw
        .post(
            "/v1/instances",
            &demo,
            Some(json!({"image": "windows-95", "instance_type": "sp.micro"})),
        )
        .await;
    let body = expect_problem(bad_image, 400).await;
    assert!(
        body["detail"].as_str().unwrap().contains("windows-95"),
        "{body}"
    );
    // Nothing was left behind.
    let listed = gw.get_json("/v1/instances", &demo).await;
    assert!(
        listed["instances"].as_array().unwrap().is_empty(),
        "{listed}"
    );

    let bad_region = gw
        .post(
            "/v1/instances",
            &demo,
            Some(json!({"image": "skyport-tiny", "instance_type": "sp.micro", "region": "mars-1"})),
        )
        .await;
    let body = expect_problem(bad_region, 400).await;
    assert!(
        body["detail"].as_str().unwrap().contains("local-1"),
        "{body}"
    );

    expect_problem(gw.get("/v1/instances/i-zzz", &demo).await, 400).await;
    expect_problem(
        gw.post("/v1/instances", &demo, Some(json!({"image": 1})))
            .await,
        400,
    )
    .await;
}

/// The meter-sink fixture's lifecycle events of kind `event` for `instance`, polled until
/// at least `at_least` arrived (or 20 s passed: the sync runs every 5 s and the tap flushes
/// every 100 ms).
async fn lifecycle_events_eventually(
    gw: &Gateway,
    admin: &str,
    instance: &Value,
    event: &str,
    at_least: usize,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let dump: Value = gw
            .post("/admin/plugins/meter-sink/ops/events.dump", admin, None)
            .await
            .json()
            .await
            .unwrap();
        let found: Vec<Value> = dump["result"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["type"] == "instance.lifecycle"
                    && e["attributes"]["event"] == event
                    && e["attributes"]["instance_id"] == instance["id"]
            })
            .cloned()
            .collect();
        if found.len() >= at_least || std::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// A gateway with the meter-sink fixture loaded, a demo token, and one `sp.micro` VM that
/// reached `running`.
async fn metered_gateway_with_one_running_vm() -> (Gateway, String, Value) {
    skyport_e2e::assert_guest_image_prepared();
    let gw = Gateway::start_with(skyport_e2e::GatewayOptions {
        extra: format!(
            "[[plugins]]\nname = \"meter-sink\"\nfile = \"{}\"\n",
            skyport_e2e::fixture("meter-sink").display()
        ),
        ..Default::default()
    });
    let demo = gw.token("demo", None, &[]);
    let created: Value = gw.create_running(&demo, "sp.micro").await;
    assert_eq!(created["state"], "running", "{created}");
    (gw, demo, created)
}

/// The QEMU pids of every VM the gateway's local-vmm manages (from their pid files).
fn qemu_pids(gw: &Gateway) -> std::collections::BTreeSet<u32> {
    let vms = std::fs::read_dir(gw.state_dir.join("plugins/local-vmm/vms")).unwrap();
    vms.flatten()
        .filter_map(|dir| std::fs::read_to_string(dir.path().join("pid")).ok())
        .map(|pid| pid.trim().parse().unwrap())
        .collect()
}

fn vm_process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// The QEMU pid of the only VM.
fn qemu_pid_of_instance(gw: &Gateway) -> u32 {
    let pids = qemu_pids(gw);
    assert_eq!(pids.len(), 1, "one VM: {pids:?}");
    pids.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vms_survive_a_gateway_kill9_and_a_killed_qemu_becomes_stopped() {
    let (mut gw, demo, created) = metered_gateway_with_one_running_vm().await;
    let path = format!("/v1/instances/{}", created["id"].as_str().unwrap());
    let pid = qemu_pid_of_instance(&gw);
    let second: Value = gw.create_running(&demo, "sp.micro").await;
    assert_eq!(second["state"], "running", "{second}");
    let second_path = format!("/v1/instances/{}", second["id"].as_str().unwrap());
    let pids = qemu_pids(&gw);
    assert_eq!(pids.len(), 2);
    let second_pid = *pids.iter().find(|p| **p != pid).unwrap();

    gw.kill9_and_restart();
    assert_eq!(
        gw.log().matches("QMP status running").count(),
        2,
        "both re-attached: {}",
        gw.log()
    );
    assert_eq!(qemu_pids(&gw), pids, "the same QEMU processes");
    assert_eq!(gw.get_json(&path, &demo).await["state"], "running");
    // Both are still controllable: the second one stops through the API.
    let stopped: Value = gw
        .post(&format!("{second_path}/stop?wait=stopped"), &demo, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(
        !vm_process_alive(second_pid),
        "QEMU {second_pid} still runs"
    );

    // Policy: a VM whose QEMU dies is `stopped` (disk kept), and can be started again. The
    // inventory sync (every 5 s) notices it and meters the stop, marked as the provider's
    // doing, without anyone reading the instance.
    skyport_e2e::kill(pid, skyport_e2e::Signal::KILL).expect("kill the VM's QEMU");
    let admin = gw.token("demo", None, &["admin"]);
    let stops = lifecycle_events_eventually(&gw, &admin, &created, "stop", 1).await;
    assert_eq!(stops.len(), 1, "exactly one stop: {stops:?}");
    assert_eq!(stops[0]["attributes"]["initiated_by"], "provider");
    assert_eq!(stops[0]["attributes"]["instance_id"], created["id"]);
    assert_eq!(stops[0]["attributes"]["state"], "stopped");
    assert_eq!(stops[0]["tenant"], "demo");
    assert_eq!(gw.get_json(&path, &demo).await["state"], "stopped");
    assert!(gw.metrics_text().await.contains(
        r#"skyport_instance_changes_detected_total{provider="local-vmm",state="stopped"} 1"#
    ));
    // Later sync rounds and reads must not meter the same change again.
    tokio::time::sleep(std::time::Duration::from_millis(5500)).await;
    assert_eq!(
        lifecycle_events_eventually(&gw, &admin, &created, "stop", 1)
            .await
            .len(),
        1
    );

    let delete = gw.delete(&path, &demo).await;
    assert_eq!(delete.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let dump: Value = gw
        .post("/admin/plugins/meter-sink/ops/events.dump", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    let terminate = dump["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "instance.lifecycle" && e["attributes"]["event"] == "terminate")
        .unwrap_or_else(|| panic!("no terminate event in {dump}"))
        .clone();
    assert_eq!(terminate["attributes"]["initiated_by"], "api");
    assert_eq!(
        lifecycle_events_eventually(&gw, &admin, &created, "terminate", 1)
            .await
            .len(),
        1,
        "the API's terminate is metered once, not again by the sync"
    );
    assert_eq!(terminate["attributes"]["vcpus"], 1);
    assert_eq!(terminate["attributes"]["provider"], "local-vmm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_whose_directory_vanished_is_terminated_and_its_qemu_reported_as_an_orphan() {
    let (mut gw, demo, created) = metered_gateway_with_one_running_vm().await;
    let pid = qemu_pid_of_instance(&gw);
    let vms = gw.state_dir.join("plugins/local-vmm/vms");
    std::fs::remove_dir_all(&vms).unwrap();
    std::fs::create_dir(&vms).unwrap();

    gw.kill9_and_restart();
    assert!(
        gw.log().contains(&format!("orphan QEMU pid {pid}")),
        "{}",
        gw.log()
    );
    let admin = gw.token("demo", None, &["admin"]);
    let terminated = lifecycle_events_eventually(&gw, &admin, &created, "terminate", 1).await;
    // The QEMU keeps running until an operator decides; the test cleans up after itself.
    let _ = skyport_e2e::kill(pid, skyport_e2e::Signal::KILL);
    assert_eq!(terminated.len(), 1, "{terminated:?}");
    assert_eq!(terminated[0]["attributes"]["instance_id"], created["id"]);
    assert_eq!(terminated[0]["attributes"]["initiated_by"], "provider");
    let path = format!("/v1/instances/{}", created["id"].as_str().unwrap());
    assert_eq!(gw.get_json(&path, &demo).await["state"], "terminated");
    assert!(gw
        .metrics_text()
        .await
        .contains(r#"skyport_instances_unmanaged{provider="local-vmm"} 1"#));
}

#[tokio::test]
async fn quota_breach_is_a_409_naming_the_limit_and_current_use() {
    let config = skyport_e2e::default_config().replace(
        "[tenants.acme]\ndepartments = [\"ops\"]",
        "[tenants.acme]\ndepartments = [\"ops\"]\nmax_memory_mib = 100",
    );
    let gw = Gateway::start_with(skyport_e2e::GatewayOptions {
        config: Some(config),
        ..Default::default()
    });
    let acme = gw.token("acme", None, &[]);
    let r = gw
        .post(
            "/v1/instances",
            &acme,
            Some(json!({"image": "skyport-tiny", "instance_type": "sp.micro"})),
        )
        .await;
    let body = expect_problem(r, 409).await;
    assert_eq!(
        body["detail"],
        "quota exceeded: max_memory_mib is 100, 0 in use, this request needs 128 more"
    );
    assert!(gw.get_json("/v1/instances", &acme).await["instances"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_concurrent_creates_all_reach_running() {
    skyport_e2e::assert_guest_image_prepared();
    let gw = Gateway::start();
    let demo = gw.token("demo", None, &[]);
    let body = json!({"image": "skyport-tiny", "instance_type": "sp.micro"});
    let creates = (0..4).map(|_| gw.post("/v1/instances?wait=running", &demo, Some(body.clone())));
    let responses = futures::future::join_all(creates).await;
    let mut ids = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 202);
        let v: Value = response.json().await.unwrap();
        assert_eq!(v["state"], "running", "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);

    // Listing pages through them in id order.
    let first = gw
        .get_json("/v1/instances?limit=3&state=running", &demo)
        .await;
    let page: Vec<&str> = first["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        page,
        ids[..3].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let token = first["next_token"].as_str().expect("a next_token");
    let rest = gw
        .get_json(
            &format!("/v1/instances?limit=3&state=running&next_token={token}"),
            &demo,
        )
        .await;
    assert_eq!(rest["instances"].as_array().unwrap().len(), 1);
    assert_eq!(rest["instances"][0]["id"], ids[3].as_str());
    assert!(rest.get("next_token").is_none(), "{rest}");
    for bad in ["limit=0", "limit=5000", "next_token=zzz", "colour=red"] {
        let problem =
            expect_problem(gw.get(&format!("/v1/instances?{bad}"), &demo).await, 400).await;
        assert!(problem["detail"].is_string(), "{bad}: {problem}");
    }

    for id in ids {
        let r = gw.delete(&format!("/v1/instances/{id}"), &demo).await;
        assert_eq!(r.status(), 200);
    }
}

/// Runs `skyport instances <args>` against `gw` as `tenant`: (exit code, stdout, stderr).
fn instances_cli(gw: &Gateway, tenant: &str, args: &[&str]) -> (i32, String, String) {
    let url = format!("https://{}", gw.api);
    let out = std::process::Command::new(skyport_e2e::skyport_bin())
        .arg("instances")
        .args(args)
        .args(["--url", &url, "--tenant", tenant, "--state-dir"])
        .arg(&gw.state_dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_with_progress_and_terminates() {
    skyport_e2e::assert_guest_image_prepared();
    let gw = Gateway::start();
    let (code, stdout, stderr) =
        instances_cli(&gw, "acme", &["create", "--type", "sp.micro", "--wait"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let created: Value = serde_json::from_str(&stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["state"], "running");
    assert!(
        stderr.contains(&format!("{id}: pending")) && stderr.contains(&format!("{id}: running")),
        "{stderr}"
    );

    let (code, stdout, _) = instances_cli(&gw, "acme", &["list"]);
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["instances"][0]["id"], id.as_str(), "{listed}");
    let (_, stdout, _) = instances_cli(&gw, "demo", &["list"]);
    assert_eq!(
        stdout.trim(),
        r#"{
  "instances": []
}"#
    );

    let (code, _, stderr) = instances_cli(&gw, "demo", &["terminate", &id]);
    assert_eq!(code, 1, "demo cannot terminate acme's instance");
    assert!(stderr.contains("404"), "{stderr}");
    let (code, stdout, _) = instances_cli(&gw, "acme", &["terminate", &id]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["state"], "terminated");
}
