//! portforward.k8s.io: for every connection the client opens an `error` and a `data` stream
//! that share a `requestID` and name a `port`; we dial that port on the pod's loopback,
//! inside its network namespace, and copy bytes both ways, half-closes included.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::spdy::{Connection, Incoming, Stream};

/// Streams of a half-opened connection wait at most this many at once; more are refused.
const MAX_UNPAIRED: usize = 1024;
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// RST_STREAM status for a stream we will not serve.
const REFUSED_STREAM: u32 = 3;

/// Where connections go: the pod's network namespace (None: the host's, for host-network
/// pods).
#[derive(Debug, Clone)]
pub struct Target {
    pub sandbox_id: String,
    pub netns: Option<PathBuf>,
}

#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
}

/// Serves one port-forward connection until the client closes it.
pub async fn serve(connection: Connection, mut incoming: Incoming, target: Target) {
    let mut unpaired: HashMap<String, Pair> = HashMap::new();
    loop {
        let stream = tokio::select! {
            stream = incoming.accept() => stream,
            () = connection.closed() => None,
        };
        let Some(stream) = stream else { break };
        if stream.reply(Vec::new(), false).await.is_err() {
            break;
        }
        let Some(kind) = stream.header("streamtype").map(str::to_ascii_lowercase) else {
            stream.reset(REFUSED_STREAM);
            continue;
        };
        let id = request_id(&stream, &kind);
        if !unpaired.contains_key(&id) && unpaired.len() >= MAX_UNPAIRED {
            stream.reset(REFUSED_STREAM);
            continue;
        }
        let pair = unpaired.entry(id.clone()).or_default();
        let slot = match kind.as_str() {
            "error" => &mut pair.error,
            "data" => &mut pair.data,
            _ => {
                stream.reset(REFUSED_STREAM);
                continue;
            }
        };
        if slot.is_some() {
            stream.reset(REFUSED_STREAM);
            continue;
        }
        *slot = Some(stream);
        if pair.error.is_some()
            && pair.data.is_some()
            && let Some(Pair {
                error: Some(error),
                data: Some(data),
            }) = unpaired.remove(&id)
        {
            tokio::spawn(forward(error, data, target.clone()));
        }
    }
    connection.close().await;
}

/// The pair a stream belongs to. Old clients send no requestID: their data stream's id is
/// then two above its error stream's.
fn request_id(stream: &Stream, kind: &str) -> String {
    match stream.header("requestid") {
        Some(id) => id.to_owned(),
        None if kind == "data" => stream.id().saturating_sub(2).to_string(),
        None => stream.id().to_string(),
    }
}

async fn forward(error: Stream, data: Stream, target: Target) {
    let (_error_in, mut error_out) = error.into_split();
    let port = data
        .header("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0);
    let Some(port) = port else {
        let _ = error_out
            .write_all(b"invalid or missing port header on the data stream")
            .await;
        let _ = error_out.shutdown().await;
        data.reset(REFUSED_STREAM);
        return;
    };
    let socket = match dial(target.netns.as_deref(), port).await {
        Ok(socket) => socket,
        Err(e) => {
            let message = format!(
                "error forwarding port {port} to pod {}: {e}",
                target.sandbox_id
            );
            tracing::debug!(%message);
            let _ = error_out.write_all(message.as_bytes()).await;
            let _ = error_out.shutdown().await;
            return;
        }
    };
    let (mut from_client, mut to_client) = data.into_split();
    let (mut from_pod, mut to_pod) = socket.into_split();
    let upstream = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_pod).await;
        // The client is done sending: pass the half-close on.
        let _ = to_pod.shutdown().await;
    };
    let downstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_client.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_client.shutdown().await;
    };
    tokio::join!(upstream, downstream);
    let _ = error_out.shutdown().await;
}

/// Connects to `port` on the loopback of the network namespace at `netns` (IPv4 first, then
/// IPv6, like kubelet's own port-forward). The socket is made on a short-lived thread that
/// enters the namespace; a socket stays in the namespace it was made in.
async fn dial(netns: Option<&Path>, port: u16) -> std::io::Result<TcpStream> {
    let Some(netns) = netns else {
        return match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(socket) => Ok(socket),
            Err(_) => TcpStream::connect(("::1", port)).await,
        };
    };
    let netns = netns.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("portforward-dial".into())
        .spawn(move || {
            let _ = tx.send(dial_in(&netns, port));
        })?;
    let socket = rx
        .await
        .map_err(|_| std::io::Error::other("the dialing thread died"))??;
    socket.set_nonblocking(true)?;
    TcpStream::from_std(socket)
}

fn dial_in(netns: &Path, port: u16) -> std::io::Result<std::net::TcpStream> {
    let namespace = std::fs::File::open(netns)?;
    nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(std::io::Error::from)?;
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&v4, DIAL_TIMEOUT).or_else(|e| {
        let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
        std::net::TcpStream::connect_timeout(&v6, DIAL_TIMEOUT).map_err(|_| e)
    })
}
