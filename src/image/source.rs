//! Where the pull pipeline reads an image from: a registry (`ferrocri` pulling) or another
//! runtime's content store (`ferrocri import`). The pipeline — platform choice, verified
//! writes into the content store, unpacking, the catalog record — is the same for both; a
//! source only hands over documents and byte streams.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::error::ImageError;
use super::registry::{FetchedManifest, Session, describe};
use crate::digest::Digest;

/// A blob's bytes as they arrive, with where they come from (for messages).
pub struct OpenedBlob {
    pub chunks: BoxStream<'static, Result<Bytes, String>>,
    /// A URL, or a containerd socket and namespace.
    pub location: String,
}

pub trait Source: Send + Sync + 'static {
    /// How long a transfer may go without receiving a byte.
    fn progress_timeout(&self) -> Duration;

    /// The manifest or index `reference` (a tag, or a digest when `by_digest`) names.
    /// `endpoint` in the answer is handed back to [`Source::blob`] as a hint.
    fn document(
        &self,
        reference: &str,
        by_digest: bool,
    ) -> impl Future<Output = Result<FetchedManifest, ImageError>> + Send;

    /// Opens the blob `digest` for streaming.
    fn blob(
        &self,
        digest: &Digest,
        endpoint: usize,
    ) -> impl Future<Output = Result<OpenedBlob, ImageError>> + Send;
}

impl Source for Session {
    fn progress_timeout(&self) -> Duration {
        Session::progress_timeout(self)
    }

    async fn document(
        &self,
        reference: &str,
        by_digest: bool,
    ) -> Result<FetchedManifest, ImageError> {
        Ok(self.fetch_manifest(reference, by_digest).await?)
    }

    async fn blob(&self, digest: &Digest, endpoint: usize) -> Result<OpenedBlob, ImageError> {
        let (response, url) = self.open_blob(digest.as_str(), endpoint).await?;
        let chunks = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(|e| describe(&e)))
            .boxed();
        Ok(OpenedBlob {
            chunks,
            location: url,
        })
    }
}
