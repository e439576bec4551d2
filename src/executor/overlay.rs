//! Mounting the container's overlayfs root from the image layers.
//!
//! mount(2) copies at most one page (4 KiB, with its NUL) of options: a longer `lowerdir=`
//! list would be cut short, silently. So, in order:
//! 1. absolute paths when they fit;
//! 2. else containerd's trick: `chdir` to the layers' common parent and name them relative
//!    to it (mount resolves relative paths from the caller's working directory);
//! 3. else the new mount API (`fsconfig` with one `lowerdir+` per layer, Linux ≥ 6.8), which
//!    has no length limit.

use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use nix::mount::{MsFlags, mount};
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};

use super::error::{Context, Error, Result};
use super::spec::Rootfs;

/// The most option bytes mount(2) takes: a page minus the terminating NUL.
const MAX_DATA: usize = 4095;

#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Absolute(String),
    Relative { dir: PathBuf, data: String },
    NewMountApi,
}

/// Mounts the overlay for `rootfs` at its mount point (which must exist). Without an upper
/// dir it is read-only and needs at least two lower dirs.
pub fn mount_rootfs(rootfs: &Rootfs) -> Result<()> {
    if rootfs.lower_dirs.is_empty() {
        return Err(Error::new("the rootfs has no lower dirs"));
    }
    let target = &rootfs.mount_point;
    let result = match plan(rootfs) {
        Plan::Absolute(data) => mount_overlay(target, &data),
        Plan::Relative { dir, data } => {
            nix::unistd::chdir(&dir).context(|| format!("enter {}", dir.display()))?;
            let mounted = mount_overlay(target, &data);
            let _ = nix::unistd::chdir("/");
            mounted
        }
        Plan::NewMountApi => mount_with_fsconfig(rootfs),
    };
    result.context(|| {
        format!(
            "mount overlay at {} ({} lower dirs, upperdir {})",
            target.display(),
            rootfs.lower_dirs.len(),
            rootfs.upper_dir.display()
        )
    })
}

/// The overlay of a user namespace pod: every image layer is an idmapped copy (user
/// namespace `userns`), so the files of the shared, read-only layers show the pod's ids
/// without ever being chowned; the overlay itself is mounted on those copies, which it
/// keeps alive. (overlayfs cannot be idmapped itself, and an idmapped upper layer would
/// refuse the host-side creds overlayfs copies up with; the empty upper dir is owned by the
/// pod's root instead.)
pub fn mount_rootfs_idmapped(rootfs: &Rootfs, userns: &std::fs::File) -> Result<()> {
    let mut layers = Vec::with_capacity(rootfs.lower_dirs.len());
    for lower in &rootfs.lower_dirs {
        let tree = crate::userns::idmapped_tree(lower, userns, false).map_err(|e| {
            Error::new(format!(
                "{e} (this kernel or file system cannot idmap image layers)"
            ))
        })?;
        layers.push(tree);
    }
    let mut mapped = rootfs.clone();
    mapped.lower_dirs = layers
        .iter()
        .map(|fd| PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))
        .collect();
    mount_rootfs(&mapped)
}

fn plan(rootfs: &Rootfs) -> Plan {
    let absolute = data(&rootfs.lower_dirs, rootfs);
    if absolute.len() <= MAX_DATA {
        return Plan::Absolute(absolute);
    }
    let dir = common_parent(&rootfs.lower_dirs);
    let relative: Vec<PathBuf> = rootfs
        .lower_dirs
        .iter()
        .map(|l| match l.strip_prefix(&dir) {
            Ok(r) if r.as_os_str().is_empty() => PathBuf::from("."),
            Ok(r) => r.to_path_buf(),
            Err(_) => l.clone(),
        })
        .collect();
    let data = data(&relative, rootfs);
    if data.len() <= MAX_DATA {
        Plan::Relative { dir, data }
    } else {
        Plan::NewMountApi
    }
}

/// `lowerdir=a:b,upperdir=u,workdir=w` (no upper dir: a read-only overlay).
fn data(lowers: &[PathBuf], rootfs: &Rootfs) -> String {
    let lowers: Vec<String> = lowers.iter().map(|l| escape(l)).collect();
    let mut data = format!("lowerdir={}", lowers.join(":"));
    if !rootfs.upper_dir.as_os_str().is_empty() {
        data.push_str(&format!(
            ",upperdir={},workdir={}",
            escape(&rootfs.upper_dir),
            escape(&rootfs.work_dir)
        ));
    }
    data
}

