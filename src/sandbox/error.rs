//! The pod service's errors. A failed step keeps the driver's own error as its source, and
//! every error names its [`ErrorKind`], from which `server/errors.rs` picks the gRPC code.

use std::sync::Arc;

use crate::cgroup::CgroupError;
use crate::cni::config::NotReady;
use crate::cni::invoke::CniError;
use crate::monitor::client::MonitorError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("pod sandbox {0} not found")]
    NotFound(String),
    #[error("pod sandbox name {name:?} is already used by sandbox {existing}")]
    NameInUse { name: String, existing: String },
    #[error("pod sandbox {0} is not ready")]
    NotReady(String),
    /// A step of RunPodSandbox failed (and what it had done was undone).
    #[error("RunPodSandbox failed while {step}: {source}")]
    Step {
        step: &'static str,
        #[source]
        source: StepError,
    },
    /// A step of another operation failed.
    #[error("{step}: {source}")]
    Failed {
        step: &'static str,
        #[source]
        source: StepError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The same failure, reported to every caller of one creation.
    #[error("{0}")]
    Shared(Arc<SandboxError>),
}

/// What a step ran into, as the driver reported it.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    NetworkNotReady(#[from] NotReady),
    #[error(transparent)]
    Cni(#[from] CniError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    /// The task running the step died (a panic or a cancelled runtime).
    #[error("{0}")]
    Task(String),
}

impl From<tokio::task::JoinError> for StepError {
    fn from(e: tokio::task::JoinError) -> Self {
        StepError::Task(e.to_string())
    }
}

pub use crate::error_kind::ErrorKind;

impl From<Arc<SandboxError>> for SandboxError {
    fn from(e: Arc<SandboxError>) -> Self {
        SandboxError::Shared(e)
    }
}

impl SandboxError {
    pub fn root(&self) -> &SandboxError {
        match self {
            SandboxError::Shared(inner) => inner.root(),
            other => other,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self.root() {
            SandboxError::Invalid { .. } => ErrorKind::InvalidArgument,
            SandboxError::NotFound(_) => ErrorKind::NotFound,
            SandboxError::NameInUse { .. } => ErrorKind::AlreadyExists,
            SandboxError::NotReady(_) => ErrorKind::FailedPrecondition,
            SandboxError::Step { source, .. } | SandboxError::Failed { source, .. } => {
                source.kind()
            }
            SandboxError::Store(StoreError::NameInUse { .. }) => ErrorKind::AlreadyExists,
            SandboxError::Store(StoreError::Full { .. }) => ErrorKind::ResourceExhausted,
            SandboxError::Store(_) | SandboxError::Shared(_) => ErrorKind::Internal,
        }
    }
}

impl StepError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            // The node is not set up for pods yet (kubelet waits for NetworkReady).
            StepError::NetworkNotReady(_)
            | StepError::Cni(CniError::PluginNotFound { .. } | CniError::InvalidConfig { .. }) => {
                ErrorKind::FailedPrecondition
            }
            StepError::Cni(CniError::Timeout { .. }) => ErrorKind::Unavailable,
            // The pod's own settings are what the cgroup driver refused.
            StepError::Cgroup(
                CgroupError::InvalidValue { .. } | CgroupError::UnifiedOnV1 { .. },
            ) => ErrorKind::InvalidArgument,
            StepError::Cgroup(CgroupError::ControllerMissing { .. }) => {
                ErrorKind::FailedPrecondition
            }
            StepError::Monitor(e) => e.kind(),
            _ => ErrorKind::Internal,
        }
    }
}

/// Maps a driver error into the failure of RunPodSandbox's step `step`.
pub(super) fn step<E: Into<StepError>>(step: &'static str) -> impl FnOnce(E) -> SandboxError {
    move |e| SandboxError::Step {
        step,
        source: e.into(),
    }
}
