//! Pinned network namespaces.
//!
//! A pod's network namespace is kept alive by bind-mounting its nsfs file onto a plain file
//! (the "pin"), as `ip netns add`, containerd and CRI-O do, so it outlives every process and
//! is removed only by [`remove`]. Namespace switches happen on a dedicated OS thread that exits
//! afterwards: a thread that changed namespace must never run anything else, and a tokio
//! worker may move a task between threads at any `.await`. These functions block; call them
//! from `spawn_blocking` in async code.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// Creates a new network namespace with `lo` up and pins it at `pin` (a file that must not
/// exist; its parent directories are created). On failure nothing is left behind: no pin file
/// and no mount.
pub fn create(pin: &Path) -> io::Result<()> {
    create_from(pin, "/proc/thread-self/ns/net")
}

/// [`create`], with the namespace file to pin as a parameter so tests can make the mount fail.
fn create_from(pin: &Path, ns_file: &str) -> io::Result<()> {
    if let Some(parent) = pin.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    // create_new: never mount over (or later delete) a file somebody else made.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(pin)
        .map_err(|e| with_path(e, "cannot create network namespace pin", pin))?;
    let result = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("netns-create".into())
            .spawn_scoped(s, || -> io::Result<()> {
                // Only this thread moves; the thread exits when the closure returns.
                nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| io::Error::other(format!("unshare(CLONE_NEWNET): {e}")))?;
                set_link_up("lo")?;
                // Last step: if it fails there is nothing mounted to undo.
                nix::mount::mount(
                    Some(ns_file),
                    pin,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| {
                    with_path(
                        e.into(),
                        "cannot bind-mount the network namespace onto",
                        pin,
                    )
                })
            })?
            .join()
            .map_err(|_| io::Error::other("network namespace thread panicked"))?
    });
    if result.is_err() {
        let _ = fs::remove_file(pin);
    }
    result
}

/// Unmounts and deletes a pin. Idempotent: a missing pin, or a pin that is no longer mounted,
/// is fine. The namespace itself disappears once nothing else holds it.
pub fn remove(pin: &Path) -> io::Result<()> {
    // A pin may have been mounted more than once (e.g. a crash between two attempts).
    for _ in 0..16 {
        match nix::mount::umount2(pin, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            // EINVAL: not a mount point any more.
            Err(Errno::EINVAL | Errno::ENOENT) => break,
            Err(e) => {
                return Err(with_path(
                    e.into(),
                    "cannot unmount network namespace pin",
                    pin,
                ));
            }
        }
    }
    match fs::remove_file(pin) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(with_path(e, "cannot delete network namespace pin", pin)),
    }
}

/// Runs `f` on a fresh OS thread that has joined the network namespace pinned at `pin`; the
/// thread exits afterwards. A panic in `f` is passed on to the caller.
///
/// Sockets created in `f` stay in the namespace after it returns; processes spawned in `f`
/// start in it.
pub fn run_in<T: Send>(pin: &Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let ns = File::open(pin).map_err(|e| with_path(e, "cannot open network namespace", pin))?;
    std::thread::scope(|s| {
        let thread = std::thread::Builder::new()
            .name("netns-run".into())
            .spawn_scoped(s, move || -> io::Result<T> {
                nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    with_path(e.into(), "cannot enter network namespace (setns)", pin)
                })?;
                Ok(f())
            })?;
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Whether `path` is a network namespace file (a live pin, or /proc/<pid>/ns/net); an empty
/// pin left by a lost mount is not.
pub fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Brings a link of the current thread's network namespace up (SIOCSIFFLAGS |= IFF_UP).
pub fn set_link_up(name: &str) -> io::Result<()> {
    let (sock, mut req) = read_flags(name)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: `req` is a valid ifreq naming the link; the kernel reads only within it.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } < 0 {
        return Err(link_error(name, "set flags"));
    }
    Ok(())
}

