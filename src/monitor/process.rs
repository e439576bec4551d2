//! The monitor's processes: forking `ferrocri-monitor executor` for a container or an exec
//! (its PID namespace chosen first, its fds moved into place), reading the executor's report
//! pipe until it is ready or has exec'd, and collecting an ExecSync's output and exit.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{ForkResult, Pid};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::unix::pipe;

use super::error::RequestError;
use super::protocol::{ExecResult, PidMode};
use super::stdio::{ChildFds, Parent, ParentEnds, Stdio};
use super::streams::ExecStdio;
use crate::executor::sync::{Message, REPORT_FD, START_BYTE, START_FD, executor_args};
use crate::executor::terminal::CONSOLE_FD;

/// How long a container's setup (mounts, pivot_root, …) may take before it is given up.
pub(super) const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Captured output is cut at 16 MiB per stream, as the CRI allows.
const MAX_EXEC_OUTPUT: u64 = 16 * 1024 * 1024;

/// An exec between its start and its end.
pub struct ExecRunning {
    pub(super) pid: Pid,
    pub(super) stdio: ExecStdio,
    pub(super) exit: tokio::sync::oneshot::Receiver<i32>,
}

/// The executor's ends of its two sync pipes: it reports on one and waits on the other.
pub(super) struct SyncFds<'a> {
    pub(super) report: &'a OwnedFd,
    pub(super) start: &'a OwnedFd,
}

/// Where a forked executor goes: its spec, its cgroup2 directory (when the host has one),
/// the PID namespace wanted, and the pod's one to return to afterwards.
pub(super) struct Fork<'a> {
    pub(super) spec: &'a Path,
    pub(super) cgroup2_dir: Option<&'a Path>,
    pub(super) pid_mode: PidMode,
    pub(super) pod_pid_ns: Option<&'a File>,
    /// An exec: its own process group, so a timeout or a client leaving kills everything it
    /// started.
    pub(super) own_group: bool,
}

/// Forks the executor with `stdio` and the sync pipes; the parent gets its pid.
pub(super) fn fork_executor(how: &Fork, stdio: &Stdio, sync: SyncFds) -> Result<Pid, RequestError> {
    enter_pid_namespace(how.pid_mode)?;
    let args = executor_args(how.spec);
    // SAFETY: the monitor is single-threaded, so the child may run ordinary code; it only
    // rearranges fds and execs.
    let forked = unsafe { super::spawn::fork_into(how.cgroup2_dir) };
    let restored = leave_pid_namespace(how.pod_pid_ns, how.pid_mode);
    match forked {
        Err(e) => Err(RequestError::os("cannot fork")(e)),
        Ok(ForkResult::Child) => {
            if how.own_group {
                let _ = nix::unistd::setsid();
            }
            let fds = stdio.child_ends();
            exec_executor(fds, sync.report.as_raw_fd(), sync.start.as_raw_fd(), &args)
        }
        Ok(ForkResult::Parent { child }) => {
            restored?;
            Ok(child)
        }
    }
}

fn own_pid_namespace() -> Result<File, RequestError> {
    File::open("/proc/self/ns/pid")
        .map_err(RequestError::io("cannot open the monitor's PID namespace"))
}

/// Points the PID namespace of the next child where the process wants it.
fn enter_pid_namespace(mode: PidMode) -> Result<(), RequestError> {
    let join =
        |ns: &File, what: &str| setns(ns, CloneFlags::CLONE_NEWPID).map_err(RequestError::os(what));
    match mode {
        PidMode::Pod => Ok(()),
        PidMode::Container => {
            // A new PID namespace can only be made from the monitor's own, not while
            // children still go into the pod's.
            join(
                &own_pid_namespace()?,
                "cannot return to the monitor's PID namespace",
            )?;
            unshare(CloneFlags::CLONE_NEWPID).map_err(RequestError::os(
                "cannot create the container's PID namespace",
            ))
        }
        PidMode::Host => join(&own_pid_namespace()?, "cannot use the host PID namespace"),
        PidMode::Target { pid } => {
            let target = File::open(format!("/proc/{pid}/ns/pid"))
                .map_err(RequestError::io(format!("target process {pid} is gone")))?;
            join(&target, "cannot join the target's PID namespace")
        }
    }
}

/// Back to the pod's PID namespace (or the monitor's) for later children.
fn leave_pid_namespace(pod_pid_ns: Option<&File>, mode: PidMode) -> Result<(), RequestError> {
    match (pod_pid_ns, mode) {
        (_, PidMode::Pod) => Ok(()),
        (Some(pod), _) => setns(pod, CloneFlags::CLONE_NEWPID)
            .map_err(RequestError::os("cannot return to the pod's PID namespace")),
        (None, _) => setns(own_pid_namespace()?, CloneFlags::CLONE_NEWPID).map_err(
            RequestError::os("cannot return to the monitor's PID namespace"),
        ),
    }
}

