//! Host -> plugin op round trip through the real ABI: `PluginRegistry::call` on the echo
//! fixture plugin (JSON params out, completion back, JSON result parsed).
//!
//! Run: `cargo build --release -p skyport-fixture-echo && cargo bench -p skyport-plugin-host --bench plugin_call`
#![forbid(unsafe_code)]

use skyport_plugin_host::Plugins as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skyport_core::config::PluginConfig;
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
    runtime.block_on(async {
        let config = PluginConfig {
            name: Some("echo".into()),
            file,
            required: true,
            sha256: None,
            config: toml::Value::Table(Default::default()),
        };
        let registry = PluginRegistry::load_all(
            &[config],
            dir,
            &std::env::temp_dir(),
            Arc::new(Metrics::new()),
            skyport_core::clock::SystemClock::shared(),
        )
        .await
        .expect("echo fixture loads");
        let params = serde_json::json!({"ping": 1});
        let call = || {
            registry.call(
                "echo",
                "echo",
                1,
                params.clone(),
                CallContext::default(),
                Duration::from_secs(5),
            )
        };
        for _ in 0..2_000 {
            call().await.unwrap();
        }
        let mut samples = Vec::with_capacity(50_000);
        for _ in 0..50_000 {
            #[allow(clippy::disallowed_methods)] // a benchmark times itself
            let t = Instant::now();
            call().await.unwrap();
            samples.push(t.elapsed());
        }
        samples.sort();
        let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
        println!(
            "plugin_call echo@1: n={} median={:?} p90={:?} p99={:?}",
            samples.len(),
            pct(0.5),
            pct(0.9),
            pct(0.99)
        );
        registry.shutdown().await;
    });
}
