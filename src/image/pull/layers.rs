//! One layer of a pull: its blob downloaded (shared between pulls, bounded per pull) and
//! verified, then unpacked into its directory (or, for an artifact, placed as one file).

use std::collections::HashMap;
use std::io::BufReader;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;

use super::artifact::place_file;
use crate::digest::{Digest, HashingReader};
use crate::image::catalog::{self, LayerRecord};
use crate::image::content::ContentStore;
use crate::image::error::ImageError;
use crate::image::manifest::Descriptor;
use crate::image::service::{Images, LayerUsage};
use crate::image::source::Source;
use crate::image::unpack::{LayerContext, LayerLimits, decompressed, unpack_layer};
use crate::rootfs::layers::LayerStore;

pub(super) struct LayerJob {
    pub(super) desc: Descriptor,
    pub(super) diff_id: Digest,
    pub(super) chain_id: Digest,
    pub(super) endpoint: usize,
    pub(super) image: String,
    /// An artifact's blob: placed as this file instead of unpacked.
    pub(super) file: Option<String>,
}

/// Makes sure one layer's blob is stored and its directory unpacked.
pub(super) async fn fetch_layer<S: Source>(
    images: &Arc<Images>,
    source: &Arc<S>,
    job: LayerJob,
    limit: Arc<Semaphore>,
    known: &HashMap<Digest, LayerUsage>,
) -> Result<LayerRecord, ImageError> {
    let stored = images.content.size(&job.desc.digest) == Some(job.desc.size);
    let unpacked = images.layers.exists(&job.chain_id);
    if !stored {
        // The permit belongs to this pull, not to the shared download, so an abandoned
        // download never holds another pull's slot.
        let _permit = limit
            .acquire()
            .await
            .map_err(|e| ImageError::io("download limit", std::io::Error::other(e)))?;
        let (source, content, desc, endpoint, image) = (
            source.clone(),
            images.content.clone(),
            job.desc.clone(),
            job.endpoint,
            job.image.clone(),
        );
        images
            .downloads
            .run(job.desc.digest.clone(), move || {
                download(source, content, desc, endpoint, image).boxed()
            })
            .await?;
    }
    let usage = if unpacked {
        match known.get(&job.chain_id) {
            Some(usage) => *usage,
            None => measure(images.layers.path(&job.chain_id)).await,
        }
    } else {
        let (content, layers) = (images.content.clone(), images.layers.clone());
        let limits = images.layer_limits;
        let (desc, diff_id, chain_id, image, file) = (
            job.desc.clone(),
            job.diff_id.clone(),
            job.chain_id.clone(),
            job.image.clone(),
            job.file.clone(),
        );
        images
            .unpacks
            .run(job.chain_id.clone(), move || {
                async move {
                    tokio::task::spawn_blocking(move || match file {
                        Some(file) => place_file(&content, &layers, &desc, &file, &chain_id),
                        None => unpack(
                            &content, &layers, &desc, &diff_id, &chain_id, &image, limits,
                        ),
                    })
                    .await
                    .map_err(|e| ImageError::io("unpacking", std::io::Error::other(e)))?
                }
                .boxed()
            })
            .await?
    };
    Ok(LayerRecord {
        digest: job.desc.digest,
        media_type: job.desc.media_type,
        size: job.desc.size,
        diff_id: job.diff_id,
        chain_id: job.chain_id,
        unpacked_bytes: usage.0,
        unpacked_inodes: usage.1,
    })
}

