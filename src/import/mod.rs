//! `ferrocri import`: copying the images another runtime already holds into ferrocri's store,
//! so a node that switches runtimes keeps its images without pulling them again.
//!
//! The bytes go through the pull pipeline (`image::pull::fetch`) with another runtime as its
//! [`Source`](crate::image::source::Source): the same platform choice, the same verifying
//! content store, the same unpacking and the same catalog record as a pull from a registry.
//!
//! The daemon must be stopped. The import writes the store directly and holds the root's
//! lock (`<root_dir>/ferrocri.lock`) while it does: a running daemon's garbage collection
//! (at start and after each RemoveImage) would otherwise delete blobs the import has written
//! but not recorded yet, since the lock that keeps pulls and GC apart lives in the daemon's
//! memory. Holding the lock also keeps a daemon from starting mid-import.

pub mod containerd;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Config;
use crate::digest::Digest;
use crate::image::reference::{self, Reference};
use crate::image::service::Images;
use crate::socket::{LockFile, SocketError};
use crate::store::Store;
use containerd::{Containerd, ContainerdImage};

/// What `ferrocri import containerd` is asked to do.
#[derive(Debug, Clone)]
pub struct ContainerdRequest {
    pub address: PathBuf,
    pub namespace: String,
    /// Names as containerd lists them or in any docker form (`busybox:1.36`), or image IDs;
    /// empty means every image of the namespace.
    pub images: Vec<String>,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    /// containerd name → ferrocri image ID.
    pub imported: Vec<(String, String)>,
    /// Names that are not references (containerd's CRI plugin also names images by ID).
    pub skipped: Vec<String>,
    /// containerd name → why it could not be imported.
    pub failed: Vec<(String, String)>,
    pub blobs_copied: usize,
    pub bytes_copied: u64,
    pub layers_unpacked: usize,
}

/// Copies images from containerd into the store under `config.root_dir`.
pub async fn from_containerd(
    config: &Config,
    request: &ContainerdRequest,
) -> anyhow::Result<Summary> {
    let root = &config.root_dir;
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let _root_lock = match LockFile::acquire(&root.join("ferrocri.lock")) {
        Err(SocketError::Locked(lock)) => anyhow::bail!(
            "the ferrocri daemon is running on {} (it holds {}): stop it first (systemctl stop \
             ferrocri), then import; an import writes the image store directly",
            root.display(),
            lock.display()
        ),
        other => other?,
    };
    let store = Store::open(&config.database_path())
        .with_context(|| format!("cannot open {}", config.database_path().display()))?;
    let images = Images::open(config, store).context("cannot open the image store")?;
    let containerd = Arc::new(
        Containerd::connect(
            &request.address,
            &request.namespace,
            config.registry.progress_timeout,
        )
        .await?,
    );
    let result = copy(&images, &containerd, &request.images).await;
    containerd.close().await;
    result
}

async fn copy(
    images: &Arc<Images>,
    containerd: &Arc<Containerd>,
    wanted: &[String],
) -> anyhow::Result<Summary> {
    let listed = containerd.images().await?;
    let chosen = choose(&listed, wanted).map_err(|missing| {
        anyhow::anyhow!(
            "{} has no image named {}; `ctr -n <namespace> images ls` lists what it has",
            containerd.location(),
            missing.join(", ")
        )
    })?;
    let before = images.inventory().context("cannot list the image store")?;
    let mut summary = Summary::default();
    for image in chosen {
        if reference::is_image_id(&image.name) {
            summary.skipped.push(image.name);
            continue;
        }
        let parsed = match Reference::parse(&image.name) {
            Ok(parsed) => parsed,
            Err(e) => {
                summary.failed.push((image.name, e.to_string()));
                continue;
            }
        };
        match images
            .store_from(parsed, Arc::new(containerd.image(&image)))
            .await
        {
            Ok(record) => {
                tracing::info!(image = %image.name, id = %record.id, "image imported");
                summary.imported.push((image.name, record.id));
            }
            Err(e) => summary.failed.push((image.name, e.to_string())),
        }
    }
    let after = images.inventory().context("cannot list the image store")?;
    let blobs_before: HashSet<&Digest> = before.blobs.iter().map(|(d, _)| d).collect();
    for (digest, size) in &after.blobs {
        if !blobs_before.contains(digest) {
            summary.blobs_copied += 1;
            summary.bytes_copied += size;
        }
    }
    let layers_before: HashSet<&Digest> = before.layers.iter().collect();
    summary.layers_unpacked = after
        .layers
        .iter()
        .filter(|l| !layers_before.contains(l))
        .count();
    Ok(summary)
}

