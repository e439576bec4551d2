//! The streaming server: the URLs that the Exec, Attach and PortForward RPCs return lead
//! here. A client upgrades its HTTP request on such a URL to SPDY/3.1 (kubelet's and
//! critest's default) or to a WebSocket, and then runs remotecommand (exec, attach) or
//! portforward over it. Each URL carries a single-use token for a request the RPC already
//! validated.

mod http;
mod portforward;
mod remotecommand;
mod spdy_channels;
pub mod tokens;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

use crate::config::StreamingConfig;
use crate::container::service::Containers;
use crate::monitor::protocol::StdioRequest;
use crate::sandbox::service::Sandboxes;
pub use tokens::TooManyPending;

/// A validated streaming request, waiting for its client.
#[derive(Debug, Clone)]
pub enum Pending {
    Exec {
        container_id: String,
        cmd: Vec<String>,
        stdio: StdioRequest,
    },
    Attach {
        container_id: String,
        stdio: StdioRequest,
    },
    PortForward {
        sandbox_id: String,
    },
}

impl Pending {
    fn path(&self) -> &'static str {
        match self {
            Pending::Exec { .. } => "exec",
            Pending::Attach { .. } => "attach",
            Pending::PortForward { .. } => "portforward",
        }
    }
}

pub struct Streaming {
    base_url: String,
    tokens: tokens::TokenCache<Pending>,
    containers: Arc<Containers>,
    sandboxes: Arc<Sandboxes>,
}

impl Streaming {
    /// Binds the server's address and serves it on a background task.
    pub async fn start(
        config: &StreamingConfig,
        containers: Arc<Containers>,
        sandboxes: Arc<Sandboxes>,
    ) -> anyhow::Result<Arc<Streaming>> {
        let tls = http::tls_acceptor(config)?;
        let listener = tokio::net::TcpListener::bind(config.address)
            .await
            .with_context(|| format!("cannot listen on {} (streaming.address)", config.address))?;
        let address = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let streaming = Arc::new(Streaming {
            base_url: format!("{scheme}://{}", url_host(address)),
            tokens: tokens::TokenCache::new(),
            containers,
            sandboxes,
        });
        tracing::info!(url = %streaming.base_url, "streaming server listening");
        tokio::spawn(http::serve(listener, tls, streaming.clone()));
        Ok(streaming)
    }

    /// The URL the client of `request` connects to.
    pub fn url(&self, request: Pending) -> Result<String, TooManyPending> {
        let path = request.path();
        let token = self.tokens.insert(request)?;
        Ok(format!("{}/{path}/{token}", self.base_url))
    }
}

/// The host part of our URLs: a wildcard address is reached on the loopback (kubelet, the
/// client of these URLs, runs on this node).
fn url_host(address: SocketAddr) -> String {
    match address {
        SocketAddr::V4(a) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
        SocketAddr::V6(a) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
        other => other.to_string(),
    }
}
