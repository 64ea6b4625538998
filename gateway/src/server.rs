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
use crate::stack::request::ConnInfo;
use crate::stack::{self};
use crate::tls::ReloadableTls;
use crate::wiring::Gateway;

/// Time allowed for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` flips, then drains in-flight requests for up to
/// `drain` before returning.
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
    let max_header_bytes = server.max_header_bytes;
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tls.acceptor();
        let gateway = Arc::clone(&gateway);
        let trust_domain = gateway.services.config.auth.mtls.trust_domain.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
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
            let service = service_fn(move |req| {
                let (gateway, conn) = (Arc::clone(&gateway), Arc::clone(&conn));
                async move { Ok::<_, std::convert::Infallible>(dispatch(&gateway, &conn, req).await) }
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
                .max_header_list_size(max_header_bytes as u32);
            let connection = builder.serve_connection(TokioIo::new(tls), service);
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

/// Hands a request to the front door that serves its path, through the one stack.
async fn dispatch(
    gateway: &Gateway,
    conn: &ConnInfo,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    if Ec2Api::serves(req.uri().path()) {
        // Boxed: the EC2 door's future would otherwise enlarge every native request's.
        Box::pin(stack::handle(&gateway.stack, &gateway.ec2, conn, req)).await
    } else {
        stack::handle(&gateway.stack, &gateway.native, conn, req).await
    }
}
