//! The daemon ↔ monitor protocol: one request and one response per connection on the pod's
//! monitor socket, each a JSON document behind a 4-byte big-endian length. Every request
//! carries the protocol version; a monitor answers a version it does not speak with an error,
//! so a daemon upgrade never misreads an older monitor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use crate::error_kind::ErrorKind;

pub const VERSION: u32 = 1;
/// Larger messages are refused: nothing in this protocol comes near it.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// What the daemon tells a new monitor about its pod (written to `pod.json` in its folder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodSpec {
    pub sandbox_id: String,
    /// The pod's Kubernetes namespace and name, for the monitor's process title.
    #[serde(default)]
    pub pod_namespace: String,
    #[serde(default)]
    pub pod_name: String,
    /// Pinned network namespace to join; None for host-network pods.
    pub netns: Option<PathBuf>,
    pub hostname: String,
    /// New IPC namespace (false: the host's).
    pub private_ipc: bool,
    /// New UTS namespace (false: the host's, for host-network pods).
    pub private_uts: bool,
    /// New PID namespace with the pause process as PID 1 (pid mode POD).
    pub private_pid: bool,
    /// Namespaced sysctls, applied inside the pod's namespaces.
    pub sysctls: BTreeMap<String, String>,
    /// Absolute cgroup path the monitor and pause go into (empty: stay where started).
    pub cgroup: String,
    /// The pod's pinned user namespace (userns mode POD): the pause joins it before making
    /// the IPC and UTS namespaces, so they belong to it.
    #[serde(default)]
    pub userns: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Is the monitor alive, and how is its pod?
    Status,
    /// Stop everything of the pod (SIGKILL to the pause and every process of the pod) and
    /// exit once they are reaped.
    Shutdown,
    /// Fork a container's executor and wait until it is ready to exec.
    CreateContainer(CreateRequest),
    /// Let a created container exec its process.
    StartContainer { id: String },
    /// Send a signal to a container's process.
    SignalContainer { id: String, signal: i32 },
    /// Forget a container (killing it if it still runs).
    RemoveContainer { id: String },
    /// Reopen a container's log file (kubelet rotated it).
    ReopenLog { id: String },
    /// Run a command in a running container and return its output.
    ExecSync(ExecRequest),
    /// Run a command in a running container as a session: after `Done` the connection
    /// carries frames (`frames.rs`) until the command's exit.
    Exec(ExecStreamRequest),
    /// Connect to a running container's stdio: after `Done` the connection carries frames
    /// until the container's exit.
    Attach(AttachRequest),
}

/// Which PID namespace a new container goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PidMode {
    /// The pod's: the pause is PID 1.
    Pod,
    /// Its own: the container is PID 1.
    Container,
    /// The host's.
    Host,
    /// The one of another container's process (ephemeral debug containers).
    Target { pid: i32 },
}

/// What CreateContainer asks of the monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRequest {
    pub id: String,
    /// The executor spec (JSON), written by the daemon.
    pub spec: PathBuf,
    /// The CRI log file; empty for none.
    pub log_path: PathBuf,
    pub tty: bool,
    pub pid_mode: PidMode,
    /// Give the container a stdin that attach sessions write to (else /dev/null).
    #[serde(default)]
    pub stdin: bool,
    /// Close that stdin when the first attach session that used it ends.
    #[serde(default)]
    pub stdin_once: bool,
}

/// What ExecSync asks of the monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub id: String,
    pub args: Vec<String>,
    /// 0: no limit.
    pub timeout_ms: u64,
}

/// The outcome of an ExecSync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    #[serde(with = "base64_bytes")]
    pub stdout: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub stderr: Vec<u8>,
    pub exit_code: i32,
    pub timed_out: bool,
}

/// Which stdio an exec or a container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdioRequest {
    /// A pty on fds 0-2; its output is one stream, reported as stdout.
    pub tty: bool,
    /// A writable stdin (the pty itself, or a pipe); else /dev/null (or the pty, unwritten).
    pub stdin: bool,
    /// Without a pty: pipes for the streams asked for, /dev/null for the others.
    pub stdout: bool,
    pub stderr: bool,
}

impl StdioRequest {
    /// ExecSync: no stdin, both streams captured.
    pub const CAPTURE: StdioRequest = StdioRequest {
        tty: false,
        stdin: false,
        stdout: true,
        stderr: true,
    };
}

/// An interactive exec: with `tty`, fds 0-2 are a pty (its output comes as stdout) and
/// `stderr` must be false; a stream not asked for is /dev/null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStreamRequest {
    pub id: String,
    pub args: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// The terminal's size (width, height) before the process starts, when the client sent
    /// one in time; later sizes come as resize frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<(u16, u16)>,
}

/// An attach to a container's stdio (its terminal if it has one). Asking for stdin from a
/// container that has none (or whose `stdin_once` stdin is closed) is not an error: the
/// session's input is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRequest {
    pub id: String,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(PodStatus),
    Created {
        pid: i32,
    },
    ExecResult(ExecResult),
    Done,
    /// The request failed; `kind` says how (a monitor of an older release sends none: the
    /// daemon reads Internal).
    Error {
        #[serde(default)]
        kind: ErrorKind,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    pub monitor_pid: i32,
    pub pause_pid: i32,
    /// None while the pause runs; its wait status once it has exited.
    pub pause_exit: Option<i32>,
    /// The containers the monitor holds.
    #[serde(default)]
    pub containers: Vec<ContainerState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    pub running: bool,
}

