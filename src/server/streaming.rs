//! Exec, Attach and PortForward: validate the request now, so a bad one gets its gRPC error
//! before any URL is handed out, then park it behind a streaming URL.

use tonic::Status;

use super::CriServer;
use super::errors::invalid_field;
use crate::container::record::State;
use crate::cri::v1::{
    AttachRequest, AttachResponse, ExecRequest, ExecResponse, PortForwardRequest,
    PortForwardResponse,
};
use crate::sandbox::record::SandboxState;
use crate::streaming::{Pending, Wanted};
use crate::telemetry::record_ids;

impl CriServer {
    pub(super) async fn exec(&self, request: ExecRequest) -> Result<ExecResponse, Status> {
        record_ids("container", &request.container_id);
        if request.cmd.is_empty() {
            return Err(invalid_field("cmd", "must not be empty"));
        }
        let wanted = wanted(request.tty, request.stdin, request.stdout, request.stderr)?;
        let container_id = self.running_container(&request.container_id).await?;
        let url = self.streaming_url(Pending::Exec {
            container_id,
            cmd: request.cmd,
            wanted,
        })?;
        Ok(ExecResponse { url })
    }

    pub(super) async fn attach(&self, request: AttachRequest) -> Result<AttachResponse, Status> {
        record_ids("container", &request.container_id);
        let record = self.containers().status(&request.container_id).await?;
        // The terminal is the container's: a tty container has one output stream.
        let tty = record.config.0.tty;
        let wanted = wanted(tty, request.stdin, request.stdout, request.stderr && !tty)?;
        let container_id = self.running_container(&record.id).await?;
        let url = self.streaming_url(Pending::Attach {
            container_id,
            wanted,
        })?;
        Ok(AttachResponse { url })
    }

    pub(super) async fn port_forward(
        &self,
        request: PortForwardRequest,
    ) -> Result<PortForwardResponse, Status> {
        record_ids("sandbox", &request.pod_sandbox_id);
        if let Some(bad) = request.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(invalid_field("port", format!("{bad} is not a TCP port")));
        }
        let sandbox = self
            .sandboxes()
            .find(&request.pod_sandbox_id)
            .await?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "pod sandbox {:?} not found",
                    request.pod_sandbox_id
                ))
            })?;
        if sandbox.state != SandboxState::Ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {} is not ready",
                sandbox.id
            )));
        }
        let url = self.streaming_url(Pending::PortForward {
            sandbox_id: sandbox.id,
        })?;
        Ok(PortForwardResponse { url })
    }

    /// The full ID of a running container, or NotFound / FailedPrecondition.
    async fn running_container(&self, id: &str) -> Result<String, Status> {
        let record = self.containers().status(id).await?;
        if record.state != State::Running {
            return Err(Status::failed_precondition(format!(
                "container {} is not running",
                record.id
            )));
        }
        Ok(record.id)
    }

    fn streaming_url(&self, pending: Pending) -> Result<String, Status> {
        self.streaming()
            .url(pending)
            .map_err(|e| Status::resource_exhausted(e.to_string()))
    }
}

/// The channels of an exec or attach, as kubelet's server checks them.
fn wanted(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<Wanted, Status> {
    if !stdin && !stdout && !stderr {
        return Err(invalid_field(
            "stdin",
            "one of stdin, stdout or stderr must be set",
        ));
    }
    if tty && stderr {
        return Err(invalid_field(
            "stderr",
            "a tty has no separate stderr; tty and stderr cannot both be true",
        ));
    }
    Ok(Wanted {
        stdin,
        stdout,
        stderr,
        tty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_checks() {
        assert!(wanted(false, false, false, false).is_err());
        let e = wanted(true, true, true, true).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("stderr:"), "{}", e.message());
        assert!(wanted(true, true, true, false).is_ok());
        assert!(wanted(false, false, true, true).is_ok());
    }
}
