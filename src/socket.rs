//! The CRI unix socket: replaced when stale, never stolen from a live daemon.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another daemon is serving on {0}; stop it first or choose another `socket`")]
    InUse(PathBuf),
    #[error("another ferrocri is using {0}; two daemons must not share `root_dir` or `socket`")]
    Locked(PathBuf),
    #[error("{0} exists and is not a socket; remove it or choose another `socket`")]
    NotASocket(PathBuf),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SocketError {
    let path = path.to_owned();
    move |source| SocketError::Io { what, path, source }
}

/// An exclusive advisory lock held for the daemon's lifetime; released when dropped or when
/// the process dies, so a crashed daemon never blocks the next start.
pub struct LockFile {
    _lock: Flock<File>,
}

impl LockFile {
    pub fn acquire(path: &Path) -> Result<LockFile, SocketError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err("cannot open lock file", path))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(LockFile { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(SocketError::Locked(path.to_owned())),
            Err((_, e)) => Err(SocketError::Io {
                what: "cannot lock",
                path: path.to_owned(),
                source: e.into(),
            }),
        }
    }
}

/// Binds the CRI socket at `path` with mode 0660.
///
/// A socket file nobody answers on is left over from a crash and is replaced; one that answers
/// belongs to a live daemon (ours or another runtime's) and makes this call fail.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(SocketError::NotASocket(path.to_owned()));
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => return Err(SocketError::InUse(path.to_owned())),
            Err(_) => {
                std::fs::remove_file(path).map_err(io_err("cannot remove stale socket", path))?
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot inspect", path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err("cannot bind", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io_err("cannot set permissions of", path))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stale_socket_is_replaced_live_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let first = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        assert!(matches!(bind(&path), Err(SocketError::InUse(_))));
        drop(first);
        // The file is still there but nobody answers: stale, so it is replaced.
        assert!(path.exists());
        bind(&path).unwrap();
    }

    #[test]
    fn regular_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        std::fs::write(&path, b"precious").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        assert!(matches!(bind(&path), Err(SocketError::NotASocket(_))));
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let held = LockFile::acquire(&path).unwrap();
        assert!(matches!(
            LockFile::acquire(&path),
            Err(SocketError::Locked(_))
        ));
        drop(held);
        LockFile::acquire(&path).unwrap();
    }
}
