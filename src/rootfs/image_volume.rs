//! Image volumes (CRI `Mount.image`, KEP-4639): what the daemon and the executor share. The
//! daemon checks a mount's `image_sub_path` on a detached overlay of the image before it
//! creates anything; the executor resolves it the same way on the overlay it mounts.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};

/// Why a sub path cannot be mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubPathError {
    Missing,
    NotADirectory,
    Other(String),
}

impl std::fmt::Display for SubPathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubPathError::Missing => f.write_str("does not exist in the image"),
            SubPathError::NotADirectory => {
                f.write_str("is not a directory in the image (only directories can be mounted)")
            }
            SubPathError::Other(e) => write!(f, "cannot be opened in the image: {e}"),
        }
    }
}

/// An `O_PATH` descriptor of the directory `sub_path` names in the merged image at
/// `merged`. Symlinks and `..` are resolved with the image as root (as containerd's
/// `OpenInRoot`), so the result is always inside the image; magic links are refused.
pub fn open_sub_dir(merged: &impl AsFd, sub_path: &str) -> Result<OwnedFd, SubPathError> {
    let path = if sub_path.trim_matches('/').is_empty() {
        "."
    } else {
        sub_path
    };
    let fd = loop {
        match rustix::fs::openat2(
            merged,
            path,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            // A rename somewhere in the tree during the lookup: try again.
            Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
            Err(Errno::NOENT) => return Err(SubPathError::Missing),
            Err(Errno::NOTDIR) => return Err(SubPathError::NotADirectory),
            Err(e) => return Err(SubPathError::Other(e.to_string())),
            Ok(fd) => break fd,
        }
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| SubPathError::Other(e.to_string()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return Err(SubPathError::NotADirectory);
    }
    Ok(fd)
}

/// The overlay of `lower_dirs` (top-most first, at least two) as a detached, read-only
/// mount: attached nowhere, it goes when the descriptor closes, so nothing can leak on the
/// host. Needs `lowerdir+` (Linux 6.8); callers treat an error as "cannot check here".
pub fn detached_overlay(lower_dirs: &[PathBuf]) -> std::io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for lower in lower_dirs {
        rustix::mount::fsconfig_set_string(&fs, "lowerdir+", lower)?;
    }
    rustix::mount::fsconfig_create(&fs)?;
    Ok(rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )?)
}

/// Checks `sub_path` on the merged image. `Ok(None)`: fine; `Ok(Some(reason))`: this
/// kernel cannot make the overlay here (the executor will check it instead).
pub fn check_sub_path(
    lower_dirs: &[PathBuf],
    sub_path: &str,
) -> Result<Option<String>, SubPathError> {
    let merged = match detached_overlay(lower_dirs) {
        Ok(merged) => merged,
        Err(e) => return Ok(Some(e.to_string())),
    };
    open_sub_dir(&merged, sub_path).map(|_| None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_or_skip() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn sub_paths_resolve_inside_the_merged_layers() {
        if !root_or_skip() {
            eprintln!("skipped: needs root to mount an overlay");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (top, bottom) = (dir.path().join("top"), dir.path().join("bottom"));
        std::fs::create_dir_all(bottom.join("etc/conf")).unwrap();
        std::fs::create_dir_all(top.join("data")).unwrap();
        std::fs::write(top.join("data/file"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/conf", top.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../..", top.join("up")).unwrap();
        let lowers = [top, bottom];
        assert_eq!(check_sub_path(&lowers, "data"), Ok(None));
        assert_eq!(check_sub_path(&lowers, "etc/conf"), Ok(None));
        // An absolute symlink is the image's path, not the host's.
        assert_eq!(check_sub_path(&lowers, "abs"), Ok(None));
        let merged = detached_overlay(&lowers).unwrap();
        let up = open_sub_dir(&merged, "up").unwrap();
        let root = open_sub_dir(&merged, ".").unwrap();
        let (up, root) = (
            rustix::fs::fstat(&up).unwrap(),
            rustix::fs::fstat(&root).unwrap(),
        );
        assert_eq!(
            (up.st_dev, up.st_ino),
            (root.st_dev, root.st_ino),
            "a symlink climbing out ends at the image's root"
        );
        assert_eq!(
            check_sub_path(&lowers, "missing"),
            Err(SubPathError::Missing)
        );
        assert_eq!(
            check_sub_path(&lowers, "data/file"),
            Err(SubPathError::NotADirectory)
        );
    }
}
