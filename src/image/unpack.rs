//! Extracting one OCI image layer into its own directory, laid out as an overlayfs lower layer.
//!
//! The input is an already-decompressed tar stream; the output directory is what overlayfs
//! expects of a `lowerdir`. OCI whiteouts (`dir/.wh.<name>`) become whiteout character devices
//! 0:0, opaque markers (`dir/.wh..wh..opq`) become the `trusted.overlay.opaque=y` xattr, and
//! every file type, owner, mode, time and xattr recorded in the tar is kept.
//!
//! Entry names are read as the ecosystem writes them (Go's `archive/tar` in containerd, Docker
//! and podman defines what images exist): a leading `/` or `./`, doubled slashes, a trailing
//! slash and `.`/`..` components that stay inside all name a path beneath the layer root, and an
//! entry for the root itself (`/`, `./`, `.`) sets the root's attributes. Hard-link targets are
//! read the same way.
//!
//! Safety does not rest on string checks alone. Entry paths are first normalised lexically (a
//! `..` that climbs above the layer root is refused); then each entry's parent directory is opened
//! with `openat2(RESOLVE_BENEATH)` relative to the layer directory, so the kernel refuses (EXDEV)
//! any walk that would leave it, whatever symlinks earlier entries planted on the way. The last
//! component is only ever touched with `*at` calls that do not follow a symlink there. Symlink
//! *targets* may point anywhere: only walking through them during extraction is dangerous.
//!
//! The tar crate only reads headers and data: its own `unpack` turns devices and fifos into
//! empty files and knows nothing of whiteouts. Numeric fields are parsed here (negative and
//! base-256 times, leading NULs), and the stream is read through [`PaddedReader`] so an archive
//! that stops right after its last entry's data (no padding, no end-of-archive blocks, as
//! `umoci` writes) ends cleanly, while one cut inside an entry's data or header is an error —
//! Go's reader draws the same line. GNU sparse entries (type `S`) are expanded by the tar crate
//! (holes are written as zeros); GNU sparse files in PAX form (`GNU.sparse.*` records, formats
//! 0.0, 0.1 and 1.0, see `sparse.rs`) are written here with real holes.
//!
//! Everything here blocks (and ends with `syncfs`); call it from `spawn_blocking`. It needs
//! root (chown, mknod, `trusted.*` xattrs), Linux ≥ 5.6 (openat2) and a mounted `/proc`
//! (xattrs on symlinks and devices are set through `/proc/self/fd`).

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Timestamps};
use rustix::fs::{Uid, XattrFlags};
use rustix::io::Errno;

use super::sparse::{self, PaxSparse};

mod error;
mod fs_at;
mod header;
mod names;
mod stream;

pub use error::{UnpackError, UnpackReason};
use error::{io_err, lossy};
use fs_at::{
    chown_nofollow, create_file, create_implicit_dir, dir_error, file_type_at, is_dot_or_dotdot,
    make_node, make_symlink, remove_existing, set_attributes, set_times,
};
use header::{Meta, pax_sparse};
use names::{Role, clean_path, cstring, depth, role};
use stream::{PaddedReader, StreamEnd};

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
/// PAX records of GNU sparse files (formats 0.0, 0.1, 1.0), read by `sparse.rs`.
const PAX_SPARSE_PREFIX: &[u8] = b"GNU.sparse.";
const BLOCK: u64 = 512;
/// The largest uid or gid chown can set: `u32::MAX` means "leave unchanged".
const MAX_OWNER_ID: i64 = u32::MAX as i64 - 1;
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

/// Caps on one layer's unpacked content (`[image]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerLimits {
    /// Bytes of regular-file data.
    pub max_bytes: u64,
    /// Tar entries applied.
    pub max_files: u64,
}

impl Default for LayerLimits {
    fn default() -> Self {
        let config = crate::config::ImageConfig::default();
        LayerLimits {
            max_bytes: config.max_layer_bytes,
            max_files: config.max_layer_files,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries applied, whiteouts included.
    pub entries: u64,
    /// Bytes of regular-file data written.
    pub bytes: u64,
}

/// The layer's tar stream: gunzipped or zstd-decoded when the first bytes say so (whatever
/// the media type claimed, as containerd does), as it is otherwise.
pub fn decompressed<'a, R: std::io::BufRead + 'a>(
    mut blob: R,
) -> std::io::Result<Box<dyn Read + 'a>> {
    use crate::image::manifest::Compression;
    Ok(match Compression::detect(blob.fill_buf()?) {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(blob)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(blob)?),
        Compression::None => Box::new(blob),
    })
}

/// Extracts the tar stream `reader` into `target` (an existing, empty directory), then syncs the
/// filesystem (syncfs on the target's fd) so the caller can mark the layer complete.
///
/// On error the directory holds a partial layer; the caller must discard it.
pub fn unpack_layer<R: Read>(
    reader: R,
    target: &Path,
    ctx: &LayerContext,
    limits: LayerLimits,
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
        limits,
    };
    let end = StreamEnd::default();
    let mut archive = tar::Archive::new(PaddedReader::new(reader, &end));
    let entries = archive
        .entries()
        .map_err(|e| fail(None, UnpackReason::Corrupt(e)))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| fail(None, UnpackReason::Corrupt(e)))?;
        let sparse = pax_sparse(&mut entry).map_err(|r| fail(None, r))?;
        // A PAX sparse file's header names a placeholder; its real name is a record.
        let raw_path = match sparse.as_ref().and_then(|s| s.name.clone()) {
            Some(name) => name,
            None => entry.path_bytes().into_owned(),
        };
        unpacker
            .unpack_entry(&mut entry, &raw_path, sparse.as_ref())
            .map_err(|r| fail(Some(&raw_path), r))?;
        // Whatever the entry did not read (a directory's data, say) is read now, so the check
        // below covers all of its data; for most entries this reads nothing.
        io::copy(&mut entry, &mut io::sink())
            .map_err(|e| fail(Some(&raw_path), UnpackReason::Corrupt(e)))?;
        if end.reached.get() {
            return Err(fail(Some(&raw_path), UnpackReason::TruncatedData));
        }
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

