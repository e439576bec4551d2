//! The pod's built-in pause process. The monitor forks it (no exec: it shares the monitor's
//! memory pages, so a pod costs almost nothing more); it enters the pod's namespaces, applies
//! the pod's sysctls, then sleeps in `sigwait` — reaping orphans when it is PID 1 of the pod's
//! PID namespace and exiting on SIGTERM or SIGINT.

use std::os::fd::OwnedFd;

use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, waitpid};

use super::protocol::PodSpec;

/// Runs in the forked child. Reports "ok" or an error through `report`, then never returns.
pub fn run(spec: &PodSpec, report: OwnedFd) -> ! {
    super::title::set(
        super::title::PAUSE_COMM,
        &super::title::pause_words(&spec.sandbox_id),
    );
    // stdout is the monitor's ready pipe to the daemon: the pause must not hold it open.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
    }
    let outcome = enter_pod(spec);
    let message = match &outcome {
        Ok(()) => "ok".to_owned(),
        Err(e) => e.clone(),
    };
    let _ = nix::unistd::write(&report, message.as_bytes());
    drop(report);
    if outcome.is_err() {
        // SAFETY: _exit is async-signal-safe and skips the parent's atexit handlers.
        unsafe { libc::_exit(1) };
    }
    close_inherited_fds();
    sleep_forever()
}

/// Joins the pod network, creates the pod's IPC and UTS namespaces, names the host, applies
/// sysctls. The PID namespace was set up by the monitor before the fork.
fn enter_pod(spec: &PodSpec) -> Result<(), String> {
    if let Some(netns) = &spec.netns {
        let fd = std::fs::File::open(netns)
            .map_err(|e| format!("cannot open network namespace {}: {e}", netns.display()))?;
        setns(&fd, CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("cannot join network namespace {}: {e}", netns.display()))?;
    }
    if let Some(userns) = &spec.userns {
        // After the network (joining it needs the host's privileges), before the IPC and
        // UTS namespaces, so that they belong to the pod's user namespace.
        let file = std::fs::File::open(userns)
            .map_err(|e| format!("cannot open user namespace {}: {e}", userns.display()))?;
        crate::userns::join(&file)?;
    }
    let mut flags = CloneFlags::empty();
    if spec.private_ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    if spec.private_uts {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    unshare(flags).map_err(|e| format!("cannot create the pod's IPC/UTS namespaces: {e}"))?;
    if spec.private_uts && !spec.hostname.is_empty() {
        nix::unistd::sethostname(&spec.hostname)
            .map_err(|e| format!("cannot set hostname {:?}: {e}", spec.hostname))?;
    }
    for (key, value) in &spec.sysctls {
        write_sysctl(key, value)?;
    }
    Ok(())
}

/// Writes a sysctl in the namespaces of the calling process (`net.*` in the pod network,
/// `kernel.shm*` and `fs.mqueue.*` in the pod IPC namespace).
fn write_sysctl(key: &str, value: &str) -> Result<(), String> {
    let path =
        super::layout::sysctl_path(key).ok_or_else(|| format!("invalid sysctl name {key:?}"))?;
    std::fs::write(&path, value).map_err(|e| format!("cannot set sysctl {key}={value}: {e}"))
}

fn close_inherited_fds() {
    // The monitor's sockets and pipes must not be held open by the pause.
    // SAFETY: plain syscall on integers; closing fds we no longer use.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
}

fn sleep_forever() -> ! {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        signals.add(s);
    }
    // Blocked signals are queued even for the init of a PID namespace, so sigwait sees them.
    let _ = signals.thread_block();
    loop {
        match signals.wait() {
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => unsafe { libc::_exit(0) },
            Ok(Signal::SIGCHLD) => reap_all(),
            _ => {}
        }
    }
}

fn reap_all() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
}

/// Reads the pause's report: Ok on "ok", the error text otherwise.
pub fn read_report(fd: OwnedFd) -> Result<(), String> {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        match nix::unistd::read(&fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("cannot read the pause process's report: {e}")),
        }
        if len == buf.len() {
            break;
        }
    }
    match std::str::from_utf8(&buf[..len]) {
        Ok("ok") => Ok(()),
        Ok("") => Err("the pause process died before it was ready".into()),
        Ok(message) => Err(message.to_owned()),
        Err(_) => Err("the pause process sent an unreadable report".into()),
    }
}
