//! File system calls relative to an open directory that never follow a symlink at the last
//! component: creating entries, setting their attributes, removing what an entry replaces.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Dir, FileType, Gid, Mode, OFlags, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::error::{UnpackReason, io_err, lossy};
use super::header::Meta;
use super::{IMPLICIT_DIR_MODE, OVERLAY_XATTR_PREFIX};

pub(super) fn is_dot_or_dotdot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

/// Creates a regular file for an entry. Unlinking first, never opening the old name, is what
/// keeps a symlink left there by an earlier entry from being written through, and a hard
/// link's other name unchanged.
pub(super) fn create_file(parent: &OwnedFd, name: &CStr) -> Result<File, UnpackReason> {
    remove_existing(parent, name)?;
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(io_err("cannot create file"))?;
    Ok(File::from(fd))
}

/// Maps a failure to open an entry's parent directory.
pub(super) fn dir_error(e: Errno) -> UnpackReason {
    match e {
        Errno::XDEV => UnpackReason::PathEscapes,
        Errno::NOSYS => UnpackReason::NoOpenat2,
        Errno::NOTDIR => io_err("a parent is not a directory")(e),
        other => io_err("cannot open or create the parent directory")(other),
    }
}

/// A directory the layer uses without listing it; its mode must not depend on the umask.
pub(super) fn create_implicit_dir(parent: &OwnedFd, name: &[u8]) -> Result<(), Errno> {
    let mode = Mode::from_raw_mode(IMPLICIT_DIR_MODE);
    rustix::fs::mkdirat(parent, name, mode)?;
    rustix::fs::chmodat(parent, name, mode, AtFlags::empty())
}

pub(super) fn make_symlink(
    parent: &OwnedFd,
    name: &CStr,
    target: &CStr,
    meta: &Meta,
) -> Result<(), UnpackReason> {
    remove_existing(parent, name)?;
    rustix::fs::symlinkat(target, parent, name).map_err(io_err("cannot create symlink"))?;
    set_attributes(parent, name, meta, true)?;
    set_times(parent, name, &meta.times())
}

/// Character and block devices and fifos.
pub(super) fn make_node(
    parent: &OwnedFd,
    name: &CStr,
    header: &tar::Header,
    meta: &Meta,
) -> Result<(), UnpackReason> {
    let kind = header.entry_type();
    let (file_type, dev) = if kind.is_fifo() {
        (FileType::Fifo, rustix::fs::makedev(0, 0))
    } else {
        let major = header.device_major().map_err(UnpackReason::Corrupt)?;
        let minor = header.device_minor().map_err(UnpackReason::Corrupt)?;
        let (Some(major), Some(minor)) = (major, minor) else {
            return Err(UnpackReason::Invalid("device entry without device numbers"));
        };
        let file_type = if kind.is_block_special() {
            FileType::BlockDevice
        } else {
            FileType::CharacterDevice
        };
        (file_type, rustix::fs::makedev(major, minor))
    };
    remove_existing(parent, name)?;
    rustix::fs::mknodat(parent, name, file_type, Mode::from_raw_mode(0o600), dev)
        .map_err(io_err("cannot create device or fifo"))?;
    set_attributes(parent, name, meta, false)?;
    set_times(parent, name, &meta.times())
}

/// Owner, then mode (chown clears setuid and setgid), then xattrs (chown also drops
/// `security.capability`). Times are set separately, last.
pub(super) fn set_attributes(
    parent: &OwnedFd,
    name: &CStr,
    meta: &Meta,
    is_symlink: bool,
) -> Result<(), UnpackReason> {
    chown_nofollow(parent, name, meta.uid, meta.gid)?;
    // Symlinks have no mode of their own, and chmodat would follow them. Anything else at
    // `name` was created by this entry a moment ago.
    if !is_symlink {
        rustix::fs::chmodat(parent, name, meta.mode, AtFlags::empty())
            .map_err(io_err("cannot chmod"))?;
    }
    set_xattrs(parent, name, &meta.xattrs)
}

pub(super) fn chown_nofollow(
    parent: &OwnedFd,
    name: &CStr,
    uid: Uid,
    gid: Gid,
) -> Result<(), UnpackReason> {
    rustix::fs::chownat(
        parent,
        name,
        Some(uid),
        Some(gid),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io_err("cannot chown"))
}