struct Unpacker {
    /// The layer directory; every path is resolved beneath it.
    root: OwnedFd,
    /// Directory times by cleaned path, applied at the end because adding children changes them.
    dir_times: BTreeMap<Vec<u8>, Timestamps>,
    stats: UnpackStats,
    buf: Vec<u8>,
    limits: LayerLimits,
}

impl Unpacker {
    fn unpack_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        raw_path: &[u8],
        sparse: Option<&PaxSparse>,
    ) -> Result<(), UnpackReason> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // Describes the archive, not a file; nothing here depends on it.
            return Ok(());
        }
        let parts = clean_path(raw_path)?;
        let meta = Meta::read(entry)?;
        self.stats.entries = self.stats.entries.saturating_add(1);
        if self.stats.entries > self.limits.max_files {
            return Err(UnpackReason::TooManyFiles(self.limits.max_files));
        }

        // Pre-POSIX archives mark directories with a trailing slash on a regular entry.
        let is_dir = kind.is_dir() || (kind.is_file() && raw_path.ends_with(b"/"));
        let role = role(&parts)?;
        if role != Role::Plain && is_dir {
            return Err(UnpackReason::BadWhiteout(
                "a whiteout cannot be a directory",
            ));
        }
        let Some((name, dirs)) = parts.split_last() else {
            return self.root_entry(is_dir, &meta);
        };
        match role {
            Role::Opaque => return self.mark_opaque(dirs),
            Role::Whiteout(hidden) => return self.whiteout(dirs, hidden),
            Role::Plain => {}
        }

        let parent = self.open_dir(dirs, true).map_err(dir_error)?;
        let name = cstring(name)?;
        if let Some(sparse) = sparse {
            if is_dir || !(kind.is_file() || kind.is_contiguous()) {
                return Err(UnpackReason::BadSparse("only a regular file can be sparse"));
            }
            self.make_sparse_file(&parent, &name, entry, &meta, sparse)
        } else if is_dir {
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

    /// An entry for the layer root itself (`/`, `./`, `.`): only its attributes can change. A
    /// root entry that is not a directory cannot replace the root; containerd skips it too.
    fn root_entry(&mut self, is_dir: bool, meta: &Meta) -> Result<(), UnpackReason> {
        if !is_dir {
            tracing::warn!("ignoring a layer entry that is not a directory but names the root");
            return Ok(());
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
        let mut file = create_file(parent, name)?;
        self.copy_data(entry, &mut file)?;
        drop(file);
        set_attributes(parent, name, meta, false)?;
        set_times(parent, name, &meta.times())
    }

    /// A GNU sparse file in PAX form: each chunk of data written at its offset, the rest left
    /// as holes, the file then extended to its real size.
    fn make_sparse_file<R: Read>(
        &mut self,
        parent: &OwnedFd,
        name: &CStr,
        entry: &mut tar::Entry<R>,
        meta: &Meta,
        sparse: &PaxSparse,
    ) -> Result<(), UnpackReason> {
        let (map, map_bytes) = match &sparse.map {
            Some(map) => (map.clone(), 0),
            None => sparse::read_map(entry).map_err(UnpackReason::BadSparse)?,
        };
        let stored = entry.size().saturating_sub(map_bytes);
        sparse::check(&map, sparse.real_size, stored).map_err(UnpackReason::BadSparse)?;
        let mut file = create_file(parent, name)?;
        for chunk in &map {
            file.seek(io::SeekFrom::Start(chunk.offset))
                .map_err(io_err("cannot seek in a sparse file"))?;
            let mut data = Read::take(&mut *entry, chunk.length);
            self.copy_data(&mut data, &mut file)?;
            if data.limit() != 0 {
                return Err(UnpackReason::TruncatedData);
            }
        }
        file.set_len(sparse.real_size)
            .map_err(io_err("cannot size a sparse file"))?;
        drop(file);
        set_attributes(parent, name, meta, false)?;
        set_times(parent, name, &meta.times())
    }

    fn copy_data(&mut self, entry: &mut impl Read, file: &mut File) -> Result<(), UnpackReason> {
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
            // Checked before the write: a bomb stops at the cap, not after filling the disk.
            self.stats.bytes = self.stats.bytes.saturating_add(n as u64);
            if self.stats.bytes > self.limits.max_bytes {
                return Err(UnpackReason::TooManyBytes(self.limits.max_bytes));
            }
            file.write_all(chunk)
                .map_err(io_err("cannot write file data"))?;
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
            UnpackReason::PathEscapes => UnpackReason::LinkEscapes(shown.clone()),
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
        dirs.sort_by_key(|(path, _)| Reverse(depth(path)));
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

#[cfg(test)]
mod tests;
