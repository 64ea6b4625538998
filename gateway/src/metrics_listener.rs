//! The plain-HTTP listener: `/metrics` (Prometheus text), `/healthz` and `/readyz`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use skyport_core::metrics::Metrics;

use crate::server::idle::{IdleTimeoutIo, InFlight};
use crate::server::AcceptBackoff;

/// Readiness, flipped once the TLS listener serves.
#[derive(Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    /// Marks ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Connections the metrics listener holds at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a metrics connection may sit idle, or take to send its request headers.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the metrics listener until `shutdown` resolves.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut accept_errors = AcceptBackoff::default();
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_errors.failed(&e).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        accept_errors.accepted();
        // Its own small budget, apart from the API listener's: a flood there leaves
        // health and metrics answering; a flood here is closed at once.
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        let readiness = Arc::clone(&readiness);
        tokio::spawn(async move {
            let _permit = permit;
            let in_flight = Arc::new(InFlight::default());
            let stream = IdleTimeoutIo::new(stream, IDLE_TIMEOUT, Arc::clone(&in_flight));
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let metrics = Arc::clone(&metrics);
                let readiness = Arc::clone(&readiness);
                let serving = in_flight.serving();
                async move {
                    let _serving = serving;
                    let (status, content_type, body) = match req.uri().path() {
                        "/metrics" => (
                            200,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            metrics.encode(),
                        ),
                        "/healthz" => (200, "text/plain", "ok\n".to_string()),
                        "/readyz" if readiness.is_ready() => {
                            (200, "text/plain", "ready\n".to_string())
                        }
                        "/readyz" => (503, "text/plain", "not ready\n".to_string()),
                        _ => (404, "text/plain", "not found\n".to_string()),
                    };
                    let response = http::Response::builder()
                        .status(status)
                        .header(http::header::CONTENT_TYPE, content_type)
                        .body(Full::new(Bytes::from(body)))
                        .expect("static response parts are valid");
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(IDLE_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
