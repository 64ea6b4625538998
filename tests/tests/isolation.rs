//! Plugins in processes of their own: the chaos fixture (built from tests/fixtures, never
//! shipped) aborts, segfaults, overflows its stack, exits, blocks and leaks on request,
//! and the gateway, the echo plugin beside it and other tenants carry on.
#![forbid(unsafe_code)]

use std::time::Duration;

use skyport_e2e::{expect_problem, fixture, rss_kb, run_cli, Gateway, GatewayOptions};

fn plugin_entry(name: &str, fixture_name: &str, extra: &str) -> String {
    format!(
        "\n[[plugins]]\nname = \"{name}\"\nfile = \"{}\"\n{extra}\n",
        fixture(fixture_name).display()
    )
}

/// `/admin/plugins`' entry for `name`.
async fn plugin_view(gw: &Gateway, admin: &str, name: &str) -> serde_json::Value {
    let view: serde_json::Value = gw.get_json("/admin/plugins", admin).await;
    view["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not listed: {view}"))
}

/// Polls until `name` is healthy with a process other than `old_pid`; its new pid.
async fn until_restarted(gw: &Gateway, admin: &str, name: &str, old_pid: u64) -> u64 {
    for _ in 0..300 {
        let view = plugin_view(gw, admin, name).await;
        if view["health"]["healthy"] == true {
            if let Some(pid) = view["pid"].as_u64().filter(|p| *p != old_pid) {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{name} was not restarted: {}",
        plugin_view(gw, admin, name).await
    );
}

/// Another tenant's read and the echo plugin, both answering.
async fn others_are_served(gw: &Gateway, admin: &str) {
    let r = gw.get("/v1/regions", &gw.token("acme", None, &[])).await;
    assert_eq!(r.status(), 200);
    let r = gw.post("/admin/plugins/echo/ops/echo", admin, None).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_plugin_process_that_crashes_fails_only_its_call_and_is_restarted() {
    let extra = plugin_entry("echo", "echo", "") + &plugin_entry("chaos", "chaos", "");
    let gw = Gateway::start_with(GatewayOptions {
        extra,
        ..Default::default()
    });
    let admin = gw.token("demo", None, &["admin"]);
    let view = plugin_view(&gw, &admin, "chaos").await;
    assert_eq!(view["isolation"], "process");
    let mut pid = view["pid"].as_u64().unwrap();
    let echo_pid = plugin_view(&gw, &admin, "echo").await["pid"].clone();
    assert_ne!(Some(pid), echo_pid.as_u64());

    // The child runs with a scrubbed environment and only its standard descriptors.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| {
            String::from_utf8_lossy(v)
                .split('=')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        names
            .iter()
            .all(|n| ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"].contains(&n.as_str())),
        "{names:?}"
    );
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(fds < 16, "the child holds {fds} descriptors");

    for (op, how) in [
        ("chaos.abort", "SIGABRT"),
        ("chaos.segfault", "SIGSEGV"),
        ("chaos.overflow", "SIGSEGV"),
        ("chaos.exit", "exited with 3"),
    ] {
        let r = gw
            .post(&format!("/admin/plugins/chaos/ops/{op}"), &admin, None)
            .await;
        let body = expect_problem(r, 503).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("plugin 'chaos' crashed while serving") && detail.contains(op),
            "{op}: {detail}"
        );
        others_are_served(&gw, &admin).await;
        pid = until_restarted(&gw, &admin, "chaos", pid).await;
        let pong: serde_json::Value = gw
            .post_json("/admin/plugins/chaos/ops/chaos.ping", &admin, None)
            .await;
        assert_eq!(pong["result"]["pid"].as_u64(), Some(pid), "{op}");
        assert!(gw.log().contains(how), "{op}: the log names how it ended");
    }
    let log = gw.log();
    assert!(
        log.contains("plugin process was killed by SIGSEGV (signal 11)"),
        "{log}"
    );
    assert!(
        log.contains("chaos.abort@1"),
        "the ops in flight are logged"
    );
    let metrics = gw.metrics_text().await;
    for line in [
        "skyport_plugin_crashes_total{plugin=\"chaos\",how=\"SIGABRT\"} 1",
        "skyport_plugin_crashes_total{plugin=\"chaos\",how=\"SIGSEGV\"} 2",
        "skyport_plugin_crashes_total{plugin=\"chaos\",how=\"exit\"} 1",
        "skyport_plugin_restarts_total{plugin=\"chaos\"} 4",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    // The echo plugin's process never noticed.
    assert_eq!(plugin_view(&gw, &admin, "echo").await["pid"], echo_pid);
}

#[tokio::test]
async fn a_blocking_op_gets_504_at_its_deadline_and_its_stuck_process_is_replaced() {
    let extra = plugin_entry("echo", "echo", "") + &plugin_entry("chaos", "chaos", "");
    let gw = Gateway::start_with(GatewayOptions {
        extra,
        ..Default::default()
    });
    let admin = gw.token("demo", None, &["admin"]);
    let pid = plugin_view(&gw, &admin, "chaos").await["pid"]
        .as_u64()
        .unwrap();
    let blocking = |op: &'static str| {
        let (client, url, admin) = (
            gw.client(),
            gw.url(&format!("/admin/plugins/chaos/ops/{op}?timeout_secs=8")),
            admin.clone(),
        );
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(admin)
                .json(&serde_json::json!({"secs": 60}))
                .send()
                .await
                .unwrap()
        })
    };
    // Two ops that block their threads (one asleep, one spinning): the plugin's own
    // threads, never the gateway's.
    let sleeping = blocking("chaos.sleep");
    let spinning = blocking("chaos.spin");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        others_are_served(&gw, &admin).await;
    }
    assert!(
        !sleeping.is_finished() && !spinning.is_finished(),
        "every other request was answered while both ops were still blocked"
    );
    for call in [sleeping, spinning] {
        let body = expect_problem(call.await.unwrap(), 504).await;
        assert!(
            body["detail"].as_str().unwrap().contains("did not answer"),
            "{body}"
        );
    }
    // Ten seconds past the deadline the process is replaced.
    let new_pid = until_restarted(&gw, &admin, "chaos", pid).await;
    assert_ne!(new_pid, pid);
    assert!(gw.log().contains("stayed unanswered 10s past its deadline"));
    let metrics = gw.metrics_text().await;
    assert!(
        metrics.contains("skyport_plugin_crashes_total{plugin=\"chaos\",how=\"stuck\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_leak_past_the_memory_limit_ends_in_the_plugin_not_the_gateway() {
    let extra =
        plugin_entry("echo", "echo", "") + &plugin_entry("chaos", "chaos", "max_memory_mib = 256");
    let gw = Gateway::start_with(GatewayOptions {
        extra,
        ..Default::default()
    });
    let admin = gw.token("demo", None, &["admin"]);
    let pid = plugin_view(&gw, &admin, "chaos").await["pid"]
        .as_u64()
        .unwrap();
    let gateway_pid = gw.pid();
    let before = rss_kb(gateway_pid);
    // 100 MiB is within the limit; three more are not.
    let r = gw
        .post_json(
            "/admin/plugins/chaos/ops/chaos.leak",
            &admin,
            Some(serde_json::json!({"mib": 100})),
        )
        .await;
    assert_eq!(r["result"]["leaked_mib"], 100);
    let mut failed = None;
    for _ in 0..3 {
        let r = gw
            .post(
                "/admin/plugins/chaos/ops/chaos.leak",
                &admin,
                Some(serde_json::json!({"mib": 100})),
            )
            .await;
        if r.status() != 200 {
            failed = Some(expect_problem(r, 503).await);
            break;
        }
    }
    let body = failed.expect("the allocation past 256 MiB ends the plugin's process");
    assert!(body["detail"].as_str().unwrap().contains("crashed"));
    others_are_served(&gw, &admin).await;
    until_restarted(&gw, &admin, "chaos", pid).await;
    let after = rss_kb(gateway_pid);
    assert!(
        after < before + 50 * 1024,
        "the gateway grew from {before} kB to {after} kB"
    );
}

#[tokio::test]
async fn a_plugin_run_as_another_user_reads_none_of_the_gateways_secrets() {
    let extra = plugin_entry("chaos", "chaos", "user = \"nobody\"");
    let gw = Gateway::start_with(GatewayOptions {
        extra,
        ..Default::default()
    });
    let admin = gw.token("demo", None, &["admin"]);
    let pid = plugin_view(&gw, &admin, "chaos").await["pid"]
        .as_u64()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"; 4],
        "{uid}"
    );
    let pong: serde_json::Value = gw
        .post_json("/admin/plugins/chaos/ops/chaos.ping", &admin, None)
        .await;
    let home = gw.state_dir.join("plugins").join("chaos");
    assert_eq!(pong["result"]["home"], home.to_str().unwrap(), "{pong}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&home).unwrap().uid(), 65534);
    // The private state directory (0700) lets it through, and nothing more.
    assert_eq!(
        std::fs::metadata(&gw.state_dir).unwrap().mode() & 0o777,
        0o701
    );
    for secret in [
        "certs/server-key.pem",
        "certs/jwt-signing-key.pem",
        "skyport.db",
        "skyport.db-wal",
    ] {
        let path = gw.state_dir.join(secret);
        assert!(path.exists(), "{secret}");
        let read: serde_json::Value = gw
            .post_json(
                "/admin/plugins/chaos/ops/chaos.read",
                &admin,
                Some(serde_json::json!({"path": path})),
            )
            .await;
        let error = read["result"]["error"].as_str().unwrap_or_default();
        assert!(error.contains("Permission denied"), "{secret}: {read}");
    }
}

/// Where an ELF64 library's last loadable segment ends in the file.
fn loaded_size(elf: &[u8]) -> usize {
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|ph| elf[*ph..*ph + 4] == 1u32.to_le_bytes())
        .map(|ph| u64_at(ph + 8) + u64_at(ph + 32))
        .max()
        .unwrap()
}

