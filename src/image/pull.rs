//! Pulling an image: resolve the reference to a manifest for this platform, fetch the config,
//! then download and unpack every layer — layers download in parallel (bounded) and each one
//! unpacks as soon as its blob is verified, while later ones are still downloading. The image
//! is recorded only once everything it needs is on disk.
//!
//! The pipeline reads from a [`Source`]: a registry session for a pull, another runtime's
//! content store for `ferrocri import`. Both write through the same verifying content store.

use std::collections::HashMap;
use std::io::BufReader;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;

use super::catalog::{self, ImageRecord, LayerRecord};
use super::content::{ContentError, ContentStore};
use super::error::ImageError;
use super::manifest::{
    self, DOCKER_MANIFEST, Descriptor, Document, ImageConfig, Manifest, OCI_MANIFEST, Platform,
};
use super::reference::Reference;
use super::registry::Credentials;
use super::service::{Images, LayerUsage};
use super::source::Source;
use super::unpack::{LayerContext, LayerLimits, decompressed, unpack_layer};
use crate::digest::{Digest, HashingReader, chain_ids};
use crate::rootfs::layers::LayerStore;

/// The manifest chosen for this host, with what is needed to record it.
struct Resolved {
    top_digest: Digest,
    manifest: Manifest,
    manifest_digest: Digest,
    manifest_media_type: String,
    /// Index (if any) and manifest bytes, stored with the image.
    documents: Vec<(Digest, bytes::Bytes)>,
    endpoint: usize,
}

pub(super) async fn pull(
    images: &Arc<Images>,
    reference: Reference,
    credentials: Option<Credentials>,
) -> Result<ImageRecord, ImageError> {
    let name = reference.to_string();
    let session = Arc::new(images.registry.session(&reference, credentials)?);
    let record = fetch(images, reference, session).await?;
    tracing::info!(image = %name, id = %record.id, "image pulled");
    Ok(record)
}

/// Stores the image `reference` names in `source` (for this platform) and records it under
/// that name.
pub(super) async fn fetch<S: Source>(
    images: &Arc<Images>,
    reference: Reference,
    source: Arc<S>,
) -> Result<ImageRecord, ImageError> {
    let name = reference.to_string();
    let _no_gc = images.gc_lock.read().await;
    let resolved = resolve(&*source, &reference, &name).await?;
    let artifact = resolved.manifest.artifact_kind();
    if artifact.is_none() {
        resolved
            .manifest
            .check_is_image()
            .map_err(|source| ImageError::Manifest {
                image: name.clone(),
                source,
            })?;
    }

    let config_desc = resolved.manifest.config.clone();
    let config_bytes = fetch_small_blob(&*source, &config_desc, resolved.endpoint, &name).await?;
    // An artifact's blobs are files, not tars: each is its own "layer" (a directory holding
    // that one file) whose diff ID is the blob's digest.
    let (config, diff_ids, chains, files) = if artifact.is_some() {
        let files: Vec<Option<String>> = resolved
            .manifest
            .layers
            .iter()
            .map(|d| Some(artifact_file_name(d)))
            .collect();
        let diff_ids: Vec<Digest> = resolved
            .manifest
            .layers
            .iter()
            .map(|d| d.digest.clone())
            .collect();
        let chains = resolved
            .manifest
            .layers
            .iter()
            .zip(&files)
            .map(|(d, f)| artifact_chain_id(d, f.as_deref().unwrap_or_default()))
            .collect();
        (ImageConfig::default(), diff_ids, chains, files)
    } else {
        let config = ImageConfig::parse(&config_bytes).map_err(|source| ImageError::Manifest {
            image: name.clone(),
            source,
        })?;
        let diff_ids = config.rootfs.diff_ids.clone();
        if diff_ids.len() != resolved.manifest.layers.len() {
            return Err(ImageError::Manifest {
                image: name,
                source: manifest::ManifestError::LayerCount {
                    diff_ids: diff_ids.len(),
                    layers: resolved.manifest.layers.len(),
                },
            });
        }
        let chains = chain_ids(&diff_ids);
        let files = vec![None; diff_ids.len()];
        (config, diff_ids, chains, files)
    };

    let known = images.store.run(known_layer_usage).await?;
    let limit = Arc::new(Semaphore::new(images.max_concurrent_downloads));
    let layer_jobs = resolved
        .manifest
        .layers
        .iter()
        .zip(diff_ids.iter())
        .zip(chains)
        .zip(files)
        .map(|(((desc, diff_id), chain_id), file)| {
            fetch_layer(
                images,
                &source,
                LayerJob {
                    desc: desc.clone(),
                    diff_id: diff_id.clone(),
                    chain_id,
                    endpoint: resolved.endpoint,
                    image: name.clone(),
                    file,
                },
                limit.clone(),
                &known,
            )
        });
    let layers = futures::future::try_join_all(layer_jobs).await?;

    // The small documents go into the content store last: a visible manifest always has
    // everything it points to.
    let mut documents = resolved.documents.clone();
    documents.push((config_desc.digest.clone(), config_bytes));
    let content = images.content.clone();
    let image_for_err = name.clone();
    tokio::task::spawn_blocking(move || {
        documents
            .iter()
            .try_for_each(|(digest, bytes)| content.put(digest, bytes))
    })
    .await
    .map_err(|e| ImageError::io("storing manifests", std::io::Error::other(e)))?
    .map_err(|source| ImageError::Content {
        image: image_for_err,
        source,
    })?;

    let mut blobs: Vec<Digest> = resolved.documents.iter().map(|(d, _)| d.clone()).collect();
    blobs.push(config_desc.digest.clone());
    blobs.extend(layers.iter().map(|l| l.digest.clone()));
    let record = ImageRecord {
        // Artifacts often share one config (the empty `{}`): the manifest names them.
        id: match &artifact {
            Some(_) => resolved.manifest_digest.to_string(),
            None => config_desc.digest.to_string(),
        },
        repo_tags: Vec::new(),
        repo_digests: Vec::new(),
        manifest_digest: resolved.manifest_digest,
        manifest_media_type: resolved.manifest_media_type,
        platform: Platform {
            architecture: config.architecture.clone(),
            os: config.os.clone(),
            variant: String::new(),
        },
        size: config_desc.size + layers.iter().map(|l| l.size).sum::<u64>(),
        config,
        layers,
        blobs,
        artifact_type: artifact.unwrap_or_default(),
    };
    // A digest pull names no tag (critest: repo_tags stay empty).
    let tag = match reference.digest {
        Some(_) => None,
        None => reference.tagged(),
    };
    let digest_ref = reference.digested(resolved.top_digest.as_str());
    Ok(images
        .store
        .run(move |c| catalog::record_pull(c, record, tag.as_deref(), &digest_ref))
        .await?)
}

