//! Extracting one OCI image layer into its own directory, laid out as an overlayfs lower layer.
//!
//! The input is an already-decompressed tar stream; the output directory is what overlayfs
//! expects of a `lowerdir`. OCI whiteouts (`dir/.wh.<name>`) become whiteout character devices
//! 0:0, opaque markers (`dir/.wh..wh..opq`) become the `trusted.overlay.opaque=y` xattr, and
//! every file type, owner, mode, time and xattr recorded in the tar is kept.
//!
//! Safety does not rest on string checks alone. Entry paths are first normalised lexically (a
//! `..` that climbs above the layer root is refused); then each entry's parent directory is opened
//! with `openat2(RESOLVE_BENEATH)` relative to the layer directory, so the kernel refuses (EXDEV)
//! any walk that would leave it, whatever symlinks earlier entries planted on the way. The last
//! component is only ever touched with `*at` calls that do not follow a symlink there. Symlink
//! *targets* may point anywhere: only walking through them during extraction is dangerous.
//!
//! The tar crate only reads headers and data: its own `unpack` turns devices and fifos into
//! empty files and knows nothing of whiteouts.
//!
//! Everything here blocks (and ends with `syncfs`); call it from `spawn_blocking`. It needs
//! root (chown, mknod, `trusted.*` xattrs), Linux ≥ 5.6 (openat2) and a mounted `/proc`
//! (xattrs on symlinks and devices are set through `/proc/self/fd`).

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::fs::{Uid, XattrFlags};
use rustix::io::Errno;

/// `dir/.wh.<name>` hides `<name>` of the layers below.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Reserved for whiteout metadata; only the opaque marker is defined.
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// `dir/.wh..wh..opq` hides everything the layers below have in `dir`.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// overlayfs' own xattrs (redirects, metacopy, opaque, ...); a layer must not set them itself.
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
/// Mode of directories a layer uses without listing them.
const IMPLICIT_DIR_MODE: u32 = 0o755;
/// openat2 with RESOLVE_BENEATH answers EAGAIN when a rename raced the walk; retrying is correct.
const OPENAT2_RETRIES: usize = 16;
const COPY_BUFFER: usize = 128 * 1024;

/// Which layer of which image is being unpacked; only used to make errors say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerContext {
    pub image: String,
    pub layer: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries applied, whiteouts included.
    pub entries: u64,
    /// Bytes of regular-file data written.
    pub bytes: u64,
}

/// Why a layer could not be unpacked, naming the image, the layer and (when there is one) the
/// offending entry exactly as the tar spells it.
#[derive(Debug, thiserror::Error)]
#[error("cannot unpack layer {layer} of image {image}{}: {reason}", entry_label(.entry))]
pub struct UnpackError {
    pub image: String,
    pub layer: String,
    pub entry: Option<String>,
    pub reason: UnpackReason,
}

