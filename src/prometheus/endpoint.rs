//! The `/metrics` endpoint: plain HTTP/1.1 on `metrics.address`. Gauges of things the daemon
//! already keeps (pods, containers, monitors) are read at each scrape rather than kept in step
//! with every change: the daemon hands in that reading (`src/gauges.rs`), so this layer knows
//! nothing of pods.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use http::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;

use futures::future::BoxFuture;

use super::metrics;

/// What Prometheus expects for the text prometheus-client writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A scrape has this long to send its request headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sets the gauges read at scrape time; called before each scrape is encoded.
pub type Refresh = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Binds `address` (so a taken port fails the start) and serves scrapes in the background.
/// Returns the bound address (port 0 picks one).
pub async fn start(address: SocketAddr, refresh: Refresh) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (metrics.address)"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let refresh = refresh.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let refresh = refresh.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(request, &refresh).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn answer<B>(request: Request<B>, refresh: &Refresh) -> Response<String> {
    let reply = |status: StatusCode, text: &str| {
        let mut response = Response::new(text.to_owned());
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, "metrics are at /metrics\n");
    }
    if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    refresh().await;
    let mut response = reply(StatusCode::OK, &metrics().encode());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}