/// In the forked child: stdio on 0-2, report on 3, start on 4, a terminal's console socket
/// on 5, everything else closed; exec.
fn exec_executor(fds: ChildFds, report: RawFd, start: RawFd, args: &[std::ffi::OsString]) -> ! {
    use std::os::unix::ffi::OsStrExt;
    // Move the sources above the target numbers first so no dup2 clobbers another source.
    // SAFETY: plain fd syscalls in a single-threaded child about to exec.
    unsafe {
        let report = libc::fcntl(report, libc::F_DUPFD, 10);
        let start = libc::fcntl(start, libc::F_DUPFD, 10);
        let console = fds.console.map(|fd| libc::fcntl(fd, libc::F_DUPFD, 10));
        let stdio = fds.stdio.map(|fd| libc::fcntl(fd, libc::F_DUPFD, 10));
        for (target, fd) in stdio.iter().enumerate() {
            libc::dup2(*fd, target as i32);
        }
        libc::dup2(report, REPORT_FD);
        libc::dup2(start, START_FD);
        let first_closed = match console {
            Some(fd) => {
                libc::dup2(fd, CONSOLE_FD);
                CONSOLE_FD as u32 + 1
            }
            None => START_FD as u32 + 1,
        };
        libc::syscall(libc::SYS_close_range, first_closed, u32::MAX, 0u32);
        let program = c"/proc/self/exe";
        let owned: Vec<std::ffi::CString> = args
            .iter()
            .filter_map(|a| std::ffi::CString::new(a.as_bytes()).ok())
            .collect();
        let mut argv: Vec<*const libc::c_char> = vec![program.as_ptr()];
        argv.extend(owned.iter().map(|a| a.as_ptr()));
        argv.push(std::ptr::null());
        libc::execv(program.as_ptr(), argv.as_ptr());
        libc::_exit(127)
    }
}

/// Tells a ready executor to exec its process.
pub(super) fn send_start(start: &OwnedFd) -> Result<(), RequestError> {
    nix::unistd::write(start, &[START_BYTE])
        .map(drop)
        .map_err(RequestError::os("cannot tell the executor to start"))
}

/// An exec's executor from ready to exec'd: its stdio ends, the terminal at the client's
/// size, the start byte, then the report pipe until the exec happened.
pub(super) async fn start_exec(
    report: &mut BufReader<pipe::Receiver>,
    ends: ParentEnds,
    start: &OwnedFd,
    size: Option<(u16, u16)>,
) -> Result<Parent, RequestError> {
    wait_ready(report).await?;
    let parent = ends.finish()?;
    // The process starts at the client's size (a shell or `stty size` reads it at once; a
    // resize frame would come too late).
    if let (Some(pty), Some((width, height))) = (&parent.pty, size) {
        super::streams::resize(pty, width, height);
    }
    send_start(start)?;
    wait_exec(report).await?;
    Ok(parent)
}

/// Waits for `setup`, at most [`SETUP_TIMEOUT`]; when it fails or times out, `pid` is killed.
pub(super) async fn within_setup_time<T>(
    pid: Pid,
    what: &'static str,
    setup: impl Future<Output = Result<T, RequestError>>,
) -> Result<T, RequestError> {
    let result = tokio::time::timeout(SETUP_TIMEOUT, setup)
        .await
        .unwrap_or(Err(RequestError::Timeout(what, SETUP_TIMEOUT)));
    if result.is_err() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    result
}

/// Reads the report pipe until the executor is set up and waits for the start byte.
pub(super) async fn wait_ready(report: &mut BufReader<pipe::Receiver>) -> Result<(), RequestError> {
    loop {
        match next_message(report).await? {
            None => {
                let text = "the executor exited before it was ready";
                return Err(RequestError::Reported(text.into()));
            }
            Some(Message::Ready) => return Ok(()),
            Some(Message::Warning(text)) => eprintln!("monitor: executor: {text}"),
            Some(Message::Error(text)) => return Err(RequestError::Reported(text)),
        }
    }
}

/// Reads the report pipe until it closes on the exec (or the executor's error).
pub(super) async fn wait_exec(report: &mut BufReader<pipe::Receiver>) -> Result<(), RequestError> {
    loop {
        match next_message(report).await? {
            None => return Ok(()),
            Some(Message::Error(text)) => return Err(RequestError::Reported(text)),
            Some(_) => {}
        }
    }
}

async fn next_message(
    report: &mut BufReader<pipe::Receiver>,
) -> Result<Option<Message>, RequestError> {
    let mut line = String::new();
    match report.read_line(&mut line).await {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(Message::parse(line.trim_end_matches('\n')))),
        Err(e) => Err(RequestError::io("cannot read the executor's report")(e)),
    }
}

/// Collects an exec session's output and exit code; past `timeout` its whole process
/// group is killed and the result says so.
pub async fn finish_exec(running: ExecRunning, timeout: Option<Duration>) -> ExecResult {
    let ExecRunning {
        pid,
        stdio,
        mut exit,
    } = running;
    let read = |r: Option<pipe::Receiver>| async move {
        let mut buf = Vec::new();
        if let Some(r) = r {
            let _ = r.take(MAX_EXEC_OUTPUT).read_to_end(&mut buf).await;
        }
        buf
    };
    let (out_task, err_task) = (
        tokio::task::spawn_local(read(stdio.stdout)),
        tokio::task::spawn_local(read(stdio.stderr)),
    );
    let waited = match timeout {
        Some(limit) => tokio::time::timeout(limit, &mut exit).await.ok(),
        None => Some((&mut exit).await),
    };
    let (exit_code, timed_out) = match waited {
        Some(code) => (code.unwrap_or(-1), false),
        None => {
            let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
            let _ = kill(pid, Signal::SIGKILL);
            (exit.await.unwrap_or(137), true)
        }
    };
    // Output still held open by a process that escaped the group must not hang the reply.
    let grace = Duration::from_secs(2);
    let stdout = tokio::time::timeout(grace, out_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let stderr = tokio::time::timeout(grace, err_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    ExecResult {
        stdout,
        stderr,
        exit_code,
        timed_out,
    }
}
