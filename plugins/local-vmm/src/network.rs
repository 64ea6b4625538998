//! The region's private network: every VM gets a NIC and a fixed private address on it.
//!
//! **Bridge mode** (needs root, as libvirt's default network does): a Linux bridge with
//! the network's first address, one persistent tap per VM enslaved to it, dnsmasq handing
//! each VM's MAC its fixed address (`dhcp-range=...,static`: no other lease is ever given)
//! and, when `nft` is present, NAT to the outside. The host reaches every VM at its
//! address, and VMs reach each other. The bridge, dnsmasq and the taps outlive a gateway
//! restart, as the VMs do; they are set up on the first boot, not at load.
//!
//! **User mode** (QEMU's user-mode networking; no privileges): each VM has a network of
//! its own in which it gets the same fixed address, and its SSH port is forwarded to a
//! port of 127.0.0.1 (`ssh_endpoint`). VMs cannot reach each other. Chosen when the host
//! cannot make a bridge (`mode = "auto"`), or when configured.
//!
//! Addresses are allocated at create from the network (from its 10th address up), kept in
//! the VM's `spec.json` (so they survive a restart), and freed when the VM is terminated.
//! A VM's MAC is derived from its address, so an address given again gets the same MAC and
//! dnsmasq's old lease for it never blocks the new VM.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// `[[plugins]] config = { network = {...} }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkConfig {
    /// `auto` (a bridge when the host can make one, else user mode), `bridge` or `user`.
    #[serde(default = "default_mode")]
    pub(crate) mode: String,
    /// Name of the bridge (at most 15 characters).
    #[serde(default = "default_bridge")]
    pub(crate) bridge: String,
    /// The network, IPv4 CIDR, /16 to /29.
    #[serde(default = "default_cidr")]
    pub(crate) cidr: String,
    /// NAT from the network to the outside (bridge mode; needs `nft`).
    #[serde(default = "default_nat")]
    pub(crate) nat: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            mode: default_mode(),
            bridge: default_bridge(),
            cidr: default_cidr(),
            nat: default_nat(),
        }
    }
}

fn default_mode() -> String {
    "auto".into()
}
fn default_bridge() -> String {
    "skyport0".into()
}
fn default_cidr() -> String {
    "10.213.0.0/24".into()
}
fn default_nat() -> bool {
    true
}

/// A VM's network interface, as kept in its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Nic {
    /// Its private address.
    pub(crate) ip: Ipv4Addr,
    /// Its MAC (`52:54:00:` and the address's last three bytes).
    pub(crate) mac: String,
    /// In user mode, the port of 127.0.0.1 forwarded to its SSH port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ssh_port: Option<u16>,
}

/// An IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    base: u32,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` (n from 16 to 29, the address the network's own).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("network cidr '{text}' is not an IPv4 network such as 10.213.0.0/24");
        let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(16..=29).contains(&prefix) {
            return Err(format!(
                "network cidr '{text}': the prefix must be 16 to 29"
            ));
        }
        let base = u32::from(addr);
        if base & !Self::mask_of(prefix) != 0 {
            return Err(format!(
                "network cidr '{text}' has host bits set; did you mean {}/{prefix}?",
                Ipv4Addr::from(base & Self::mask_of(prefix))
            ));
        }
        Ok(Self { base, prefix })
    }

    fn mask_of(prefix: u8) -> u32 {
        u32::MAX << (32 - prefix)
    }

    /// The host's address on it (the first).
    pub(crate) fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// The netmask, dotted.
    pub(crate) fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(Self::mask_of(self.prefix))
    }

    /// The prefix length.
    pub(crate) fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The addresses VMs get: from the 10th (the first few stay for the host) to the last
    /// before broadcast; on a small network, from the 2nd.
    fn vm_range(self) -> impl Iterator<Item = Ipv4Addr> {
        let size = 1u32 << (32 - self.prefix);
        let first = if size > 32 { 10 } else { 2 };
        let base = self.base;
        (first..size - 1).map(move |n| Ipv4Addr::from(base + n))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// The MAC of the VM with address `ip`.
/// The NIC's `-device` argument: on the netdev `net0`, with MAC `mac`. A snapshot's
/// template has the same device, so that VMs restore from it.
pub(crate) fn nic_device(mac: &str) -> String {
    format!("virtio-net-pci,netdev=net0,mac={mac}")
}

pub(crate) fn mac_for(ip: Ipv4Addr) -> String {
    let [_, b, c, d] = ip.octets();
    format!("52:54:00:{b:02x}:{c:02x}:{d:02x}")
}

/// The lowest address of `cidr` for VMs that no VM in `taken` has.
pub(crate) fn free_address(cidr: &Cidr, taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    cidr.vm_range().find(|ip| !taken.contains(ip))
}

/// How VMs are connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A bridge on the host.
    Bridge,
    /// QEMU user-mode networking, with the reason a bridge is not used.
    User(String),
}

