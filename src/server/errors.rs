//! Turning domain errors into gRPC statuses, in one place.

use tonic::Status;

use crate::container::pods::PodError;
use crate::container::service::ContainerError;
use crate::image::error::ImageError;
use crate::image::registry::Failure;
use crate::sandbox::error::{ErrorKind, SandboxError};
use crate::store::StoreError;

/// The answer of an RPC ferrocri does not serve (yet): names the RPC and why.
pub fn pending(rpc: &str, why: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by ferrocri: {why}"))
}

/// A request field with a bad value: names the field.
pub fn invalid_field(field: &str, message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

/// What would be `Internal`, unless the cause is a full file system (ENOSPC, a quota,
/// SQLite's "database or disk is full"): that is no fault of ferrocri, and the caller can
/// retry once space is back, so ResourceExhausted. Errors that crossed a process boundary
/// (the pod monitor's) arrive as text, so the text is looked at too.
fn internal_or_full(e: &(dyn std::error::Error + 'static), message: String) -> Status {
    if is_out_of_space(e) {
        Status::resource_exhausted(message)
    } else {
        Status::internal(message)
    }
}

fn is_out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        {
            return true;
        }
        if let Some(rusqlite::Error::SqliteFailure(f, _)) = err.downcast_ref::<rusqlite::Error>()
            && f.code == rusqlite::ErrorCode::DiskFull
        {
            return true;
        }
        let text = err.to_string();
        if text.contains("(os error 28)") || text.contains("(os error 122)") {
            return true;
        }
        next = err.source();
    }
    false
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        match e {
            StoreError::NameInUse { .. } => Status::already_exists(e.to_string()),
            _ => internal_or_full(&e, e.to_string()),
        }
    }
}

impl From<ImageError> for Status {
    fn from(e: ImageError) -> Status {
        let message = e.to_string();
        // A blob or layer that could not be written for want of space, whatever the step.
        if is_out_of_space(e.root()) {
            return Status::resource_exhausted(message);
        }
        match e.root() {
            ImageError::Reference(_) => Status::invalid_argument(message),
            ImageError::Registry(r) => match r.failure() {
                Failure::NotFound => Status::not_found(message),
                Failure::Unauthorized => Status::permission_denied(message),
                Failure::Unavailable => Status::unavailable(message),
                Failure::Invalid => Status::failed_precondition(message),
            },
            ImageError::Manifest {
                source: crate::image::manifest::ManifestError::NoPlatform { .. },
                ..
            } => Status::not_found(message),
            // Intact, but not something a container runs: the caller named the wrong thing.
            ImageError::Manifest {
                source: crate::image::manifest::ManifestError::NotAnImage { .. },
                ..
            } => Status::failed_precondition(message),
            ImageError::Manifest { .. }
            | ImageError::ManifestDigest { .. }
            | ImageError::DiffId { .. }
            | ImageError::Content { .. } => Status::data_loss(message),
            // Over a configured cap: the layer may be fine, this node will not hold it.
            ImageError::Unpack(crate::image::unpack::UnpackError {
                reason:
                    crate::image::unpack::UnpackReason::TooManyBytes(_)
                    | crate::image::unpack::UnpackReason::TooManyFiles(_),
                ..
            }) => Status::resource_exhausted(message),
            ImageError::Unpack(_) => Status::failed_precondition(message),
            ImageError::Stalled { .. } | ImageError::Transfer { .. } => {
                Status::unavailable(message)
            }
            ImageError::Store(_) | ImageError::Io { .. } | ImageError::Shared(_) => {
                Status::internal(message)
            }
        }
    }
}

impl From<SandboxError> for Status {
    fn from(e: SandboxError) -> Status {
        let message = e.to_string();
        match e.kind() {
            ErrorKind::InvalidArgument => Status::invalid_argument(message),
            ErrorKind::NotFound => Status::not_found(message),
            ErrorKind::AlreadyExists => Status::already_exists(message),
            ErrorKind::FailedPrecondition => Status::failed_precondition(message),
            ErrorKind::ResourceExhausted => Status::resource_exhausted(message),
            ErrorKind::Unavailable => Status::unavailable(message),
            ErrorKind::Internal => internal_or_full(e.root(), message),
        }
    }
}

impl From<PodError> for Status {
    fn from(e: PodError) -> Status {
        match e {
            PodError::Sandbox(e) => e.into(),
            PodError::Container(e) => e.into(),
        }
    }
}

impl From<ContainerError> for Status {
    fn from(e: ContainerError) -> Status {
        let message = e.to_string();
        match e.root() {
            ContainerError::Invalid { .. } | ContainerError::InvalidValue(_) => {
                Status::invalid_argument(message)
            }
            ContainerError::NotFound(_) => Status::not_found(message),
            ContainerError::NameInUse { .. } => Status::already_exists(message),
            ContainerError::Precondition(_) => Status::failed_precondition(message),
            ContainerError::Timeout(_) => Status::deadline_exceeded(message),
            ContainerError::Failed { .. }
            | ContainerError::Store(_)
            | ContainerError::Shared(_) => internal_or_full(e.root(), message),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tonic::Code;

    use super::*;
    use crate::cni::invoke::{CniError, Command};
    use crate::sandbox::error::StepError;

    fn step(source: StepError) -> SandboxError {
        SandboxError::Step {
            step: "testing",
            source,
        }
    }

    fn cni_timeout() -> StepError {
        StepError::Cni(CniError::Timeout {
            network: "net".into(),
            plugin: "bridge".into(),
            command: Command::Add,
            timeout: std::time::Duration::from_secs(1),
        })
    }

    #[test]
    fn sandbox_errors_get_the_code_of_their_kind() {
        let io = |errno| StepError::Io(std::io::Error::from_raw_os_error(errno));
        let cases = [
            (SandboxError::NotFound("p".into()), Code::NotFound),
            (
                SandboxError::NameInUse {
                    name: "n".into(),
                    existing: "p".into(),
                },
                Code::AlreadyExists,
            ),
            (SandboxError::NotReady("p".into()), Code::FailedPrecondition),
            (
                step(StepError::NetworkNotReady(
                    crate::cni::config::NotReady::NoConfig("/etc/cni/net.d".into()),
                )),
                Code::FailedPrecondition,
            ),
            (step(cni_timeout()), Code::Unavailable),
            (
                SandboxError::Shared(Arc::new(step(cni_timeout()))),
                Code::Unavailable,
            ),
            (
                step(StepError::Cgroup(
                    crate::cgroup::CgroupError::InvalidValue {
                        path: "/p".into(),
                        setting: "cpu.shares".into(),
                        value: "0".into(),
                        reason: "too small",
                    },
                )),
                Code::InvalidArgument,
            ),
            (step(io(libc::ENOSPC)), Code::ResourceExhausted),
            (step(io(libc::EPERM)), Code::Internal),
            (
                step(StepError::Monitor(
                    crate::monitor::client::MonitorError::Start("gone".into()),
                )),
                Code::Internal,
            ),
        ];
        for (error, code) in cases {
            let text = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{text}");
            assert_eq!(status.message(), text);
        }
    }
}
