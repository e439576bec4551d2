//! The spec's `cgroup` mount, expanded as runc expands the OCI one: the container's own
//! cgroup at `/sys/fs/cgroup`, in the host's layout.
//!
//! - v2: one `cgroup2` mount.
//! - v1 and hybrid: a tmpfs (mode 755) holding one `cgroup` mount per hierarchy under the
//!   host's names (`memory`, `cpu,cpuacct`, `systemd`, and `unified` on hybrid hosts), links
//!   for comounted controllers (`cpu -> cpu,cpuacct`); the tmpfs is made read-only last.
//!
//! In the container's own cgroup namespace (entered after joining its cgroup) each mount's
//! root is the container's cgroup. A container in the host's cgroup namespace (privileged,
//! as containerd does) gets, as runc gives it, binds of its own cgroup directories on v1 and
//! hybrid hosts (the `unified` one too) and the whole tree on v2. The spec's flags (`ro`, `nosuid`, `nodev`, `noexec`) apply to each.

use nix::mount::{MsFlags, mount};
use rustix::io::Errno;

use super::error::{Context, Result};
use super::inroot::{Root, fd_path};
use super::mounts::remount;
use super::options::Options;
use super::spec::Mount;
use crate::cgroup::{Cgroups, ContainerMount};

/// Mounts the container's cgroups at `m.destination`. `cgroup` is the container's cgroup
/// path; `own_namespace` whether the process is in a cgroup namespace rooted there.
pub fn mount_cgroups(root: &Root, m: &Mount, cgroup: &str, own_namespace: bool) -> Result<()> {
    let flags = Options::parse(&m.options).flags;
    let hierarchies = Cgroups::detect()
        .context(|| "find the cgroup mounts")?
        .container_mounts();
    let top = m.destination.trim_end_matches('/');
    let one = Target {
        root,
        flags,
        cgroup,
        own_namespace,
    };
    if let [only] = hierarchies.as_slice()
        && only.dir.is_empty()
    {
        return one.mount(top, only);
    }
    let dest = root.ensure_dir(top, 0o755, None)?;
    mount(
        Some("tmpfs"),
        fd_path(&dest).as_str(),
        Some("tmpfs"),
        flags - MsFlags::MS_RDONLY,
        Some("mode=755"),
    )
    .context(|| "mount tmpfs")?;
    for h in &hierarchies {
        one.mount(&format!("{top}/{}", h.dir), h)?;
        for alias in &h.aliases {
            let link = format!("{top}/{alias}");
            let (parent, name) = root.parent_of(&link)?;
            match rustix::fs::symlinkat(h.dir.as_str(), &parent, name) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e).context(|| format!("symlink {link}")),
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        remount(&reopen(root, top)?, MsFlags::MS_RDONLY, MsFlags::empty())
            .context(|| format!("make {top} read-only"))?;
    }
    Ok(())
}

/// How each hierarchy is mounted.
struct Target<'a> {
    root: &'a Root,
    flags: MsFlags,
    cgroup: &'a str,
    own_namespace: bool,
}

impl Target<'_> {
    /// One hierarchy at `path` (inside the root; created if missing).
    fn mount(&self, path: &str, h: &ContainerMount) -> Result<()> {
        let dir = self.root.ensure_dir(path, 0o755, None)?;
        let target = fd_path(&dir);
        // Pure v2 (no directory of its own) in the host's namespace: the whole tree, as runc.
        if self.own_namespace || h.dir.is_empty() {
            let data = (!h.data.is_empty()).then_some(h.data.as_str());
            return mount(
                Some("cgroup"),
                target.as_str(),
                Some(h.fstype),
                self.flags,
                data,
            )
            .context(|| format!("mount {} {} on {path}", h.fstype, h.data));
        }
        let source = h.host_mount_point.join(self.cgroup.trim_start_matches('/'));
        mount(
            Some(&source),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .context(|| format!("bind {} on {path}", source.display()))?;
        // A bind takes no flags: they need a remount.
        remount(&reopen(self.root, path)?, self.flags, MsFlags::empty())
            .context(|| format!("remount {path}"))
    }
}

/// The mount now at `path`.
fn reopen(root: &Root, path: &str) -> Result<std::os::fd::OwnedFd> {
    root.open_path(path)
        .context(|| format!("open {path} after mounting"))
}
