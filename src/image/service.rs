//! The image service: pull, look up, list, remove and account for images.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::RwLock;

use super::catalog::{self, ImageRecord, Lookup};
use super::content::ContentStore;
use super::error::ImageError;
use super::reference::Reference;
use super::registry::{Credentials, Registry};
use super::source::Source;
use crate::config::Config;
use crate::digest::Digest;
use crate::inflight::Inflight;
use crate::rootfs::layers::LayerStore;
use crate::store::{Store, Table};

/// What an unpacked layer weighs: (bytes, inodes).
pub type LayerUsage = (u64, u64);

pub struct Images {
    pub(super) store: Store,
    pub(super) content: ContentStore,
    pub(super) layers: LayerStore,
    pub(super) registry: Arc<Registry>,
    pub(super) max_concurrent_downloads: usize,
    pub(super) layer_limits: super::unpack::LayerLimits,
    /// Pulls hold it shared, garbage collection exclusively: GC never deletes a blob or
    /// layer a pull has fetched but not yet recorded.
    pub(super) gc_lock: RwLock<()>,
    pub(super) downloads: Inflight<Digest, (), ImageError>,
    pub(super) unpacks: Inflight<Digest, LayerUsage, ImageError>,
    sandbox_image: Option<String>,
    root: PathBuf,
}

/// Filesystem usage for ImageFsInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsUsage {
    pub mountpoint: PathBuf,
    pub bytes: u64,
    pub inodes: u64,
}

/// The blobs (with their sizes) and unpacked layers (by chain ID) on disk.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    pub blobs: Vec<(Digest, u64)>,
    pub layers: Vec<Digest>,
}

/// What a garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcStats {
    pub blobs: usize,
    pub layers: usize,
}

impl Images {
    pub fn open(config: &Config, store: Store) -> Result<Arc<Images>, ImageError> {
        let root = config.root_dir.clone();
        let io = |what: &'static str| move |e| ImageError::io(what, e);
        let content = ContentStore::open(&root.join("content")).map_err(io("content store"))?;
        let layers = LayerStore::open(&root.join("layers")).map_err(io("layer store"))?;
        let sandbox_image = Lookup::parse(&config.sandbox_image)
            .ok()
            .and_then(|l| match l {
                Lookup::Tag(t) => Some(t),
                _ => None,
            });
        Ok(Arc::new(Images {
            store,
            content,
            layers,
            registry: Arc::new(Registry::new(
                &config.registry.config_dir,
                config.registry.progress_timeout,
            )),
            max_concurrent_downloads: config.registry.max_concurrent_downloads,
            layer_limits: super::unpack::LayerLimits {
                max_bytes: config.image.max_layer_bytes,
                max_files: config.image.max_layer_files,
            },
            gc_lock: RwLock::new(()),
            downloads: Inflight::default(),
            unpacks: Inflight::default(),
            sandbox_image,
            root,
        }))
    }

    /// Pulls `image` and returns its record.
    pub async fn pull(
        self: &Arc<Self>,
        image: &str,
        credentials: Option<Credentials>,
    ) -> Result<ImageRecord, ImageError> {
        let reference = Reference::parse(image)?;
        let m = crate::prometheus::metrics();
        let timer = crate::prometheus::Timer::start(&m.image_pull_duration);
        let pulled = super::pull::pull(self, reference, credentials).await;
        drop(timer);
        m.image_pulls.inc();
        if let Err(e) = &pulled {
            m.image_pull_failures
                .get_or_create(&crate::prometheus::ReasonLabels { reason: e.reason() })
                .inc();
        }
        pulled
    }

    /// Stores the image `reference` names in `source` and records it under that name: a pull
    /// from somewhere other than a registry (`ferrocri import`).
    pub async fn store_from<S: Source>(
        self: &Arc<Self>,
        reference: Reference,
        source: Arc<S>,
    ) -> Result<ImageRecord, ImageError> {
        super::pull::fetch(self, reference, source).await
    }

    /// What is on disk: every stored blob and every unpacked layer.
    pub fn inventory(&self) -> std::io::Result<Inventory> {
        Ok(Inventory {
            blobs: self.content.list()?,
            layers: self.layers.list()?,
        })
    }

    /// The image `image` (an ID, a tag or a digest reference) names, if pulled.
    pub async fn status(&self, image: &str) -> Result<Option<ImageRecord>, ImageError> {
        let lookup = Lookup::parse(image)?;
        Ok(self.store.run(move |c| catalog::find(c, &lookup)).await?)
    }

    /// Every image, or those `filter` names.
    pub async fn list(&self, filter: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
        let lookup = filter.map(Lookup::parse).transpose()?;
        let images = self.store.run(catalog::list).await?;
        Ok(match lookup {
            None => images,
            Some(lookup) => {
                let wanted = self
                    .store
                    .run(move |c| catalog::find(c, &lookup))
                    .await?
                    .map(|i| i.id);
                images
                    .into_iter()
                    .filter(|i| Some(&i.id) == wanted.as_ref())
                    .collect()
            }
        })
    }

