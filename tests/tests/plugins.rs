//! The plugin loader and host with fixture plugins (built from tests/fixtures, never
//! shipped): one that loads and answers, one built for plugin-api 2.x, one that panics in
//! an op, and a shared library that is not a plugin.
#![forbid(unsafe_code)]

use skyport_e2e::{expect_problem, fixture, run_cli, Gateway, GatewayOptions};

fn plugin_entry(name: &str, fixture_name: &str, required: bool, config: &str) -> String {
    format!(
        "\n[[plugins]]\nname = \"{name}\"\nfile = \"{}\"\nrequired = {required}\nconfig = {config}\n",
        fixture(fixture_name).display()
    )
}

#[test]
fn plugins_check_gives_a_one_line_verdict_for_each_fixture() {
    let (code, out) = run_cli(&["plugins", "check", fixture("echo").to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("plugin \"echo\" 0.1.0 ("), "{out}");
    assert!(out.contains("ok: provider for plugin-api 1.5"), "{out}");

    let (code, out) = run_cli(&["plugins", "check", fixture("api-v2").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("plugin \"future\" 2.0.0 (")
            && out.ends_with("refused: targets plugin-api 2.x; this gateway supports 1.x\n"),
        "{out}"
    );

    let (code, out) = run_cli(&[
        "plugins",
        "check",
        fixture("not-a-plugin").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("not a Skyport plugin"), "{out}");

    let wrong = "0".repeat(64);
    let (code, out) = run_cli(&[
        "plugins",
        "check",
        fixture("echo").to_str().unwrap(),
        "--sha256",
        &wrong,
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("does not match the pinned"), "{out}");

    let (code, out) = run_cli(&["plugins", "check", "/nonexistent/libnothing.so"]);
    assert_eq!(code, 1);
    assert!(out.contains("cannot read"), "{out}");
}

#[test]
fn group_writable_plugin_files_are_refused() {
    let dir = skyport_e2e::temp_state_dir("perm");
    let copy = dir.join("libcopy.so");
    std::fs::copy(fixture("echo"), &copy).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o775)).unwrap();
    let (code, out) = run_cli(&["plugins", "check", copy.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("writable by group or others"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn refused_plugins_are_skipped_and_the_gateway_serves_the_rest() {
    let mut extra = plugin_entry("echo", "echo", false, "{ greeting = \"hi\" }");
    extra += &plugin_entry("panicky", "panicky", false, "{}");
    extra += &plugin_entry("future", "api-v2", false, "{}");
    extra += &plugin_entry("junk", "not-a-plugin", false, "{}");
    extra += &plugin_entry("echo", "echo", false, "{}");
    extra += &plugin_entry("echo-strict", "echo", false, "{ colour = \"red\" }");
    let gw = Gateway::start_with(GatewayOptions {
        extra,
        ..Default::default()
    });
    let admin = gw.token("demo", None, &["admin"]);
    let plugins: serde_json::Value = gw.get_json("/admin/plugins", &admin).await;
    let loaded: Vec<&str> = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(loaded, ["local-vmm", "metering", "echo", "panicky"]);
    let refused: Vec<String> = plugins["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(refused[0].contains("targets plugin-api 2.x; this gateway supports 1.x"));
    assert!(
        refused[1].starts_with("plugin \"junk\"") && refused[1].contains("not a Skyport plugin")
    );
    assert!(refused[2].contains("duplicate name"), "{}", refused[2]);
    assert!(
        refused[3].contains("invalid config") && refused[3].contains("colour"),
        "{}",
        refused[3]
    );
    for line in &refused {
        assert_eq!(line.lines().count(), 1);
        assert!(
            gw.log().contains(line.as_str()),
            "each refusal is logged: {line}"
        );
    }

    // The echo plugin answers an op, with the caller's verified tenant as context.
    let answer: serde_json::Value = gw
        .post_json(
            "/admin/plugins/echo/ops/echo@1",
            &admin,
            Some(serde_json::json!({"ping": 42})),
        )
        .await;
    assert_eq!(answer["result"]["greeting"], "hi");
    assert_eq!(answer["result"]["params"]["ping"], 42);
    assert_eq!(answer["result"]["tenant"], "demo");

    // The plugin can call back into the host.
    let answer: serde_json::Value = gw
        .post("/admin/plugins/echo/ops/host.ping", &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"]["gateway"], "skyport");
    assert_eq!(answer["result"]["caller"], "echo");

    // Regions come from provider plugins, plus the federated region.
    let regions: serde_json::Value = gw
        .get_json("/v1/regions", &gw.token("demo", None, &[]))
        .await;
    let names: Vec<&str> = regions["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["skyport", "local-1", "echo-1"]);

    // An op the plugin does not serve is a clear 501.
    let r = gw
        .post("/admin/plugins/echo/ops/nothing", &admin, None)
        .await;
    expect_problem(r, 501).await;
}

#[tokio::test]
async fn a_panicking_op_fails_that_request_and_marks_the_plugin_unhealthy() {
    let mut extra = plugin_entry("echo", "echo", false, "{}");
    extra += &plugin_entry("panicky", "panicky", false, "{}");
    let gw = Gateway::start_with(GatewayOptions {
        extra,
        ..Default::default()
    });
    let admin = gw.token("demo", None, &["admin"]);
    let r = gw
        .post("/admin/plugins/panicky/ops/boom", &admin, None)
        .await;
    let body = expect_problem(r, 500).await;
    assert!(body["detail"].as_str().unwrap().contains("unhealthy"));
    assert!(
        !body["detail"].as_str().unwrap().contains("on purpose"),
        "panic text must not leak"
    );

    // Circuit open: the next call fails fast with 503 and the reason.
    let r = gw
        .post("/admin/plugins/panicky/ops/boom", &admin, None)
        .await;
    let body = expect_problem(r, 503).await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("panicked in boom"));

    // Everything else keeps serving.
    let providers: serde_json::Value = gw
        .get_json("/v1/providers", &gw.token("acme", None, &[]))
        .await;
    let health = |name: &str| {
        providers["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["health"]["healthy"]
            .clone()
    };
    assert_eq!(health("panicky"), false);
    assert_eq!(health("echo"), true);
    let r = gw.post("/admin/plugins/echo/ops/echo", &admin, None).await;
    assert_eq!(r.status(), 200);
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("skyport_plugin_healthy{plugin=\"panicky\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("outcome=\"PANICKED\""), "{metrics}");
}

#[test]
fn a_required_plugin_that_is_refused_stops_startup_with_its_line() {
    let err = match Gateway::try_start(GatewayOptions {
        extra: plugin_entry("future", "api-v2", true, "{}"),
        ..Default::default()
    }) {
        Ok(_) => panic!("startup must fail"),
        Err(log) => log,
    };
    assert!(
        err.contains("targets plugin-api 2.x; this gateway supports 1.x (required = true)"),
        "{err}"
    );
}
