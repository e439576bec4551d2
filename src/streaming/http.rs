//! The HTTP side of the streaming server: find the token's request, negotiate the transport
//! (SPDY/3.1 or WebSocket) and the subprotocol, answer 101 and hand the upgraded connection
//! to remotecommand or portforward.

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming as Body;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::portforward::{self, Target};
use super::remotecommand::{self, Kind, SPDY_VERSIONS, Version, WEBSOCKET_VERSIONS};
use super::websocket::ByteStream;
use super::{Pending, Streaming};
use crate::config::StreamingConfig;

const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const ACCEPTED_PROTOCOLS_HEADER: &str = "x-accepted-stream-protocol-versions";
const PORT_FORWARD: &str = "portforward.k8s.io";
const PORT_FORWARD_OVER_WEBSOCKET: &str = "SPDY/3.1+portforward.k8s.io";

/// How long a client has to send its request's headers.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

type Reply = Response<String>;

pub fn tls_acceptor(config: &StreamingConfig) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    use anyhow::Context;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    if config.tls_cert.as_os_str().is_empty() {
        return Ok(None);
    }
    let certs = CertificateDer::pem_file_iter(&config.tls_cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "cannot read streaming.tls_cert {}",
                config.tls_cert.display()
            )
        })?;
    let key = PrivateKeyDer::from_pem_file(&config.tls_key)
        .with_context(|| format!("cannot read streaming.tls_key {}", config.tls_key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("streaming.tls_cert and streaming.tls_key do not make a usable certificate")?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls))))
}

/// Accepts connections for ever; each is served on its own task.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    streaming: Arc<Streaming>,
) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let streaming = streaming.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(tls) => match tls.accept(socket).await {
                    Ok(socket) => serve_connection(socket, streaming).await,
                    Err(e) => tracing::debug!(error = %e, "streaming TLS handshake failed"),
                },
                None => serve_connection(socket, streaming).await,
            }
        });
    }
}

async fn serve_connection<IO>(io: IO, streaming: Arc<Streaming>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let streaming = streaming.clone();
        async move { Ok::<_, Infallible>(route(request, streaming)) }
    });
    // A client that connects and never sends its request is dropped after a while.
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
}

fn reply(status: StatusCode, message: impl Into<String>) -> Reply {
    let mut response = Response::new(message.into());
    *response.status_mut() = status;
    response
}

/// Answers one request: an upgrade to the token's session, or why not.
fn route(mut request: Request<Body>, streaming: Arc<Streaming>) -> Reply {
    let mut segments = request.uri().path().trim_matches('/').split('/');
    let (Some(kind), Some(token), None) = (segments.next(), segments.next(), segments.next())
    else {
        return reply(StatusCode::NOT_FOUND, "no such streaming URL");
    };
    let Some(pending) = streaming.tokens.take(token).filter(|p| p.path() == kind) else {
        return reply(StatusCode::NOT_FOUND, "unknown or expired streaming URL");
    };
    tracing::debug!(?pending, "streaming request");
    let headers = request.headers();
    let upgrade = header_values(headers, header::UPGRADE.as_str());
    let transport = if upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket")) {
        Transport::WebSocket
    } else if upgrade.iter().any(|u| u.eq_ignore_ascii_case("SPDY/3.1")) {
        Transport::Spdy
    } else {
        return reply(
            StatusCode::BAD_REQUEST,
            "expected an upgrade to SPDY/3.1 or websocket",
        );
    };
    let protocol = match negotiate(transport, &pending, headers) {
        Ok(protocol) => protocol,
        Err(response) => return *response,
    };
    let mut response = reply(StatusCode::SWITCHING_PROTOCOLS, "");
    let out = response.headers_mut();
    out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    match transport {
        Transport::Spdy => {
            out.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            if let Some(name) = protocol.name() {
                out.insert(PROTOCOL_HEADER, HeaderValue::from_static(name));
            }
        }
        Transport::WebSocket => {
            let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
                return reply(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
            };
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            out.insert(
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept).unwrap_or(HeaderValue::from_static("")),
            );
            // Port-forward over WebSocket names the SPDY it tunnels.
            let name = match protocol {
                Protocol::PortForward => Some(PORT_FORWARD_OVER_WEBSOCKET),
                other => other.name(),
            };
            if let Some(name) = name {
                out.insert(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(name),
                );
            }
        }
    }
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let _open = crate::prometheus::SessionGauge::open();
                run(
                    TokioIo::new(upgraded),
                    transport,
                    protocol,
                    pending,
                    streaming,
                )
                .await
            }
            Err(e) => tracing::debug!(error = %e, "streaming upgrade failed"),
        }
    });
    response
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Spdy,
    WebSocket,
}

/// The subprotocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    RemoteCommand(Version),
    /// A SPDY client that offered no version: the oldest remotecommand.
    LegacyRemoteCommand,
    PortForward,
    /// A SPDY port-forward client that offered no version.
    LegacyPortForward,
}

impl Protocol {
    fn name(self) -> Option<&'static str> {
        match self {
            Protocol::RemoteCommand(v) => Some(v.name()),
            Protocol::PortForward => Some(PORT_FORWARD),
            Protocol::LegacyRemoteCommand | Protocol::LegacyPortForward => None,
        }
    }

    fn version(self) -> Version {
        match self {
            Protocol::RemoteCommand(v) => v,
            _ => Version::V1,
        }
    }
}

fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

