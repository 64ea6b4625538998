//! A PostgreSQL server of a test's own: a new cluster (`initdb`) in a temporary
//! directory, started on a free loopback port with password authentication, stopped by
//! its PID when dropped. Debian's server binaries (`postgresql-15`) are required: a test
//! that cannot find them fails, saying what to install.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

/// The superuser the test cluster is made with.
pub const USER: &str = "skyport";

/// A running PostgreSQL server.
pub struct PostgresServer {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
    /// The account the server runs as when the test runs as root (PostgreSQL refuses
    /// root): `postgres`'s uid and gid.
    account: Option<(u32, u32)>,
    /// Whether commits reach the disk (`fsync`): off for tests, on for benchmarks.
    durable: bool,
}

/// The directory of Debian's PostgreSQL server binaries (the newest installed).
fn server_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context(
        "the PostgreSQL server is not installed (/usr/lib/postgresql/*/bin/postgres); \
         run tests/install-deps.sh test",
    )
}

/// `name`'s uid and gid from /etc/passwd.
fn account(name: &str) -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .with_context(|| {
            format!(
                "no account '{name}' to run PostgreSQL as (it refuses root); install postgresql-15"
            )
        })
}

/// A loopback port nobody listens on now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl PostgresServer {
    /// A new cluster, started; the password of [`USER`] is in [`Self::password_file`].
    /// Commits are not flushed to the disk (`fsync = off`): a test's data need not survive
    /// the host.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(false)
    }

    /// Like [`Self::start`], with commits flushed to the disk as in production
    /// (`fsync = on`): for benchmarks of durable writes.
    pub fn start_durable() -> anyhow::Result<Self> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> anyhow::Result<Self> {
        let bin = server_bin()?;
        let dir = std::env::temp_dir().join(skyport_core::ids::new_id("skyport-pg"));
        std::fs::create_dir_all(&dir)?;
        let is_root = rustix::process::geteuid().is_root();
        let account = if is_root {
            Some(account("postgres")?)
        } else {
            None
        };
        std::fs::write(dir.join("password"), "skyport-test-password\n")?;
        if let Some((uid, gid)) = account {
            for p in [dir.clone(), dir.join("password")] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid))?;
            }
        }
        let mut server = Self {
            dir,
            bin,
            port: 0,
            child: None,
            account,
            durable,
        };
        let out = server
            .command("initdb")
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .arg("--pwfile")
            .arg(server.dir.join("password"))
            .arg("-D")
            .arg(server.data_dir())
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        server.port = free_port()?;
        server.resume()?;
        Ok(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.account {
            command.uid(uid).gid(gid);
        }
        command.current_dir(&self.dir);
        command
    }

    /// Starts the server again on its port (after [`Self::stop`]) and waits until it
    /// accepts connections.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join("server.log"))?;
        if let Some((uid, gid)) = self.account {
            std::os::unix::fs::chown(self.dir.join("server.log"), Some(uid), Some(gid))?;
        }
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "max_connections=300"]);
        if !self.durable {
            command.args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting postgres")?;
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        // 60 s in steps of 50 ms.
        for _ in 0..1200 {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!("postgres exited ({status}): {}", self.log());
            }
            let log = self.log();
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && log.contains("ready to accept connections")
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("postgres did not start in 60 s: {}", self.log())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Stops the server (fast shutdown by PID, then kill after 10 s); [`Self::resume`]
    /// starts it again with its data.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        }
        // 10 s in steps of 20 ms.
        for _ in 0..500 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The file holding [`USER`]'s password.
    pub fn password_file(&self) -> PathBuf {
        self.dir.join("password")
    }

    /// The password of [`USER`].
    pub fn password(&self) -> &'static str {
        "skyport-test-password"
    }

    /// The URL of database `name` (no password: see [`Self::password_file`]).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name`; its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        self.execute("postgres", &format!("CREATE DATABASE \"{name}\""))
            .await?;
        Ok(self.url(name))
    }

    /// Runs `sql` (one or more statements) in `database` as [`USER`].
    pub async fn execute(&self, database: &str, sql: &str) -> anyhow::Result<()> {
        let mut config: tokio_postgres::Config = self.url(database).parse()?;
        config.password(self.password());
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        let connection = tokio::spawn(connection);
        client.batch_execute(sql).await?;
        drop(client);
        let _ = connection.await;
        Ok(())
    }

    /// Where its files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