#[test]
fn libraries_that_crash_while_loading_are_refused_with_one_line() {
    let dir = skyport_e2e::temp_state_dir("loading");
    // A good plugin cut in the middle of what the dynamic loader maps.
    let bytes = std::fs::read(fixture("chaos")).unwrap();
    let truncated = dir.join("libtruncated.so");
    std::fs::write(&truncated, &bytes[..loaded_size(&bytes) / 2]).unwrap();
    let (code, out) = run_cli(&["plugins", "check", truncated.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("plugin \"truncated\" ("), "{out}");
    assert!(out.contains("refused:"), "{out}");

    // A library whose constructor aborts.
    let (code, out) = run_cli(&["plugins", "check", fixture("ctor-abort").to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("refused: its process was killed by SIGABRT (signal 6) while loading it"),
        "{out}"
    );

    // The gateway refuses both, and a plugin whose init exits, and serves the rest.
    let extra = plugin_entry("echo", "echo", "")
        + &format!(
            "\n[[plugins]]\nname = \"truncated\"\nfile = \"{}\"\n",
            truncated.display()
        )
        + &plugin_entry("ctor", "ctor-abort", "")
        + &plugin_entry("chaos", "chaos", "config = { exit_in_init = true }");
    let gw = Gateway::start_with(GatewayOptions {
        extra,
        ..Default::default()
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin = gw.token("demo", None, &["admin"]);
        let view: serde_json::Value = gw.get_json("/admin/plugins", &admin).await;
        let refused: Vec<String> = view["refused"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["message"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(refused[1].contains("SIGABRT"), "{refused:?}");
        assert!(
            refused[2].contains("its process exited with 4 while loading it"),
            "{refused:?}"
        );
        others_are_served(&gw, &admin).await;
    });
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_library_copied_over_its_installed_path_changes_nothing_until_reloaded() {
    let dir = skyport_e2e::temp_state_dir("replace");
    let installed = dir.join("libchaos.so");
    std::fs::copy(fixture("chaos"), &installed).unwrap();
    let gw = Gateway::start_with(GatewayOptions {
        extra: plugin_entry("echo", "echo", "")
            + &format!(
                "\n[[plugins]]\nname = \"chaos\"\nfile = \"{}\"\n",
                installed.display()
            ),
        ..Default::default()
    });
    let admin = gw.token("demo", None, &["admin"]);
    let sha = plugin_view(&gw, &admin, "chaos").await["sha256"].clone();
    // Another library copied over the installed file, in place.
    std::fs::write(&installed, std::fs::read(fixture("echo")).unwrap()).unwrap();
    let pong: serde_json::Value = gw
        .post_json("/admin/plugins/chaos/ops/chaos.ping", &admin, None)
        .await;
    assert_eq!(pong["result"]["pong"], true);
    // A crash restarts the bytes that were loaded, not the new file.
    let pid = plugin_view(&gw, &admin, "chaos").await["pid"]
        .as_u64()
        .unwrap();
    let r = gw
        .post("/admin/plugins/chaos/ops/chaos.abort", &admin, None)
        .await;
    expect_problem(r, 503).await;
    until_restarted(&gw, &admin, "chaos", pid).await;
    let view = plugin_view(&gw, &admin, "chaos").await;
    assert_eq!(view["sha256"], sha);
    assert_eq!(view["plugin"], "chaos");
    drop(gw);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Calls the echo plugin from `workers` tasks until `stop` is set; (answers, failures).
fn steady_load(
    gw: &Gateway,
    admin: &str,
    workers: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    let (client, url, admin) = (
        gw.client(),
        gw.url("/admin/plugins/echo/ops/echo"),
        admin.to_string(),
    );
    tokio::spawn(async move {
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let (client, url, admin, stop) =
                    (client.clone(), url.clone(), admin.clone(), stop.clone());
                tokio::spawn(async move {
                    let (mut ok, mut failed) = (0, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        match client.post(&url).bearer_auth(&admin).send().await {
                            Ok(r) if r.status() == 200 => ok += 1,
                            Ok(r) => failed.push(format!(
                                "{} {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            )),
                            Err(e) => failed.push(e.to_string()),
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        let mut total = (0, Vec::new());
        for task in tasks {
            let (ok, failed) = task.await.unwrap();
            total.0 += ok;
            total.1.extend(failed);
        }
        total
    })
}

#[tokio::test]
async fn a_reload_under_load_fails_no_request_and_a_bad_new_version_is_refused() {
    let dir = skyport_e2e::temp_state_dir("reload");
    let installed = dir.join("libecho.so");
    std::fs::copy(fixture("echo"), &installed).unwrap();
    let gw = Gateway::start_with(GatewayOptions {
        // No rate limit in the way of the load.
        config: Some(
            skyport_e2e::default_config()
                .replace(
                    "requests_per_second = 100\n",
                    "requests_per_second = 1000000\n",
                )
                .replace("burst = 200\n", "burst = 1000000\n"),
        ),
        extra: format!(
            "\n[[plugins]]\nname = \"echo\"\nfile = \"{}\"\n",
            installed.display()
        ) + &plugin_entry("trusted", "echo", "isolation = \"in-process\""),
    });
    let admin = gw.token("demo", None, &["admin"]);
    let first = plugin_view(&gw, &admin, "echo").await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = steady_load(&gw, &admin, 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The same file again: a new process takes over.
    let r: serde_json::Value = gw
        .post_json("/admin/plugins/echo/reload", &admin, None)
        .await;
    assert_eq!(r["reloaded"], true, "{r}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A changed file (bytes appended past the ELF's end: same plugin, new hash), by SIGHUP.
    let mut bytes = std::fs::read(&installed).unwrap();
    bytes.extend_from_slice(b"a new build");
    std::fs::write(&installed, &bytes).unwrap();
    gw.signal(skyport_e2e::Signal::HUP);
    let mut after_hup = serde_json::Value::Null;
    for _ in 0..100 {
        after_hup = plugin_view(&gw, &admin, "echo").await;
        if after_hup["sha256"] != first["sha256"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(
        after_hup["sha256"], first["sha256"],
        "SIGHUP reloads a changed file"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (answered, failed) = load.await.unwrap();
    assert!(answered > 100, "{answered} calls answered");
    assert!(
        failed.is_empty(),
        "{} of {answered} failed: {failed:?}",
        failed.len()
    );
    assert_ne!(after_hup["pid"], first["pid"]);
    // The replaced processes drained and exited.
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{}", first["pid"])).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!std::path::Path::new(&format!("/proc/{}", first["pid"])).exists());

    // A new version that fails its checks is refused; the running one keeps serving.
    std::fs::copy(fixture("not-a-plugin"), &installed).unwrap();
    let r = gw.post("/admin/plugins/echo/reload", &admin, None).await;
    let body = expect_problem(r, 409).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("not a Skyport plugin"),
        "{body}"
    );
    let r = gw.post("/admin/plugins/echo/ops/echo", &admin, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        plugin_view(&gw, &admin, "echo").await["sha256"],
        after_hup["sha256"]
    );
    let r = gw.post("/admin/plugins/nothing/reload", &admin, None).await;
    expect_problem(r, 404).await;

    // A new version serving other regions is refused: that change takes a restart.
    std::fs::copy(
        skyport_e2e::target_dir().join("libskyport_example_provider.so"),
        &installed,
    )
    .unwrap();
    let r = gw.post("/admin/plugins/echo/reload", &admin, None).await;
    let body = expect_problem(r, 409).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("serves regions [proc-1 (proc-1a)], the running one [echo-1 (echo-1a)]"),
        "{body}"
    );
    assert_eq!(
        plugin_view(&gw, &admin, "echo").await["sha256"],
        after_hup["sha256"]
    );

    // An in-process instance reloads too (a new copy of the library beside the old).
    let trusted = plugin_view(&gw, &admin, "trusted").await;
    assert_eq!(trusted["isolation"], "in-process");
    let r: serde_json::Value = gw
        .post_json("/admin/plugins/trusted/reload", &admin, None)
        .await;
    assert_eq!(r["reloaded"], true, "{r}");
    let r = gw
        .post("/admin/plugins/trusted/ops/echo", &admin, None)
        .await;
    assert_eq!(r.status(), 200);
    drop(gw);
    std::fs::remove_dir_all(dir).unwrap();
}