/// The flags (IFF_*) of a link in the current thread's network namespace.
pub fn link_flags(name: &str) -> io::Result<i32> {
    let (_, req) = read_flags(name)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    Ok(i32::from(unsafe { req.ifr_ifru.ifru_flags }))
}

/// An ioctl socket and the link's ifreq with its flags filled in (SIOCGIFFLAGS).
fn read_flags(name: &str) -> io::Result<(std::os::fd::OwnedFd, libc::ifreq)> {
    let mut req = ifreq(name)?;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| io::Error::other(format!("socket for interface ioctl: {e}")))?;
    // SAFETY: `req` is a valid, initialised ifreq naming the link; the kernel reads and writes
    // only within it.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(link_error(name, "get flags"));
    }
    Ok((sock, req))
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= req.ifr_name.len() || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn link_error(name: &str, what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("interface {name}: cannot {what}: {e}"))
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn mounted(path: &Path) -> bool {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let want = path.to_str().unwrap();
        info.lines()
            .any(|l| l.split(' ').nth(4).is_some_and(|mp| mp == want))
    }

    /// Removes the pin even when an assertion fails.
    struct Pin(PathBuf);
    impl Drop for Pin {
        fn drop(&mut self) {
            let _ = remove(&self.0);
        }
    }

    #[test]
    fn create_run_in_remove() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pin = Pin(dir.path().join("sub/pod-ns"));
        create(&pin.0).unwrap();
        assert!(mounted(&pin.0), "pin is not a mount point");
        assert!(is_netns(&pin.0));

        let host_ns = fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        let pin_ns = fs::metadata(&pin.0).unwrap().ino();
        assert_ne!(host_ns, pin_ns);
        let (inside_ns, lo_flags, links) = run_in(&pin.0, || {
            (
                fs::metadata("/proc/thread-self/ns/net").unwrap().ino(),
                link_flags("lo").unwrap(),
                fs::read_to_string("/proc/thread-self/net/dev").unwrap(),
            )
        })
        .unwrap();
        assert_eq!(inside_ns, pin_ns);
        assert_ne!(lo_flags & libc::IFF_UP, 0, "lo is down");
        let names: Vec<&str> = links
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next().map(str::trim))
            .collect();
        assert_eq!(names, ["lo"]);
        // The calling thread never moved.
        assert_eq!(
            fs::metadata("/proc/thread-self/ns/net").unwrap().ino(),
            host_ns
        );

        remove(&pin.0).unwrap();
        assert!(!mounted(&pin.0));
        assert!(!pin.0.exists());
        assert!(!is_netns(&pin.0));
        remove(&pin.0).unwrap();
        assert!(run_in(&pin.0, || ()).is_err());
    }

    #[test]
    fn failed_create_leaves_nothing_and_never_touches_existing_files() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("taken");
        fs::write(&existing, "keep").unwrap();
        let err = create(&existing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(fs::read_to_string(&existing).unwrap(), "keep");
        assert!(!mounted(&existing));

        // The parent is a file: nothing can be created.
        let under_file = existing.join("ns");
        assert!(create(&under_file).is_err());
        assert!(!mounted(&under_file));

        // The namespace exists but the mount fails: the pin file goes again.
        let pin = dir.path().join("ns");
        let err = create_from(&pin, "/nonexistent/ns/net").unwrap_err();
        assert!(err.to_string().contains("bind-mount"), "{err}");
        assert!(!pin.exists());
        assert!(!mounted(&pin));

        assert!(set_link_up("this-name-is-far-too-long").is_err());
    }

    #[test]
    fn run_in_passes_panics_and_errors_on() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pin = Pin(dir.path().join("ns"));
        create(&pin.0).unwrap();
        let panic = std::panic::catch_unwind(|| run_in(&pin.0, || panic!("inside")));
        assert!(panic.is_err());
        // A file that is not a namespace is refused by setns.
        let plain = dir.path().join("plain");
        fs::write(&plain, "").unwrap();
        let err = run_in(&plain, || ()).unwrap_err();
        assert!(err.to_string().contains("setns"), "{err}");
    }
}