/// overlayfs splits its options on `,` and `lowerdir` on `:`; a backslash escapes either.
fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The deepest directory that holds every path.
fn common_parent(paths: &[PathBuf]) -> PathBuf {
    let mut common: Vec<Component> = match paths.first().and_then(|p| p.parent()) {
        Some(parent) => parent.components().collect(),
        None => return PathBuf::from("/"),
    };
    for path in &paths[1..] {
        let same = common
            .iter()
            .zip(path.components())
            .take_while(|(a, b)| *a == b)
            .count();
        common.truncate(same);
    }
    common.iter().collect()
}

fn mount_overlay(target: &Path, data: &str) -> Result<()> {
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data),
    )
    .map_err(Error::from)
}

fn mount_with_fsconfig(rootfs: &Rootfs) -> Result<()> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .context(|| "fsopen overlay")?;
    for lower in &rootfs.lower_dirs {
        rustix::mount::fsconfig_set_string(&fs, "lowerdir+", lower).context(|| {
            format!(
                "lowerdir+ {} (too many layers for mount(2) and no lowerdir+ before Linux 6.8)",
                lower.display()
            )
        })?;
    }
    if !rootfs.upper_dir.as_os_str().is_empty() {
        rustix::mount::fsconfig_set_string(&fs, "upperdir", &rootfs.upper_dir)
            .context(|| format!("upperdir {}", rootfs.upper_dir.display()))?;
        rustix::mount::fsconfig_set_string(&fs, "workdir", &rootfs.work_dir)
            .context(|| format!("workdir {}", rootfs.work_dir.display()))?;
    }
    rustix::mount::fsconfig_create(&fs).context(|| "create the overlay")?;
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .context(|| "fsmount")?;
    rustix::mount::move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        &rootfs.mount_point,
        // The mount point may be a `/proc/self/fd/N` link (an image volume's destination).
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_SYMLINKS,
    )
    .context(|| "move_mount")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs(lowers: Vec<PathBuf>) -> Rootfs {
        Rootfs {
            lower_dirs: lowers,
            upper_dir: "/c/upper".into(),
            work_dir: "/c/work".into(),
            mount_point: "/c/rootfs".into(),
            readonly: false,
        }
    }

    #[test]
    fn short_lists_are_absolute() {
        let r = rootfs(vec!["/l/b".into(), "/l/a".into()]);
        assert_eq!(
            plan(&r),
            Plan::Absolute("lowerdir=/l/b:/l/a,upperdir=/c/upper,workdir=/c/work".into())
        );
    }

    #[test]
    fn long_lists_go_relative_then_to_the_new_api() {
        let deep = format!("/{}", "d".repeat(200));
        let lowers: Vec<PathBuf> = (0..40)
            .map(|i| PathBuf::from(format!("{deep}/layers/{i:02}")))
            .collect();
        match plan(&rootfs(lowers)) {
            Plan::Relative { dir, data } => {
                assert_eq!(dir, PathBuf::from(format!("{deep}/layers")));
                assert!(data.starts_with("lowerdir=00:01:"), "{data}");
            }
            other => panic!("{other:?}"),
        }
        let scattered: Vec<PathBuf> = (0..40)
            .map(|i| PathBuf::from(format!("/x/{i}-{}/layer", "y".repeat(120))))
            .collect();
        assert_eq!(plan(&rootfs(scattered)), Plan::NewMountApi);
    }

    #[test]
    fn common_parent_and_escapes() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(common_parent(&[p("/a/b/c"), p("/a/b/d/e")]), p("/a/b"));
        assert_eq!(common_parent(&[p("/a/b/c")]), p("/a/b"));
        assert_eq!(common_parent(&[p("/a/c"), p("/b/d")]), p("/"));
        assert_eq!(escape(Path::new("/a:b,c\\d")), "/a\\:b\\,c\\\\d");
    }

    #[test]
    fn a_single_relative_layer_is_dot() {
        let lower = format!("/{}/only", "z".repeat(4100));
        match plan(&rootfs(vec![lower.into()])) {
            Plan::Relative { data, .. } => assert!(data.starts_with("lowerdir=only,")),
            other => panic!("{other:?}"),
        }
    }
}
