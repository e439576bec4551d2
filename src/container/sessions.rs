//! ExecSync, and the checks and sessions of Exec and Attach in running containers.

use super::record::ContainerRecord;
use super::service::{ContainerError, Containers, failed, talking};
use crate::monitor::protocol::{self, AttachRequest, ExecRequest, ExecStreamRequest, StdioRequest};
use crate::monitor::session::{SessionReader, SessionWriter};
use crate::sandbox::record::SandboxRecord;

impl Containers {
    /// ExecSync: runs `cmd` in the running container; `timeout` seconds (0: none).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<protocol::ExecResult, ContainerError> {
        if cmd.is_empty() {
            return Err(ContainerError::Invalid {
                field: "cmd",
                message: "must not be empty".into(),
            });
        }
        let (record, sandbox) = self.running(id).await?;
        let request = ExecRequest {
            id: record.id.clone(),
            args: cmd,
            timeout_ms: (timeout.max(0) as u64).saturating_mul(1000),
        };
        let result = self
            .monitor(&sandbox)
            .exec_sync(request)
            .await
            .map_err(talking)?;
        if result.timed_out {
            return Err(ContainerError::Timeout(format!(
                "command in container {} timed out after {timeout}s and was killed",
                record.id
            )));
        }
        Ok(result)
    }

    /// Checks an Exec request without running anything (the RPC calls it before handing out
    /// a streaming URL): NotFound, FailedPrecondition when the container does not run,
    /// InvalidArgument for an empty command or streams that make no session.
    pub async fn check_exec(
        &self,
        id: &str,
        cmd: &[String],
        stdio: StdioRequest,
    ) -> Result<(), ContainerError> {
        self.exec_target(id, cmd, stdio).await.map(drop)
    }

    /// Starts `cmd` in the running container as an interactive session (checked as
    /// [`Containers::check_exec`] does).
    pub async fn exec_session(
        &self,
        id: &str,
        cmd: Vec<String>,
        stdio: StdioRequest,
        size: Option<(u16, u16)>,
    ) -> Result<(SessionWriter, SessionReader), ContainerError> {
        let (record, sandbox) = self.exec_target(id, &cmd, stdio).await?;
        let StdioRequest {
            tty,
            stdin,
            stdout,
            stderr,
        } = stdio;
        let request = ExecStreamRequest {
            id: record.id,
            args: cmd,
            tty,
            stdin,
            stdout,
            stderr,
            size,
        };
        self.monitor(&sandbox)
            .exec(request)
            .await
            .map_err(failed("starting the exec session"))
    }

    pub(super) async fn exec_target(
        &self,
        id: &str,
        cmd: &[String],
        stdio: StdioRequest,
    ) -> Result<(ContainerRecord, SandboxRecord), ContainerError> {
        if cmd.is_empty() {
            return Err(ContainerError::Invalid {
                field: "cmd",
                message: "must not be empty".into(),
            });
        }
        check_streams(stdio.stdin, stdio.stdout, stdio.stderr)?;
        if stdio.tty && stdio.stderr {
            // A terminal has one output stream (kubelet's streaming server refuses it too).
            return Err(ContainerError::Invalid {
                field: "stderr",
                message: "tty and stderr cannot both be true".into(),
            });
        }
        self.running(id).await
    }

    /// Checks an Attach request without attaching: NotFound, FailedPrecondition when the
    /// container does not run, InvalidArgument when no stream is asked for. Returns what
    /// the streaming side needs to know about the container.
    pub async fn check_attach(
        &self,
        id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<AttachInfo, ContainerError> {
        check_streams(stdin, stdout, stderr)?;
        let (record, _) = self.running(id).await?;
        Ok(attach_info(&record))
    }

    /// Attaches to the running container's stdio (checked as [`Containers::check_attach`]
    /// does). With a tty container, output comes as stdout only and resizes apply.
    pub async fn attach_session(
        &self,
        id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(SessionWriter, SessionReader), ContainerError> {
        check_streams(stdin, stdout, stderr)?;
        let (record, sandbox) = self.running(id).await?;
        let request = AttachRequest {
            id: record.id,
            stdin,
            stdout,
            stderr,
        };
        self.monitor(&sandbox)
            .attach(request)
            .await
            .map_err(failed("attaching to the container"))
    }
}

/// What an attach session gets from the container's own configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachInfo {
    /// The container has a terminal: one output stream, resizes apply.
    pub tty: bool,
    /// The container was created with stdin (attach input reaches it; without, it is
    /// ignored).
    pub stdin: bool,
}

pub(super) fn attach_info(record: &ContainerRecord) -> AttachInfo {
    AttachInfo {
        tty: record.config.0.tty,
        stdin: record.config.0.stdin,
    }
}

/// A session must carry at least one stream.
pub(super) fn check_streams(stdin: bool, stdout: bool, stderr: bool) -> Result<(), ContainerError> {
    if stdin || stdout || stderr {
        return Ok(());
    }
    Err(ContainerError::Invalid {
        field: "stdin, stdout, stderr",
        message: "one of them must be set".into(),
    })
}