pub(super) fn set_times(
    parent: &OwnedFd,
    name: &CStr,
    times: &Timestamps,
) -> Result<(), UnpackReason> {
    rustix::fs::utimensat(parent, name, times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(io_err("cannot set times"))
}

/// Sets xattrs without following a symlink at `name`. There is no `lsetxattrat`, so the parent
/// is named through its fd in /proc; the kernel jumps straight to that directory.
pub(super) fn set_xattrs(
    parent: &OwnedFd,
    name: &CStr,
    xattrs: &[(Vec<u8>, Vec<u8>)],
) -> Result<(), UnpackReason> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let mut path = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.to_bytes());
    for (key, value) in xattrs {
        if key.starts_with(OVERLAY_XATTR_PREFIX) {
            tracing::warn!(key = %lossy(key), "ignoring an overlayfs xattr recorded in the layer");
            continue;
        }
        match rustix::fs::lsetxattr(&path[..], &key[..], value, XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::OPNOTSUPP) if key.starts_with(b"security.") => {
                tracing::debug!(key = %lossy(key), "filesystem does not support this xattr");
            }
            Err(e) => {
                return Err(UnpackReason::Xattr {
                    key: lossy(key),
                    source: e.into(),
                });
            }
        }
    }
    Ok(())
}

pub(super) fn file_type_at(
    parent: &OwnedFd,
    name: &CStr,
) -> Result<Option<FileType>, UnpackReason> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(io_err("cannot inspect an existing entry")(e)),
    }
}

/// Makes room for a new entry at `name`: within a layer the later entry wins.
pub(super) fn remove_existing(parent: &OwnedFd, name: &CStr) -> Result<(), UnpackReason> {
    match file_type_at(parent, name)? {
        None => Ok(()),
        Some(FileType::Directory) => remove_tree(parent.as_fd(), name)
            .map_err(io_err("cannot remove the directory being replaced")),
        Some(_) => rustix::fs::unlinkat(parent, name, AtFlags::empty())
            .map_err(io_err("cannot remove the entry being replaced")),
    }
}

/// One directory being emptied by `remove_tree`.
pub(super) struct Level {
    fd: OwnedFd,
    name: CString,
    subdirs: Vec<CString>,
}

/// Removes directory `name` and everything below it without following any symlink. Iterative,
/// so a hostile depth costs file descriptors (an error when exhausted), not the stack.
pub(super) fn remove_tree(parent: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    let mut stack = vec![empty_level(parent, name)?];
    loop {
        let Some(top) = stack.last_mut() else {
            return Ok(());
        };
        if let Some(subdir) = top.subdirs.pop() {
            let level = empty_level(top.fd.as_fd(), &subdir)?;
            stack.push(level);
            continue;
        }
        let Some(done) = stack.pop() else {
            return Ok(());
        };
        let above = stack.last().map_or(parent, |level| level.fd.as_fd());
        rustix::fs::unlinkat(above, &done.name, AtFlags::REMOVEDIR)?;
    }
}

/// Opens directory `name`, unlinks its non-directories and lists its subdirectories.
pub(super) fn empty_level(parent: BorrowedFd<'_>, name: &CStr) -> Result<Level, Errno> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut children = Vec::new();
    for child in Dir::read_from(&fd)? {
        let child = child?;
        if !is_dot_or_dotdot(child.file_name()) {
            children.push((child.file_name().to_owned(), child.file_type()));
        }
    }
    let mut subdirs = Vec::new();
    for (child, file_type) in children {
        let file_type = match file_type {
            FileType::Unknown => {
                let stat = rustix::fs::statat(&fd, &child, AtFlags::SYMLINK_NOFOLLOW)?;
                FileType::from_raw_mode(stat.st_mode)
            }
            known => known,
        };
        if file_type == FileType::Directory {
            subdirs.push(child);
        } else {
            rustix::fs::unlinkat(&fd, &child, AtFlags::empty())?;
        }
    }
    Ok(Level {
        fd,
        name: name.to_owned(),
        subdirs,
    })
}
