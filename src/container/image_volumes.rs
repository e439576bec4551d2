//! Image volumes (CRI `Mount.image`, KEP-4639) on the daemon's side: each such mount of a
//! CreateContainer names an image the kubelet has pulled already (with the pod's pull
//! policy); it is found in the catalog, its `image_sub_path` checked, and its layers given
//! to the executor, which mounts them read-only in the container's own mount namespace.
//!
//! As containerd, CreateContainer does not pull: an image that is not there is NotFound.
//! The container record lists the volume images' layers, so image GC keeps them while the
//! container exists; RemoveImage of such an image succeeds (as for a rootfs image, and as
//! containerd, whose sandbox lease keeps the snapshot) and its layers go with the container.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::build::VolumeLayers;
use super::service::{ContainerError, failed};
use crate::cri::v1::ContainerConfig;
use crate::digest::Digest;
use crate::image::service::Images;
use crate::rootfs::image_volume::check_sub_path;

/// What a container record keeps of one image volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVolume {
    /// Index of the mount in `config.mounts`.
    pub mount: usize,
    pub image_id: String,
    /// The image's layers by chain ID, bottom first (as `image_layers`).
    pub layers: Vec<Digest>,
}

/// The image volumes of `config`: what the record keeps and the layer dirs for the spec.
pub async fn resolve(
    images: &Images,
    config: &ContainerConfig,
    empty_lower: &Path,
) -> Result<(Vec<ImageVolume>, VolumeLayers), ContainerError> {
    let mut volumes = Vec::new();
    let mut layers = VolumeLayers::new();
    for (i, m) in config.mounts.iter().enumerate() {
        let Some(spec) = &m.image else {
            continue;
        };
        let field = format!("config.mounts[{i}].image.image");
        // The kubelet (1.36+) also sends the ID it pulled; it names exactly that image.
        let mut image = None;
        for (part, name) in [("image_ref", &spec.image_ref), ("image", &spec.image)] {
            if name.is_empty() || image.is_some() {
                continue;
            }
            image = images.status(name).await.map_err(|e| {
                ContainerError::InvalidValue(format!("config.mounts[{i}].image.{part}: {e}"))
            })?;
        }
        let image = image.ok_or_else(|| {
            ContainerError::NotFound(format!(
                "{field}: image {:?} for the image volume at {} is not present; pull it first",
                spec.image, m.container_path
            ))
        })?;
        if image.layers.is_empty() {
            return Err(ContainerError::Precondition(format!(
                "{field}: image {} has no layers to mount",
                image.id
            )));
        }
        let mut dirs: Vec<PathBuf> = image
            .chain_ids()
            .rev()
            .map(|c| images.layer_path(c))
            .collect();
        if dirs.len() == 1 {
            // overlayfs without an upper dir takes two lower dirs at least.
            dirs.push(empty_lower.to_path_buf());
        }
        if !m.image_sub_path.is_empty() {
            check(&dirs, &m.image_sub_path, i, &image.id).await?;
        }
        volumes.push(ImageVolume {
            mount: i,
            image_id: image.id.clone(),
            layers: image.chain_ids().cloned().collect(),
        });
        layers.insert(i, dirs);
    }
    Ok((volumes, layers))
}

/// The empty directory stacked under a one-layer image (made if missing; only the daemon
/// writes under `root_dir`).
pub fn empty_lower(root_dir: &Path) -> Result<PathBuf, ContainerError> {
    let dir = root_dir.join("image-volume-empty");
    std::fs::create_dir_all(&dir)
        .map_err(|e| failed("preparing image volumes")(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// The sub path must be a directory of the merged image; symlinks resolve inside it.
async fn check(
    dirs: &[PathBuf],
    sub_path: &str,
    i: usize,
    image_id: &str,
) -> Result<(), ContainerError> {
    let (dirs, sub) = (dirs.to_vec(), sub_path.to_owned());
    let checked = tokio::task::spawn_blocking(move || check_sub_path(&dirs, &sub))
        .await
        .map_err(failed("checking an image volume"))?;
    match checked {
        Ok(None) => Ok(()),
        Ok(Some(reason)) => {
            // The executor resolves it the same way and fails the create if it is wrong.
            tracing::debug!(reason, "image_sub_path not checked before the create");
            Ok(())
        }
        Err(e) => Err(ContainerError::InvalidValue(format!(
            "config.mounts[{i}].image_sub_path: {sub_path:?} {e} {image_id}"
        ))),
    }
}

/// The image IDs of the record's volumes.
pub fn image_ids(volumes: &[ImageVolume]) -> impl Iterator<Item = &str> {
    volumes.iter().map(|v| v.image_id.as_str())
}
