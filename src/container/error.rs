//! What container operations fail with, and how a failed step keeps its source and kind.

use std::sync::Arc;

use crate::error_kind::ErrorKind;
use crate::monitor::client::MonitorError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A bad value whose field path the message starts with (`config.mounts[2]...`).
    #[error("{0}")]
    InvalidValue(String),
    #[error("{0}")]
    NotFound(String),
    #[error("container name {name:?} is already used by container {existing}")]
    NameInUse { name: String, existing: String },
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Timeout(String),
    /// A step that failed for a reason from below (the monitor, the file system, a
    /// cgroup…); `kind` is how, as far as the caller can act on it.
    #[error("{step}: {source}")]
    Failed {
        step: &'static str,
        kind: ErrorKind,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Shared(Arc<ContainerError>),
}

impl From<Arc<ContainerError>> for ContainerError {
    fn from(e: Arc<ContainerError>) -> Self {
        ContainerError::Shared(e)
    }
}

impl ContainerError {
    pub fn root(&self) -> &ContainerError {
        match self {
            ContainerError::Shared(inner) => inner.root(),
            other => other,
        }
    }
}

/// The error of a failed step, keeping its source (an error or a message) and its kind.
pub fn failed<E>(step: &'static str) -> impl FnOnce(E) -> ContainerError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |source| {
        let source = source.into();
        let kind = kind_of(&*source);
        ContainerError::Failed { step, kind, source }
    }
}

/// How a step failed: as the pod monitor answered, as an OS error number says, or (for a
/// message) as its text shows; otherwise internal.
fn kind_of(e: &(dyn std::error::Error + 'static)) -> ErrorKind {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(monitor) = err.downcast_ref::<MonitorError>() {
            return monitor.kind();
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.raw_os_error().is_some()
        {
            return ErrorKind::of_io(io);
        }
        next = err.source();
    }
    ErrorKind::of_text(&e.to_string())
}