/// The images `wanted` names (all when it is empty), each once, in containerd's order; or
/// the names containerd does not have. A name matches as written or normalised
/// (`busybox` is `docker.io/library/busybox:latest`); an image ID matches every name whose
/// image containerd also lists under that ID, as its CRI plugin does.
fn choose(
    listed: &[ContainerdImage],
    wanted: &[String],
) -> Result<Vec<ContainerdImage>, Vec<String>> {
    if wanted.is_empty() {
        return Ok(listed.to_vec());
    }
    let normal = |name: &str| Reference::parse(name).ok().map(|r| r.to_string());
    let mut names = HashSet::new();
    let mut missing = Vec::new();
    for want in wanted {
        let as_id = reference::image_id_digest(want);
        let matched: Vec<&ContainerdImage> = listed
            .iter()
            .filter(|i| match &as_id {
                Some(id) => reference::image_id_digest(&i.name).as_ref() == Some(id),
                None => i.name == *want || normal(&i.name).is_some_and(|n| Some(n) == normal(want)),
            })
            .collect();
        if matched.is_empty() {
            missing.push(want.clone());
        }
        for image in matched {
            names.insert(image.name.clone());
            if as_id.is_some() {
                // Every name of the same content: the ID itself names no repository.
                names.extend(
                    listed
                        .iter()
                        .filter(|i| i.target == image.target)
                        .map(|i| i.name.clone()),
                );
            }
        }
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    Ok(listed
        .iter()
        .filter(|i| names.contains(&i.name))
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, target: u8) -> ContainerdImage {
        ContainerdImage {
            name: name.into(),
            target: Digest::of(&[target]),
            media_type: String::new(),
        }
    }

    fn names(images: Vec<ContainerdImage>) -> Vec<String> {
        images.into_iter().map(|i| i.name).collect()
    }

    #[test]
    fn choosing_images_by_name_normal_form_and_id() {
        let id = format!("sha256:{}", "a".repeat(64));
        let listed = vec![
            image("docker.io/library/busybox:1.36", 1),
            image(
                &format!("docker.io/library/busybox@sha256:{}", "b".repeat(64)),
                1,
            ),
            image(&id, 1),
            image("127.0.0.1:5000/pause:3.10", 2),
        ];
        assert_eq!(names(choose(&listed, &[]).unwrap()).len(), 4);
        assert_eq!(
            names(choose(&listed, &["busybox:1.36".into()]).unwrap()),
            ["docker.io/library/busybox:1.36"]
        );
        assert_eq!(
            names(
                choose(
                    &listed,
                    &[
                        "127.0.0.1:5000/pause:3.10".into(),
                        "127.0.0.1:5000/pause:3.10".into()
                    ]
                )
                .unwrap()
            ),
            ["127.0.0.1:5000/pause:3.10"]
        );
        // An ID brings every name of that content (the ID name itself is skipped later).
        assert_eq!(
            names(choose(&listed, std::slice::from_ref(&id)).unwrap()).len(),
            3
        );
        assert_eq!(names(choose(&listed, &["a".repeat(64)]).unwrap()).len(), 3);
        assert_eq!(
            choose(
                &listed,
                &[
                    "busybox:1.37".into(),
                    "pause:3.10".into(),
                    "busybox:1.36".into()
                ]
            )
            .unwrap_err(),
            ["busybox:1.37", "pause:3.10"]
        );
    }
}
