//! Image volumes inside the container's mount namespace: an overlay of the image's layers
//! with no upper dir at the destination (layers idmapped first in a user namespace pod, as
//! for the rootfs), or only a sub directory of it. Like the rootfs, the mounts live only in
//! this namespace: nothing is left on the host when the container goes, whatever happens to
//! the daemon.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::mount::{MntFlags, umount2};
use rustix::mount::{MoveMountFlags, OpenTreeFlags};

use super::error::{Context, Error, Result};
use super::inroot::{Root, fd_path};
use super::mounts::{remount, set_propagation};
use super::options::Options;
use super::overlay;
use super::spec::{ImageLayers, Mount, Rootfs};

/// Mounts the image volume `m` (its layers are `image`) inside `root`.
pub fn apply(
    root: &Root,
    m: &Mount,
    image: &ImageLayers,
    userns: Option<&std::fs::File>,
) -> Result<()> {
    let options = Options::parse(&m.options);
    let dest = root.ensure_dir(&m.destination, 0o755, None)?;
    let merged = Rootfs {
        lower_dirs: image.lower_dirs.clone(),
        mount_point: PathBuf::from(fd_path(&dest)),
        ..Default::default()
    };
    match userns {
        Some(userns) => overlay::mount_rootfs_idmapped(&merged, userns),
        None => overlay::mount_rootfs(&merged),
    }
    .context(|| format!("image {}", m.source))?;
    let mut mounted = reopen(root, &m.destination)?;
    if !image.sub_path.is_empty() {
        mounted = keep_only_sub_path(root, m, &image.sub_path, &dest, mounted)?;
    }
    // ro, nosuid, nodev, noexec on the mount itself (an overlay without upper is read-only
    // already, but the flag is what `mount` and the container see).
    remount(&mounted, options.flags, options.cleared)?;
    if let Some(propagation) = options.propagation {
        set_propagation(&mounted, propagation)?;
    }
    Ok(())
}

/// Replaces the whole image at `dest` with a bind of its directory `sub_path`.
fn keep_only_sub_path(
    root: &Root,
    m: &Mount,
    sub_path: &str,
    dest: &OwnedFd,
    merged: OwnedFd,
) -> Result<OwnedFd> {
    let sub = crate::rootfs::image_volume::open_sub_dir(&merged, sub_path)
        .map_err(|e| Error::new(format!("image_sub_path {sub_path:?} {e}")))?;
    let tree = rustix::mount::open_tree(
        &sub,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .context(|| format!("clone {sub_path:?} of image {}", m.source))?;
    drop(sub);
    // The whole image is not needed any more; the clone keeps the overlay alive.
    umount2(fd_path(&merged).as_str(), MntFlags::MNT_DETACH)
        .context(|| format!("detach image {}", m.source))?;
    drop(merged);
    rustix::mount::move_mount(
        &tree,
        "",
        dest,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .context(|| format!("attach {sub_path:?} of image {}", m.source))?;
    reopen(root, &m.destination)
}

fn reopen(root: &Root, path: &str) -> Result<OwnedFd> {
    root.open_path(path)
        .context(|| format!("open {path} after mounting"))
}
