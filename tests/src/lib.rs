//! End-to-end harness: starts the real `skyport` binary with real plugins on ephemeral
//! loopback ports and talks to it as a client would (TLS with the development CA).
#![forbid(unsafe_code)]

pub mod browser;
pub mod ec2;
pub mod oidc_provider;
pub mod plugin_host;
pub mod redis;
pub mod replicas;
pub mod webhook_receiver;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
pub use rustix::process::Signal;

/// Sends `signal` to process `pid` (kill(2)).
pub fn kill(pid: u32, signal: Signal) -> std::io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| std::io::Error::other(format!("{pid} is not a process id")))?;
    rustix::process::kill_process(pid, signal).map_err(std::io::Error::from)
}

/// The directory holding the built `skyport` binary and plugin libraries.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Path of the `skyport` binary; fails loudly when it is not built.
pub fn skyport_bin() -> PathBuf {
    let bin = target_dir().join("skyport");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` (make test does) before the e2e tests",
        bin.display()
    );
    bin
}

/// Path of a fixture plugin library, e.g. `fixture("echo")`.
pub fn fixture(name: &str) -> PathBuf {
    let lib = target_dir().join(format!("libskyport_fixture_{}.so", name.replace('-', "_")));
    assert!(
        lib.exists(),
        "{} is missing: run `cargo build --workspace` first",
        lib.display()
    );
    lib
}

/// The embedded default configuration, as shipped, with the local-vmm image library
/// pointed at the guest image the test command prepares (`target/guest`) and a private
/// network of this gateway's own ([`test_network`]), and one more tenant, `ops`, an
/// operator tenant of its own: tests whose admin calls must be metered apart from the
/// tenants they check use `ops` tokens for them.
pub fn default_config() -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shipped =
        std::fs::read_to_string(repo.join("config/skyport.toml")).expect("config/skyport.toml");
    let shipped_vmm = "config = { image_library = \"images\" }";
    assert!(
        shipped.contains(shipped_vmm),
        "the shipped local-vmm config changed"
    );
    let shipped = shipped.replace(
        shipped_vmm,
        &format!(
            "config = {{ image_library = \"{}\", {} }}",
            guest_library().display(),
            test_network()
        ),
    );
    format!("{shipped}\n[tenants.ops]\noperator = true\n")
}

/// A local-vmm `network = {...}` setting no other gateway of any test run on this host
/// uses while this process lives: a bridge and a /24 of their own, so that gateways
/// booting VMs at the same time (test binaries run side by side included) never share
/// one. A slot is held by an advisory lock on `<tmp>/skyport-e2e-net-<slot>.lock`, which
/// the kernel releases when the process ends, however it ends. [`release_networks`]
/// removes what the gateway made.
pub fn test_network() -> String {
    use std::sync::Mutex;
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let mut held = HELD.lock().unwrap();
    for slot in 0..50 * 256u32 {
        let path = std::env::temp_dir().join(format!("skyport-e2e-net-{slot}.lock"));
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        held.push(file);
        return format!(
            "network = {{ bridge = \"sptn{slot:x}\", cidr = \"10.{}.{}.0/24\" }}",
            200 + slot / 256,
            slot % 256
        );
    }
    panic!("no free test network slot: 12,800 locks under the temp dir are held");
}

/// Stops what local-vmm instances left on the host under `state_dir`: QEMU processes
/// launched from it, each VM's tap, and each private network's dnsmasq, bridge (with the
/// VMs' taps on it) and NAT table (named in its `network/` directory). VMs and networks outlive a gateway
/// by design; a test's must not outlive the test.
pub fn release_networks(state_dir: &Path) {
    let needle = state_dir.to_string_lossy().into_owned();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let program = cmdline.split('\0').next().unwrap_or_default();
            if (program.contains("qemu-system") || program.contains("dnsmasq"))
                && cmdline.contains(&needle)
            {
                let _ = kill(pid, Signal::KILL);
            }
        }
    }
    let mut pending = vec![state_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                // A VM's directory (`vms/vm-<hex>`) names its tap (`sp<hex>`), which may
                // have come loose from its bridge.
                let vm = path
                    .file_name()
                    .and_then(|n| n.to_str()?.strip_prefix("vm-"));
                if let Some(hex) = vm.filter(|_| dir.ends_with("vms")) {
                    let tap = format!("sp{hex}");
                    if Path::new("/sys/class/net").join(&tap).exists() {
                        let _ = Command::new("ip").args(["link", "del", &tap]).output();
                    }
                }
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n == "bridge")
                && path.parent().is_some_and(|p| p.ends_with("network"))
            {
                let bridge = std::fs::read_to_string(&path).unwrap_or_default();
                let bridge = bridge.trim();
                if !bridge.is_empty() {
                    // The VMs' taps outlive their killed QEMU: remove them with the bridge.
                    let ports = std::fs::read_dir(format!("/sys/class/net/{bridge}/brif"));
                    for port in ports.into_iter().flatten().flatten() {
                        let _ = Command::new("ip")
                            .arg("link")
                            .arg("del")
                            .arg(port.file_name())
                            .output();
                    }
                    let _ = Command::new("ip").args(["link", "del", bridge]).output();
                    let table = format!("skyport_{}", bridge.replace('-', "_"));
                    let _ = Command::new("nft")
                        .args(["delete", "table", "ip", &table])
                        .output();
                }
            }
        }
    }
}

/// [`default_config`] with tenant `acme` on plan `plan` (defined by the caller's extra
/// configuration) instead of `standard`.
pub fn config_with_acme_plan(plan: &str) -> String {
    let on_standard = "departments = [\"ops\"]\nplan = \"standard\"";
    let config = default_config();
    assert!(config.contains(on_standard), "acme is on plan standard");
    config.replacen(
        on_standard,
        &format!("departments = [\"ops\"]\nplan = \"{plan}\""),
        1,
    )
}

/// The embedded default ([`default_config`]) with `prod-vm` requiring approval.
pub fn config_with_prod_vm_approval() -> String {
    let config = default_config().replace(
        "user_params = [\"image\", \"instance_type\"]\n\n[offerings.web-dr]",
        "user_params = [\"image\", \"instance_type\"]\nrequires_approval = true\n\n[offerings.web-dr]",
    );
    assert!(
        config.contains("requires_approval = true"),
        "prod-vm changed shape"
    );
    config
}

/// Fails loudly unless the guest image `skyport-tiny` (with its disk template) is prepared.
pub fn assert_guest_image_prepared() {
    assert!(
        guest_library().join("skyport-tiny/disk.qcow2").exists(),
        "guest image missing or outdated: run tests/install-deps.sh test (make test does)"
    );
}

/// Where `tests/install-deps.sh test` puts the guest image (`<library>/skyport-tiny`).
pub fn guest_library() -> PathBuf {
    target_dir().parent().expect("target dir").join("guest")
}

/// The resident memory of process `pid`, kB.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A fresh state directory under the system temp dir, private (0700) as `skyport serve`
/// makes one.
pub fn temp_state_dir(tag: &str) -> PathBuf {
    // The time alone is not unique: two tests of one binary, on two threads, once got the
    // same nanoseconds, and so one state directory (two gateways, one CA each). A number
    // this process hands out once makes it so.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nth = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "skyport-e2e-{tag}-{}-{nanos}-{nth}",
        std::process::id()
    ));
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&dir)
        .unwrap();
    dir
}

/// A running gateway; killed on drop.
pub struct Gateway {
    child: Option<Child>,
    /// State directory.
    pub state_dir: PathBuf,
    /// TLS API address.
    pub api: SocketAddr,
    /// Metrics address.
    pub metrics: SocketAddr,
    log_path: PathBuf,
    relative_state_dir: bool,
}

/// Options for [`Gateway::start_with`].
#[derive(Default)]
pub struct GatewayOptions {
    /// Full configuration text; default: the embedded default.
    pub config: Option<String>,
    /// Extra TOML appended to the configuration (e.g. `[[plugins]]` entries).
    pub extra: String,
}

impl Gateway {
    /// Starts the gateway on the embedded defaults (ephemeral ports, fresh state dir).
    pub fn start() -> Self {
        Self::start_with(GatewayOptions::default())
    }

    /// Starts the gateway with `options`; panics with the gateway's log if it does not
    /// become ready.
    pub fn start_with(options: GatewayOptions) -> Self {
        match Self::try_start(options) {
            Ok(gw) => gw,
            Err(log) => panic!("gateway did not start:\n{log}"),
        }
    }

    /// Starts the gateway; `Err` carries its output when it exits or never becomes ready.
    pub fn try_start(options: GatewayOptions) -> Result<Self, String> {
        Self::try_start_in(temp_state_dir("gw"), options)
    }

    /// Starts another replica beside `primary`: a state directory of its own holding a copy
    /// of `primary`'s development certificates and keys, so that both serve the same CA and
    /// accept the same tokens, as replicas behind one load balancer do.
    pub fn start_replica(primary: &Gateway, options: GatewayOptions) -> Self {
        let state_dir = temp_state_dir("gw");
        let certs = state_dir.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        for entry in std::fs::read_dir(primary.state_dir.join("certs")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), certs.join(entry.file_name())).unwrap();
        }
        match Self::try_start_in(state_dir, options) {
            Ok(gw) => gw,
            Err(log) => panic!("replica did not start:\n{log}"),
        }
    }

    /// Starts the gateway with `options` as `make run` starts it: in its state directory's
    /// parent, with a relative `--state-dir` (`./<name>`, as `./var`).
    pub fn start_with_relative_state_dir(options: GatewayOptions) -> Self {
        Self::try_start_in_as(temp_state_dir("gw"), options, true)
            .unwrap_or_else(|log| panic!("gateway did not start:\n{log}"))
    }

    fn try_start_in(state_dir: PathBuf, options: GatewayOptions) -> Result<Self, String> {
        Self::try_start_in_as(state_dir, options, false)
    }

    fn try_start_in_as(
        state_dir: PathBuf,
        options: GatewayOptions,
        relative_state_dir: bool,
    ) -> Result<Self, String> {
        let mut config = options.config.unwrap_or_else(default_config);
        config.push('\n');
        config.push_str(&options.extra);
        let config_path = state_dir.join("skyport.toml");
        std::fs::write(&config_path, config).unwrap();
        let log_path = state_dir.join("gateway.log");
        let mut gw = Self {
            child: None,
            relative_state_dir,
            state_dir,
            api: "0.0.0.0:0".parse().unwrap(),
            metrics: "0.0.0.0:0".parse().unwrap(),
            log_path,
        };
        gw.spawn_and_wait()?;
        Ok(gw)
    }

    /// Replaces the configuration the next (re)start uses.
    pub fn replace_config(&self, config: &str) {
        std::fs::write(self.state_dir.join("skyport.toml"), config).unwrap();
    }

    /// Kills the gateway with SIGKILL (no drain, no flush) and starts it again on the same
    /// state directory and configuration.
    pub fn kill9_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let _ = std::fs::remove_file(self.state_dir.join("listen.json"));
        if let Err(log) = self.spawn_and_wait() {
            panic!("gateway did not restart:\n{log}");
        }
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut command = Command::new(skyport_bin());
        command
            .arg("serve")
            .arg("--config")
            .arg(self.state_dir.join("skyport.toml"))
            .arg("--state-dir");
        match (
            self.relative_state_dir,
            self.state_dir.parent(),
            self.state_dir.file_name(),
        ) {
            (true, Some(parent), Some(name)) => {
                command.arg(Path::new(".").join(name)).current_dir(parent);
            }
            _ => {
                command.arg(&self.state_dir);
            }
        }
        let child = command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .env("SKYPORT_LOG", "info,access=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn skyport");
        self.child = Some(child);
        let gw = self;
        let deadline = Instant::now() + Duration::from_secs(30);
        let listen = gw.state_dir.join("listen.json");
        loop {
            if let Ok(text) = std::fs::read_to_string(&listen) {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                gw.api = v["api"].as_str().unwrap().parse().unwrap();
                gw.metrics = v["metrics"].as_str().unwrap().parse().unwrap();
                return Ok(());
            }
            if let Some(status) = gw.child.as_mut().unwrap().try_wait().unwrap() {
                gw.child = None;
                return Err(format!("exited with {status}:\n{}", gw.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("not ready in 30 s:\n{}", gw.log()));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Everything the gateway has logged so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.api)
    }

    /// Path of a file in the development certificate directory.
    pub fn cert_path(&self, file: &str) -> PathBuf {
        self.state_dir.join("certs").join(file)
    }

    /// The development CA of this gateway, to issue test certificates with.
    pub fn dev_ca(&self) -> rcgen::Issuer<'static, rcgen::KeyPair> {
        let key = rcgen::KeyPair::from_pem(
            &std::fs::read_to_string(self.cert_path("ca-key.pem")).unwrap(),
        )
        .unwrap();
        rcgen::Issuer::from_ca_cert_pem(
            &std::fs::read_to_string(self.cert_path("ca.pem")).unwrap(),
            key,
        )
        .unwrap()
    }

    /// A client trusting only the development CA, without a client certificate.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().unwrap()
    }

    /// `GET path` with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `GET path` with a bearer token; asserts 200 and returns the JSON body.
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        let response = self.get(path, token).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// `DELETE path` with a bearer token.
    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.client()
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Creates a `skyport-tiny` VM of `instance_type` and waits until it runs; returns the
    /// instance.
    pub async fn create_running(&self, token: &str, instance_type: &str) -> serde_json::Value {
        let created = self
            .post_json(
                "/v1/instances?wait=running",
                token,
                Some(serde_json::json!({"image": "skyport-tiny", "instance_type": instance_type})),
            )
            .await;
        assert_eq!(created["state"], "running", "{created}");
        created
    }

    /// `POST path` with a bearer token and an optional JSON body; asserts a 2xx answer and
    /// returns its JSON body.
    pub async fn post_json(
        &self,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let response = self.post(path, token, body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// `POST path` with a bearer token and an optional JSON body.
    pub async fn post(
        &self,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = self.client().post(self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// A client presenting `cert`/`key` (PEM files) as its mTLS identity.
    pub fn mtls_client(&self, cert: &Path, key: &Path) -> reqwest::Client {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        self.client_builder()
            .identity(reqwest::Identity::from_pem(&pem).unwrap())
            .build()
            .unwrap()
    }

    /// An HTTP/2 client (one connection, many streams) trusting the development CA.
    pub fn http2_client(&self) -> reqwest::Client {
        self.client_builder()
            .http2_prior_knowledge()
            .build()
            .unwrap()
    }

    /// The gateway's process id (from `listen.json`).
    pub fn pid(&self) -> u32 {
        std::fs::read_to_string(self.state_dir.join("listen.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["pid"].as_u64())
            .expect("listen.json names the gateway's pid") as u32
    }

    /// A client builder trusting only the development CA.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.cert_path("ca.pem")).unwrap())
            .unwrap();
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(180))
    }

    /// A development token signed with the gateway's development key.
    pub fn token(&self, tenant: &str, dept: Option<&str>, roles: &[&str]) -> String {
        let mut claims = standard_claims(tenant);
        if let Some(d) = dept {
            claims["dept"] = d.into();
        }
        if !roles.is_empty() {
            claims["roles"] = roles.into();
        }
        self.sign(&claims)
    }

    /// Signs arbitrary claims with the development key (ES256, kid `skyport-dev`).
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let key = EncodingKey::from_ec_pem(
            &std::fs::read(self.cert_path("jwt-signing-key.pem")).unwrap(),
        )
        .unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("skyport-dev".into());
        encode(&header, claims, &key).unwrap()
    }

    /// Sends `signal` to the gateway process.
    pub fn signal(&self, signal: Signal) {
        let pid = self.child.as_ref().expect("running").id();
        kill(pid, signal).expect("signal the gateway");
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut()?.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }

    /// A raw TLS connection (HTTP/1.1 ALPN) trusting the development CA, optionally with
    /// a client certificate (cert PEM, key PEM).
    pub async fn tls_connect(
        &self,
        client_identity: Option<(&Path, &Path)>,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        self.tls_connect_alpn(client_identity, b"http/1.1").await
    }

    /// A raw HTTP/2 connection (ALPN `h2`, no client certificate), its frames driven by a
    /// task of its own: streams are opened, sent and read frame by frame, as a client such
    /// as curl does (request headers first, the body after, the response read as it comes).
    pub async fn h2_connect(&self) -> h2::client::SendRequest<bytes::Bytes> {
        let tls = self.tls_connect_alpn(None, b"h2").await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN h2");
        let (send, connection) = h2::client::handshake(tls).await.expect("HTTP/2 handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        send.ready().await.expect("HTTP/2 connection ready")
    }

    async fn tls_connect_alpn(
        &self,
        client_identity: Option<(&Path, &Path)>,
        alpn: &[u8],
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.cert_path("ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match client_identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(cert)
                        .unwrap()
                        .map(|c| c.unwrap())
                        .collect(),
                    PrivateKeyDer::from_pem_file(key).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(self.api).await.unwrap();
        connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap()
    }

    /// Fetches `/metrics` from the metrics listener.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        release_networks(&self.state_dir);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        } else {
            eprintln!("gateway log ({}):\n{}", self.log_path.display(), self.log());
        }
    }
}

/// Claims every valid token carries, for `tenant`, valid for an hour.
pub fn standard_claims(tenant: &str) -> serde_json::Value {
    let now = unix_now();
    serde_json::json!({
        "iss": "skyport-dev",
        "aud": "skyport",
        "sub": "e2e-user",
        "tenant": tenant,
        "iat": now,
        "exp": now + 3600,
    })
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Asserts that `response` is an RFC 9457 problem with `status`; returns its body.
pub async fn expect_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().unwrap().starts_with("https://"));
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

/// Runs `skyport <args>`; returns (exit code, stdout).
pub fn run_cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(skyport_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `YYYY-MM` of the month before the current one (UTC), and the current one.
pub fn previous_and_current_period() -> (String, String) {
    let now = humantime::format_rfc3339(std::time::SystemTime::now()).to_string();
    let (year, month): (i32, u32) = (now[..4].parse().unwrap(), now[5..7].parse().unwrap());
    let previous = if month == 1 {
        format!("{}-12", year - 1)
    } else {
        format!("{year}-{:02}", month - 1)
    };
    (previous, now[..7].to_string())
}

/// A bill amount (`"12.34"`) in cents.
pub fn cents(amount: &serde_json::Value) -> i64 {
    let text = amount.as_str().expect("amounts are strings");
    let (units, frac) = text.split_once('.').expect("amounts have two decimals");
    units.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
}

/// How many requests the ledger events in `events` account for (each `api.request.count`
/// its `count`, each `api.request` one), only those on `route` when given.
pub fn requests_metered(events: &[serde_json::Value], route: Option<&str>) -> u64 {
    events
        .iter()
        .filter(|e| route.is_none_or(|r| e["attributes"]["route"] == r))
        .map(|e| match e["type"].as_str() {
            Some("api.request.count") => e["attributes"]["count"].as_u64().unwrap_or(0),
            Some("api.request") => 1,
            _ => 0,
        })
        .sum()
}