fn entry_label(entry: &Option<String>) -> String {
    entry
        .as_ref()
        .map(|path| format!(", entry {path:?}"))
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackReason {
    #[error("absolute path; layer entries must be relative to the layer root")]
    AbsolutePath,
    #[error("path escapes the layer directory")]
    PathEscapes,
    #[error("hard link target {0:?} escapes the layer directory")]
    LinkEscapes(String),
    #[error("hard link target {0:?} is a directory")]
    LinkToDirectory(String),
    #[error("hard link target {0:?} is not an earlier entry of this layer")]
    LinkTargetMissing(String),
    #[error("invalid whiteout: {0}")]
    BadWhiteout(&'static str),
    #[error("unsupported tar entry type {0:?}")]
    UnsupportedType(char),
    #[error("invalid entry: {0}")]
    Invalid(&'static str),
    #[error("corrupt tar stream: {0}")]
    Corrupt(io::Error),
    #[error("the target directory is not empty")]
    TargetNotEmpty,
    #[error("the kernel lacks openat2 (Linux 5.6 or later is required)")]
    NoOpenat2,
    #[error("cannot set xattr {key}: {source}")]
    Xattr { key: String, source: io::Error },
    #[error("{op}: {source}")]
    Io { op: &'static str, source: io::Error },
}

fn io_err<E: Into<io::Error>>(op: &'static str) -> impl FnOnce(E) -> UnpackReason {
    move |e| UnpackReason::Io {
        op,
        source: e.into(),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Extracts the tar stream `reader` into `target` (an existing, empty directory), then syncs the
/// filesystem (syncfs on the target's fd) so the caller can mark the layer complete.
///
/// On error the directory holds a partial layer; the caller must discard it.
pub fn unpack_layer<R: Read>(
    reader: R,
    target: &Path,
    ctx: &LayerContext,
) -> Result<UnpackStats, UnpackError> {
    let _span =
        tracing::debug_span!("unpack_layer", image = %ctx.image, layer = %ctx.layer).entered();
    let fail = |entry: Option<&[u8]>, reason| UnpackError {
        image: ctx.image.clone(),
        layer: ctx.layer.clone(),
        entry: entry.map(lossy),
        reason,
    };
    let root = open_target(target).map_err(|r| fail(None, r))?;
    let mut unpacker = Unpacker {
        root,
        dir_times: BTreeMap::new(),
        stats: UnpackStats::default(),
        buf: vec![0; COPY_BUFFER],
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| fail(None, UnpackReason::Corrupt(e)))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| fail(None, UnpackReason::Corrupt(e)))?;
        let raw_path = entry.path_bytes().into_owned();
        unpacker
            .unpack_entry(&mut entry, &raw_path)
            .map_err(|r| fail(Some(&raw_path), r))?;
    }
    let stats = unpacker.finish().map_err(|r| fail(None, r))?;
    tracing::debug!(
        entries = stats.entries,
        bytes = stats.bytes,
        "layer unpacked"
    );
    Ok(stats)
}

/// Opens the layer directory and checks it is empty: a leftover from an earlier attempt would
/// silently mix into this layer.
fn open_target(target: &Path) -> Result<OwnedFd, UnpackReason> {
    let root = rustix::fs::open(
        target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("cannot open the target directory"))?;
    let listing = Dir::read_from(&root).map_err(io_err("cannot list the target directory"))?;
    for child in listing {
        let child = child.map_err(io_err("cannot list the target directory"))?;
        if !is_dot_or_dotdot(child.file_name()) {
            return Err(UnpackReason::TargetNotEmpty);
        }
    }
    Ok(root)
}

fn is_dot_or_dotdot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

/// Splits an entry path into normal components (no empty, `.` or `..` ones); empty means the
/// layer root. `..` is resolved lexically and must not climb above the root.
fn clean_path(raw: &[u8]) -> Result<Vec<&[u8]>, UnpackReason> {
    if raw.contains(&0) {
        return Err(UnpackReason::Invalid("path contains a NUL byte"));
    }
    if raw.first() == Some(&b'/') {
        return Err(UnpackReason::AbsolutePath);
    }
    let mut parts = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(UnpackReason::PathEscapes);
                }
            }
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

/// What an entry's name makes of it, before its tar type is looked at.
#[derive(Debug, PartialEq, Eq)]
enum Role<'a> {
    Plain,
    /// Hide this name of the parent directory in the layers below.
    Whiteout(&'a [u8]),
    /// Hide all of the parent directory's content in the layers below.
    Opaque,
}

fn role<'a>(parts: &[&'a [u8]]) -> Result<Role<'a>, UnpackReason> {
    let Some((name, dirs)) = parts.split_last() else {
        return Ok(Role::Plain);
    };
    if dirs.iter().any(|dir| dir.starts_with(WHITEOUT_PREFIX)) {
        return Err(UnpackReason::BadWhiteout(
            "a parent directory has a whiteout name",
        ));
    }
    if *name == OPAQUE_MARKER {
        return Ok(Role::Opaque);
    }
    if name.starts_with(WHITEOUT_META_PREFIX) {
        return Err(UnpackReason::BadWhiteout("unknown whiteout metadata entry"));
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(Role::Plain),
        Some(b"" | b"." | b"..") => Err(UnpackReason::BadWhiteout("it names no file")),
        Some(hidden) => Ok(Role::Whiteout(hidden)),
    }
}

