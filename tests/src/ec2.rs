//! What the EC2 end-to-end tests need beyond the gateway: a real moto server (the remote
//! EC2-compatible cloud), the project virtualenv's Python with boto3 and the AWS CLI,
//! access keys, and the `ec2` provider's configuration.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{temp_state_dir, Gateway};

/// A credentials file (the AWS shared-credentials format) holding `key_id` and `secret`,
/// at `path`.
fn credentials_file(path: PathBuf, key_id: &str, secret: &str) -> PathBuf {
    std::fs::write(
        &path,
        format!("[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    path
}

/// The project virtualenv (`.venv`, made by `tests/install-deps.sh test`); fails loudly when
/// it is missing.
pub fn venv_bin(program: &str) -> PathBuf {
    // The repository's root, wherever the build's target directory is.
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/bin")
        .join(program);
    assert!(
        bin.exists(),
        "{} is missing: run tests/install-deps.sh test (make test does)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A moto server on a loopback port; killed on drop, and its directory (log, credentials
/// files) removed unless the test is failing.
pub struct Moto {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Moto {
    /// Starts `moto_server` and waits until it answers.
    pub fn start() -> Self {
        let port = free_port();
        let dir = temp_state_dir("moto");
        Self {
            child: Self::spawn(port, &dir),
            port,
            dir,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    fn spawn(port: u16, dir: &std::path::Path) -> Child {
        // Its request log (on stderr) goes to the file too: a run makes thousands of lines.
        let log = std::fs::File::create(dir.join("moto.log")).unwrap();
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn moto_server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        child
    }

    /// Stops the server: the cloud becomes unreachable.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new, empty server on the same port, after [`Moto::stop`].
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.port, &self.dir);
    }

    /// A `[[plugins]]` entry for an `ec2` provider named `name` (region `aws-us-east-1`)
    /// in front of this server, with credentials from a file.
    pub fn provider_config(&self, name: &str) -> String {
        let creds = credentials_file(
            self.dir.join("credentials"),
            "moto-test",
            "moto-test-secret",
        );
        format!(
            r#"
[[plugins]]
name = "{name}"
file = "libskyport_ec2.so"
config = {{ endpoint = "{}", region = "us-east-1", skyport_region = "aws-us-east-1", credentials = {{ file = "{}" }}, instance_types = {{ "sp.micro" = "t2.micro", "sp.small" = "t2.small", "sp.medium" = "t3.medium", "sp.large" = "t3.large" }}, images = {{ "skyport-tiny" = "ami-03cf127a" }} }}
"#,
            self.endpoint,
            creds.display()
        )
    }
}

impl Moto {
    /// The configuration table of an `ec2` provider in front of this server (what a
    /// `[[plugins]]` entry's `config` holds), as a TOML document of its own.
    pub fn plugin_config_document(&self) -> String {
        let creds = credentials_file(
            self.dir.join("credentials"),
            "moto-test",
            "moto-test-secret",
        );
        format!(
            r#"endpoint = "{}"
region = "us-east-1"
skyport_region = "aws-us-east-1"
credentials = {{ file = "{}" }}
instance_types = {{ "sp.micro" = "t2.micro", "sp.small" = "t2.small", "sp.medium" = "t3.medium", "sp.large" = "t3.large" }}
images = {{ "skyport-tiny" = "ami-03cf127a" }}
"#,
            self.endpoint,
            creds.display()
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// An access key created through the admin API: `{"access_key_id", "secret_access_key"}`.
pub async fn access_key(gw: &Gateway, tenant: &str) -> serde_json::Value {
    let admin = gw.token("demo", None, &["admin"]);
    let r = gw
        .post(
            "/admin/keys",
            &admin,
            Some(serde_json::json!({"tenant": tenant})),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// Runs `tests/ec2/scenarios.py <scenario>` with the virtualenv's boto3 against `gw`;
/// panics with the script's output unless it succeeds. Returns its stdout.
pub fn scenario(gw: &Gateway, name: &str, mut args: serde_json::Value) -> String {
    args["endpoint"] = format!("https://{}", gw.api).into();
    args["ca"] = gw.cert_path("ca.pem").display().to_string().into();
    python_script(gw, "ec2/scenarios.py", name, &args)
}

/// Runs `tests/ec2/tools.py <scenario>` (Libcloud, SigV2 signers) with the virtualenv's
/// Python against `gw`, with access key `key`; panics with the script's output unless it
/// succeeds. Returns its stdout.
pub fn tool_scenario(gw: &Gateway, name: &str, key: &serde_json::Value) -> String {
    let args = serde_json::json!({
        "host": gw.api.ip().to_string(),
        "port": gw.api.port(),
        "ca": gw.cert_path("ca.pem").display().to_string(),
        "key": key,
    });
    python_script(gw, "ec2/tools.py", name, &args)
}

/// Runs `tests/<script> <name> '<args>'` with the virtualenv's Python, no AWS profile;
/// panics with its output and the gateway's log tail unless it succeeds.
fn python_script(gw: &Gateway, script: &str, name: &str, args: &serde_json::Value) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(script);
    let out: Output = Command::new(venv_bin("python"))
        .arg(&script)
        .arg(name)
        .arg(args.to_string())
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {name} failed:\n{stdout}\n{}\n--- gateway log (tail) ---\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr),
        tail(&gw.log(), 60)
    );
    stdout
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs the unmodified AWS CLI against `gw` with `key`; returns (exit code, stdout, stderr).
pub fn aws_cli(
    gw: &Gateway,
    key: &serde_json::Value,
    region: &str,
    args: &[&str],
) -> (i32, String, String) {
    let out = Command::new(venv_bin("aws"))
        .args(["--endpoint-url", &format!("https://{}", gw.api)])
        .args(["--ca-bundle", &gw.cert_path("ca.pem").display().to_string()])
        .args(["--region", region, "--output", "json"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", key["access_key_id"].as_str().unwrap())
        .env(
            "AWS_SECRET_ACCESS_KEY",
            key["secret_access_key"].as_str().unwrap(),
        )
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("run aws");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The test-only Eucalyptus stand-in (`tests/ec2/euca_shim.py`) in front of its own moto;
/// both killed on drop.
pub struct EucaShim {
    child: Child,
    moto: Moto,
    /// `http://127.0.0.1:<port>` (the plugin appends `/services/compute`).
    pub endpoint: String,
}

impl EucaShim {
    /// Starts a moto and the shim in front of it; waits until the shim listens.
    pub fn start() -> Self {
        let moto = Moto::start();
        let port = free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ec2/euca_shim.py");
        let child = Command::new(venv_bin("python"))
            .arg(script)
            .args([
                &port.to_string(),
                &moto.endpoint,
                "euca-test",
                "euca-test-secret",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the Eucalyptus shim");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the Eucalyptus shim did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            moto,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Stops the shim (the cloud becomes unreachable); moto stays up.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The configuration table of a `eucalyptus` provider in front of this shim, as a
    /// TOML document of its own (for the conformance kit's `--config`).
    pub fn plugin_config_document(&self) -> String {
        let creds = credentials_file(
            self.moto.dir.join("euca-credentials"),
            "euca-test",
            "euca-test-secret",
        );
        format!(
            r#"endpoint = "{}"
clusters = {{ "euca-1a" = "cluster01" }}
credentials = {{ file = "{}" }}
instance_types = {{ "sp.micro" = "t2.micro", "sp.small" = "t2.small", "sp.medium" = "t3.medium", "sp.large" = "t3.large" }}
images = {{ "skyport-tiny" = "emi-03cf127a" }}
"#,
            self.endpoint,
            creds.display()
        )
    }

    /// A `[[plugins]]` entry for a `eucalyptus` provider named `name` (region `euca-1`,
    /// zone `euca-1a` = cluster `cluster01`).
    pub fn provider_config(&self, name: &str) -> String {
        let creds = credentials_file(
            self.moto.dir.join("euca-credentials"),
            "euca-test",
            "euca-test-secret",
        );
        format!(
            r#"
[[plugins]]
name = "{name}"
file = "libskyport_eucalyptus.so"
config = {{ endpoint = "{}", clusters = {{ "euca-1a" = "cluster01" }}, credentials = {{ file = "{}" }}, instance_types = {{ "sp.micro" = "t2.micro", "sp.small" = "t2.small", "sp.medium" = "t3.medium", "sp.large" = "t3.large" }}, images = {{ "skyport-tiny" = "emi-03cf127a" }} }}
"#,
            self.endpoint,
            creds.display()
        )
    }
}

impl Drop for EucaShim {
    fn drop(&mut self) {
        self.stop();
    }
}
