//! The TLS listener: accept, handshake (bounded), HTTP/1.1 or HTTP/2 over hyper, graceful
//! drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use skyport_auth::mtls::identity_from_certificate;

use crate::api::ec2::Ec2Api;
use crate::console::Console;
use crate::stack::request::ConnInfo;
use crate::stack::{self};
use crate::tls::ReloadableTls;
use crate::wiring::Gateway;

mod accept;
#[cfg(test)]
mod body_wake_tests;
mod budget;
pub(crate) mod idle;
mod run_to_end;
mod turns;

pub(crate) use accept::AcceptBackoff;

use budget::{global_limit, ConnectionBudget};
use run_to_end::run_to_end;
use turns::CpuTurns;

/// Serves `listener` until `shutdown` flips, then drains in-flight requests for up to
/// `drain` before returning. Connections are admitted within the listener's budget
/// (globally and per client address) before their handshake, and closed once idle.
pub async fn serve_tls(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tls: Arc<ReloadableTls>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let server = &gateway.services.config.server;
    let header_timeout = Duration::from_secs(server.header_read_timeout_secs);
    let handshake_timeout = Duration::from_secs(server.handshake_timeout_secs);
    let idle_timeout = Duration::from_secs(server.idle_timeout_secs);
    let max_header_bytes = server.max_header_bytes;
    let budget = ConnectionBudget::new(
        global_limit(server.max_connections),
        server.max_connections_per_peer,
        server.new_connections_per_peer_per_sec,
        gateway.services.clock.clone(),
    );
    let metrics = Arc::clone(&gateway.stack.metrics);
    let handshake_turns = CpuTurns::per_core();
    let mut accept_errors = AcceptBackoff::default();
    let mut refusals = RefusalLog::default();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_errors.failed(&e).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        accept_errors.accepted();
        let admitted = match budget.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(refused) => {
                metrics
                    .connections_refused
                    .get_or_create(&vec![("reason", refused.label().to_string())])
                    .inc();
                refusals.refused(refused, peer.ip());
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tls.acceptor();
        let gateway = Arc::clone(&gateway);
        let trust_domain = gateway.services.config.auth.mtls.trust_domain.clone();
        let watcher = graceful.watcher();
        let open = metrics.connections_open.clone();
        let handshake_turns = handshake_turns.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            open.inc();
            let _open = scopeguard(move || {
                open.dec();
            });
            // A handshake's CPU work waits for its turn, within its deadline.
            let handshake = handshake_turns.run(acceptor.accept(tcp));
            let tls = match tokio::time::timeout(handshake_timeout, handshake).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            };
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|leaf| identity_from_certificate(leaf, &trust_domain));
            let conn = Arc::new(ConnInfo { peer, identity });
            let in_flight = Arc::new(idle::InFlight::default());
            let io = idle::IdleTimeoutIo::new(tls, idle_timeout, Arc::clone(&in_flight));
            let service = service_fn(move |req| {
                let (gateway, conn) = (Arc::clone(&gateway), Arc::clone(&conn));
                let serving = in_flight.serving();
                async move {
                    let response = if is_write(req.method()) {
                        // A write runs to its end even when its client goes away.
                        let writes = gateway.writes.clone();
                        run_to_end(&writes, dispatch_write(gateway, conn, req)).await
                    } else {
                        dispatch(&gateway, &conn, req).await
                    };
                    drop(serving);
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(max_header_bytes);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_header_list_size(max_header_bytes as u32)
                .max_concurrent_streams(MAX_STREAMS)
                .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
                .max_local_error_reset_streams(MAX_PENDING_RESETS)
                .keep_alive_interval(Some(idle_timeout))
                .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(drain) => tracing::warn!("drain deadline passed; closing remaining connections"),
    }
}

/// Streams one HTTP/2 connection may have open at once.
const MAX_STREAMS: u32 = 100;
/// Streams a peer may reset (or make the server reset) before its connection is closed.
const MAX_PENDING_RESETS: usize = 20;
/// How long an HTTP/2 keep-alive ping may go unanswered.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Logs refused connections at most once a minute (the metric counts every one).
#[derive(Default)]
struct RefusalLog {
    last: Option<tokio::time::Instant>,
    since: u64,
}

impl RefusalLog {
    fn refused(&mut self, reason: budget::Refused, peer: std::net::IpAddr) {
        self.since += 1;
        let now = tokio::time::Instant::now();
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(60))
        {
            tracing::warn!(
                %peer,
                reason = reason.label(),
                refused = self.since,
                "connection refused: server.{} is reached",
                reason.setting(),
            );
            self.last = Some(now);
            self.since = 0;
        }
    }
}

/// Whether a request may change something (anything but GET, HEAD and OPTIONS; the EC2
/// Query API's GETs that act are rare and short, and run as reads do).
fn is_write(method: &http::Method) -> bool {
    !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

/// The front door that serves a path.
enum Door {
    Console,
    Ec2,
    Native,
}

impl Door {
    fn of(path: &str) -> Self {
        if Console::serves(path) {
            Door::Console
        } else if Ec2Api::serves(path) {
            Door::Ec2
        } else {
            Door::Native
        }
    }
}

/// The response of a request, however it ends.
type Answer = http::Response<http_body_util::Full<bytes::Bytes>>;

/// Hands a request to the front door that serves its path, through the one stack.
async fn dispatch(
    gateway: &Gateway,
    conn: &ConnInfo,
    req: http::Request<hyper::body::Incoming>,
) -> Answer {
    match Door::of(req.uri().path()) {
        // Boxed, as the EC2 door's below.
        Door::Console => Box::pin(serve_console(gateway, conn, req)).await,
        // Boxed: the EC2 door's future would otherwise enlarge every native request's.
        Door::Ec2 => Box::pin(stack::handle(&gateway.stack, &gateway.ec2, conn, req)).await,
        Door::Native => stack::handle(&gateway.stack, &gateway.native, conn, req).await,
    }
}

/// The web console's answer to `req`. The console reads no body; one sent all the same is
/// drained before the answer goes, as the stack drains what its doors leave unread
/// (`BodyLimits::drain_unread`: over HTTP/2, answering first would reset the stream of a
/// client still sending it).
async fn serve_console(
    gateway: &Gateway,
    conn: &ConnInfo,
    req: http::Request<hyper::body::Incoming>,
) -> Answer {
    let (head, body) = req.into_parts();
    let (version, declared) = (head.version, stack::request::declared_length(&head.headers));
    let answer = gateway
        .console
        .handle(conn, http::Request::from_parts(head, ()))
        .await;
    gateway
        .stack
        .bodies
        .drain_unread(version, declared, body)
        .await;
    answer
}

/// [`dispatch`] for a write, boxed as [`run_to_end`] takes it: each door's future is
/// boxed where it is made, at its own size (one copy, not one of `dispatch`'s whole size
/// and then another of the EC2 door's).
fn dispatch_write(
    gateway: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    req: http::Request<hyper::body::Incoming>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>> {
    match Door::of(req.uri().path()) {
        Door::Console => Box::pin(async move { serve_console(&gateway, &conn, req).await }),
        Door::Ec2 => {
            Box::pin(async move { stack::handle(&gateway.stack, &gateway.ec2, &conn, req).await })
        }
        Door::Native => {
            Box::pin(
                async move { stack::handle(&gateway.stack, &gateway.native, &conn, req).await },
            )
        }
    }
}