    /// Removes the image `image` names, with all its tags. Unknown images are fine. What the
    /// image leaves unused is collected in the background.
    pub async fn remove(self: &Arc<Self>, image: &str) -> Result<(), ImageError> {
        let lookup = Lookup::parse(image)?;
        let removed = self
            .store
            .run(move |c| match catalog::find(c, &lookup)? {
                Some(found) => catalog::remove(c, &found.id),
                None => Ok(None),
            })
            .await?;
        if let Some(image) = removed {
            tracing::info!(image = %image.id, tags = ?image.repo_tags, "image removed");
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.collect_garbage().await {
                    tracing::warn!(error = %e, "image garbage collection failed");
                }
            });
        }
        Ok(())
    }

    /// Whether kubelet must never garbage-collect this image: the configured sandbox image.
    pub fn is_pinned(&self, image: &ImageRecord) -> bool {
        self.sandbox_image
            .as_ref()
            .is_some_and(|s| image.repo_tags.contains(s))
    }

    pub fn content_path(&self, digest: &Digest) -> PathBuf {
        self.content.path(digest)
    }

    pub fn layer_path(&self, chain_id: &Digest) -> PathBuf {
        self.layers.path(chain_id)
    }

    /// Deletes every blob and layer no image (and no container) uses.
    pub async fn collect_garbage(&self) -> Result<GcStats, ImageError> {
        let _exclusive = self.gc_lock.write().await;
        let (keep_blobs, keep_layers) = self.store.run(in_use).await?;
        let (content, layers) = (self.content.clone(), self.layers.clone());
        let stats = tokio::task::spawn_blocking(move || -> Result<GcStats, ImageError> {
            let mut stats = GcStats::default();
            for (digest, _) in content
                .list()
                .map_err(|e| ImageError::io("listing blobs", e))?
            {
                if !keep_blobs.contains(&digest) {
                    content
                        .delete(&digest)
                        .map_err(|e| ImageError::io("deleting a blob", e))?;
                    stats.blobs += 1;
                }
            }
            for chain_id in layers
                .list()
                .map_err(|e| ImageError::io("listing layers", e))?
            {
                if !keep_layers.contains(&chain_id) {
                    layers
                        .remove(&chain_id)
                        .map_err(|e| ImageError::io("deleting a layer", e))?;
                    stats.layers += 1;
                }
            }
            Ok(stats)
        })
        .await
        .map_err(|e| ImageError::io("garbage collection", std::io::Error::other(e)))??;
        if stats != GcStats::default() {
            tracing::info!(
                blobs = stats.blobs,
                layers = stats.layers,
                "unused image data removed"
            );
        }
        Ok(stats)
    }

    /// Usage of the image filesystem: blobs plus unpacked layers, each layer counted once.
    pub async fn fs_usage(&self) -> Result<FsUsage, ImageError> {
        let images = self.store.run(catalog::list).await?;
        let mut layers: HashMap<&Digest, LayerUsage> = HashMap::new();
        let mut blobs: HashMap<&Digest, u64> = HashMap::new();
        for image in &images {
            for layer in &image.layers {
                layers.insert(
                    &layer.chain_id,
                    (layer.unpacked_bytes, layer.unpacked_inodes),
                );
                blobs.insert(&layer.digest, layer.size);
            }
        }
        let bytes = layers.values().map(|u| u.0).sum::<u64>() + blobs.values().sum::<u64>();
        let inodes = layers.values().map(|u| u.1).sum::<u64>() + blobs.len() as u64;
        Ok(FsUsage {
            mountpoint: self.root.clone(),
            bytes,
            inodes,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The blobs and layers that images and containers still use.
fn in_use(c: &crate::store::Conn<'_>) -> crate::store::Result<(HashSet<Digest>, HashSet<Digest>)> {
    /// The fields of a container record image GC needs: the layers its rootfs stacks and
    /// those of its image volumes.
    #[derive(serde::Deserialize)]
    struct ContainerLayers {
        #[serde(default)]
        image_layers: Vec<Digest>,
        #[serde(default)]
        image_volumes: Vec<VolumeLayers>,
    }
    #[derive(serde::Deserialize)]
    struct VolumeLayers {
        #[serde(default)]
        layers: Vec<Digest>,
    }
    let mut blobs = HashSet::new();
    let mut layers = HashSet::new();
    for image in catalog::list(c)? {
        blobs.extend(image.blobs.iter().cloned());
        layers.extend(image.chain_ids().cloned());
    }
    for row in c.rows(Table::Containers)? {
        if let Ok(container) = serde_json::from_str::<ContainerLayers>(&row.record) {
            layers.extend(container.image_layers);
            for volume in container.image_volumes {
                layers.extend(volume.layers);
            }
        }
    }
    Ok((blobs, layers))
}