/// The first line a monitor writes to its stdout: it is ready, or why it could not start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ready", rename_all = "snake_case")]
pub enum Ready {
    Ok {
        monitor_pid: i32,
        pause_pid: i32,
    },
    Failed {
        #[serde(default)]
        kind: ErrorKind,
        message: String,
    },
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        STANDARD
            .decode(String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope<T> {
    version: u32,
    #[serde(flatten)]
    body: T,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("monitor socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("monitor message of {0} bytes is too large")]
    TooLarge(usize),
    #[error("monitor sent an unreadable message: {0}")]
    Decode(serde_json::Error),
    #[error("monitor speaks protocol version {theirs}, this daemon {ours}")]
    Version { theirs: u32, ours: u32 },
    /// The monitor's error answer.
    #[error("monitor: {message}")]
    Remote { kind: ErrorKind, message: String },
}

impl ProtocolError {
    /// How the request failed: the monitor's kind for its answers; a monitor that cannot be
    /// reached or understood is internal (as it always was).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProtocolError::Remote { kind, .. } => *kind,
            _ => ErrorKind::Internal,
        }
    }
}

pub async fn write_message<T: Serialize, W: AsyncWriteExt + Unpin>(
    w: &mut W,
    body: &T,
) -> std::io::Result<()> {
    let json = serde_json::to_vec(&Envelope {
        version: VERSION,
        body,
    })
    .map_err(std::io::Error::other)?;
    w.write_all(&(json.len() as u32).to_be_bytes()).await?;
    w.write_all(&json).await?;
    w.flush().await
}

pub async fn read_message<T: for<'de> Deserialize<'de>, R: AsyncReadExt + Unpin>(
    r: &mut R,
) -> Result<T, ProtocolError> {
    let io = |source| ProtocolError::Io {
        path: PathBuf::new(),
        source,
    };
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.map_err(io)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(ProtocolError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await.map_err(io)?;
    let envelope: Envelope<serde_json::Value> =
        serde_json::from_slice(&buf).map_err(ProtocolError::Decode)?;
    if envelope.version != VERSION {
        return Err(ProtocolError::Version {
            theirs: envelope.version,
            ours: VERSION,
        });
    }
    serde_json::from_value(envelope.body).map_err(ProtocolError::Decode)
}

/// Sends one request to the monitor listening on `socket` and returns its answer.
pub async fn call(socket: &Path, request: &Request) -> Result<Response, ProtocolError> {
    let io = |source| ProtocolError::Io {
        path: socket.to_owned(),
        source,
    };
    let mut stream = connect(socket).await.map_err(io)?;
    write_message(&mut stream, request).await.map_err(io)?;
    match read_message(&mut stream).await {
        Ok(Response::Error { kind, message }) => Err(ProtocolError::Remote { kind, message }),
        Ok(response) => Ok(response),
        Err(ProtocolError::Io { source, .. }) => Err(io(source)),
        Err(e) => Err(e),
    }
}

/// Connects to a unix socket whatever the length of its path: a path over the 107-byte
/// limit is reached through an O_PATH handle on its folder (`/proc/self/fd/<n>/<name>`).
pub(super) async fn connect(socket: &Path) -> std::io::Result<tokio::net::UnixStream> {
    const SUN_PATH_MAX: usize = 107;
    if socket.as_os_str().len() <= SUN_PATH_MAX {
        return tokio::net::UnixStream::connect(socket).await;
    }
    let (dir, name) = match (socket.parent(), socket.file_name()) {
        (Some(dir), Some(name)) => (dir, name),
        _ => return Err(std::io::Error::other("socket path has no folder")),
    };
    use std::os::unix::fs::OpenOptionsExt;
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)?;
    use std::os::fd::AsRawFd;
    let short = Path::new("/proc/self/fd")
        .join(handle.as_raw_fd().to_string())
        .join(name);
    let stream = tokio::net::UnixStream::connect(short).await;
    drop(handle);
    stream
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_version_check() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_message(&mut a, &Request::Status).await.unwrap();
        let got: Request = read_message(&mut b).await.unwrap();
        assert_eq!(got, Request::Status);

        let future = serde_json::json!({"version": VERSION + 1, "op": "status"}).to_string();
        a.write_all(&(future.len() as u32).to_be_bytes())
            .await
            .unwrap();
        a.write_all(future.as_bytes()).await.unwrap();
        let err = read_message::<Request, _>(&mut b).await.unwrap_err();
        assert!(matches!(err, ProtocolError::Version { .. }), "{err}");
    }

    #[tokio::test]
    async fn oversized_and_garbage_messages_are_errors() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_message::<Request, _>(&mut b).await,
            Err(ProtocolError::TooLarge(_))
        ));
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&3u32.to_be_bytes()).await.unwrap();
        a.write_all(b"{]x").await.unwrap();
        assert!(matches!(
            read_message::<Request, _>(&mut b).await,
            Err(ProtocolError::Decode(_))
        ));
    }
}