/// Fetches the top-level document and, for an index, the manifest for this platform.
async fn resolve<S: Source>(
    source: &S,
    reference: &Reference,
    name: &str,
) -> Result<Resolved, ImageError> {
    let by_digest = reference.digest.is_some();
    let top = source
        .document(reference.api_reference(), by_digest)
        .await?;
    let top_digest = Digest::of(&top.bytes);
    if let Some(expected) = reference
        .digest
        .as_ref()
        .filter(|d| *d != top_digest.as_str())
    {
        return Err(ImageError::ManifestDigest {
            image: name.to_owned(),
            expected: Digest::parse(expected).unwrap_or_else(|_| top_digest.clone()),
            actual: top_digest,
        });
    }
    let manifest_error = |source| ImageError::Manifest {
        image: name.to_owned(),
        source,
    };
    let mut documents = vec![(top_digest.clone(), top.bytes.clone())];
    match manifest::parse_document(&top.content_type, &top.bytes).map_err(manifest_error)? {
        Document::Manifest(manifest) => Ok(Resolved {
            manifest_media_type: media_type_of(&top.bytes, &top.content_type),
            manifest_digest: top_digest.clone(),
            top_digest,
            manifest: *manifest,
            documents,
            endpoint: top.endpoint,
        }),
        Document::Index(index) => {
            let chosen = manifest::select(&index, &Platform::host()).map_err(manifest_error)?;
            let fetched = source.document(chosen.digest.as_str(), true).await?;
            let actual = Digest::of(&fetched.bytes);
            if actual != chosen.digest {
                return Err(ImageError::ManifestDigest {
                    image: name.to_owned(),
                    expected: chosen.digest.clone(),
                    actual,
                });
            }
            let Document::Manifest(manifest) =
                manifest::parse_document(&fetched.content_type, &fetched.bytes)
                    .map_err(manifest_error)?
            else {
                return Err(manifest_error(manifest::ManifestError::Unsupported(
                    "an index inside an index".into(),
                )));
            };
            documents.push((actual.clone(), fetched.bytes.clone()));
            Ok(Resolved {
                manifest_media_type: media_type_of(&fetched.bytes, &fetched.content_type),
                manifest_digest: actual,
                top_digest,
                manifest: *manifest,
                documents,
                endpoint: fetched.endpoint,
            })
        }
    }
}

fn media_type_of(bytes: &[u8], content_type: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(default, rename = "mediaType")]
        media_type: String,
    }
    let inside = serde_json::from_slice::<Typed>(bytes)
        .map(|t| t.media_type)
        .unwrap_or_default();
    match inside.as_str() {
        "" if content_type.starts_with(DOCKER_MANIFEST) => DOCKER_MANIFEST.into(),
        "" => OCI_MANIFEST.into(),
        _ => inside,
    }
}

