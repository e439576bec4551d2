//! The `/metrics` endpoint: plain HTTP/1.1 on `metrics.address`. Gauges of things the daemon
//! already keeps (pods, containers, monitors) are read at each scrape rather than kept in step
//! with every change.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use http::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;

use super::{StateLabels, metrics};
use crate::container::record::State as ContainerState;
use crate::container::service::Containers;
use crate::sandbox::record::{SandboxRecord, SandboxState};
use crate::sandbox::service::Sandboxes;

/// What Prometheus expects for the text prometheus-client writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A scrape has this long to send its request headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the gauges come from.
#[derive(Clone)]
pub struct Sources {
    pub sandboxes: Arc<Sandboxes>,
    pub containers: Arc<Containers>,
}

/// Binds `address` (so a taken port fails the start) and serves scrapes in the background.
/// Returns the bound address (port 0 picks one).
pub async fn start(address: SocketAddr, sources: Sources) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (metrics.address)"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let sources = sources.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let sources = sources.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(request, &sources).await) }
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

async fn answer<B>(request: Request<B>, sources: &Sources) -> Response<String> {
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
    refresh(sources).await;
    let mut response = reply(StatusCode::OK, &metrics().encode());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

/// Sets the gauges of pods, containers and monitors from the daemon's records.
async fn refresh(sources: &Sources) {
    let m = metrics();
    if let Ok(pods) = sources.sandboxes.list().await {
        for (state, label) in [
            (SandboxState::Creating, "creating"),
            (SandboxState::Ready, "ready"),
            (SandboxState::NotReady, "notready"),
        ] {
            let count = pods.iter().filter(|p| p.state == state).count();
            m.pods
                .get_or_create(&StateLabels { state: label })
                .set(count as i64);
        }
        let (monitors, rss) = monitors_alive(&pods);
        m.monitors.set(monitors);
        m.monitor_rss.set(rss);
    }
    if let Ok(containers) = sources.containers.list().await {
        for (state, label) in [
            (ContainerState::Creating, "creating"),
            (ContainerState::Created, "created"),
            (ContainerState::Running, "running"),
            (ContainerState::Exited, "exited"),
        ] {
            let count = containers.iter().filter(|c| c.state == state).count();
            m.containers
                .get_or_create(&StateLabels { state: label })
                .set(count as i64);
        }
    }
}

/// The monitors of ready pods still running, and their resident memory in bytes together.
fn monitors_alive(pods: &[SandboxRecord]) -> (i64, i64) {
    let mut count = 0;
    let mut rss = 0;
    for pod in pods.iter().filter(|p| p.state == SandboxState::Ready) {
        if let Some(bytes) = monitor_rss(pod.monitor_pid) {
            count += 1;
            rss += bytes;
        }
    }
    (count, rss)
}

/// VmRSS of `pid` if it is a ferrocri monitor (a reused pid is someone else).
fn monitor_rss(pid: i32) -> Option<i64> {
    if pid <= 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut is_monitor = false;
    let mut rss = None;
    for line in status.lines() {
        if let Some(name) = line.strip_prefix("Name:") {
            is_monitor = name.trim() == crate::monitor::title::MONITOR_COMM;
        } else if let Some(value) = line.strip_prefix("VmRSS:") {
            let kib = value.trim().trim_end_matches("kB").trim();
            rss = kib.parse::<i64>().ok().map(|k| k * 1024);
        }
    }
    if is_monitor { rss } else { None }
}
