//! The local-vmm provider plugin with real QEMU, driven through the gateway's plugin-op
//! admin route (the tenant instance API builds on these ops).
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skyport_e2e::{default_config, expect_problem, Gateway, GatewayOptions};

fn assert_qemu_installed() {
    assert!(
        std::process::Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false),
        "qemu-system-x86_64 is missing: run tests/install-deps.sh test (make test does)"
    );
    skyport_e2e::assert_guest_image_prepared();
}

async fn op(gw: &Gateway, admin: &str, name: &str, params: Value) -> reqwest::Response {
    gw.post(
        &format!("/admin/plugins/local-vmm/ops/{name}"),
        admin,
        Some(params),
    )
    .await
}

async fn op_ok(gw: &Gateway, admin: &str, name: &str, params: Value) -> Value {
    let response = op(gw, admin, name, params).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{name}: {body}");
    body["result"].clone()
}

async fn wait_state(gw: &Gateway, admin: &str, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let vm = op_ok(gw, admin, "instance.get", json!({"id": id})).await;
        if vm["state"] == state {
            return vm;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never reached {state}: {vm}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn qemu_pids(id: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let needle = format!("-name\0{id}\0");
            if cmdline
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| {
                        s.rsplit(')')
                            .next()
                            .unwrap_or("")
                            .trim_start()
                            .starts_with('Z')
                    })
                    .unwrap_or(false);
                if !zombie {
                    pids.push(pid);
                }
            }
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_vm_boots_stops_starts_and_terminates() {
    assert_qemu_installed();
    let gw = Gateway::start();
    let admin = gw.token("demo", None, &["admin"]);
    let providers = gw.get_json("/v1/providers", &admin).await;
    let vmm = providers["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "local-vmm")
        .expect("local-vmm loaded")
        .clone();
    assert_eq!(vmm["health"]["healthy"], true, "{vmm}");
    assert_eq!(vmm["regions"], json!(["local-1"]));

    let created = op_ok(
        &gw,
        &admin,
        "instance.create",
        json!({"skyport_id": "i-0000000000000e2e0", "idempotency_key": "e2e-1", "image": "skyport-tiny", "instance_type": "sp.micro", "vcpus": 1, "memory_mib": 128}),
    )
    .await;
    assert_eq!(created["state"], "pending");
    let id = created["id"].as_str().unwrap().to_string();
    // The same create again (a retry after a timeout) answers the same VM.
    let again = op_ok(
        &gw,
        &admin,
        "instance.create",
        json!({"skyport_id": "i-0000000000000e2e0", "idempotency_key": "e2e-1", "image": "skyport-tiny", "instance_type": "sp.micro", "vcpus": 1, "memory_mib": 128}),
    )
    .await;
    assert_eq!(again["id"], created["id"]);
    wait_state(&gw, &admin, &id, "running").await;
    assert_eq!(qemu_pids(&id).len(), 1);
    let console = op_ok(&gw, &admin, "instance.console", json!({"id": id})).await;
    let output = console["output"].as_str().unwrap();
    assert!(output.contains("SKYPORT-GUEST-READY"), "{output}");
    assert!(output.contains("cpus=1"), "{output}");

    // QMP controls: pause and resume (EC2 has no paused state: it stays `running`).
    let paused = op_ok(&gw, &admin, "instance.pause", json!({"id": id})).await;
    assert_eq!(paused["qmp_status"], "paused", "{paused}");
    assert_eq!(paused["state"], "running");
    let status = op_ok(&gw, &admin, "instance.status", json!({"id": id})).await;
    assert_eq!(status["qmp_status"], "paused");
    let resumed = op_ok(&gw, &admin, "instance.resume", json!({"id": id})).await;
    assert_eq!(resumed["qmp_status"], "running", "{resumed}");

    // Stopping a running VM powers the guest off; the disk stays.
    let stopped = op_ok(&gw, &admin, "instance.stop", json!({"id": id})).await;
    assert_eq!(stopped["state"], "stopped");
    assert!(qemu_pids(&id).is_empty(), "QEMU still running after stop");
    let again = op(&gw, &admin, "instance.stop", json!({"id": id})).await;
    expect_problem(again, 409).await;

    // Start boots it again from the same disk.
    let started = op_ok(&gw, &admin, "instance.start", json!({"id": id})).await;
    assert_eq!(started["state"], "pending");
    wait_state(&gw, &admin, &id, "running").await;

    let vm_dir = gw.state_dir.join("plugins/local-vmm/vms").join(&id);
    assert!(vm_dir.join("disk.qcow2").exists());
    let gone = op_ok(&gw, &admin, "instance.terminate", json!({"id": id})).await;
    assert_eq!(gone["state"], "terminated");
    assert!(
        qemu_pids(&id).is_empty(),
        "QEMU still running after terminate"
    );
    assert!(!vm_dir.exists(), "state directory not removed");
    let missing = op(&gw, &admin, "instance.get", json!({"id": id})).await;
    expect_problem(missing, 404).await;
}

#[tokio::test]
async fn missing_qemu_makes_the_provider_unhealthy_with_the_reason_and_creates_fail_503() {
    let config = default_config().replace(
        "config = { image_library = ",
        "config = { qemu = \"/nonexistent/qemu-system-x86_64\", image_library = ",
    );
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        ..Default::default()
    });
    let token = gw.token("demo", None, &["admin"]);
    let providers = gw.get_json("/v1/providers", &token).await;
    let vmm = &providers["providers"][0];
    assert_eq!(vmm["name"], "local-vmm");
    assert_eq!(vmm["health"]["healthy"], false);
    let reason = vmm["health"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("not found; install qemu-system-x86"),
        "{reason}"
    );
    let r = op(
        &gw,
        &token,
        "instance.create",
        json!({"skyport_id": "i-0000000000000e2e0", "idempotency_key": "e2e-1", "image": "skyport-tiny", "instance_type": "sp.micro", "vcpus": 1, "memory_mib": 128}),
    )
    .await;
    let body = expect_problem(r, 503).await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("install qemu-system-x86"));
    // The gateway keeps serving.
    assert_eq!(gw.get("/v1/whoami", &token).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_skyport_did_not_create_is_logged_once_listed_and_adopted() {
    assert_qemu_installed();
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(default_config().replace("sync_interval_secs = 5", "sync_interval_secs = 1")),
        ..Default::default()
    });
    let admin = gw.token("demo", None, &["admin"]);
    // Made through the provider directly: Skyport's inventory does not know it.
    let vm = op_ok(
        &gw,
        &admin,
        "instance.create",
        json!({"skyport_id": "i-0000000000000e2e1", "idempotency_key": "outside-1", "image": "skyport-tiny", "instance_type": "sp.micro", "vcpus": 1, "memory_mib": 128}),
    )
    .await;
    let id = vm["id"].as_str().unwrap().to_string();
    // Several syncs pass; the VM is logged once.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let logged = gw
        .log()
        .lines()
        .filter(|l| l.contains("does not know") && l.contains(&id))
        .count();
    assert_eq!(logged, 1, "{}", gw.log());

    let listed = gw
        .get_json("/admin/providers/local-vmm/unmanaged", &admin)
        .await;
    let entry = listed["unmanaged"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{listed}"))
        .clone();
    assert_eq!(entry["image"], "skyport-tiny");
    assert_eq!(entry["instance_type"], "sp.micro");
    assert_eq!(entry["orphan"], false);

    // Adopted into acme, with what the provider reports.
    let adopted: Value = gw
        .post(
            &format!("/admin/providers/local-vmm/unmanaged/{id}/adopt"),
            &admin,
            Some(json!({"tenant": "acme", "name": "found"})),
        )
        .await
        .json()
        .await
        .unwrap();
    let instance = adopted["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{adopted}"));
    assert!(instance.starts_with("i-"), "{adopted}");
    assert_eq!(adopted["region"], "local-1");
    let acme = gw.token("acme", None, &[]);
    let mine = gw
        .get_json(&format!("/v1/instances/{instance}"), &acme)
        .await;
    assert_eq!(mine["name"], "found");
    let listed = gw
        .get_json("/admin/providers/local-vmm/unmanaged", &admin)
        .await;
    assert!(
        !listed["unmanaged"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == id.as_str()),
        "{listed}"
    );
    // Another tenant does not see it; a second adoption is refused.
    let r = gw
        .get(
            &format!("/v1/instances/{instance}"),
            &gw.token("demo", None, &[]),
        )
        .await;
    expect_problem(r, 404).await;
    let r = gw
        .post(
            &format!("/admin/providers/local-vmm/unmanaged/{id}/adopt"),
            &admin,
            Some(json!({"tenant": "acme"})),
        )
        .await;
    expect_problem(r, 404).await;
    // Its tenant terminates it like any instance: the VM goes.
    let r = gw.delete(&format!("/v1/instances/{instance}"), &acme).await;
    assert!(r.status().is_success(), "{}", r.status());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !qemu_pids(&id).is_empty() {
        assert!(Instant::now() < deadline, "the VM's QEMU is still running");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_relative_image_library_is_under_the_state_directory_and_a_missing_one_says_what_to_run()
{
    // The shipped setting, `image_library = "images"`, from a gateway whose working
    // directory is not its state directory.
    let config = default_config()
        .replace(
            &format!(
                "image_library = \"{}\"",
                skyport_e2e::guest_library().display()
            ),
            "image_library = \"images\"",
        )
        .replace(
            "health_probe_interval_secs = 30",
            "health_probe_interval_secs = 1",
        );
    assert!(config.contains("image_library = \"images\""));
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        ..Default::default()
    });
    let token = gw.token("demo", None, &["admin"]);
    let providers = gw.get_json("/v1/providers", &token).await;
    let vmm = &providers["providers"][0];
    assert_eq!(vmm["health"]["healthy"], false, "{vmm}");
    let library = gw.state_dir.join("images");
    let reason = vmm["health"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("no image in {}", library.display()))
            && reason.contains("prepare-guest.sh"),
        "{reason}"
    );
    // The library appears where the state directory is: the provider becomes healthy and
    // offers its image in its region, with no restart.
    std::fs::create_dir_all(&library).unwrap();
    std::os::unix::fs::symlink(
        skyport_e2e::guest_library().join("skyport-tiny"),
        library.join("skyport-tiny"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let providers = gw.get_json("/v1/providers", &token).await;
        if providers["providers"][0]["health"]["healthy"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "never healthy: {providers}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let images = gw.get_json("/v1/images", &token).await;
    assert!(
        images["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "skyport-tiny" && i["region"] == "local-1"),
        "{images}"
    );
}

/// The console line that starts with `marker`, if the guest printed one.
fn console_line<'a>(console: &'a str, marker: &str) -> Option<&'a str> {
    console.lines().find(|line| line.starts_with(marker))
}

/// When a snapshot was taken (seconds since the epoch), by name.
async fn snapshot_taken_at(gw: &Gateway, admin: &str, name: &str) -> Option<u64> {
    let list = op_ok(gw, admin, "snapshots.list", json!({})).await;
    let found = list.as_array()?.iter().find(|s| s["name"] == name)?.clone();
    assert!(found.get("failed").is_none(), "{found}");
    assert!(found["bytes"].as_u64().unwrap() > 1 << 20, "{found}");
    found["taken_at"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_start_from_a_snapshot_of_their_image_each_as_its_own_machine() {
    assert_qemu_installed();
    // A library of this test's own: the image changed below is this test's copy.
    let tiny = skyport_e2e::guest_library().join("skyport-tiny");
    let library = skyport_e2e::temp_state_dir("snapshot-library");
    std::os::unix::fs::symlink(&tiny, library.join("skyport-tiny")).unwrap();
    let shared = format!(
        "image_library = \"{}\"",
        skyport_e2e::guest_library().display()
    );
    let config = default_config().replace(
        &shared,
        &format!("image_library = \"{}\"", library.display()),
    );
    assert!(config.contains(&library.display().to_string()));
    // Started as `make run` starts it, with a relative state directory (`./var`): the
    // plugin hands its paths to programs that do not run where the gateway was started.
    let gw = Gateway::start_with_relative_state_dir(GatewayOptions {
        config: Some(config),
        ..Default::default()
    });
    let admin = gw.token("demo", None, &["admin"]);
    let file = |name: &str| tiny.join(name).display().to_string();
    for (name, snapshot_boot) in [("tiny-snap", true), ("tiny-cold", false)] {
        let register = json!({"name": name, "kernel": file("vmlinuz"), "initrd": file("initramfs.gz"),
                              "disk": file("disk.qcow2"), "snapshot_boot": snapshot_boot});
        let created = gw.post("/admin/images", &admin, Some(register)).await;
        assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    }
    let images = op_ok(&gw, &admin, "images.list", json!({})).await;
    let snapshot_boot = |name: &str| {
        images
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap()["snapshot_boot"]
            .clone()
    };
    assert_eq!(snapshot_boot("tiny-snap"), true);
    assert_eq!(snapshot_boot("tiny-cold"), false);

    let create = |n: u32, image: &'static str| {
        let gw = &gw;
        let admin = &admin;
        async move {
            let created = op_ok(
                gw,
                admin,
                "instance.create",
                json!({"skyport_id": format!("i-00000000000005a{n}"), "idempotency_key": format!("snap-{n}"),
                       "image": image, "instance_type": "sp.micro", "vcpus": 1, "memory_mib": 128}),
            )
            .await;
            let id = created["id"].as_str().unwrap().to_string();
            let vm = wait_state(gw, admin, &id, "running").await;
            let console = op_ok(gw, admin, "instance.console", json!({"id": id})).await;
            (vm, console["output"].as_str().unwrap().to_string())
        }
    };
    // The first VM waits for the snapshot to be taken, then starts from it, as its own
    // machine: its own identity from its seed, its own MAC and address.
    let (first, first_console) = create(1, "tiny-snap").await;
    assert_eq!(
        first["boot"],
        "snapshot",
        "{first}\n{first_console}\nsnapshots: {}",
        op_ok(&gw, &admin, "snapshots.list", json!({})).await
    );
    let mac = first["network"]["mac"].as_str().unwrap();
    let ip = first["network"]["private_ip"].as_str().unwrap();
    assert_eq!(
        console_line(&first_console, "SKYPORT-GUEST-RESTORED"),
        Some(format!("SKYPORT-GUEST-RESTORED {mac}").as_str()),
        "{first_console}"
    );
    assert!(
        console_line(&first_console, "SKYPORT-GUEST-SEED").is_some_and(
            |l| l.contains("instance-id=i-00000000000005a1 hostname=i-00000000000005a1")
        ),
        "{first_console}"
    );
    assert!(
        console_line(&first_console, "SKYPORT-GUEST-NET")
            .is_some_and(|l| l.contains(&format!(" {ip}/")) && l.ends_with(mac)),
        "{first_console}"
    );
    let snapshot = "tiny-snap@128m-1cpu";
    let taken = snapshot_taken_at(&gw, &admin, snapshot)
        .await
        .expect("the snapshot is listed");

    // The second starts from the same snapshot, not taken again, and is another machine.
    let (second, second_console) = create(2, "tiny-snap").await;
    assert_eq!(second["boot"], "snapshot", "{second}");
    assert_ne!(second["network"]["mac"], first["network"]["mac"]);
    assert!(
        console_line(&second_console, "SKYPORT-GUEST-SEED")
            .is_some_and(|l| l.contains("instance-id=i-00000000000005a2")),
        "{second_console}"
    );
    assert!(
        console_line(&second_console, "SKYPORT-GUEST-RESTORED")
            .is_some_and(|l| l.ends_with(second["network"]["mac"].as_str().unwrap())),
        "{second_console}"
    );
    assert_eq!(snapshot_taken_at(&gw, &admin, snapshot).await, Some(taken));
    let dir = |vm: &Value| {
        gw.state_dir
            .join("plugins/local-vmm/vms")
            .join(vm["id"].as_str().unwrap())
    };
    assert!(dir(&first).join("disk.qcow2").is_file() && dir(&second).join("disk.qcow2").is_file());

    // A changed image: the snapshot is taken again before the next VM starts from it.
    let initrd = library.join("tiny-snap/initramfs.gz");
    std::fs::File::options()
        .write(true)
        .open(&initrd)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let (third, _) = create(3, "tiny-snap").await;
    assert_eq!(third["boot"], "snapshot", "{third}");
    let retaken = snapshot_taken_at(&gw, &admin, snapshot).await.unwrap();
    assert!(retaken > taken, "taken at {taken}, then {retaken}");

    // An image without snapshot boots cold.
    let (cold, cold_console) = create(4, "tiny-cold").await;
    assert_eq!(cold["boot"], "cold", "{cold}");
    assert!(
        !cold_console.contains("SKYPORT-GUEST-RESTORED"),
        "{cold_console}"
    );
    assert!(cold_console.contains("SKYPORT-GUEST-READY"));

    for vm in [&first, &second, &third, &cold] {
        let gone = op_ok(&gw, &admin, "instance.terminate", json!({"id": vm["id"]})).await;
        assert_eq!(gone["state"], "terminated");
    }
    drop(gw);
    let _ = std::fs::remove_dir_all(&library);
}