/// Streams one blob into the content store, verifying it; aborts when the registry stalls.
async fn download<S: Source>(
    source: Arc<S>,
    content: ContentStore,
    desc: Descriptor,
    endpoint: usize,
    image: String,
) -> Result<(), ImageError> {
    // Another pull may have finished this very blob between our check and this start.
    if content.size(&desc.digest) == Some(desc.size) {
        return Ok(());
    }
    let opened = source.blob(&desc.digest, endpoint).await?;
    let (mut body, url) = (opened.chunks, opened.location);
    let content_error = |source| ImageError::Content {
        image: image.clone(),
        source,
    };
    let mut writer = content
        .writer(desc.digest.clone(), Some(desc.size))
        .map_err(content_error)?;
    let timeout = source.progress_timeout();
    loop {
        match tokio::time::timeout(timeout, body.next()).await {
            Err(_) => {
                return Err(ImageError::Stalled {
                    image,
                    blob: desc.digest,
                    url,
                    timeout,
                });
            }
            Ok(None) => break,
            Ok(Some(Err(message))) => {
                return Err(ImageError::Transfer {
                    image,
                    blob: desc.digest,
                    url,
                    message,
                });
            }
            Ok(Some(Ok(chunk))) => {
                crate::prometheus::metrics()
                    .image_pull_bytes
                    .inc_by(chunk.len() as u64);
                writer.write(&chunk).map_err(content_error)?
            }
        }
    }
    tokio::task::spawn_blocking(move || writer.commit())
        .await
        .map_err(|e| ImageError::io("storing a blob", std::io::Error::other(e)))?
        .map_err(content_error)?;
    tracing::debug!(blob = %desc.digest, bytes = desc.size, "blob stored");
    Ok(())
}

/// Decompresses a stored layer blob into a fresh directory, checks its diff ID and makes it
/// the layer `chain_id`. Blocking.
fn unpack(
    content: &ContentStore,
    layers: &LayerStore,
    desc: &Descriptor,
    diff_id: &Digest,
    chain_id: &Digest,
    image: &str,
    limits: LayerLimits,
) -> Result<LayerUsage, ImageError> {
    let _timer =
        crate::prometheus::Timer::start(&crate::prometheus::metrics().layer_unpack_duration);
    let io = |what: &str| {
        let what = format!("{image}: layer {}: {what}", desc.digest);
        move |e| ImageError::io(what, e)
    };
    let file = std::fs::File::open(content.path(&desc.digest)).map_err(io("cannot open blob"))?;
    let stream =
        decompressed(BufReader::with_capacity(256 * 1024, file)).map_err(io("cannot read blob"))?;
    let mut hashing = HashingReader::new(stream);
    let scratch = layers
        .scratch()
        .map_err(io("cannot create a scratch directory"))?;
    let ctx = LayerContext {
        image: image.to_owned(),
        layer: desc.digest.to_string(),
    };
    let stats = unpack_layer(&mut hashing, scratch.path(), &ctx, limits)?;
    let actual = hashing.finish().map_err(io("cannot decompress"))?;
    if &actual != diff_id {
        return Err(ImageError::DiffId {
            image: image.to_owned(),
            layer: desc.digest.clone(),
            expected: diff_id.clone(),
            actual,
        });
    }
    layers
        .commit(scratch, chain_id)
        .map_err(io("cannot move the unpacked layer into place"))?;
    tracing::debug!(layer = %desc.digest, chain_id = %chain_id, entries = stats.entries, "layer unpacked");
    Ok((stats.bytes, stats.entries))
}

/// Bytes and inodes of a layer directory unpacked before this daemon knew its size.
async fn measure(dir: std::path::PathBuf) -> LayerUsage {
    tokio::task::spawn_blocking(move || crate::rootfs::usage::disk_usage(&dir))
        .await
        .unwrap_or((0, 0))
}

/// Usage of the layers images already recorded, by chain ID.
pub(super) fn known_layer_usage(
    c: &crate::store::Conn<'_>,
) -> crate::store::Result<HashMap<Digest, LayerUsage>> {
    Ok(catalog::list(c)?
        .into_iter()
        .flat_map(|i| i.layers)
        .map(|l| (l.chain_id, (l.unpacked_bytes, l.unpacked_inodes)))
        .collect())
}
