//! A plugin host of the test's own: `skyport plugin-host --serve` with `local-vmm` on a
//! loopback port, behind mutual TLS material made for it (a CA, the host's certificate,
//! and a client certificate for the gateways). Killed on drop, with the VMs and networks
//! its plugin made.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};

use crate::{guest_library, release_networks, skyport_bin, temp_state_dir, test_network};

/// A running plugin host serving `local-vmm`.
pub struct PluginHost {
    child: Option<Child>,
    dir: PathBuf,
    /// `127.0.0.1:<port>`.
    pub address: String,
}

/// Writes a CA, a server certificate for 127.0.0.1 and a client certificate for the
/// gateways into `dir`.
fn make_tls(dir: &std::path::Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |file: &str, usage: ExtendedKeyUsagePurpose, ip: bool| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        if ip {
            params
                .subject_alt_names
                .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        } else {
            params
                .subject_alt_names
                .push(SanType::DnsName("gateway".try_into().unwrap()));
        }
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}-key.pem")), key.serialize_pem()).unwrap();
    };
    leaf("host", ExtendedKeyUsagePurpose::ServerAuth, true);
    leaf("gateway", ExtendedKeyUsagePurpose::ClientAuth, false);
}

impl PluginHost {
    /// Makes the TLS material and starts the host with `local-vmm` on a free port.
    pub fn start_local_vmm() -> Self {
        let dir = temp_state_dir("plugin-host");
        make_tls(&dir);
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let library = skyport_bin()
            .parent()
            .unwrap()
            .join("libskyport_local_vmm.so");
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\n\n[tls]\ncert = \"{d}/host.pem\"\nkey = \"{d}/host-key.pem\"\n\
             client_ca = \"{d}/ca.pem\"\n\n[plugin]\nname = \"local-vmm\"\nfile = \"{}\"\n\
             state_dir = \"{d}/local-vmm\"\nconfig = {{ image_library = \"{}\", {} }}\n",
            library.display(),
            guest_library().display(),
            test_network(),
            d = dir.display(),
        );
        std::fs::write(dir.join("host.toml"), config).unwrap();
        let mut host = Self {
            child: None,
            dir,
            address: format!("127.0.0.1:{port}"),
        };
        host.resume();
        host
    }

    /// Starts the host (again) and waits until it listens.
    pub fn resume(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("host.log"))
            .unwrap();
        let child = Command::new(skyport_bin())
            .args(["plugin-host", "--serve"])
            .arg(self.dir.join("host.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn skyport plugin-host --serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.address).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the plugin host exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the plugin host did not listen in 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the host with SIGKILL (what a machine failure looks like to its peers).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("host.log")).unwrap_or_default()
    }

    /// The `[[plugins]]` entry of a gateway using this host for `local-vmm`, in place of
    /// [`crate::default_config`]'s own `local-vmm`.
    pub fn gateway_config(&self, default_config: &str) -> String {
        let shipped = "name = \"local-vmm\"\nfile = \"libskyport_local_vmm.so\"\nenv = [\"SKYPORT_VMM_ACCEL\"]\n";
        assert!(
            default_config.contains(shipped),
            "the shipped local-vmm entry changed"
        );
        let remote = format!(
            "name = \"local-vmm\"\nfile = \"libskyport_local_vmm.so\"\nisolation = \"remote\"\n\
             remote = {{ address = \"{}\", ca = \"{d}/ca.pem\", cert = \"{d}/gateway.pem\", \
             key = \"{d}/gateway-key.pem\" }}\n",
            self.address,
            d = self.dir.display(),
        );
        // The gateway's own local-vmm configuration goes: the host has its own.
        let config: Vec<&str> = default_config
            .lines()
            .filter(|line| !line.starts_with("config = { image_library = "))
            .collect();
        (config.join("\n") + "\n").replacen(shipped, &remote, 1)
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.kill();
        release_networks(&self.dir);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
