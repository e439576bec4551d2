//! containerd as a [`Source`]: its images service for names, its content service for bytes,
//! and a lease so its garbage collector keeps every blob we are about to read.
//!
//! Only these three services of `containerd-client` are used: everything else containerd
//! knows (snapshots, containers, tasks) is its own business, and ferrocri unpacks layers
//! itself from the compressed blobs, exactly as after a pull.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{
    AddResourceRequest, CreateRequest, DeleteRequest, ListImagesRequest, ReadContentRequest,
    Resource,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status};
use futures::StreamExt;

use crate::digest::Digest;
use crate::image::error::ImageError;
use crate::image::registry::FetchedManifest;
use crate::image::source::{OpenedBlob, Source};

/// Manifests and indexes larger than this are refused, as from a registry.
const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;
/// A lease left behind by an import that died expires by itself after this long.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// One image as containerd's images service lists it.
#[derive(Debug, Clone)]
pub struct ContainerdImage {
    pub name: String,
    pub target: Digest,
    pub media_type: String,
}

/// A connection to one namespace of a containerd, holding a lease for the import.
pub struct Containerd {
    channel: Channel,
    namespace: String,
    lease: String,
    /// `containerd <socket> namespace <ns>`, for messages.
    location: String,
    progress_timeout: Duration,
}

impl Containerd {
    /// Connects to `address` and takes a lease in `namespace` (released by [`Self::close`],
    /// else it expires after an hour).
    pub async fn connect(
        address: &Path,
        namespace: &str,
        progress_timeout: Duration,
    ) -> anyhow::Result<Containerd> {
        let not_there = || {
            format!(
                "cannot reach containerd at {} (is it running? see --address)",
                address.display()
            )
        };
        if !address.exists() {
            anyhow::bail!("{}: no such socket", not_there());
        }
        let channel = containerd_client::connect(address)
            .await
            .with_context(not_there)?;
        let mut this = Containerd {
            channel,
            namespace: namespace.to_owned(),
            lease: String::new(),
            location: format!("containerd {} namespace {namespace}", address.display()),
            progress_timeout,
        };
        let expires = humantime::format_rfc3339_seconds(SystemTime::now() + LEASE_EXPIRY);
        let request = CreateRequest {
            // Unique even when a crashed import with the same pid left its lease.
            id: format!(
                "ferrocri-import-{}-{}",
                std::process::id(),
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis()
            ),
            labels: HashMap::from([("containerd.io/gc.expire".into(), expires.to_string())]),
        };
        let lease = LeasesClient::new(this.channel.clone())
            .create(this.request(request))
            .await
            .map_err(|s| this.status_error("cannot take a lease", &s))?
            .into_inner()
            .lease
            .context("containerd answered a lease request without a lease")?;
        this.lease = lease.id;
        Ok(this)
    }

    /// Every image of the namespace, in containerd's order.
    pub async fn images(&self) -> anyhow::Result<Vec<ContainerdImage>> {
        let listed = ImagesClient::new(self.channel.clone())
            .list(self.request(ListImagesRequest::default()))
            .await
            .map_err(|s| self.status_error("cannot list images", &s))?
            .into_inner()
            .images;
        let mut images = Vec::new();
        for image in listed {
            let target = image.target.unwrap_or_default();
            let digest = Digest::parse(&target.digest).with_context(|| {
                format!(
                    "{}: image {} has a target we cannot read",
                    self.location, image.name
                )
            })?;
            images.push(ContainerdImage {
                name: image.name,
                target: digest,
                media_type: target.media_type,
            });
        }
        Ok(images)
    }

    /// Ends the lease: containerd may collect what it no longer needs again.
    pub async fn close(&self) {
        let request = self.request(DeleteRequest {
            id: self.lease.clone(),
            sync: false,
        });
        if let Err(status) = LeasesClient::new(self.channel.clone())
            .delete(request)
            .await
        {
            tracing::warn!(lease = %self.lease, error = %status.message(), "cannot release the containerd lease; it expires in an hour");
        }
    }