fn negotiate(
    transport: Transport,
    pending: &Pending,
    headers: &HeaderMap,
) -> Result<Protocol, Box<Reply>> {
    let port_forward = matches!(pending, Pending::PortForward { .. });
    let (offers, ours): (Vec<String>, Vec<&str>) = match (transport, port_forward) {
        (Transport::Spdy, false) => (
            header_values(headers, PROTOCOL_HEADER),
            SPDY_VERSIONS.iter().map(|v| v.name()).collect(),
        ),
        (Transport::Spdy, true) => (header_values(headers, PROTOCOL_HEADER), vec![PORT_FORWARD]),
        (Transport::WebSocket, false) => (
            header_values(headers, header::SEC_WEBSOCKET_PROTOCOL.as_str()),
            WEBSOCKET_VERSIONS.iter().map(|v| v.name()).collect(),
        ),
        (Transport::WebSocket, true) => (
            header_values(headers, header::SEC_WEBSOCKET_PROTOCOL.as_str()),
            vec![PORT_FORWARD_OVER_WEBSOCKET],
        ),
    };
    if offers.is_empty() && transport == Transport::Spdy {
        return Ok(if port_forward {
            Protocol::LegacyPortForward
        } else {
            Protocol::LegacyRemoteCommand
        });
    }
    if port_forward {
        if offers.iter().any(|o| o == ours[0]) {
            return Ok(Protocol::PortForward);
        }
    } else {
        let versions: &[Version] = match transport {
            Transport::Spdy => &SPDY_VERSIONS,
            Transport::WebSocket => &WEBSOCKET_VERSIONS,
        };
        if let Some(v) = remotecommand::negotiate(offers.iter().map(String::as_str), versions) {
            return Ok(Protocol::RemoteCommand(v));
        }
    }
    let mut response = reply(
        StatusCode::FORBIDDEN,
        format!(
            "unable to upgrade: none of the offered protocols {offers:?} is supported; supported: {ours:?}"
        ),
    );
    if let Ok(value) = HeaderValue::from_str(&ours.join(", ")) {
        response
            .headers_mut()
            .insert(ACCEPTED_PROTOCOLS_HEADER, value);
    }
    Err(Box::new(response))
}

/// Runs the session on an upgraded connection.
async fn run<IO>(
    io: IO,
    transport: Transport,
    protocol: Protocol,
    pending: Pending,
    streaming: Arc<Streaming>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let stdio = match &pending {
        Pending::PortForward { sandbox_id } => {
            return port_forward(io, transport, sandbox_id, &streaming).await;
        }
        Pending::Exec { stdio, .. } | Pending::Attach { stdio, .. } => *stdio,
    };
    let version = protocol.version();
    match transport {
        Transport::Spdy => {
            let (connection, mut incoming) = crate::spdy::serve(io);
            match super::spdy_channels::accept(&mut incoming, version, stdio).await {
                Ok(channels) => {
                    let gone = connection.clone();
                    remote_command(channels, version, pending, &streaming, async move {
                        gone.closed().await
                    })
                    .await;
                }
                Err(e) => tracing::info!(error = %e, "streaming session not started"),
            }
            connection.close().await;
        }
        Transport::WebSocket => {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            let (channels, gone, closer) = super::websocket::channels(ws, version, stdio);
            remote_command(channels, version, pending, &streaming, gone).await;
            closer.close().await;
        }
    }
}

/// Serves a port-forward connection into the pod, if it is still ready.
async fn port_forward<IO>(io: IO, transport: Transport, sandbox_id: &str, streaming: &Streaming)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let target = match port_forward_target(streaming, sandbox_id).await {
        Ok(target) => target,
        Err(e) => {
            tracing::info!(sandbox = %sandbox_id, error = %e, "port-forward refused");
            return;
        }
    };
    let (connection, incoming) = match transport {
        Transport::Spdy => crate::spdy::serve(io),
        Transport::WebSocket => {
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            crate::spdy::serve(ByteStream::new(ws))
        }
    };
    portforward::serve(connection, incoming, target).await;
}

/// How long an exec with a terminal waits for the client's first size before it starts
/// without one (kubectl and crictl send it as soon as the streams are up).
const FIRST_SIZE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Opens the exec or attach with the pod's monitor and runs it to its end.
async fn remote_command(
    mut channels: super::remotecommand::Channels,
    version: Version,
    pending: Pending,
    streaming: &Streaming,
    client_gone: impl std::future::Future<Output = ()>,
) {
    let (opened, kind) = match pending {
        Pending::Exec {
            container_id,
            cmd,
            stdio,
        } => {
            let size = if stdio.tty {
                remotecommand::first_size(&mut channels.resize, FIRST_SIZE_WAIT).await
            } else {
                None
            };
            let size = size.map(|s| (s.width, s.height));
            (
                streaming
                    .containers
                    .exec_session(&container_id, cmd, stdio, size)
                    .await,
                Kind::Exec,
            )
        }
        Pending::Attach {
            container_id,
            stdio,
        } => (
            streaming
                .containers
                .attach_session(&container_id, stdio.stdin, stdio.stdout, stdio.stderr)
                .await,
            Kind::Attach,
        ),
        Pending::PortForward { .. } => return,
    };
    match opened {
        Ok(session) => {
            let ending = remotecommand::run(channels, session, version, kind, client_gone).await;
            tracing::debug!(?ending, ?kind, "streaming session ended");
        }
        Err(e) => remotecommand::fail(channels, version, e.to_string()).await,
    }
}

async fn port_forward_target(streaming: &Streaming, sandbox_id: &str) -> Result<Target, String> {
    let record = streaming
        .sandboxes
        .find(sandbox_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("pod sandbox {sandbox_id} is gone"))?;
    if record.state != crate::sandbox::record::SandboxState::Ready {
        return Err(format!("pod sandbox {sandbox_id} is not ready"));
    }
    Ok(Target {
        sandbox_id: record.id,
        netns: record.netns,
    })
}
