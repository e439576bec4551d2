//! The pod's /dev/shm: a tmpfs shared by its containers (and torn down with the pod).

use std::io;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Size of a pod's /dev/shm, as docker, containerd and CRI-O default to.
const SHM_SIZE: &str = "size=65536k";

pub fn mount_shm(target: &Path) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    mount(
        Some("shm"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,{SHM_SIZE}").as_str()),
    )
    .map_err(io::Error::from)
}

/// Unmounts it; not mounted (or not there) is fine.
pub fn unmount_shm(target: &Path) -> io::Result<()> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
