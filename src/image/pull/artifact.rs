//! OCI artifacts pulled as image volumes: each blob is a file, not a tar, and becomes its own
//! "layer" (a directory holding that one file) whose diff ID is the blob's digest.

use super::LayerPlan;
use crate::digest::Digest;
use crate::image::content::ContentStore;
use crate::image::error::ImageError;
use crate::image::manifest::{Descriptor, ImageConfig, Manifest};
use crate::image::service::LayerUsage;
use crate::rootfs::layers::LayerStore;

/// An artifact's layers: one per blob, placed as the file it names.
pub(super) fn layer_plan(manifest: &Manifest) -> LayerPlan {
    let files: Vec<Option<String>> = manifest
        .layers
        .iter()
        .map(|d| Some(artifact_file_name(d)))
        .collect();
    let diff_ids = manifest.layers.iter().map(|d| d.digest.clone()).collect();
    let chain_ids = manifest
        .layers
        .iter()
        .zip(&files)
        .map(|(d, f)| artifact_chain_id(d, f.as_deref().unwrap_or_default()))
        .collect();
    LayerPlan {
        config: ImageConfig::default(),
        diff_ids,
        chain_ids,
        files,
    }
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
pub(super) fn place_file(
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