/// Fetches a config blob into memory and verifies it.
async fn fetch_small_blob<S: Source>(
    source: &S,
    desc: &Descriptor,
    endpoint: usize,
    image: &str,
) -> Result<bytes::Bytes, ImageError> {
    const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;
    if desc.size > MAX_CONFIG_BYTES {
        return Err(ImageError::Transfer {
            image: image.to_owned(),
            blob: desc.digest.clone(),
            url: String::new(),
            message: format!("config of {} bytes is larger than 16 MiB", desc.size),
        });
    }
    let opened = source.blob(&desc.digest, endpoint).await?;
    let (mut chunks, url) = (opened.chunks, opened.location);
    let timeout = source.progress_timeout();
    let mut bytes = Vec::new();
    loop {
        match tokio::time::timeout(timeout, chunks.next()).await {
            Err(_) => {
                return Err(ImageError::Stalled {
                    image: image.to_owned(),
                    blob: desc.digest.clone(),
                    url,
                    timeout,
                });
            }
            Ok(None) => break,
            Ok(Some(Err(message))) => {
                return Err(ImageError::Transfer {
                    image: image.to_owned(),
                    blob: desc.digest.clone(),
                    url,
                    message,
                });
            }
            Ok(Some(Ok(chunk))) => {
                // Never hold more than the descriptor promised.
                let actual = (bytes.len() + chunk.len()) as u64;
                if actual > desc.size {
                    return Err(ImageError::Content {
                        image: image.to_owned(),
                        source: ContentError::SizeMismatch {
                            digest: desc.digest.clone(),
                            expected: desc.size,
                            actual,
                        },
                    });
                }
                bytes.extend_from_slice(&chunk);
            }
        }
    }
    let actual = Digest::of(&bytes);
    if actual != desc.digest || bytes.len() as u64 != desc.size {
        return Err(ImageError::Content {
            image: image.to_owned(),
            source: ContentError::DigestMismatch {
                expected: desc.digest.clone(),
                actual,
            },
        });
    }
    Ok(bytes.into())
}

struct LayerJob {
    desc: Descriptor,
    diff_id: Digest,
    chain_id: Digest,
    endpoint: usize,
    image: String,
    /// An artifact's blob: placed as this file instead of unpacked.
    file: Option<String>,
}

/// Makes sure one layer's blob is stored and its directory unpacked.
async fn fetch_layer<S: Source>(
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

/// The file name an artifact's blob gets: its `org.opencontainers.image.title` when that is
/// a plain relative path (no `.`, `..` or empty parts), else `sha256-<hex>` of its digest.
fn artifact_file_name(desc: &Descriptor) -> String {
    let title = desc
        .annotations
        .get("org.opencontainers.image.title")
        .map(String::as_str)
        .unwrap_or_default();
    let plain = !title.is_empty()
        && title.len() <= 1024
        && !title.contains('\0')
        && title
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && part.len() <= 255);
    if plain {
        title.to_owned()
    } else {
        desc.digest.as_str().replacen(':', "-", 1)
    }
}

/// The directory of one artifact file, named after the file and the blob.
fn artifact_chain_id(desc: &Descriptor, file: &str) -> Digest {
    Digest::of(format!("ferrocri artifact file {file} {}", desc.digest).as_bytes())
}

/// Puts a stored artifact blob, as `file` (mode 0644, owned by root), into a fresh directory
/// and makes that the layer `chain_id`. Blocking.
fn place_file(
    content: &ContentStore,
    layers: &LayerStore,
    desc: &Descriptor,
    file: &str,
    chain_id: &Digest,
) -> Result<LayerUsage, ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |what: &str| {
        let what = format!("artifact blob {}: {what}", desc.digest);
        move |e| ImageError::io(what, e)
    };
    let scratch = layers
        .scratch()
        .map_err(io("cannot create a scratch directory"))?;
    let target = scratch.path().join(file);
    let mut dirs = 1;
    if let Some(parent) = target.parent().filter(|p| *p != scratch.path()) {
        std::fs::create_dir_all(parent).map_err(io("cannot create its folder"))?;
        dirs += file.matches('/').count() as u64;
    }
    std::fs::copy(content.path(&desc.digest), &target).map_err(io("cannot copy"))?;
    let mode = |m| std::fs::Permissions::from_mode(m);
    std::fs::set_permissions(&target, mode(0o644)).map_err(io("cannot set its mode"))?;
    std::fs::set_permissions(scratch.path(), mode(0o755)).map_err(io("cannot set a mode"))?;
    std::fs::File::open(&target)
        .and_then(|f| f.sync_all())
        .map_err(io("cannot sync"))?;
    layers
        .commit(scratch, chain_id)
        .map_err(io("cannot move the file into place"))?;
    Ok((desc.size, dirs + 1))
}

/// Bytes and inodes of a layer directory unpacked before this daemon knew its size.
async fn measure(dir: std::path::PathBuf) -> LayerUsage {
    tokio::task::spawn_blocking(move || crate::rootfs::usage::disk_usage(&dir))
        .await
        .unwrap_or((0, 0))
}

/// Usage of the layers images already recorded, by chain ID.
fn known_layer_usage(
    c: &crate::store::Conn<'_>,
) -> crate::store::Result<HashMap<Digest, LayerUsage>> {
    Ok(catalog::list(c)?
        .into_iter()
        .flat_map(|i| i.layers)
        .map(|l| (l.chain_id, (l.unpacked_bytes, l.unpacked_inodes)))
        .collect())
}
