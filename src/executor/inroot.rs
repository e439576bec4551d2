//! Paths inside the container's root, resolved by the kernel with
//! `openat2(RESOLVE_IN_ROOT)`: an absolute symlink or a `..` in the image (or in a volume a
//! running container of the same pod can change) stays inside the root instead of reaching
//! the host. Operations then act on the file descriptor (`/proc/self/fd/N` for mount(2)),
//! never on the path again, so nothing can swap a component in between.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::error::{Context, Result};

pub struct Root {
    fd: OwnedFd,
}

impl Root {
    /// The directory at `path` (a host path, followed normally) as a root.
    pub fn open(path: &Path) -> Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .context(|| format!("open {}", path.display()))?;
        Ok(Root { fd })
    }

    /// An `O_PATH` descriptor of `path` (absolute or not, taken as inside the root), with
    /// symlinks followed inside the root. Magic links (`/proc/self/...`) are refused: they
    /// would lead out of it.
    pub fn open_path(&self, path: &str) -> Result<OwnedFd, Errno> {
        self.open_with(path, OFlags::PATH)
    }

    fn open_with(&self, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
        // An empty path means the root itself.
        let path = if path.trim_matches('/').is_empty() {
            "."
        } else {
            path
        };
        loop {
            match rustix::fs::openat2(
                &self.fd,
                path,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                // A rename somewhere in the tree during the lookup: try again.
                Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
                other => return other,
            }
        }
    }

    /// Like [`Root::open_path`], but a missing `path` is created as a directory, with its
    /// missing parents, mode `mode` (minus the umask); `owner` gets the directories this
    /// call created.
    pub fn ensure_dir(&self, path: &str, mode: u32, owner: Option<(u32, u32)>) -> Result<OwnedFd> {
        let mut dir = self.open_path("/").context(|| "open the root")?;
        let mut prefix = String::new();
        for name in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            prefix.push('/');
            prefix.push_str(name);
            dir = match self.open_with(&prefix, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    self.make_dir(&dir, name, mode, owner)
                        .context(|| format!("create directory {prefix}"))?;
                    self.open_with(&prefix, OFlags::PATH | OFlags::DIRECTORY)
                        .context(|| format!("open {prefix}"))?
                }
                Err(e) => return Err(e).context(|| format!("open {prefix}")),
            };
        }
        Ok(dir)
    }

    fn make_dir(
        &self,
        parent: &OwnedFd,
        name: &str,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), Errno> {
        match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(mode)) {
            // Created meanwhile (a dangling symlink also lands here; the open after fails).
            Err(Errno::EXIST) => return Ok(()),
            other => other?,
        }
        if let Some((uid, gid)) = owner {
            chown_at(parent, name, uid, gid)?;
        }
        Ok(())
    }

    /// Like [`Root::open_path`], but a missing `path` is created as an empty file (and its
    /// parents as directories, mode 0755).
    pub fn ensure_file(&self, path: &str) -> Result<OwnedFd> {
        if let Ok(fd) = self.open_path(path) {
            return Ok(fd);
        }
        let (parent, name) = split_parent(path);
        let dir = self.ensure_dir(parent, 0o755, None)?;
        match rustix::fs::openat(
            &dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(_) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e).context(|| format!("create file {path}")),
        }
        self.open_path(path).context(|| format!("open {path}"))
    }

    /// The parent directory of `path` (created if missing) and the last component's name.
    pub fn parent_of<'p>(&self, path: &'p str) -> Result<(OwnedFd, &'p str)> {
        let (parent, name) = split_parent(path);
        Ok((self.ensure_dir(parent, 0o755, None)?, name))
    }
}

/// `("/dev/net", "tun")` for `"/dev/net/tun"`.
pub fn split_parent(path: &str) -> (&str, &str) {
    let path = path.trim_end_matches('/');
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// The path through which mount(2) and other path-only calls reach what `fd` refers to.
pub fn fd_path(fd: &impl AsFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// `chown` of `name` in `dir`, not following a symlink there.
pub fn chown_at(dir: &impl AsFd, name: &str, uid: u32, gid: u32) -> Result<(), Errno> {
    // Raw ids pass through unchanged: -1 ("leave as is") is what chown itself would do.
    let uid = rustix::fs::Uid::from_raw_unchecked(uid);
    let gid = rustix::fs::Gid::from_raw_unchecked(gid);
    rustix::fs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_parent_cases() {
        assert_eq!(split_parent("/dev/net/tun"), ("/dev/net", "tun"));
        assert_eq!(split_parent("/etc/hosts"), ("/etc", "hosts"));
        assert_eq!(split_parent("/x"), ("", "x"));
        assert_eq!(split_parent("x/"), ("", "x"));
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root_path = dir.path().join("root");
        std::fs::create_dir(&root_path).unwrap();
        // Absolute and relative escapes both land inside the root.
        std::os::unix::fs::symlink("/", root_path.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", root_path.join("rel")).unwrap();
        let root = Root::open(&root_path).unwrap();
        for link in ["abs", "rel"] {
            root.ensure_dir(&format!("/{link}/made/here"), 0o755, None)
                .unwrap();
            assert!(root_path.join("made/here").is_dir(), "{link}");
            std::fs::remove_dir_all(root_path.join("made")).unwrap();
        }
        root.ensure_file("/abs/etc/hosts").unwrap();
        assert!(root_path.join("etc/hosts").is_file());
        assert!(!dir.path().join("made").exists());
    }

    #[test]
    fn ensure_dir_chowns_only_what_it_created() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("old")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        root.ensure_dir("/old/new/deeper", 0o755, Some((1234, 5678)))
            .unwrap();
        use std::os::unix::fs::MetadataExt;
        let meta = |p: &str| std::fs::metadata(dir.path().join(p)).unwrap();
        assert_eq!(meta("old").uid(), 0);
        assert_eq!((meta("old/new").uid(), meta("old/new").gid()), (1234, 5678));
        assert_eq!(meta("old/new/deeper").uid(), 1234);
    }
}