fn cstring(bytes: &[u8]) -> Result<CString, UnpackReason> {
    CString::new(bytes).map_err(|_| UnpackReason::Invalid("name contains a NUL byte"))
}

/// The attributes a tar header (and its PAX records) gives an entry.
struct Meta {
    uid: Uid,
    gid: Gid,
    /// Permission bits including setuid, setgid and sticky.
    mode: Mode,
    atime: Timespec,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<R>) -> Result<Meta, UnpackReason> {
        let header = entry.header();
        // The tar crate has already applied PAX `uid`/`gid` records to the header.
        let uid = owner_id(header.uid().map_err(UnpackReason::Corrupt)?)?;
        let gid = owner_id(header.gid().map_err(UnpackReason::Corrupt)?)?;
        let mode = header.mode().map_err(UnpackReason::Corrupt)? & 0o7777;
        let mut mtime = whole_seconds(header.mtime().map_err(UnpackReason::Corrupt)?)?;
        let mut atime = match header.as_gnu().map(|gnu| gnu.atime()) {
            Some(Ok(secs)) if secs != 0 => Some(whole_seconds(secs)?),
            _ => None,
        };
        let mut xattrs = Vec::new();
        if let Some(records) = entry.pax_extensions().map_err(UnpackReason::Corrupt)? {
            for record in records {
                let record = record.map_err(UnpackReason::Corrupt)?;
                let (key, value) = (record.key_bytes(), record.value_bytes());
                if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                    xattrs.push((name.to_vec(), value.to_vec()));
                } else if key == b"mtime" {
                    mtime = pax_time(value).ok_or(UnpackReason::Invalid("bad PAX mtime"))?;
                } else if key == b"atime" {
                    atime = Some(pax_time(value).ok_or(UnpackReason::Invalid("bad PAX atime"))?);
                }
            }
        }
        Ok(Meta {
            uid: Uid::from_raw_unchecked(uid),
            gid: Gid::from_raw_unchecked(gid),
            mode: Mode::from_raw_mode(mode),
            atime: atime.unwrap_or(mtime),
            mtime,
            xattrs,
        })
    }

    fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }
}

/// A numeric owner from the header; -1 would mean "leave unchanged" to chown.
fn owner_id(id: u64) -> Result<u32, UnpackReason> {
    u32::try_from(id)
        .ok()
        .filter(|&id| id != u32::MAX)
        .ok_or(UnpackReason::Invalid("uid or gid out of range"))
}

fn whole_seconds(secs: u64) -> Result<Timespec, UnpackReason> {
    let tv_sec = i64::try_from(secs).map_err(|_| UnpackReason::Invalid("time out of range"))?;
    Ok(Timespec { tv_sec, tv_nsec: 0 })
}

/// Parses a PAX time: decimal seconds, optionally negative, optionally with a fraction.
fn pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    // Nanoseconds: the first nine fraction digits, right-padded with zeros.
    let nanos = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0i64, |acc, digit| acc * 10 + i64::from(digit - b'0'));
    Some(match (negative, nanos) {
        (false, _) => Timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
        (true, 0) => Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        },
        (true, _) => Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nanos,
        },
    })
}

struct Unpacker {
    /// The layer directory; every path is resolved beneath it.
    root: OwnedFd,
    /// Directory times by cleaned path, applied at the end because adding children changes them.
    dir_times: BTreeMap<Vec<u8>, Timestamps>,
    stats: UnpackStats,
    buf: Vec<u8>,
}

