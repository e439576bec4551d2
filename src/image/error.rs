//! Errors of the image service, each worded for the person who has to fix it.

use std::sync::Arc;
use std::time::Duration;

use super::content::ContentError;
use super::manifest::ManifestError;
use super::reference::ReferenceError;
use super::registry::RegistryError;
use super::unpack::UnpackError;
use crate::digest::Digest;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{image}: {source}")]
    Manifest {
        image: String,
        source: ManifestError,
    },
    #[error("{image}: {source}")]
    Content { image: String, source: ContentError },
    #[error("{image}: the registry sent a document whose digest is {actual}, not {expected}")]
    ManifestDigest {
        image: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "{image}: layer {layer} unpacks to content with digest {actual}, but the image config says {expected}"
    )]
    DiffId {
        image: String,
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "{image}: blob {blob} from {url} sent no data for {timeout:?}; giving up (registry.progress_timeout)"
    )]
    Stalled {
        image: String,
        blob: Digest,
        url: String,
        timeout: Duration,
    },
    #[error("{image}: downloading blob {blob} from {url} failed: {message}")]
    Transfer {
        image: String,
        blob: Digest,
        url: String,
        message: String,
    },
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// The same failure, reported to every caller that shared one download or unpack.
    #[error("{0}")]
    Shared(Arc<ImageError>),
}

impl ImageError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> ImageError {
        ImageError::Io {
            what: what.into(),
            source,
        }
    }

    /// A short, fixed word for what went wrong: the `reason` label of failed-pull metrics.
    pub fn reason(&self) -> &'static str {
        use super::registry::Failure;
        match self.root() {
            ImageError::Reference(_) => "bad_reference",
            ImageError::Registry(r) => match r.failure() {
                Failure::NotFound => "not_found",
                Failure::Unauthorized => "unauthorized",
                Failure::Unavailable => "registry_unavailable",
                Failure::Invalid => "registry_invalid",
            },
            ImageError::Manifest {
                source: super::manifest::ManifestError::NoPlatform { .. },
                ..
            } => "no_platform",
            ImageError::Manifest { .. } => "bad_manifest",
            ImageError::ManifestDigest { .. } | ImageError::DiffId { .. } => "digest_mismatch",
            ImageError::Content { .. } => "content_store",
            ImageError::Stalled { .. } => "stalled",
            ImageError::Transfer { .. } => "transfer",
            ImageError::Unpack(_) => "unpack",
            ImageError::Store(_) => "metadata_store",
            ImageError::Io { .. } | ImageError::Shared(_) => "io",
        }
    }

    /// The error itself, looking through a shared one.
    pub fn root(&self) -> &ImageError {
        match self {
            ImageError::Shared(inner) => inner.root(),
            other => other,
        }
    }
}

impl From<Arc<ImageError>> for ImageError {
    fn from(shared: Arc<ImageError>) -> ImageError {
        ImageError::Shared(shared)
    }
}
