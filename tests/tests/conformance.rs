//! `skyport plugins test`, the provider conformance kit, run as an author would: on every
//! first-party provider, local-vmm, ec2 and eucalyptus (it passes), and on a fixture that
//! is no provider (it fails, saying why, and runs nothing that depends on what failed).
#![forbid(unsafe_code)]

use skyport_e2e::ec2::{EucaShim, Moto};
use skyport_e2e::{fixture, guest_library, run_cli, target_dir, temp_state_dir};

/// Runs the kit on `file` with `config` as the plugin's configuration.
fn kit(file: &std::path::Path, config: &str) -> (i32, String) {
    let dir = temp_state_dir("kit");
    let config_file = dir.join("plugin.toml");
    std::fs::write(&config_file, config).unwrap();
    let state = dir.join("state");
    let out = run_cli(&[
        "plugins",
        "test",
        file.to_str().unwrap(),
        "--config",
        config_file.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    skyport_e2e::release_networks(&dir);
    std::fs::remove_dir_all(dir).unwrap();
    out
}

fn assert_conforms(code: i32, report: &str) {
    assert_eq!(code, 0, "{report}");
    assert!(!report.contains("FAIL"), "{report}");
    assert!(
        report.contains("it conforms to the provider contract"),
        "{report}"
    );
    for check in [
        "PASS instance.create@1 again with the same key is the same instance",
        "PASS instance.find@1 finds the instance by its key, and nothing for another key",
        "PASS instance.get@1 from 8 callers at once",
        "PASS an op it does not serve is UNSUPPORTED_OP (501)",
        "PASS instance.get@1 of an unknown id is NOT_FOUND (404)",
        "PASS the terminated instance stays terminated",
    ] {
        assert!(report.contains(check), "{check}\n{report}");
    }
}

#[test]
fn the_local_vmm_provider_conforms() {
    skyport_e2e::assert_guest_image_prepared();
    let (code, report) = kit(
        &target_dir().join("libskyport_local_vmm.so"),
        &format!(
            "image_library = \"{}\"\n{}\n",
            guest_library().display(),
            skyport_e2e::test_network()
        ),
    );
    assert_conforms(code, &report);
    assert!(
        report.contains("PASS the instance reaches running"),
        "{report}"
    );
}

#[test]
fn the_ec2_provider_conforms_in_front_of_moto() {
    let moto = Moto::start();
    let (code, report) = kit(
        &target_dir().join("libskyport_ec2.so"),
        &moto.plugin_config_document(),
    );
    assert_conforms(code, &report);
}

#[test]
fn the_eucalyptus_provider_conforms_in_front_of_a_eucalyptus_endpoint() {
    let shim = EucaShim::start();
    let (code, report) = kit(
        &target_dir().join("libskyport_eucalyptus.so"),
        &shim.plugin_config_document(),
    );
    assert_conforms(code, &report);
}

#[test]
fn a_plugin_that_is_no_provider_fails_with_a_report_an_author_can_act_on() {
    let (code, report) = kit(&fixture("chaos"), "");
    assert_eq!(code, 1, "{report}");
    let first = report.lines().next().unwrap();
    assert!(
        first.starts_with("FAIL describes itself as a provider serving the contract")
            && first.contains("does not list regions@1, instance.create@1, instance.get@1, instance.terminate@1, images.list@1"),
        "{report}"
    );
    assert!(
        report.contains("FAIL instance.create@1 (0 ms): not run: the checks above must pass first"),
        "{report}"
    );
    assert!(
        report.lines().last().unwrap().contains("checks passed"),
        "{report}"
    );
    // A file that is no plugin at all gets the loader's one line.
    let (code, out) = kit(&fixture("not-a-plugin"), "");
    assert_eq!(code, 1);
    assert!(out.contains("not a Skyport plugin"), "{out}");
}