impl Unpacker {
    fn unpack_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        raw_path: &[u8],
    ) -> Result<(), UnpackReason> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // Describes the archive, not a file; nothing here depends on it.
            return Ok(());
        }
        let parts = clean_path(raw_path)?;
        let meta = Meta::read(entry)?;
        self.stats.entries = self.stats.entries.saturating_add(1);

        let role = role(&parts)?;
        if role != Role::Plain && kind.is_dir() {
            return Err(UnpackReason::BadWhiteout(
                "a whiteout cannot be a directory",
            ));
        }
        let Some((name, dirs)) = parts.split_last() else {
            return self.root_entry(kind, &meta);
        };
        match role {
            Role::Opaque => return self.mark_opaque(dirs),
            Role::Whiteout(hidden) => return self.whiteout(dirs, hidden),
            Role::Plain => {}
        }

        let parent = self.open_dir(dirs, true).map_err(dir_error)?;
        let name = cstring(name)?;
        // Pre-POSIX archives mark directories with a trailing slash on a regular entry.
        let is_dir = kind.is_dir() || (kind.is_file() && raw_path.ends_with(b"/"));
        if is_dir {
            self.make_dir(&parent, &name, &meta, parts.join(&b'/'))
        } else if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
            self.make_file(&parent, &name, entry, &meta)
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .ok_or(UnpackReason::Invalid("symlink without a target"))?;
            make_symlink(&parent, &name, &cstring(&target)?, &meta)
        } else if kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .ok_or(UnpackReason::Invalid("hard link without a target"))?;
            self.make_hard_link(&parent, &name, &parts, &target)
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            make_node(&parent, &name, entry.header(), &meta)
        } else {
            Err(UnpackReason::UnsupportedType(char::from(kind.as_byte())))
        }
    }

    /// An entry for the layer root itself (`./`): only its attributes can change.
    fn root_entry(&mut self, kind: tar::EntryType, meta: &Meta) -> Result<(), UnpackReason> {
        if !kind.is_dir() {
            return Err(UnpackReason::Invalid(
                "only a directory can describe the layer root",
            ));
        }
        let root = self.open_dir(&[], false).map_err(dir_error)?;
        set_attributes(&root, c".", meta, false)?;
        self.dir_times.insert(Vec::new(), meta.times());
        Ok(())
    }

    /// Opens directory `dirs` beneath the layer root, creating missing components when
    /// `create`. The kernel refuses (EXDEV) any walk that would leave the root: `..` inside a
    /// symlink, an absolute symlink, or a chain of them.
    fn open_dir(&self, dirs: &[&[u8]], create: bool) -> Result<OwnedFd, Errno> {
        match self.resolve(&dirs.join(&b'/')) {
            Err(Errno::NOENT) if create => {}
            found => return found,
        }
        // Something is missing: walk from the root, creating one component at a time. Each
        // prefix is resolved again from the root, so every step has the same guarantee.
        let mut dir = self.resolve(b"")?;
        for (depth, component) in dirs.iter().enumerate() {
            let prefix = dirs.get(..=depth).unwrap_or(dirs).join(&b'/');
            dir = match self.resolve(&prefix) {
                Err(Errno::NOENT) => {
                    create_implicit_dir(&dir, component)?;
                    self.resolve(&prefix)?
                }
                found => found?,
            };
        }
        Ok(dir)
    }

    /// openat2(root, path, RESOLVE_BENEATH) for a directory; the empty path is the root.
    fn resolve(&self, path: &[u8]) -> Result<OwnedFd, Errno> {
        let path = if path.is_empty() { b"." } else { path };
        let mut retries = 0;
        loop {
            let result = rustix::fs::openat2(
                &self.root,
                path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            );
            match result {
                Err(Errno::AGAIN) if retries < OPENAT2_RETRIES => retries += 1,
                other => return other,
            }
        }
    }

    fn mark_opaque(&mut self, dirs: &[&[u8]]) -> Result<(), UnpackReason> {
        let dir = self.open_dir(dirs, true).map_err(dir_error)?;
        rustix::fs::fsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty()).map_err(|e| {
            UnpackReason::Xattr {
                key: OPAQUE_XATTR.to_owned(),
                source: e.into(),
            }
        })
    }

    /// An overlay whiteout: a character device 0:0, mode 0, owned by root.
    fn whiteout(&mut self, dirs: &[&[u8]], hidden: &[u8]) -> Result<(), UnpackReason> {
        let parent = self.open_dir(dirs, true).map_err(dir_error)?;
        let name = cstring(hidden)?;
        remove_existing(&parent, &name)?;
        rustix::fs::mknodat(
            &parent,
            &name,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(io_err("cannot create whiteout"))?;
        // A setgid parent would otherwise lend the whiteout its group.
        chown_nofollow(&parent, &name, Uid::ROOT, Gid::ROOT)
    }

    fn make_dir(
        &mut self,
        parent: &OwnedFd,
        name: &CStr,
        meta: &Meta,
        key: Vec<u8>,
    ) -> Result<(), UnpackReason> {
        // A directory entry for an existing directory only updates its attributes.
        if file_type_at(parent, name)? != Some(FileType::Directory) {
            remove_existing(parent, name)?;
            rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                .map_err(io_err("cannot create directory"))?;
        }
        set_attributes(parent, name, meta, false)?;
        self.dir_times.insert(key, meta.times());
        Ok(())
    }

    fn make_file<R: Read>(
        &mut self,
        parent: &OwnedFd,
        name: &CStr,
        entry: &mut tar::Entry<R>,
        meta: &Meta,
    ) -> Result<(), UnpackReason> {
        // Unlinking first, never opening the old name, is what keeps a symlink left there by an
        // earlier entry from being written through, and a hard link's other name unchanged.
        remove_existing(parent, name)?;
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_err("cannot create file"))?;
        let mut file = File::from(fd);
        self.copy_data(entry, &mut file)?;
        drop(file);
        set_attributes(parent, name, meta, false)?;
        set_times(parent, name, &meta.times())
    }

    fn copy_data<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        file: &mut File,
    ) -> Result<(), UnpackReason> {
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnpackReason::Corrupt(e)),
            };
            let chunk = self
                .buf
                .get(..n)
                .ok_or(UnpackReason::Invalid("reader returned more than asked"))?;
            file.write_all(chunk)
                .map_err(io_err("cannot write file data"))?;
            self.stats.bytes = self.stats.bytes.saturating_add(n as u64);
        }
    }

    /// A hard link to an earlier entry of this layer. The link entry's own attributes are not
    /// applied: the inode keeps those of the entry it links to (as GNU tar does).
    fn make_hard_link(
        &mut self,
        parent: &OwnedFd,
        name: &CStr,
        parts: &[&[u8]],
        raw_target: &[u8],
    ) -> Result<(), UnpackReason> {
        let shown = lossy(raw_target);
        let target = clean_path(raw_target).map_err(|reason| match reason {
            UnpackReason::AbsolutePath | UnpackReason::PathEscapes => {
                UnpackReason::LinkEscapes(shown.clone())
            }
            other => other,
        })?;
        let Some((target_name, target_dirs)) = target.split_last() else {
            return Err(UnpackReason::LinkToDirectory(shown));
        };
        if target == parts {
            return Err(UnpackReason::Invalid("hard link to itself"));
        }
        let target_parent = self.open_dir(target_dirs, false).map_err(|e| match e {
            Errno::XDEV => UnpackReason::LinkEscapes(shown.clone()),
            Errno::NOENT | Errno::NOTDIR => UnpackReason::LinkTargetMissing(shown.clone()),
            other => dir_error(other),
        })?;
        let target_name = cstring(target_name)?;
        match file_type_at(&target_parent, &target_name)? {
            None => return Err(UnpackReason::LinkTargetMissing(shown)),
            Some(FileType::Directory) => return Err(UnpackReason::LinkToDirectory(shown)),
            Some(_) => {}
        }
        remove_existing(parent, name)?;
        // Flags 0: a symlink target is linked itself, never followed.
        rustix::fs::linkat(&target_parent, &target_name, parent, name, AtFlags::empty())
            .map_err(io_err("cannot create hard link"))
    }

    fn finish(self) -> Result<UnpackStats, UnpackReason> {
        self.apply_dir_times()?;
        rustix::fs::syncfs(&self.root).map_err(io_err("cannot sync the layer's filesystem"))?;
        Ok(self.stats)
    }

    /// Sets directory times deepest first, once nothing will be added to them any more.
    fn apply_dir_times(&self) -> Result<(), UnpackReason> {
        let mut dirs: Vec<_> = self.dir_times.iter().collect();
        dirs.sort_by_key(|(path, _)| Reverse(path.iter().filter(|&&b| b == b'/').count()));
        for (path, times) in dirs {
            let parts: Vec<&[u8]> = path
                .split(|&b| b == b'/')
                .filter(|p| !p.is_empty())
                .collect();
            let (parent_dirs, name) = match parts.split_last() {
                Some((name, dirs)) => (dirs, cstring(name)?),
                None => (&[][..], c".".to_owned()),
            };
            // A later entry may have removed or replaced it; then its times no longer matter.
            let Ok(parent) = self.open_dir(parent_dirs, false) else {
                continue;
            };
            if file_type_at(&parent, &name)? == Some(FileType::Directory) {
                set_times(&parent, &name, times)?;
            }
        }
        Ok(())
    }
}

