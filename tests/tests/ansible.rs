//! Ansible's `amazon.aws` collection, unmodified (the `ansible` package pinned in the test
//! virtualenv), against the real gateway: `ec2_instance` runs an instance's whole life,
//! each step twice (the second changes nothing), in `local-1` (real QEMU) and in the
//! moto-backed region; the `aws_ec2` inventory plugin finds a running VM by its address and
//! `ansible` logs in to it over SSH; the info modules (VPCs, subnets, security groups,
//! volumes, interfaces, Elastic IPs, images with their attributes, zones) agree with it.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use skyport_e2e::ec2::{access_key, venv_bin, Moto};
use skyport_e2e::{assert_guest_image_prepared, temp_state_dir, Gateway, GatewayOptions};

fn playbook(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("ansible")
        .join(name)
}

/// Runs `program` (an Ansible command from the virtualenv) with `args`; panics with its
/// output and the gateway's log unless it succeeds. Returns its stdout.
fn ansible(gw: &Gateway, program: &str, args: &[&str], dir: &Path) -> String {
    let out: Output = Command::new(venv_bin(program))
        .args(args)
        .current_dir(dir)
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_LOCAL_TEMP", dir.join("tmp"))
        .env("ANSIBLE_HOME", dir.join("home"))
        .env("AWS_CA_BUNDLE", gw.cert_path("ca.pem"))
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (tests/install-deps.sh test installs it)"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{stdout}\n{}\n--- gateway log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    stdout
}

/// The extra variables every playbook takes: where Skyport is and the tenant's key.
fn vars(gw: &Gateway, key: &Value, region: &str, extra: Value) -> String {
    let mut vars = json!({
        "endpoint": format!("https://{}", gw.api),
        "ca": gw.cert_path("ca.pem").display().to_string(),
        "region": region,
        "access_key": key["access_key_id"],
        "secret_key": key["secret_access_key"],
    });
    vars.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    vars.to_string()
}

#[tokio::test]
async fn ec2_instance_runs_a_whole_life_idempotently_in_both_regions() {
    assert_guest_image_prepared();
    let moto = Moto::start();
    let gw = Gateway::start_with(GatewayOptions {
        extra: moto.provider_config("aws-us-east-1"),
        ..Default::default()
    });
    let key = access_key(&gw, "demo").await;
    let dir = temp_state_dir("ansible");
    let lifecycle = playbook("lifecycle.yml");
    for (region, name) in [("local-1", "web-local"), ("aws-us-east-1", "web-aws")] {
        let extra = vars(
            &gw,
            &key,
            region,
            json!({"vm_name": name, "image_name": "skyport-tiny"}),
        );
        let out = ansible(
            &gw,
            "ansible-playbook",
            &[lifecycle.to_str().unwrap(), "-e", &extra],
            &dir,
        );
        assert!(out.contains("failed=0"), "{out}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_aws_ec2_inventory_finds_a_vm_by_its_address_and_ansible_logs_in() {
    assert_guest_image_prepared();
    let gw = Gateway::start();
    let key = access_key(&gw, "acme").await;
    let dir = temp_state_dir("ansible-ssh");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ansible", "-f"])
        .arg(dir.join("id"))
        .status()
        .expect("ssh-keygen (openssh-client)");
    assert!(made.success());
    let extra = vars(
        &gw,
        &key,
        "local-1",
        json!({"public_key": dir.join("id.pub").display().to_string()}),
    );
    let reachable = playbook("reachable.yml");
    ansible(
        &gw,
        "ansible-playbook",
        &[reachable.to_str().unwrap(), "-e", &extra],
        &dir,
    );
    // What every info module finds agrees with the instance.
    let info = playbook("info.yml");
    let out = ansible(
        &gw,
        "ansible-playbook",
        &[info.to_str().unwrap(), "-e", &extra],
        &dir,
    );
    assert!(out.contains("failed=0"), "{out}");
    std::fs::write(
        dir.join("inventory.aws_ec2.yml"),
        format!(
            "plugin: amazon.aws.aws_ec2\nregions: [local-1]\nendpoint_url: https://{}\n\
             access_key: {}\nsecret_key: {}\nhostnames: [private-ip-address]\n\
             filters:\n  instance-state-name: running\n  tag:Name: reachable\n\
             compose:\n  ansible_host: private_ip_address\n",
            gw.api,
            key["access_key_id"].as_str().unwrap(),
            key["secret_access_key"].as_str().unwrap(),
        ),
    )
    .unwrap();
    let listed = ansible(
        &gw,
        "ansible-inventory",
        &["-i", "inventory.aws_ec2.yml", "--list"],
        &dir,
    );
    let inventory: Value = serde_json::from_str(&listed).expect("inventory JSON");
    let hosts: Vec<String> = inventory["_meta"]["hostvars"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(hosts.len(), 1, "{listed}");
    assert!(
        hosts[0].starts_with("10."),
        "hosts are private addresses: {hosts:?}"
    );
    // `-m raw`: skyport-tiny has no Python, which `-m ping` needs on the target.
    let key_file = dir.join("id");
    let out = ansible(
        &gw,
        "ansible",
        &[
            "all",
            "-i",
            "inventory.aws_ec2.yml",
            "-u",
            "root",
            "--private-key",
            key_file.to_str().unwrap(),
            "-e",
            "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'",
            "-m",
            "raw",
            "-a",
            "cat /tmp/marker",
        ],
        &dir,
    );
    assert!(out.contains("configured-by-ansible"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}
