//! Usable VMs, as a tenant uses them: real QEMU guests on the gateway's private network,
//! created through the aws CLI and the native API with a key pair and user data, reached
//! with a real SSH client. Each gateway has a bridge and a /24 of its own
//! (`skyport_e2e::test_network`), removed when it stops.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skyport_e2e::ec2::{access_key, aws_cli};
use skyport_e2e::{assert_guest_image_prepared, temp_state_dir, Gateway};

/// An ed25519 key made with ssh-keygen, in a directory of its own.
struct SshKey {
    dir: PathBuf,
}

impl SshKey {
    fn new() -> Self {
        let dir = temp_state_dir("ssh-key");
        let out = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "tester@skyport",
                "-f",
            ])
            .arg(dir.join("id"))
            .output()
            .expect(
                "ssh-keygen not found: install openssh-client (tests/install-deps.sh test does)",
            );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn private(&self) -> PathBuf {
        self.dir.join("id")
    }

    fn public(&self) -> PathBuf {
        self.dir.join("id.pub")
    }

    /// Runs `command` on `root@host` (port `port`); returns (exit code, stdout + stderr).
    fn run(&self, host: &str, port: u16, command: &str) -> (i32, String) {
        let out = Command::new("ssh")
            .arg("-i")
            .arg(self.private())
            .args([
                "-p",
                &port.to_string(),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "LogLevel=ERROR",
                &format!("root@{host}"),
                command,
            ])
            .output()
            .expect("ssh not found: install openssh-client (tests/install-deps.sh test does)");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Runs `command` until it succeeds with output containing `expect`, at most 90 s
    /// (the guest's SSH server is up when it is `running`; user data runs after it).
    fn wait_for(&self, host: &str, port: u16, command: &str, expect: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (code, out) = self.run(host, port, command);
            if code == 0 && out.contains(expect) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "`{command}` on {host}:{port} never printed {expect:?}; last answer ({code}): {out}"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

impl Drop for SshKey {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The aws CLI's JSON answer to `args` in region local-1; panics with its stderr.
fn aws(gw: &Gateway, key: &Value, args: &[&str]) -> Value {
    let (code, out, err) = aws_cli(gw, key, "local-1", args);
    assert_eq!(code, 0, "aws {args:?}: {err}");
    if out.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("aws {args:?}: {e}: {out}"))
}

fn instances_of(answer: &Value) -> Vec<Value> {
    answer["Reservations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["Instances"].as_array().unwrap().clone())
        .collect()
}

/// DescribeInstances of `ids` until every one is `state`; returns them in `ids`' order.
fn wait_state(gw: &Gateway, key: &Value, ids: &[String], state: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut args = vec!["ec2", "describe-instances", "--instance-ids"];
        args.extend(ids.iter().map(String::as_str));
        let found = instances_of(&aws(gw, key, &args));
        let ordered: Vec<Value> = ids
            .iter()
            .filter_map(|id| {
                found
                    .iter()
                    .find(|i| i["InstanceId"] == id.as_str())
                    .cloned()
            })
            .collect();
        if ordered.len() == ids.len() && ordered.iter().all(|i| i["State"]["Name"] == state) {
            return ordered;
        }
        assert!(Instant::now() < deadline, "not all {state}: {found:#?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The network directory of the gateway's local-vmm: its DHCP hosts file and bridge name.
fn network_dir(gw: &Gateway) -> PathBuf {
    gw.state_dir.join("plugins/local-vmm/network")
}

fn bridge_ports(network: &Path) -> Vec<String> {
    let bridge = std::fs::read_to_string(network.join("bridge")).expect("the bridge is named");
    std::fs::read_dir(Path::new("/sys/class/net").join(bridge.trim()).join("brif"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn vms_from_the_aws_cli_get_addresses_keys_and_user_data_and_reach_each_other() {
    assert_guest_image_prepared();
    let mut gw = Gateway::start();
    let key = access_key(&gw, "demo").await;
    let ssh = SshKey::new();
    let material = format!("fileb://{}", ssh.public().display());
    let imported = aws(
        &gw,
        &key,
        &[
            "ec2",
            "import-key-pair",
            "--key-name",
            "tester",
            "--public-key-material",
            &material,
        ],
    );
    assert_eq!(imported["KeyName"], "tester");
    let images = aws(&gw, &key, &["ec2", "describe-images"]);
    let ami = images["Images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["Name"] == "skyport-tiny")
        .expect("skyport-tiny is offered")["ImageId"]
        .as_str()
        .unwrap()
        .to_string();
    let user_data = ssh.dir.join("user-data.sh");
    std::fs::write(
        &user_data,
        "#!/bin/sh\necho \"marker from $(hostname)\" > /tmp/marker\n",
    )
    .unwrap();
    let user_data_arg = format!("file://{}", user_data.display());
    let run = aws(
        &gw,
        &key,
        &[
            "ec2",
            "run-instances",
            "--image-id",
            &ami,
            "--instance-type",
            "sp.micro",
            "--count",
            "2",
            "--key-name",
            "tester",
            "--user-data",
            &user_data_arg,
        ],
    );
    let ids: Vec<String> = run["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{run}");
    let running = wait_state(&gw, &key, &ids, "running");
    let ips: Vec<String> = running
        .iter()
        .map(|i| {
            i["PrivateIpAddress"]
                .as_str()
                .expect("a private address")
                .to_string()
        })
        .collect();
    assert_ne!(ips[0], ips[1], "two VMs never share an address");
    for (vm, ip) in running.iter().zip(&ips) {
        assert_eq!(
            vm["NetworkInterfaces"][0]["PrivateIpAddress"],
            ip.as_str(),
            "{vm:#}"
        );
        assert_eq!(vm["KeyName"], "tester");
    }

    // The key reached the guest, the user data ran there, and the VMs reach each other.
    for (id, ip) in ids.iter().zip(&ips) {
        let marker = ssh.wait_for(ip, 22, "cat /tmp/marker", "marker from");
        assert_eq!(marker.trim(), format!("marker from {id}"));
    }
    let (code, out) = ssh.run(&ips[0], 22, &format!("ping -c 1 -W 5 {}", ips[1]));
    assert_eq!(code, 0, "vm 1 cannot reach vm 2: {out}");

    // What the guest reports on its console is what DescribeInstances says.
    let console = aws(
        &gw,
        &key,
        &["ec2", "get-console-output", "--instance-id", &ids[0]],
    );
    let output = console["Output"].as_str().unwrap_or_default();
    let mac = running[0]["NetworkInterfaces"][0]["MacAddress"]
        .as_str()
        .unwrap();
    assert!(
        output.contains(&format!("SKYPORT-GUEST-NET eth0 {}/24 {mac}", ips[0])),
        "{output}"
    );

    // The region's network is the default VPC, one default subnet per zone; filters agree.
    let vpc_id = running[0]["VpcId"].as_str().expect("a VPC").to_string();
    let subnet_id = running[0]["SubnetId"]
        .as_str()
        .expect("a subnet")
        .to_string();
    let vpcs = aws(
        &gw,
        &key,
        &[
            "ec2",
            "describe-vpcs",
            "--filters",
            &format!("Name=vpc-id,Values={vpc_id}"),
        ],
    );
    assert_eq!(vpcs["Vpcs"].as_array().unwrap().len(), 1, "{vpcs}");
    let cidr = vpcs["Vpcs"][0]["CidrBlock"].as_str().unwrap().to_string();
    assert!(cidr.ends_with(".0/24") && cidr.starts_with("10."), "{cidr}");
    let prefix = cidr.trim_end_matches("0/24");
    assert!(
        ips.iter().all(|ip| ip.starts_with(prefix)),
        "{ips:?} in {cidr}"
    );
    let none = aws(
        &gw,
        &key,
        &[
            "ec2",
            "describe-vpcs",
            "--filters",
            "Name=vpc-id,Values=vpc-0000000000000000a",
        ],
    );
    assert_eq!(none["Vpcs"].as_array().unwrap().len(), 0, "{none}");
    let subnets = aws(
        &gw,
        &key,
        &[
            "ec2",
            "describe-subnets",
            "--filters",
            &format!("Name=vpc-id,Values={vpc_id}"),
        ],
    );
    let subnet = &subnets["Subnets"][0];
    assert_eq!(subnet["SubnetId"], subnet_id.as_str(), "{subnets}");
    assert_eq!(subnet["CidrBlock"], cidr.as_str());
    assert_eq!(
        subnet["AvailabilityZone"],
        running[0]["Placement"]["AvailabilityZone"]
    );
    let in_subnet = aws(
        &gw,
        &key,
        &[
            "ec2",
            "describe-instances",
            "--filters",
            &format!("Name=subnet-id,Values={subnet_id}"),
        ],
    );
    assert_eq!(instances_of(&in_subnet).len(), 2);
    let by_address = aws(
        &gw,
        &key,
        &[
            "ec2",
            "describe-instances",
            "--filters",
            &format!("Name=private-ip-address,Values={}", ips[1]),
        ],
    );
    let found = instances_of(&by_address);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["InstanceId"], ids[1].as_str());

    // A gateway restart changes no address; the guests keep running meanwhile.
    gw.kill9_and_restart();
    let after = wait_state(&gw, &key, &ids, "running");
    for (vm, ip) in after.iter().zip(&ips) {
        assert_eq!(
            vm["PrivateIpAddress"],
            ip.as_str(),
            "address kept over a restart"
        );
    }
    ssh.wait_for(&ips[1], 22, "cat /tmp/marker", "marker from");

    // Terminated: no address, its tap and its DHCP entry gone, nothing left on the bridge.
    let network = network_dir(&gw);
    assert_eq!(bridge_ports(&network).len(), 2, "one tap per VM");
    let mut args = vec!["ec2", "terminate-instances", "--instance-ids"];
    args.extend(ids.iter().map(String::as_str));
    aws(&gw, &key, &args);
    let gone = wait_state(&gw, &key, &ids, "terminated");
    assert!(
        gone.iter().all(|vm| vm.get("PrivateIpAddress").is_none()),
        "{gone:#?}"
    );
    assert_eq!(
        bridge_ports(&network),
        Vec::<String>::new(),
        "taps left behind"
    );
    let hosts = std::fs::read_to_string(network.join("dhcp-hosts")).unwrap();
    assert!(
        !hosts.contains(&ips[0]) && !hosts.contains(&ips[1]),
        "{hosts}"
    );
}

#[tokio::test]
async fn a_vm_from_the_native_api_shows_its_address_and_runs_its_user_data() {
    assert_guest_image_prepared();
    let gw = Gateway::start();
    let key = access_key(&gw, "acme").await;
    let ssh = SshKey::new();
    let material = format!("fileb://{}", ssh.public().display());
    aws(
        &gw,
        &key,
        &[
            "ec2",
            "import-key-pair",
            "--key-name",
            "deploy",
            "--public-key-material",
            &material,
        ],
    );
    let token = gw.token("acme", None, &[]);
    let unknown_key = gw
        .post(
            "/v1/instances",
            &token,
            Some(json!({"image": "skyport-tiny", "instance_type": "sp.micro", "region": "local-1", "key_name": "nope"})),
        )
        .await;
    assert_eq!(unknown_key.status(), 400);
    let problem: Value = unknown_key.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("key pair 'nope'"),
        "{problem}"
    );
    let created = gw
        .post(
            "/v1/instances?wait=running",
            &token,
            Some(json!({
                "image": "skyport-tiny", "instance_type": "sp.micro", "region": "local-1",
                "key_name": "deploy", "user_data": "#!/bin/sh\nuname -n > /tmp/native-marker\n",
            })),
        )
        .await;
    assert_eq!(created.status(), 202);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let shown = gw.get_json(&format!("/v1/instances/{id}"), &token).await;
    let ip = shown["network"]["private_ip"]
        .as_str()
        .expect("an address")
        .to_string();
    assert_eq!(shown["network"]["zone"], "local-1a", "{shown}");
    assert_eq!(shown["key_name"], "deploy");
    let marker = ssh.wait_for(&ip, 22, "cat /tmp/native-marker", &id);
    assert_eq!(marker.trim(), id);
    // Another tenant never sees it, nor its address.
    let other = gw.token("demo", None, &[]);
    let hidden = gw.get(&format!("/v1/instances/{id}"), &other).await;
    assert_eq!(hidden.status(), 404);
    let terminated = gw
        .delete(&format!("/v1/instances/{id}?wait=terminated"), &token)
        .await;
    assert!(terminated.status().is_success(), "{}", terminated.status());
    let after = gw.get_json(&format!("/v1/instances/{id}"), &token).await;
    assert_eq!(after["state"], "terminated", "{after}");
    assert!(after["network"].is_null(), "{after}");
}

#[tokio::test]
async fn in_user_mode_a_vm_is_reached_through_its_forwarded_ssh_port_and_health_says_so() {
    assert_guest_image_prepared();
    // What a gateway that cannot make a bridge (not root) gets; configured here.
    let config = skyport_e2e::default_config()
        .replace("network = { bridge", "network = { mode = \"user\", bridge")
        .replace(
            "health_probe_interval_secs = 30",
            "health_probe_interval_secs = 1",
        );
    assert!(config.contains("mode = \"user\""));
    let gw = Gateway::start_with(skyport_e2e::GatewayOptions {
        config: Some(config),
        ..Default::default()
    });
    let token = gw.token("demo", None, &["admin"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let notes = loop {
        let providers = gw.get_json("/v1/providers", &token).await;
        let vmm = providers["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "local-vmm")
            .cloned()
            .unwrap();
        if let Some(notes) = vmm["health"]["notes"].as_array() {
            break notes.clone();
        }
        assert!(Instant::now() < deadline, "no health notes: {vmm}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap().contains("user-mode networking")),
        "{notes:?}"
    );
    let key = access_key(&gw, "demo").await;
    let ssh = SshKey::new();
    let material = format!("fileb://{}", ssh.public().display());
    aws(
        &gw,
        &key,
        &[
            "ec2",
            "import-key-pair",
            "--key-name",
            "mine",
            "--public-key-material",
            &material,
        ],
    );
    let created = gw
        .post(
            "/v1/instances?wait=running",
            &token,
            Some(json!({
                "image": "skyport-tiny", "instance_type": "sp.micro", "region": "local-1",
                "key_name": "mine", "user_data": "#!/bin/sh\necho user-mode > /tmp/mode\n",
            })),
        )
        .await;
    assert_eq!(created.status(), 202);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let shown = gw.get_json(&format!("/v1/instances/{id}"), &token).await;
    let endpoint = shown["network"]["ssh_endpoint"]
        .as_str()
        .unwrap_or_else(|| panic!("an SSH endpoint: {shown}"));
    let port: u16 = endpoint
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a port of 127.0.0.1: {endpoint}"));
    assert!(shown["network"]["private_ip"].is_string(), "{shown}");
    let marker = ssh.wait_for("127.0.0.1", port, "cat /tmp/mode", "user-mode");
    assert_eq!(marker.trim(), "user-mode");
    let terminated = gw
        .delete(&format!("/v1/instances/{id}?wait=terminated"), &token)
        .await;
    assert!(terminated.status().is_success(), "{}", terminated.status());
    // No bridge was made for it.
    assert!(!network_dir(&gw).join("bridge").exists());
}