/// Maps a failure to open an entry's parent directory.
fn dir_error(e: Errno) -> UnpackReason {
    match e {
        Errno::XDEV => UnpackReason::PathEscapes,
        Errno::NOSYS => UnpackReason::NoOpenat2,
        Errno::NOTDIR => io_err("a parent is not a directory")(e),
        other => io_err("cannot open or create the parent directory")(other),
    }
}

/// A directory the layer uses without listing it; its mode must not depend on the umask.
fn create_implicit_dir(parent: &OwnedFd, name: &[u8]) -> Result<(), Errno> {
    let mode = Mode::from_raw_mode(IMPLICIT_DIR_MODE);
    rustix::fs::mkdirat(parent, name, mode)?;
    rustix::fs::chmodat(parent, name, mode, AtFlags::empty())
}

fn make_symlink(
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
fn make_node(
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
fn set_attributes(
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

fn chown_nofollow(parent: &OwnedFd, name: &CStr, uid: Uid, gid: Gid) -> Result<(), UnpackReason> {
    rustix::fs::chownat(
        parent,
        name,
        Some(uid),
        Some(gid),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io_err("cannot chown"))
}

fn set_times(parent: &OwnedFd, name: &CStr, times: &Timestamps) -> Result<(), UnpackReason> {
    rustix::fs::utimensat(parent, name, times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(io_err("cannot set times"))
}

/// Sets xattrs without following a symlink at `name`. There is no `lsetxattrat`, so the parent
/// is named through its fd in /proc; the kernel jumps straight to that directory.
fn set_xattrs(
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

fn file_type_at(parent: &OwnedFd, name: &CStr) -> Result<Option<FileType>, UnpackReason> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(io_err("cannot inspect an existing entry")(e)),
    }
}

/// Makes room for a new entry at `name`: within a layer the later entry wins.
fn remove_existing(parent: &OwnedFd, name: &CStr) -> Result<(), UnpackReason> {
    match file_type_at(parent, name)? {
        None => Ok(()),
        Some(FileType::Directory) => remove_tree(parent.as_fd(), name)
            .map_err(io_err("cannot remove the directory being replaced")),
        Some(_) => rustix::fs::unlinkat(parent, name, AtFlags::empty())
            .map_err(io_err("cannot remove the entry being replaced")),
    }
}

/// One directory being emptied by `remove_tree`.
struct Level {
    fd: OwnedFd,
    name: CString,
    subdirs: Vec<CString>,
}

/// Removes directory `name` and everything below it without following any symlink. Iterative,
/// so a hostile depth costs file descriptors (an error when exhausted), not the stack.
fn remove_tree(parent: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
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
fn empty_level(parent: BorrowedFd<'_>, name: &CStr) -> Result<Level, Errno> {
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