/// The network of this plugin instance.
pub(crate) struct HostNetwork {
    config: NetworkConfig,
    cidr: Cidr,
    dir: PathBuf,
    mode: Mutex<Option<Mode>>,
    /// Whether the bridge side was set up (by us or an earlier start).
    ready: Mutex<bool>,
    /// What is missing but not fatal (NAT without `nft`), for health.
    notes: Mutex<Vec<String>>,
}

impl HostNetwork {
    /// The network `config` describes, its files under `dir`; nothing on the host changes
    /// until [`HostNetwork::prepare`].
    pub(crate) fn new(config: NetworkConfig, dir: PathBuf) -> Result<Self, String> {
        let cidr = Cidr::parse(&config.cidr)?;
        if config.bridge.is_empty()
            || config.bridge.len() > 15
            || !config
                .bridge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "network bridge '{}' must be 1-15 letters, digits, '-' or '_'",
                config.bridge
            ));
        }
        let mode = match config.mode.as_str() {
            "user" => Some(Mode::User("configured (mode = \"user\")".into())),
            "bridge" => Some(Mode::Bridge),
            "auto" => None,
            other => {
                return Err(format!(
                    "network mode '{other}' is not one of auto, bridge, user"
                ))
            }
        };
        Ok(Self {
            config,
            cidr,
            dir,
            mode: Mutex::new(mode),
            ready: Mutex::new(false),
            notes: Mutex::default(),
        })
    }

    /// The network.
    pub(crate) fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// The mode chosen so far: in `auto`, a bridge when this process could make one
    /// (it runs as root), else user mode. Decided without touching the host.
    pub(crate) fn mode(&self) -> Mode {
        let mut mode = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        mode.get_or_insert_with(|| {
            if !rustix::process::geteuid().is_root() {
                Mode::User("the plugin does not run as root, so it cannot make a bridge".into())
            } else if !Path::new("/dev/net/tun").exists() {
                Mode::User("/dev/net/tun is missing".into())
            } else if crate::programs::find_program("ip").is_none() {
                Mode::User("`ip` (iproute2) is not installed".into())
            } else {
                Mode::Bridge
            }
        })
        .clone()
    }

    /// What health says of the network: the mode and anything missing.
    pub(crate) fn describe(&self) -> String {
        let mut text = match self.mode() {
            Mode::Bridge => format!(
                "bridge {} on {} (DHCP by dnsmasq)",
                self.config.bridge, self.cidr
            ),
            Mode::User(why) => format!(
                "user-mode networking ({why}): VMs cannot reach each other and SSH is \
                 forwarded to ports of 127.0.0.1"
            ),
        };
        for note in self.notes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            text.push_str("; ");
            text.push_str(note);
        }
        text
    }

    /// Why VMs cannot be networked now (bridge mode without dnsmasq), if so.
    pub(crate) fn unusable(&self) -> Option<String> {
        match self.mode() {
            Mode::Bridge if crate::programs::find_program("dnsmasq").is_none() => Some(
                "dnsmasq not found; install dnsmasq-base (tests/install-deps.sh run does)".into(),
            ),
            _ => None,
        }
    }

    /// A NIC for a new VM, its address not in `taken`.
    pub(crate) fn allocate(&self, taken: &[Ipv4Addr]) -> Result<Nic, String> {
        let ip = free_address(&self.cidr, taken)
            .ok_or_else(|| format!("network {} has no free address left", self.cidr))?;
        let ssh_port = match self.mode() {
            Mode::Bridge => None,
            Mode::User(_) => Some(free_local_port()?),
        };
        Ok(Nic {
            ip,
            mac: mac_for(ip),
            ssh_port,
        })
    }

    /// Sets up the bridge, dnsmasq and NAT if not yet done (idempotent; what an earlier
    /// start left is kept), then publishes `nics`' leases. User mode: nothing to do.
    pub(crate) fn prepare(&self, nics: &[(String, Nic)]) -> Result<(), String> {
        if self.mode() != Mode::Bridge {
            return Ok(());
        }
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        self.write_hosts(nics)?;
        if !*ready {
            // Named in the state directory, for an operator (or a test) removing it.
            let _ = std::fs::write(self.dir.join("bridge"), &self.config.bridge);
            self.make_bridge()?;
            self.nat();
        }
        match self.dnsmasq_pid() {
            // Running: it reads the hosts file again, with the new VM in it.
            Some(pid) => reload(pid),
            None => self.start_dnsmasq()?,
        }
        *ready = true;
        Ok(())
    }

    /// Rewrites dnsmasq's hosts file with `nics` and tells it to read it again (also
    /// after a restart, before this process prepared anything: dnsmasq still runs).
    pub(crate) fn publish(&self, nics: &[(String, Nic)]) {
        if self.mode() != Mode::Bridge || !self.dir.exists() {
            return;
        }
        if let Err(e) = self.write_hosts(nics) {
            log::warn!("local-vmm network: {e}");
        }
        if let Some(pid) = self.dnsmasq_pid() {
            reload(pid);
        }
    }

    /// QEMU's arguments for `nic` of VM `id`; in bridge mode its tap is made (and enslaved
    /// to the bridge) first.
    pub(crate) fn qemu_args(&self, id: &str, nic: &Nic) -> Result<Vec<String>, String> {
        let netdev = match self.mode() {
            Mode::Bridge => {
                let tap = tap_name(id);
                if !Path::new("/sys/class/net").join(&tap).exists() {
                    ip(&["tuntap", "add", "dev", &tap, "mode", "tap"])?;
                }
                ip(&["link", "set", &tap, "master", &self.config.bridge])?;
                ip(&["link", "set", &tap, "up"])?;
                format!("tap,id=net0,ifname={tap},script=no,downscript=no")
            }
            Mode::User(_) => format!(
                "user,id=net0,net={},host={},dhcpstart={},hostname={id}{}",
                self.cidr,
                self.cidr.gateway(),
                nic.ip,
                nic.ssh_port
                    .map(|port| format!(",hostfwd=tcp:127.0.0.1:{port}-:22"))
                    .unwrap_or_default()
            ),
        };
        Ok(vec![
            "-netdev".into(),
            netdev,
            "-device".into(),
            nic_device(&nic.mac),
        ])
    }

    /// Removes VM `id`'s tap (bridge mode), once its QEMU is gone.
    pub(crate) fn release(&self, id: &str) {
        let tap = tap_name(id);
        if Path::new("/sys/class/net").join(&tap).exists() {
            if let Err(e) = ip(&["link", "del", &tap]) {
                log::warn!("local-vmm network: removing {tap}: {e}");
            }
        }
    }

    fn hosts_file(&self) -> PathBuf {
        self.dir.join("dhcp-hosts")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("dnsmasq.pid")
    }

    fn write_hosts(&self, nics: &[(String, Nic)]) -> Result<(), String> {
        let text: String = nics
            .iter()
            .map(|(id, nic)| format!("{},{},{id}\n", nic.mac, nic.ip))
            .collect();
        let tmp = self.dir.join("dhcp-hosts.tmp");
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, self.hosts_file()).map_err(|e| format!("dhcp hosts: {e}"))
    }

    fn make_bridge(&self) -> Result<(), String> {
        let bridge = &self.config.bridge;
        if !Path::new("/sys/class/net").join(bridge).exists() {
            ip(&["link", "add", bridge, "type", "bridge"])?;
        }
        let address = format!("{}/{}", self.cidr.gateway(), self.cidr.prefix());
        ip(&["addr", "replace", &address, "dev", bridge])?;
        ip(&["link", "set", bridge, "up"])
    }

    /// NAT from the network to the outside, as libvirt's default network does: IPv4
    /// forwarding on, and masquerading of the network's traffic that leaves it.
    fn nat(&self) {
        if !self.config.nat {
            return;
        }
        if crate::programs::find_program("nft").is_none() {
            self.note("no NAT to the outside: nft not found (install nftables)");
            return;
        }
        if let Err(e) = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1") {
            self.note(&format!(
                "no NAT to the outside: cannot enable IPv4 forwarding: {e}"
            ));
            return;
        }
        let table = format!("skyport_{}", self.config.bridge.replace('-', "_"));
        let rules = format!(
            "table ip {table} {{}}\nflush table ip {table}\ntable ip {table} {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat;\n    ip saddr {cidr} ip daddr != {cidr} masquerade\n  }}\n}}\n",
            cidr = self.cidr
        );
        let out = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .expect("piped")
                    .write_all(rules.as_bytes())?;
                child.wait_with_output()
            });
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => self.note(&format!(
                "no NAT to the outside: nft: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => self.note(&format!("no NAT to the outside: nft: {e}")),
        }
    }

    fn note(&self, note: &str) {
        log::warn!("local-vmm network: {note}");
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        if !notes.iter().any(|n| n == note) {
            notes.push(note.to_string());
        }
    }

    /// dnsmasq's pid, if the one this network started is running.
    fn dnsmasq_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let ours = self.pid_file();
        let needle = ours.to_string_lossy();
        String::from_utf8_lossy(&cmdline)
            .contains(needle.as_ref())
            .then_some(pid)
    }

    fn start_dnsmasq(&self) -> Result<(), String> {
        if self.dnsmasq_pid().is_some() {
            return Ok(());
        }
        // A dnsmasq still serving this bridge for a state directory that is gone would
        // hold its address: it is replaced.
        self.stop_stale_dnsmasq();
        let dnsmasq = crate::programs::find_program("dnsmasq")
            .ok_or("dnsmasq not found; install dnsmasq-base (tests/install-deps.sh run does)")?;
        let gateway = self.cidr.gateway().to_string();
        let out = Command::new(dnsmasq)
            .arg("--conf-file=/dev/null")
            .arg(format!("--pid-file={}", self.pid_file().display()))
            .arg(format!("--dhcp-hostsfile={}", self.hosts_file().display()))
            .arg(format!(
                "--dhcp-leasefile={}",
                self.dir.join("dnsmasq.leases").display()
            ))
            .arg(format!(
                "--dhcp-range={},static,{},12h",
                Ipv4Addr::from(self.cidr.base),
                self.cidr.netmask()
            ))
            .arg(format!("--interface={}", self.config.bridge))
            .arg(format!("--listen-address={gateway}"))
            .args([
                "--bind-interfaces",
                "--except-interface=lo",
                "--dhcp-authoritative",
                "--dhcp-no-override",
                "--strict-order",
                "--user=root",
                "--group=root",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .map_err(|e| format!("dnsmasq: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "dnsmasq did not start: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }
}

impl HostNetwork {
    fn stop_stale_dnsmasq(&self) {
        let needle = format!("--interface={}\0", self.config.bridge);
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline
                .split('\0')
                .next()
                .is_some_and(|p| p.ends_with("dnsmasq"))
                && cmdline.contains(&needle)
            {
                log::warn!(
                    "local-vmm network: replacing a stale dnsmasq (pid {pid}) on {}",
                    self.config.bridge
                );
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

/// Tells dnsmasq `pid` to read its hosts file again (SIGHUP).
fn reload(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::HUP);
    }
}

/// The tap of VM `id` (`vm-` and 12 hex): `sp` and the hex, 14 characters.
fn tap_name(id: &str) -> String {
    format!("sp{}", id.trim_start_matches("vm-"))
}

/// Runs `ip ARGS`.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A port of 127.0.0.1 nobody listens on now.
fn free_local_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free local port: {e}"))
}

#[cfg(test)]
mod tests;
