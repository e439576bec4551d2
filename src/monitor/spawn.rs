//! Forking an executor straight into its container's cgroup.
//!
//! Moving a process into a cgroup (a write to `cgroup.procs`) takes the kernel's
//! `cgroup_threadgroup_rwsem` for writing, which waits for an RCU grace period unless a
//! hierarchy is mounted with `favordynmods`: about 10 ms on this project's test host, half of
//! a CreateContainer, and again for every exec. `clone3(CLONE_INTO_CGROUP)` (Linux 5.7) starts
//! the child in a cgroup2 directory instead, taking that lock only for reading. On a v2 host
//! the executor then has nothing left to move; on a hybrid host the v1 hierarchies still need
//! their writes. Where clone3 is refused (older kernel, a cgroup that cannot take processes)
//! a plain fork is used and the executor moves itself as before.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::unistd::{ForkResult, Pid, fork};

/// `struct clone_args` of clone3(2), up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// fork(), with the child starting in `cgroup2_dir` when one is given and the kernel agrees.
///
/// # Safety
/// As fork(): the caller is single-threaded, or the child only calls async-signal-safe
/// functions before it execs.
pub unsafe fn fork_into(cgroup2_dir: Option<&Path>) -> nix::Result<ForkResult> {
    if let Some(dir) = cgroup2_dir
        && let Ok(fd) = open_dir(dir)
    {
        // SAFETY: the caller's promise, as for fork(); clone3 without CLONE_VM gives the child
        // a copy of the address space exactly as fork() does.
        match unsafe { clone_into(&fd) } {
            Ok(result) => return Ok(result),
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "clone3 into the cgroup refused; forking")
            }
        }
    }
    // SAFETY: the caller's promise.
    unsafe { fork() }
}

fn open_dir(dir: &Path) -> nix::Result<OwnedFd> {
    use nix::fcntl::{OFlag, open};
    open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// # Safety
/// See [`fork_into`].
unsafe fn clone_into(cgroup: &OwnedFd) -> nix::Result<ForkResult> {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed; no stack is given, so the child
    // continues on a copy of this stack, as after fork().
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(nix::errno::Errno::last()),
        0 => Ok(ForkResult::Child),
        pid => Ok(ForkResult::Parent {
            child: Pid::from_raw(pid as i32),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child of fork_into with no cgroup, or with a directory that is not a cgroup (the
    /// kernel refuses clone3 there), runs and exits as after a fork.
    #[test]
    fn falls_back_to_fork() {
        let not_a_cgroup = tempfile::tempdir().unwrap();
        for dir in [None, Some(not_a_cgroup.path())] {
            // SAFETY: the child only calls _exit.
            match unsafe { fork_into(dir) }.unwrap() {
                ForkResult::Child => unsafe { libc::_exit(7) },
                ForkResult::Parent { child } => {
                    let status = nix::sys::wait::waitpid(child, None).unwrap();
                    assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 7));
                }
            }
        }
    }

    /// On a host with a cgroup2 tree (v2 or hybrid; root only), the child starts in the
    /// directory given, with no write to cgroup.procs.
    #[test]
    fn the_child_starts_in_the_cgroup() {
        let Ok(Some(dir)) = crate::cgroup::Cgroups::detect()
            .map_err(|_| ())
            .and_then(|c| c.unified_dir("/ferrocri-spawn-test").map_err(|_| ()))
        else {
            eprintln!("skipped: no cgroup2 tree");
            return;
        };
        if std::fs::create_dir_all(&dir).is_err() {
            eprintln!("skipped: cannot create {} (not root?)", dir.display());
            return;
        }
        // SAFETY: the child only waits for a signal.
        let child = match unsafe { fork_into(Some(&dir)) }.unwrap() {
            ForkResult::Child => loop {
                unsafe { libc::pause() };
            },
            ForkResult::Parent { child } => child,
        };
        let cgroup = std::fs::read_to_string(format!("/proc/{child}/cgroup")).unwrap();
        nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL).unwrap();
        nix::sys::wait::waitpid(child, None).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        assert!(
            cgroup.lines().any(|l| l == "0::/ferrocri-spawn-test"),
            "{cgroup}"
        );
    }
}
