//! Host -> plugin op round trip through the real ABI: `PluginRegistry::call` on the echo
//! fixture plugin (JSON params out, completion back, JSON result parsed), in process and
//! in a plugin process of its own.
//!
//! Run: `cargo build --release -p skyport-fixture-echo -p skyport-gateway && cargo bench -p skyport-plugin-host --bench plugin_call`
#![forbid(unsafe_code)]

use skyport_plugin_host::Plugins as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skyport_core::config::{Isolation, PluginConfig};
use skyport_core::metrics::Metrics;
use skyport_plugin_api::sdk::CallContext;
use skyport_plugin_host::PluginRegistry;

fn main() {
    let exe = std::env::current_exe().expect("bench executable");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps");
    let file = dir.join("libskyport_fixture_echo.so");
    assert!(
        file.exists(),
        "{} missing: cargo build --release -p skyport-fixture-echo",
        file.display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let host_exe = dir.join("skyport");
    assert!(
        host_exe.exists(),
        "{} missing: cargo build --release -p skyport-gateway",
        host_exe.display()
    );
    // Both isolation modes, and an op polled on the plugin's runtime (`echo@1`) against one
    // declared to answer at once (`echo.at-once@1`), in one run, alternately, so that all
    // see the same machine.
    // A state directory of its own (plugins are pinned into it), removed at the end.
    let state =
        std::env::temp_dir().join(format!("skyport-bench-plugin-call-{}", std::process::id()));
    let mut rounds: Vec<(&str, &str, Vec<Duration>)> = Vec::new();
    // `SKYPORT_BENCH_ONLY=<mode>:<op>` runs one arm (to profile it).
    let only = std::env::var("SKYPORT_BENCH_ONLY").ok();
    for mode in ["in-process", "process"] {
        for op in ["echo", "echo.at-once"] {
            if only.as_ref().is_none_or(|o| *o == format!("{mode}:{op}")) {
                rounds.push((mode, op, Vec::new()));
            }
        }
    }
    for _ in 0..3 {
        for (mode, op, samples) in rounds.iter_mut() {
            let isolation = if *mode == "process" {
                Isolation::Process
            } else {
                Isolation::InProcess
            };
            samples.extend(runtime.block_on(measure(&file, dir, &state, &host_exe, isolation, op)));
        }
    }
    let _ = std::fs::remove_dir_all(&state);
    for (mode, op, mut samples) in rounds {
        samples.sort();
        let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
        println!(
            "plugin_call {op}@1 {mode}: n={} median={:?} p90={:?} p99={:?}",
            samples.len(),
            pct(0.5),
            pct(0.9),
            pct(0.99)
        );
    }
}

/// 20,000 timed calls after 2,000 untimed ones, on a fresh registry.
async fn measure(
    file: &Path,
    dir: &Path,
    state: &Path,
    host_exe: &Path,
    isolation: Isolation,
    op: &str,
) -> Vec<Duration> {
    let config = PluginConfig {
        name: Some("echo".into()),
        file: file.to_path_buf(),
        required: true,
        sha256: None,
        config: toml::Value::Table(Default::default()),
        isolation,
        remote: None,
        max_memory_mib: None,
        max_open_files: None,
        user: None,
        env: Vec::new(),
    };
    let registry = PluginRegistry::load_all(
        &[config],
        dir,
        state,
        host_exe,
        Arc::new(Metrics::new()),
        skyport_core::clock::SystemClock::shared(),
    )
    .await
    .expect("echo fixture loads");
    let params = serde_json::json!({"ping": 1});
    let call = || {
        registry.call(
            "echo",
            op,
            1,
            params.clone(),
            CallContext::default(),
            Duration::from_secs(5),
        )
    };
    for _ in 0..2_000 {
        call().await.unwrap();
    }
    let mut samples = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        #[allow(clippy::disallowed_methods)] // a benchmark times itself
        let t = Instant::now();
        call().await.unwrap();
        samples.push(t.elapsed());
    }
    registry.shutdown().await;
    samples
}
