//! Image registration: in the configuration and through `/admin/images`, disk templates
//! that VMs boot from (as qcow2 overlays), and the refusals around them.
#![forbid(unsafe_code)]

use serde_json::{json, Value};
use skyport_e2e::{default_config, expect_problem, Gateway, GatewayOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_register_boot_from_their_disk_template_and_refuse_unsafe_removal() {
    let tiny = skyport_e2e::guest_library().join("skyport-tiny");
    skyport_e2e::assert_guest_image_prepared();
    let file = |name: &str| tiny.join(name).display().to_string();
    // A library of this test's own (registrations land there), holding skyport-tiny, and
    // one image registered in the configuration, used in place, without a disk template.
    let library = skyport_e2e::temp_state_dir("image-library");
    std::os::unix::fs::symlink(&tiny, library.join("skyport-tiny")).unwrap();
    let config = default_config().replace(
        &format!(
            "image_library = \"{}\"",
            skyport_e2e::guest_library().display()
        ),
        &format!(
            "images = [{{ name = \"cfg-tiny\", kernel = \"{}\", initrd = \"{}\" }}], image_library = \"{}\"",
            file("vmlinuz"),
            file("initramfs.gz"),
            library.display()
        ),
    );
    assert!(
        config.contains("cfg-tiny"),
        "the plugin entry changed shape"
    );
    let gw = Gateway::start_with(GatewayOptions {
        config: Some(config),
        ..Default::default()
    });
    let admin = gw.token("demo", None, &["admin"]);
    let demo = gw.token("demo", None, &[]);

    let listed = gw.get_json("/admin/images", &admin).await;
    let images = listed["images"].as_array().unwrap();
    let find = |name: &str| images.iter().find(|i| i["name"] == name).cloned();
    assert_eq!(
        find("skyport-tiny"),
        Some(
            json!({"name": "skyport-tiny", "provider": "local-vmm", "region": "local-1",
                    "disk_template": true, "source": "library"})
        )
    );
    assert_eq!(find("cfg-tiny").unwrap()["source"], "config");
    assert_eq!(find("cfg-tiny").unwrap()["disk_template"], false);
    expect_problem(gw.get("/admin/images", &demo).await, 403).await;

    // Registration copies the files into the library; bad requests change nothing.
    let register = json!({"name": "tiny-copy", "kernel": file("vmlinuz"),
                          "initrd": file("initramfs.gz"), "disk": file("disk.qcow2")});
    let created = gw
        .post("/admin/images", &admin, Some(register.clone()))
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["provider"], "local-vmm");
    assert_eq!(created["disk_template"], true);
    let copied = library.join("tiny-copy");
    assert!(copied.join("disk.qcow2").exists());
    let problem = expect_problem(gw.post("/admin/images", &admin, Some(register)).await, 409).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{problem}"
    );
    for (body, needle) in [
        (
            json!({"name": "x", "kernel": "vmlinuz", "initrd": file("initramfs.gz")}),
            "absolute path",
        ),
        (
            json!({"name": "x", "kernel": "/nonexistent/vmlinuz", "initrd": file("initramfs.gz")}),
            "not an absolute path to a file",
        ),
        (
            json!({"name": "../x", "kernel": file("vmlinuz"), "initrd": file("initramfs.gz")}),
            "image name",
        ),
        (json!({"name": "x", "kernel": file("vmlinuz")}), "initrd"),
        (
            json!({"name": "x", "kernel": file("vmlinuz"), "initrd": file("initramfs.gz"), "provider": "ec2"}),
            "does not register images",
        ),
    ] {
        let problem = expect_problem(
            gw.post("/admin/images", &admin, Some(body.clone())).await,
            400,
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains(needle),
            "{body}: {problem}"
        );
    }
    let entries: Vec<_> = std::fs::read_dir(&library)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "only skyport-tiny and tiny-copy: {entries:?}"
    );

    // A tenant boots it; the guest reads the template's label through its overlay disk.
    let vm: Value = gw
        .post_json(
            "/v1/instances?wait=running",
            &demo,
            Some(json!({"image": "tiny-copy", "instance_type": "sp.micro"})),
        )
        .await;
    assert_eq!(vm["state"], "running", "{vm}");
    let path = format!("/v1/instances/{}", vm["id"].as_str().unwrap());
    let console = gw.get_json(&format!("{path}/console"), &demo).await;
    assert!(
        console["output"]
            .as_str()
            .unwrap()
            .contains("SKYPORT-GUEST-DISK SKYPORT-DISK skyport-tiny"),
        "{console}"
    );

    // Removal: refused while a VM uses the image, and for configured images.
    let problem = expect_problem(gw.delete("/admin/images/tiny-copy", &admin).await, 409).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("used by 1 VM"),
        "{problem}"
    );
    let problem = expect_problem(gw.delete("/admin/images/cfg-tiny", &admin).await, 409).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("configuration"),
        "{problem}"
    );
    assert_eq!(gw.delete(&path, &demo).await.status(), 200);
    assert_eq!(
        gw.delete("/admin/images/tiny-copy", &admin).await.status(),
        200
    );
    assert!(!copied.exists());
    expect_problem(gw.delete("/admin/images/tiny-copy", &admin).await, 404).await;
    let problem = expect_problem(
        gw.post(
            "/v1/instances",
            &demo,
            Some(json!({"image": "tiny-copy", "instance_type": "sp.micro"})),
        )
        .await,
        400,
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("cfg-tiny, skyport-tiny"),
        "{problem}"
    );
    std::fs::remove_dir_all(library).unwrap();
}
