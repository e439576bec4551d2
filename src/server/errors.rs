//! Turning domain errors into gRPC statuses, in one place: nothing else in ferrocri builds a
//! `Status` (the CRI codec's decode error aside, whose type tonic fixes). A domain error
//! either is of a kind a caller can act on ([`ErrorKind`], for failures that came from
//! below: the pod monitor, the file system) or a variant of its own that says it.

use std::time::Duration;

use tonic::{Code, Status};

use crate::container::pods::PodError;
use crate::container::service::ContainerError;
use crate::error_kind::ErrorKind;
use crate::image::error::ImageError;
use crate::image::registry::Failure;
use crate::sandbox::error::SandboxError;
use crate::store::StoreError;

/// The answer of an RPC ferrocri does not serve (yet): names the RPC and why.
pub fn pending(rpc: &str, why: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by ferrocri: {why}"))
}

/// A request field with a bad value: names the field.
pub fn invalid_field(field: &str, message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

/// A bad request found by the door (`validate`): names the field and the rule.
impl From<crate::validate::Invalid> for Status {
    fn from(e: crate::validate::Invalid) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

/// The gRPC code of a kind of failure.
pub fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// A failure of `kind`; an internal one is still looked at for a full disk.
fn of_kind(kind: ErrorKind, e: &(dyn std::error::Error + 'static), message: String) -> Status {
    match kind {
        ErrorKind::Internal => internal_or_full(e, message),
        other => Status::new(code_of(other), message),
    }
}

pub fn pod_not_found(id: &str) -> Status {
    Status::not_found(format!("pod sandbox {id:?} not found"))
}

pub fn pod_not_ready(id: &str) -> Status {
    Status::failed_precondition(format!("pod sandbox {id} is not ready"))
}

/// Every streaming URL is taken (exec, attach and port-forward waiting for their client).
pub fn no_streaming_url(e: crate::streaming::TooManyPending) -> Status {
    Status::resource_exhausted(e.to_string())
}

/// The daemon stops: long-lived streams end, new subscriptions are refused.
pub fn shutting_down() -> Status {
    Status::unavailable("ferrocri is shutting down")
}

/// A container event subscriber that fell behind is dropped.
pub fn events_lost(lost: u64) -> Status {
    Status::resource_exhausted(format!(
        "this subscriber fell behind and lost {lost} container events; list again and \
         subscribe again"
    ))
}

/// The client's `grpc-timeout` passed (see `deadline.rs`).
pub fn deadline_passed(timeout: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "the client's deadline of {timeout:?} passed before the call finished"
    ))
}

/// The configuration could not be shown as JSON.
pub fn config_unencodable(e: serde_json::Error) -> Status {
    Status::internal(format!("cannot encode config: {e}"))
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
        of_kind(e.kind(), e.root(), message)
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
            ContainerError::Failed { kind, .. } => of_kind(*kind, e.root(), message),
            ContainerError::Store(_) | ContainerError::Shared(_) => {
                internal_or_full(e.root(), message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cni::invoke::{CniError, Command};
    use crate::monitor::client::MonitorError;
    use crate::monitor::protocol::ProtocolError;
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
                    crate::monitor::client::MonitorError::NotReady("gone".into()),
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

    #[test]
    fn each_kind_has_its_code() {
        let cases = [
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::AlreadyExists, Code::AlreadyExists),
            (ErrorKind::InvalidArgument, Code::InvalidArgument),
            (ErrorKind::FailedPrecondition, Code::FailedPrecondition),
            (ErrorKind::ResourceExhausted, Code::ResourceExhausted),
            (ErrorKind::Unavailable, Code::Unavailable),
            (ErrorKind::Internal, Code::Internal),
        ];
        for (kind, code) in cases {
            assert_eq!(code_of(kind), code, "{kind:?}");
        }
    }

    /// A container step that failed in the pod monitor: the code follows the monitor's kind.
    fn monitor_answered(kind: ErrorKind, message: &str) -> Status {
        let remote = ProtocolError::Remote {
            kind,
            message: message.into(),
        };
        let e = MonitorError::from(remote);
        let step = crate::container::service::failed("talking to the pod monitor")(e);
        Status::from(step)
    }

    #[test]
    fn container_failures_follow_the_kind_of_their_source() {
        let status = monitor_answered(ErrorKind::NotFound, "container c is not known");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(
            status.message(),
            "talking to the pod monitor: monitor: container c is not known"
        );
        let stopped = monitor_answered(ErrorKind::FailedPrecondition, "container c is not running");
        assert_eq!(stopped.code(), Code::FailedPrecondition);
        let fork = monitor_answered(ErrorKind::ResourceExhausted, "cannot fork: EAGAIN");
        assert_eq!(fork.code(), Code::ResourceExhausted);
        // An older monitor's answer has no kind: internal, unless the text shows a full disk.
        let old = monitor_answered(ErrorKind::Internal, "mount: Permission denied");
        assert_eq!(old.code(), Code::Internal);
        let full = monitor_answered(ErrorKind::Internal, "write: No space left (os error 28)");
        assert_eq!(full.code(), Code::ResourceExhausted);
    }

    #[test]
    fn a_step_keeps_its_source() {
        use std::error::Error;
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let step = crate::container::service::failed("writing the spec")(io);
        let source = step.source().expect("the source is kept");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        assert_eq!(Status::from(step).code(), Code::ResourceExhausted);
        let text = crate::container::service::failed("stopping")("did not exit".to_owned());
        assert_eq!(text.to_string(), "stopping: did not exit");
        assert_eq!(Status::from(text).code(), Code::Internal);
    }
}
