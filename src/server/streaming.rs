//! Exec, Attach and PortForward: validate the request now, so a bad one gets its gRPC error
//! before any URL is handed out, then park it behind a streaming URL.

use tonic::Status;

use super::{CriServer, errors};
use crate::cri::v1::{
    AttachRequest, AttachResponse, ExecRequest, ExecResponse, PortForwardRequest,
    PortForwardResponse,
};
use crate::monitor::protocol::StdioRequest;
use crate::sandbox::record::SandboxState;
use crate::streaming::Pending;
use crate::telemetry::record_ids;

impl CriServer {
    pub(super) async fn exec(&self, request: ExecRequest) -> Result<ExecResponse, Status> {
        record_ids("container", &request.container_id);
        let ExecRequest {
            container_id,
            cmd,
            tty,
            stdin,
            stdout,
            stderr,
        } = request;
        let stdio = StdioRequest {
            stdin,
            stdout,
            stderr,
            tty,
        };
        self.containers()
            .check_exec(&container_id, &cmd, stdio)
            .await?;
        let url = self.streaming_url(Pending::Exec {
            container_id,
            cmd,
            stdio,
        })?;
        Ok(ExecResponse { url })
    }

    pub(super) async fn attach(&self, request: AttachRequest) -> Result<AttachResponse, Status> {
        record_ids("container", &request.container_id);
        let AttachRequest {
            container_id,
            stdin,
            stdout,
            stderr,
            ..
        } = request;
        let info = self
            .containers()
            .check_attach(&container_id, stdin, stdout, stderr)
            .await?;
        // The terminal is the container's: a tty container has one output stream.
        let stdio = StdioRequest {
            stdin,
            stdout,
            stderr: stderr && !info.tty,
            tty: info.tty,
        };
        let url = self.streaming_url(Pending::Attach {
            container_id,
            stdio,
        })?;
        Ok(AttachResponse { url })
    }

    pub(super) async fn port_forward(
        &self,
        request: PortForwardRequest,
    ) -> Result<PortForwardResponse, Status> {
        record_ids("pod", &request.pod_sandbox_id);
        let sandbox = self
            .sandboxes()
            .find(&request.pod_sandbox_id)
            .await?
            .ok_or_else(|| errors::pod_not_found(&request.pod_sandbox_id))?;
        if sandbox.state != SandboxState::Ready {
            return Err(errors::pod_not_ready(&sandbox.id));
        }
        let url = self.streaming_url(Pending::PortForward {
            sandbox_id: sandbox.id,
        })?;
        Ok(PortForwardResponse { url })
    }

    fn streaming_url(&self, pending: Pending) -> Result<String, Status> {
        self.streaming()
            .url(pending)
            .map_err(errors::no_streaming_url)
    }
}
