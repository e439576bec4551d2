//! Pulling an image: resolve the reference to a manifest for this platform, fetch the config,
//! then download and unpack every layer — layers download in parallel (bounded) and each one
//! unpacks as soon as its blob is verified, while later ones are still downloading. The image
//! is recorded only once everything it needs is on disk.
//!
//! The pipeline reads from a [`Source`]: a registry session for a pull, another runtime's
//! content store for `ferrocri import`. Both write through the same verifying content store.

mod artifact;
mod layers;

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::Semaphore;

use super::catalog::{self, ImageRecord, LayerRecord};
use super::content::ContentError;
use super::error::ImageError;
use super::manifest::{
    self, DOCKER_MANIFEST, Descriptor, Document, ImageConfig, Manifest, OCI_MANIFEST, Platform,
};
use super::reference::Reference;
use super::registry::Credentials;
use super::service::Images;
use super::source::Source;
use crate::digest::{Digest, chain_ids};
use layers::{LayerJob, fetch_layer, known_layer_usage};

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
    let plan = if artifact.is_some() {
        artifact::layer_plan(&resolved.manifest)
    } else {
        image_layer_plan(&resolved.manifest, &config_bytes, &name)?
    };
    let layers = fetch_layers(images, &source, &resolved, &plan, &name).await?;
    store_documents(images, &resolved, &config_desc, config_bytes, &name).await?;

    let mut blobs: Vec<Digest> = resolved.documents.iter().map(|(d, _)| d.clone()).collect();
    blobs.push(config_desc.digest.clone());
    blobs.extend(layers.iter().map(|l| l.digest.clone()));
    let config = plan.config;
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

/// What each layer of the manifest becomes, in order.
struct LayerPlan {
    config: ImageConfig,
    diff_ids: Vec<Digest>,
    chain_ids: Vec<Digest>,
    /// For an artifact, the file each blob is placed as; `None` for a tar to unpack.
    files: Vec<Option<String>>,
}

/// An image's layers: tars whose diff IDs its config lists, one per manifest layer.
fn image_layer_plan(
    manifest: &Manifest,
    config_bytes: &[u8],
    name: &str,
) -> Result<LayerPlan, ImageError> {
    let manifest_error = |source| ImageError::Manifest {
        image: name.to_owned(),
        source,
    };
    let config = ImageConfig::parse(config_bytes).map_err(manifest_error)?;
    let diff_ids = config.rootfs.diff_ids.clone();
    if diff_ids.len() != manifest.layers.len() {
        return Err(manifest_error(manifest::ManifestError::LayerCount {
            diff_ids: diff_ids.len(),
            layers: manifest.layers.len(),
        }));
    }
    Ok(LayerPlan {
        config,
        chain_ids: chain_ids(&diff_ids),
        files: vec![None; diff_ids.len()],
        diff_ids,
    })
}

/// Every layer stored and unpacked; downloads run in parallel up to the configured limit.
async fn fetch_layers<S: Source>(
    images: &Arc<Images>,
    source: &Arc<S>,
    resolved: &Resolved,
    plan: &LayerPlan,
    name: &str,
) -> Result<Vec<LayerRecord>, ImageError> {
    let known = images.store.run(known_layer_usage).await?;
    let limit = Arc::new(Semaphore::new(images.max_concurrent_downloads));
    let layer_jobs = resolved
        .manifest
        .layers
        .iter()
        .zip(&plan.diff_ids)
        .zip(&plan.chain_ids)
        .zip(&plan.files)
        .map(|(((desc, diff_id), chain_id), file)| {
            fetch_layer(
                images,
                source,
                LayerJob {
                    desc: desc.clone(),
                    diff_id: diff_id.clone(),
                    chain_id: chain_id.clone(),
                    endpoint: resolved.endpoint,
                    image: name.to_owned(),
                    file: file.clone(),
                },
                limit.clone(),
                &known,
            )
        });
    futures::future::try_join_all(layer_jobs).await
}

/// The small documents go into the content store last: a visible manifest always has
/// everything it points to.
async fn store_documents(
    images: &Images,
    resolved: &Resolved,
    config_desc: &Descriptor,
    config_bytes: bytes::Bytes,
    name: &str,
) -> Result<(), ImageError> {
    let mut documents = resolved.documents.clone();
    documents.push((config_desc.digest.clone(), config_bytes));
    let content = images.content.clone();
    let image_for_err = name.to_owned();
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
    })
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
