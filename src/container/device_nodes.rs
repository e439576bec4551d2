//! Device nodes found on the host, as containerd finds them (`pkg/oci` `getDevices`): every
//! node under /dev for a privileged container, and every node under a CRI device whose
//! `host_path` is a directory. The executor makes a copy of each (mknod, same numbers, mode
//! and owner) in the container's own /dev.
//!
//! The walk never follows a symlink (udev's `/dev/disk/by-*` aliases would repeat nodes),
//! skips the folders that are the container's own or the host's private state (`pts`,
//! `shm`, `fd`, `mqueue`, `.lxc`, `.lxd-mounts`, `.udev`) and any `console`, and ignores
//! what is not a block or character device (fifos, sockets, files).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::executor::spec::Device;

/// Folders the walk does not enter, at any depth.
const SKIPPED_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Every device node under the host's /dev, at its own path.
pub fn host() -> io::Result<Vec<Device>> {
    let mut found = Vec::new();
    walk(Path::new("/dev"), "/dev", &mut found)?;
    Ok(found)
}

/// The nodes under the directory `dir`, each at its path below `container_dir` (the host
/// path itself when that is empty).
pub fn under(dir: &Path, container_dir: &str) -> io::Result<Vec<Device>> {
    let base = if container_dir.is_empty() {
        dir.to_string_lossy().into_owned()
    } else {
        container_dir.to_owned()
    };
    let mut found = Vec::new();
    walk(dir, base.trim_end_matches('/'), &mut found)?;
    Ok(found)
}

/// The node at `path` (its metadata given), placed at `container_path`; None when it is not
/// a block or character device.
pub fn node(meta: &std::fs::Metadata, container_path: &str) -> Option<Device> {
    let kind = meta.file_type();
    let kind = if kind.is_char_device() {
        'c'
    } else if kind.is_block_device() {
        'b'
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some(Device {
        path: container_path.to_owned(),
        kind,
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

fn walk(dir: &Path, container_dir: &str, found: &mut Vec<Device>) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    // In name order, so a spec is the same from one call to the next.
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let target = format!("{container_dir}/{name}");
        // Not followed: a symlink is its own kind here.
        let meta = match entry.path().symlink_metadata() {
            Ok(meta) => meta,
            // Gone since the listing (udev at work).
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                match walk(&entry.path(), &target, found) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    other => other?,
                }
            }
        } else if name != "console"
            && let Some(device) = node(&meta, &target)
        {
            found.push(device);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree like a host's /dev, made with real mknod (the tests run as root).
    fn fake_dev() -> tempfile::TempDir {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = |rel: &str| dir.path().join(rel);
        for sub in ["net", "pts", "shm", "disk/by-id", ".udev", "empty"] {
            std::fs::create_dir_all(p(sub)).unwrap();
        }
        let nodes = [
            ("null", SFlag::S_IFCHR, 1, 3, 0o666),
            ("sda", SFlag::S_IFBLK, 8, 0, 0o660),
            ("net/tun", SFlag::S_IFCHR, 10, 200, 0o666),
            ("console", SFlag::S_IFCHR, 5, 1, 0o600),
            ("pts/0", SFlag::S_IFCHR, 136, 0, 0o620),
            (".udev/x", SFlag::S_IFCHR, 1, 1, 0o600),
        ];
        for (rel, kind, major, minor, mode) in nodes {
            mknod(
                &p(rel),
                kind,
                Mode::from_bits_truncate(mode),
                makedev(major, minor),
            )
            .unwrap();
            // Exact, whatever the umask.
            std::fs::set_permissions(p(rel), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::chown(p("sda"), Some(0), Some(6)).unwrap();
        nix::unistd::mkfifo(&p("initctl"), Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(p("regular"), b"x").unwrap();
        std::os::unix::fs::symlink("../sda", p("disk/by-id/ata-disk")).unwrap();
        std::os::unix::fs::symlink("/proc/self/fd", p("fd")).unwrap();
        dir
    }

    fn summary(devices: &[Device]) -> Vec<String> {
        devices
            .iter()
            .map(|d| {
                format!(
                    "{} {} {}:{} {:o} {}:{}",
                    d.path, d.kind, d.major, d.minor, d.mode, d.uid, d.gid
                )
            })
            .collect()
    }

    #[test]
    fn walks_like_containerd() {
        let dev = fake_dev();
        let found = under(dev.path(), "/dev").unwrap();
        assert_eq!(
            summary(&found),
            [
                "/dev/net/tun c 10:200 666 0:0",
                "/dev/null c 1:3 666 0:0",
                "/dev/sda b 8:0 660 0:6",
            ]
        );
        // Without a container path: the host paths.
        let host_paths = under(&dev.path().join("net"), "").unwrap();
        let tun = dev.path().join("net/tun");
        assert_eq!(host_paths[0].path, tun.to_string_lossy());
    }

    #[test]
    fn the_hosts_dev_has_its_standard_nodes() {
        let found = host().unwrap();
        let null = found.iter().find(|d| d.path == "/dev/null").expect("null");
        assert_eq!((null.kind, null.major, null.minor), ('c', 1, 3));
        assert!(found.iter().all(|d| !d.path.starts_with("/dev/pts/")));
        assert!(found.iter().all(|d| d.path != "/dev/console"));
    }
}
