//! The container's root: a private mount namespace, pivot_root into the overlay, then the
//! paths hidden (masked) or made read-only, and the read-only root.
//!
//! Propagation. By default `/` becomes rslave: host mounts (new volumes' submounts) still
//! reach the container, nothing the container mounts reaches the host. When a mount asks for
//! `rshared` (a Bidirectional volume), the host's peer groups must survive in this
//! namespace, so propagation is left as the host has it. Either way the mount holding the
//! rootfs mount point is then made private (pivot_root refuses a shared parent, and the
//! overlay and everything mounted in it must stay in this namespace); so with `rshared`,
//! a volume whose host source is on that same mount cannot propagate: keep the state dir
//! on its own mount (as /run is on systemd hosts).

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use rustix::io::Errno;

use super::error::{Context, Result};
use super::inroot::{Root, fd_path};
use super::mounts::remount;
use super::namespaces::new_mount_namespace;
use super::options::Options;
use super::spec::Mount;

/// Enters a new mount namespace set up for a root at `mount_point` (created if missing).
pub fn isolate(mounts: &[Mount], mount_point: &Path) -> Result<()> {
    std::fs::create_dir_all(mount_point).context(|| format!("create {}", mount_point.display()))?;
    let mount_point = std::fs::canonicalize(mount_point)
        .context(|| format!("resolve {}", mount_point.display()))?;
    new_mount_namespace()?;
    let shared = mounts
        .iter()
        .any(|m| Options::parse(&m.options).is_shared());
    if !shared {
        change_propagation(Path::new("/"), MsFlags::MS_SLAVE | MsFlags::MS_REC)?;
    }
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context(|| "read /proc/self/mountinfo")?;
    let parent = containing_mount(&mountinfo, &mount_point);
    change_propagation(&parent, MsFlags::MS_PRIVATE)
}

fn change_propagation(path: &Path, flags: MsFlags) -> Result<()> {
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
        .context(|| format!("change the propagation of {}", path.display()))
}

/// The mount point of the mount `path` is on, from `/proc/<pid>/mountinfo` text.
fn containing_mount(mountinfo: &str, path: &Path) -> PathBuf {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .filter(|mount_point| path.starts_with(mount_point))
        .max_by_key(|mount_point| mount_point.components().count())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Makes `new_root` the root of this mount namespace and drops the old root entirely.
pub fn pivot(new_root: &Path) -> Result<()> {
    let open_dir = |path: &Path| {
        rustix::fs::open(
            path,
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .context(|| format!("open {}", path.display()))
    };
    let old = open_dir(Path::new("/"))?;
    let new = open_dir(new_root)?;
    nix::unistd::fchdir(&new).context(|| format!("enter {}", new_root.display()))?;
    // pivot_root(".", "."): the old root ends up stacked on top of the new one, with no
    // directory to create for it in the image.
    nix::unistd::pivot_root(".", ".")
        .context(|| format!("pivot_root to {}", new_root.display()))?;
    // Where "." lands after pivot_root is not promised; go to the old root explicitly.
    nix::unistd::fchdir(&old).context(|| "enter the old root")?;
    // Unmounting must not propagate to the host's copies of these mounts.
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .context(|| "make the old root rslave")?;
    umount2(".", MntFlags::MNT_DETACH).context(|| "detach the old root")?;
    nix::unistd::chdir("/").context(|| "enter /")
}

/// Hides each path: /dev/null over files, an empty read-only tmpfs over directories.
/// Paths the image does not have are skipped.
pub fn mask_paths(paths: &[String]) -> Result<()> {
    let root = Root::open(Path::new("/"))?;
    for path in paths {
        let fd = match root.open_path(path) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e).context(|| format!("masked path {path}")),
        };
        let is_dir = rustix::fs::fstat(&fd)
            .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir())
            .context(|| format!("masked path {path}"))?;
        let target = fd_path(&fd);
        let mounted = if is_dir {
            mount(
                Some("tmpfs"),
                target.as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
        } else {
            mount(
                Some("/dev/null"),
                target.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        mounted.context(|| format!("masked path {path}"))?;
    }
    Ok(())
}

/// Makes each path (and, like runc, not the mounts below it) read-only. Paths the image does
/// not have are skipped.
pub fn readonly_paths(paths: &[String]) -> Result<()> {
    let root = Root::open(Path::new("/"))?;
    for path in paths {
        let fd = match root.open_path(path) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e).context(|| format!("readonly path {path}")),
        };
        let target = fd_path(&fd);
        mount(
            Some(target.as_str()),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .context(|| format!("readonly path {path}"))?;
        let mounted = root
            .open_path(path)
            .context(|| format!("readonly path {path}"))?;
        remount(&mounted, MsFlags::MS_RDONLY, MsFlags::empty())
            .context(|| format!("readonly path {path}"))?;
    }
    Ok(())
}

/// Makes the root mount read-only (the mounts on it keep their own flags).
pub fn readonly_root() -> Result<()> {
    let root = Root::open(Path::new("/"))?;
    let fd = root.open_path("/").context(|| "open /")?;
    remount(&fd, MsFlags::MS_RDONLY, MsFlags::empty()).context(|| "make / read-only")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:25 / /run rw shared:5 - tmpfs tmpfs rw
31 30 0:26 / /run/ferrocri rw - tmpfs tmpfs rw
32 22 0:27 / /var/lib/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn finds_the_deepest_mount_holding_a_path() {
        let find = |p: &str| containing_mount(MOUNTINFO, Path::new(p));
        assert_eq!(
            find("/run/ferrocri/pods/x/rootfs"),
            PathBuf::from("/run/ferrocri")
        );
        assert_eq!(find("/run/other"), PathBuf::from("/run"));
        // Component-wise: /run/ferrocri2 is not under /run/ferrocri.
        assert_eq!(find("/run/ferrocri2/x"), PathBuf::from("/run"));
        assert_eq!(
            find("/var/lib/with space/x"),
            PathBuf::from("/var/lib/with space")
        );
        assert_eq!(find("/home"), PathBuf::from("/"));
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }
}
