//! The flood of `bench/flood.sh`: many TLS connections that handshake and then send
//! nothing, and many authenticated requests whose bodies arrive a byte a second, each kept
//! up for as long as the process runs (a connection the gateway closes is opened again).
//!
//! The attacker spreads itself over several loopback source addresses (127.0.0.2 and up),
//! as a flood from several hosts would, each staying under the gateway's per-address caps on
//! connections held: what is measured is the gateway's capacity, not its per-address
//! refusals. A connection refused (past the per-address rate of new connections, say) is
//! tried again half a second later.
//!
//! Usage: `skyport-flood ADDR CA_PEM TOKEN IDLE SLOW`. Prints `ready` once every
//! connection has been opened once, then a line of counts every second.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Connections per source address: under the gateway's default per-address cap (512) and,
/// for slow bodies, under its bodies-in-reading cap (32).
const IDLE_PER_SOURCE: usize = 500;
const SLOW_PER_SOURCE: usize = 30;

#[derive(Default)]
struct Counts {
    opened: AtomicU64,
    closed_by_gateway: AtomicU64,
    failed: AtomicU64,
    body_bytes: AtomicU64,
}

struct Target {
    addr: SocketAddr,
    tls: TlsConnector,
    token: String,
    counts: Counts,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, ca, token, idle, slow] = args.as_slice() else {
        return Err("usage: skyport-flood ADDR CA_PEM TOKEN IDLE SLOW".into());
    };
    let (idle, slow): (usize, usize) = (idle.parse()?, slow.parse()?);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let target = Arc::new(Target {
        addr: addr.parse()?,
        tls: TlsConnector::from(Arc::new(config)),
        token: token.clone(),
        counts: Counts::default(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let idle_sources = idle.div_ceil(IDLE_PER_SOURCE);
        for i in 0..idle {
            let source = source_address(i / IDLE_PER_SOURCE);
            tokio::spawn(keep_idle(Arc::clone(&target), source));
        }
        for i in 0..slow {
            let source = source_address(idle_sources + i / SLOW_PER_SOURCE);
            tokio::spawn(keep_slow_body(Arc::clone(&target), source));
        }
        let wanted = (idle + slow) as u64;
        while target.counts.opened.load(Ordering::Relaxed) < wanted {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("ready");
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let c = &target.counts;
            println!(
                "opened {} closed-by-gateway {} failed {} body-bytes {}",
                c.opened.load(Ordering::Relaxed),
                c.closed_by_gateway.load(Ordering::Relaxed),
                c.failed.load(Ordering::Relaxed),
                c.body_bytes.load(Ordering::Relaxed)
            );
        }
    })
}

/// The `n`th attacking source address: 127.0.0.2, 127.0.0.3, ...
fn source_address(n: usize) -> SocketAddr {
    let n = u8::try_from(n + 2).expect("at most 253 source addresses");
    SocketAddr::from((Ipv4Addr::new(127, 0, 0, n), 0))
}

async fn connect(
    target: &Target,
    source: SocketAddr,
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(source)?;
    let tcp = socket.connect(target.addr).await?;
    let name = ServerName::try_from("localhost").expect("a server name");
    target.tls.connect(name, tcp).await
}

/// A TLS connection that sends nothing, opened again whenever it ends.
async fn keep_idle(target: Arc<Target>, source: SocketAddr) {
    loop {
        match connect(&target, source).await {
            Ok(mut tls) => {
                target.counts.opened.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 256];
                while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
                target
                    .counts
                    .closed_by_gateway
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                target.counts.failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// An authenticated `POST /v1/instances` announcing a 1 MB body and sending a byte a
/// second, opened again whenever the gateway ends it.
async fn keep_slow_body(target: Arc<Target>, source: SocketAddr) {
    let head = format!(
        "POST /v1/instances HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 1000000\r\n\r\n",
        target.token
    );
    loop {
        let Ok(mut tls) = connect(&target, source).await else {
            target.counts.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        target.counts.opened.fetch_add(1, Ordering::Relaxed);
        if tls.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let (mut read, mut write) = tokio::io::split(tls);
        let trickle = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if write.write_all(b" ").await.is_err() || write.flush().await.is_err() {
                    return;
                }
                target.counts.body_bytes.fetch_add(1, Ordering::Relaxed);
            }
        };
        let answered = async {
            let mut buf = [0u8; 1024];
            while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
        };
        tokio::select! {
            () = trickle => {}
            () = answered => {}
        }
        target
            .counts
            .closed_by_gateway
            .fetch_add(1, Ordering::Relaxed);
    }
}