    /// A source for one image of this containerd.
    pub fn image(self: &std::sync::Arc<Self>, image: &ContainerdImage) -> ImageSource {
        ImageSource {
            containerd: self.clone(),
            image: image.clone(),
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Ok(value) = self.namespace.parse() {
            request.metadata_mut().insert("containerd-namespace", value);
        }
        request
    }

    fn status_error(&self, what: &str, status: &Status) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: {what}: {} ({:?})",
            self.location,
            status.message(),
            status.code()
        )
    }

    /// Puts `digest` under our lease, so containerd's GC keeps it until we are done.
    async fn protect(&self, digest: &Digest) -> Result<(), String> {
        let request = self.request(AddResourceRequest {
            id: self.lease.clone(),
            resource: Some(Resource {
                id: digest.to_string(),
                r#type: "content".into(),
            }),
        });
        LeasesClient::new(self.channel.clone())
            .add_resource(request)
            .await
            .map(|_| ())
            .map_err(|s| format!("cannot add it to our lease: {}", s.message()))
    }

    /// Streams the blob `digest` from containerd's content store.
    async fn read(&self, digest: &Digest) -> Result<OpenedBlob, String> {
        self.protect(digest).await?;
        let request = self.request(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        });
        let stream = ContentClient::new(self.channel.clone())
            .read(request)
            .await
            .map_err(|s| describe(&s))?
            .into_inner();
        Ok(OpenedBlob {
            chunks: stream
                .map(|r| r.map(|m| Bytes::from(m.data)).map_err(|s| describe(&s)))
                .boxed(),
            location: self.location.clone(),
        })
    }
}

/// A containerd error in words, naming what is missing.
fn describe(status: &Status) -> String {
    match status.code() {
        Code::NotFound => format!(
            "containerd does not have it ({}); it may hold only what it pulled for this platform",
            status.message()
        ),
        code => format!("{} ({code:?})", status.message()),
    }
}

/// One containerd image as the pull pipeline's [`Source`]: its name resolves to its target,
/// digests to the content store.
pub struct ImageSource {
    containerd: std::sync::Arc<Containerd>,
    image: ContainerdImage,
}

impl ImageSource {
    fn transfer_error(&self, digest: &Digest, message: String) -> ImageError {
        ImageError::Transfer {
            image: self.image.name.clone(),
            blob: digest.clone(),
            url: self.containerd.location.clone(),
            message,
        }
    }
}

impl Source for ImageSource {
    fn progress_timeout(&self) -> Duration {
        self.containerd.progress_timeout
    }

    async fn document(
        &self,
        reference: &str,
        by_digest: bool,
    ) -> Result<FetchedManifest, ImageError> {
        // A tag can only be this image's own name: the pipeline asks for it first.
        let (digest, content_type) = if by_digest {
            let digest = Digest::parse(reference)
                .map_err(|e| self.transfer_error(&self.image.target, format!("bad digest: {e}")))?;
            (digest, String::new())
        } else {
            (self.image.target.clone(), self.image.media_type.clone())
        };
        let opened = self
            .containerd
            .read(&digest)
            .await
            .map_err(|m| self.transfer_error(&digest, m))?;
        let mut chunks = opened.chunks;
        let mut bytes = Vec::new();
        while let Some(chunk) = tokio::time::timeout(self.progress_timeout(), chunks.next())
            .await
            .map_err(|_| self.transfer_error(&digest, "containerd stopped sending".into()))?
        {
            bytes.extend_from_slice(&chunk.map_err(|m| self.transfer_error(&digest, m))?);
            if bytes.len() > MAX_DOCUMENT_BYTES {
                return Err(self.transfer_error(&digest, "manifest is larger than 4 MiB".into()));
            }
        }
        Ok(FetchedManifest {
            bytes: bytes.into(),
            content_type,
            endpoint: 0,
        })
    }

    async fn blob(&self, digest: &Digest, _endpoint: usize) -> Result<OpenedBlob, ImageError> {
        self.containerd
            .read(digest)
            .await
            .map_err(|m| self.transfer_error(digest, m))
    }
}
