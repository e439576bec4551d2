//! The spec's mounts (proc, /dev, binds, volumes, …) inside the container root, and the
//! mount helpers the rest of the executor shares: read-only remounts that keep the source's
//! flags, recursive read-only, propagation.
//!
//! Every destination is resolved inside the root (see `inroot`) and mounted on through
//! `/proc/self/fd/N`; after a mount the destination is opened again, so that later calls
//! act on the new mount and not on the directory under it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::mount::{MsFlags, mount};
use nix::sys::statvfs::{FsFlags, fstatvfs};

use super::error::{Context, Error, Result};
use super::inroot::{Root, fd_path};
use super::options::{Bind, Options};
use super::spec::Mount;

/// Mounts `m` inside `root`; a bind is idmapped with `userns` when there is one.
pub fn apply(root: &Root, m: &Mount, userns: Option<&std::fs::File>) -> Result<()> {
    let options = Options::parse(&m.options);
    let mounted = match options.bind {
        Some(bind) => bind_mount(root, m, &options, bind, userns)?,
        None => filesystem_mount(root, m, &options)?,
    };
    finish(&mounted, &options)
}

fn filesystem_mount(root: &Root, m: &Mount, options: &Options) -> Result<OwnedFd> {
    let dest = root.ensure_dir(&m.destination, 0o755, None)?;
    let source = if m.source.is_empty() {
        &m.fstype
    } else {
        &m.source
    };
    mount(
        Some(source.as_str()),
        fd_path(&dest).as_str(),
        Some(m.fstype.as_str()),
        options.flags,
        options.data().as_deref(),
    )
    .context(|| format!("mount {} {source}", m.fstype))?;
    reopen(root, &m.destination)
}

fn bind_mount(
    root: &Root,
    m: &Mount,
    options: &Options,
    bind: Bind,
    userns: Option<&std::fs::File>,
) -> Result<OwnedFd> {
    // Followed on the host side on purpose: a symlinked host path is the usual way volumes
    // are laid out. The destination is what must stay inside the root.
    let source = std::fs::metadata(&m.source).context(|| format!("bind source {}", m.source))?;
    let dest = if source.is_dir() {
        root.ensure_dir(&m.destination, 0o755, None)?
    } else {
        root.ensure_file(&m.destination)?
    };
    let recursive = bind == Bind::Recursive;
    if let Some(userns) = userns {
        let tree = crate::userns::idmapped_tree(std::path::Path::new(&m.source), userns, recursive)
            .map_err(|e| Error::new(e.to_string()))?;
        rustix::mount::move_mount(
            &tree,
            "",
            &dest,
            "",
            rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH
                | rustix::mount::MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .context(|| format!("attach the idmapped bind of {}", m.source))?;
    } else {
        let mut flags = MsFlags::MS_BIND;
        if recursive {
            flags |= MsFlags::MS_REC;
        }
        mount(
            Some(m.source.as_str()),
            fd_path(&dest).as_str(),
            None::<&str>,
            flags,
            None::<&str>,
        )
        .context(|| format!("bind {}", m.source))?;
    }
    let mounted = reopen(root, &m.destination)?;
    // A bind ignores every flag but MS_REC: ro, nosuid, … need a remount.
    if !options.flags.is_empty() || !options.cleared.is_empty() {
        remount(&mounted, options.flags, options.cleared)?;
    }
    Ok(mounted)
}

/// What every kind of mount gets after it is in place.
fn finish(mounted: &OwnedFd, options: &Options) -> Result<()> {
    if options.recursive_readonly {
        recursive_readonly(mounted)?;
    }
    if let Some(propagation) = options.propagation {
        set_propagation(mounted, propagation)?;
    }
    Ok(())
}

/// The mount now at `path`, which must exist.
fn reopen(root: &Root, path: &str) -> Result<OwnedFd> {
    root.open_path(path)
        .context(|| format!("open {path} after mounting"))
}

/// Remounts the bind mount `mounted` with `flags`, keeping the flags it already has
/// (nosuid, nodev, noexec, ro, atime: a remount clears what it does not repeat, and inside a
/// user namespace the kernel refuses to clear the locked ones) unless `cleared` drops them.
pub fn remount(mounted: &impl AsFd, flags: MsFlags, cleared: MsFlags) -> Result<()> {
    let kept = current_flags(mounted)? - cleared;
    mount(
        None::<&str>,
        fd_path(mounted).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | kept,
        None::<&str>,
    )
    .context(|| "remount")
}

/// The per-mount flags of the mount `fd` is on.
fn current_flags(fd: &impl AsFd) -> Result<MsFlags> {
    let stat = fstatvfs(fd).context(|| "statvfs")?;
    let pairs = [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    Ok(pairs
        .iter()
        .filter(|(st, _)| stat.flags().contains(*st))
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms))
}

/// Makes the mount and every mount below it read-only (mount_setattr, Linux ≥ 5.12): a plain
/// remount only changes the top one.
pub fn recursive_readonly(mounted: &impl AsFd) -> Result<()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a valid C string, `attr` lives across the call and its size is
    // passed with it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mounted.as_fd().as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(Error::from(std::io::Error::last_os_error()))
            .context(|| "make read-only recursively (mount_setattr)");
    }
    Ok(())
}

pub fn set_propagation(mounted: &impl AsFd, propagation: MsFlags) -> Result<()> {
    mount(
        None::<&str>,
        fd_path(mounted).as_str(),
        None::<&str>,
        propagation,
        None::<&str>,
    )
    .context(|| "set propagation")
}
