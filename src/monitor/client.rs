//! The daemon's side of a monitor: starting one for a pod and talking to it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use super::layout::{SOCKET, SPEC_FILE};
use super::protocol::{
    self, AttachRequest, CreateRequest, ExecRequest, ExecResult, ExecStreamRequest, PodSpec,
    PodStatus, ProtocolError, Ready, Request, Response,
};
use super::session::{self, SessionReader, SessionWriter};
use crate::error_kind::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The daemon could not prepare or spawn the monitor.
    #[error("cannot start the pod monitor: {what}: {source}")]
    Start {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The monitor was spawned but never said it was ready.
    #[error("cannot start the pod monitor: {0}")]
    NotReady(String),
    /// The monitor could not set the pod up, and said why.
    #[error("pod monitor: {message}")]
    Failed { kind: ErrorKind, message: String },
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("pod monitor answered {0:?} unexpectedly")]
    Unexpected(Response),
}

impl MonitorError {
    /// How the monitor request failed (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            MonitorError::Start { source, .. } => ErrorKind::of_io(source),
            MonitorError::Failed { kind, .. } => *kind,
            MonitorError::Protocol(e) => e.kind(),
            MonitorError::NotReady(_) | MonitorError::Unexpected(_) => ErrorKind::Internal,
        }
    }
}

/// Pids of a started monitor and its pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub monitor_pid: i32,
    pub pause_pid: i32,
}

/// The monitor's executable: `ferrocri-monitor`, installed beside `ferrocri`.
pub const PROGRAM_NAME: &str = "ferrocri-monitor";

/// `ferrocri-monitor` in the folder of the running daemon's executable. (The daemon's own
/// file may have been replaced since it started; /proc/self/exe then ends in " (deleted)",
/// and the folder is still right.)
pub fn program() -> std::io::Result<PathBuf> {
    Ok(std::fs::read_link("/proc/self/exe")?.with_file_name(PROGRAM_NAME))
}

/// Starts `ferrocri-monitor monitor` for the pod in `dir` and waits until it and its pause
/// are up.
pub async fn start(dir: &Path, spec: &PodSpec) -> Result<Started, MonitorError> {
    let start_err = |what: &str, source: std::io::Error| MonitorError::Start {
        what: what.to_owned(),
        source,
    };
    let json =
        serde_json::to_vec_pretty(spec).map_err(|e| start_err("encoding the spec", e.into()))?;
    std::fs::write(dir.join(SPEC_FILE), json).map_err(|e| start_err("writing the spec", e))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("monitor.log"))
        .map_err(|e| start_err("opening its log", e))?;
    let program = program().map_err(|e| start_err("finding its program", e))?;
    let mut child = tokio::process::Command::new(&program)
        .arg("monitor")
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| start_err(&format!("spawning {}", program.display()), e))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| MonitorError::NotReady("no stdout".into()))?;
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    let ready = match read {
        Err(_) => {
            let _ = child.start_kill();
            return Err(MonitorError::NotReady(
                "it did not report ready within 30s".into(),
            ));
        }
        Ok(Err(e)) => return Err(start_err("reading its ready line", e)),
        Ok(Ok(_)) => serde_json::from_str::<Ready>(line.trim()),
    };
    // The child handle is dropped: the monitor outlives this call (and this daemon); tokio
    // reaps it if it exits while the daemon runs.
    match ready {
        Ok(Ready::Ok {
            monitor_pid,
            pause_pid,
        }) => Ok(Started {
            monitor_pid,
            pause_pid,
        }),
        Ok(Ready::Failed { kind, message }) => Err(MonitorError::Failed { kind, message }),
        Err(_) => Err(MonitorError::NotReady(format!(
            "it exited without reporting ready ({:?})",
            line.trim()
        ))),
    }
}

/// The daemon's handle on one pod's monitor: every request the monitor answers, typed.
/// Pods and containers talk to their monitor only through it; nothing else in the daemon
/// builds a [`Request`] or names the socket.
#[derive(Debug, Clone)]
pub struct PodMonitor {
    dir: PathBuf,
}

impl PodMonitor {
    /// The monitor of the pod whose state dir is `pod_dir`.
    pub fn of(pod_dir: &Path) -> PodMonitor {
        PodMonitor {
            dir: pod_dir.to_owned(),
        }
    }

    /// The monitor's view of the pod; an error when the monitor is gone.
    pub async fn status(&self) -> Result<PodStatus, MonitorError> {
        match self.call(&Request::Status).await? {
            Response::Status(status) => Ok(status),
            other => Err(MonitorError::Unexpected(other)),
        }
    }

    /// Stops the pod's processes and the monitor. A monitor that is already gone is fine.
    pub async fn shutdown(&self) -> Result<(), MonitorError> {
        let socket = self.dir.join(SOCKET);
        if !socket.exists() {
            return Ok(());
        }
        match protocol::call(&socket, &Request::Shutdown).await {
            Ok(Response::Done) => Ok(()),
            Ok(other) => Err(MonitorError::Unexpected(other)),
            // Nobody listens: the monitor died earlier; the caller kills what is left.
            Err(ProtocolError::Io { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Forks a container's executor; its pid once it is ready to exec.
    pub async fn create(&self, request: CreateRequest) -> Result<i32, MonitorError> {
        match self.call(&Request::CreateContainer(request)).await? {
            Response::Created { pid } => Ok(pid),
            other => Err(MonitorError::Unexpected(other)),
        }
    }

    /// Lets a created container exec its process.
    pub async fn start(&self, id: &str) -> Result<(), MonitorError> {
        let id = id.to_owned();
        self.call(&Request::StartContainer { id }).await.map(drop)
    }

    /// Sends `signal` to a container's process.
    pub async fn signal(&self, id: &str, signal: i32) -> Result<(), MonitorError> {
        let id = id.to_owned();
        self.call(&Request::SignalContainer { id, signal })
            .await
            .map(drop)
    }

    /// Forgets a container, killing it if it still runs.
    pub async fn remove(&self, id: &str) -> Result<(), MonitorError> {
        let id = id.to_owned();
        self.call(&Request::RemoveContainer { id }).await.map(drop)
    }

    /// Reopens a container's log file (kubelet rotated it).
    pub async fn reopen_log(&self, id: &str) -> Result<(), MonitorError> {
        let id = id.to_owned();
        self.call(&Request::ReopenLog { id }).await.map(drop)
    }

    /// Runs a command in a running container and returns its output.
    pub async fn exec_sync(&self, request: ExecRequest) -> Result<ExecResult, MonitorError> {
        match self.call(&Request::ExecSync(request)).await? {
            Response::ExecResult(result) => Ok(result),
            other => Err(MonitorError::Unexpected(other)),
        }
    }

    /// Starts a command in a running container as a session.
    pub async fn exec(
        &self,
        request: ExecStreamRequest,
    ) -> Result<(SessionWriter, SessionReader), MonitorError> {
        session::exec(&self.dir, request).await
    }

    /// Attaches to a running container's stdio.
    pub async fn attach(
        &self,
        request: AttachRequest,
    ) -> Result<(SessionWriter, SessionReader), MonitorError> {
        session::attach(&self.dir, request).await
    }

    async fn call(&self, request: &Request) -> Result<Response, MonitorError> {
        Ok(protocol::call(&self.dir.join(SOCKET), request).await?)
    }
}
