//! The monitor's containers: it forks each one (the child execs `ferrocri-monitor executor`), holds
//! its stdio and writes it to the CRI log, lets it run on StartContainer, signals it, reaps
//! it and records its exit durably in `<pod dir>/containers/<id>/exit.json` — all of which
//! keeps working while the daemon is away. It also starts exec processes (ExecSync and exec
//! sessions) and hands attach sessions a container's output and stdin.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{ForkResult, Pid};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::unix::pipe;

use super::fanout::{Fanout, Subscription};
use super::layout::{EXIT_FILE, EXITS_FILE, Exit, container_dir, write_exit};
use super::logs::{LogWriter, Stream};
use super::protocol::{AttachRequest, CreateRequest, ExecResult, PidMode, StdioRequest};
use super::stdin::StdinSender;
use super::streams::{ExecStdio, Input, StdinEnd};
use crate::executor::sync::{Message, REPORT_FD, START_BYTE, START_FD, executor_args};
use crate::executor::terminal::CONSOLE_FD;

/// How long a container's setup (mounts, pivot_root, …) may take before it is given up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// An exec between its start and its end.
pub struct ExecRunning {
    pub(super) pid: Pid,
    pub(super) stdio: ExecStdio,
    pub(super) exit: tokio::sync::oneshot::Receiver<i32>,
}

/// Captured output is cut at 16 MiB per stream, as the CRI allows.
const MAX_EXEC_OUTPUT: u64 = 16 * 1024 * 1024;

struct Container {
    pid: Pid,
    /// Write end of the start pipe until StartContainer.
    start: Option<OwnedFd>,
    /// Read end of the report pipe until the exec is confirmed.
    report: Option<BufReader<pipe::Receiver>>,
    cgroup: String,
    oom_kills_before: u64,
    log: Rc<RefCell<Option<LogWriter>>>,
    /// Output to attach sessions.
    fanout: Rc<RefCell<Fanout>>,
    /// The container's stdin until it closes (stdin_once) or the container exits.
    stdin: Rc<RefCell<Option<StdinSender>>>,
    stdin_once: bool,
    /// The pty master (tty containers), for resizes.
    pty: Option<Rc<OwnedFd>>,
    exited: bool,
}

#[derive(Default)]
pub struct Containers {
    pod_dir: PathBuf,
    /// The pod's PID namespace (when it has one), to return to after a container got another.
    pod_pid_ns: Option<std::fs::File>,
    running: HashMap<String, Container>,
    by_pid: HashMap<Pid, String>,
    /// Exec sessions waiting for their process to exit.
    exec_waiters: HashMap<Pid, tokio::sync::oneshot::Sender<i32>>,
    exec_count: u64,
    /// Exits recorded so far (see [`EXITS_FILE`]).
    exit_count: u64,
    /// The host's cgroup hierarchies, to start executors in their cgroup (see `spawn`).
    cgroups: Option<crate::cgroup::Cgroups>,
}

impl Containers {
    pub fn new(pod_dir: &Path, pause: Pid, pod_has_pid_ns: bool) -> Containers {
        let pod_pid_ns = pod_has_pid_ns
            .then(|| std::fs::File::open(format!("/proc/{pause}/ns/pid")).ok())
            .flatten();
        let containers = Containers {
            pod_dir: pod_dir.to_owned(),
            pod_pid_ns,
            cgroups: crate::cgroup::Cgroups::detect().ok(),
            ..Default::default()
        };
        containers.write_exit_count();
        containers
    }

    fn write_exit_count(&self) {
        let tmp = self.pod_dir.join(".exits.tmp");
        let path = self.pod_dir.join(EXITS_FILE);
        if let Err(e) = std::fs::write(&tmp, self.exit_count.to_string())
            .and_then(|()| std::fs::rename(&tmp, &path))
        {
            eprintln!("monitor: cannot write the exit count: {e}");
            // Without the file the daemon reads every exit file: slower, never wrong. The
            // count in memory goes on, so a later file never shows a count already seen.
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Forks the container's executor and waits until it is set up and waiting to exec.
    pub async fn create(&mut self, request: CreateRequest) -> Result<i32, String> {
        if self.running.contains_key(&request.id) {
            return Err(format!("container {} already exists", request.id));
        }
        let dir = container_dir(&self.pod_dir, &request.id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let _ = std::fs::remove_file(dir.join(EXIT_FILE));
        let spec: crate::executor::spec::ContainerSpec = std::fs::read(&request.spec)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("cannot read spec {}: {e}", request.spec.display()))?;
        let log = open_log(&request.log_path)?;
        let (report_r, report_w) = pipe_pair()?;
        let (start_r, start_w) = pipe_pair()?;
        let stdio = Stdio::new(StdioRequest {
            tty: request.tty,
            stdin: request.stdin,
            stdout: true,
            stderr: true,
        })?;
        let cgroup2_dir = self.cgroup2_dir(&spec.cgroup);
        let pid = self.fork_executor(
            &request,
            cgroup2_dir.as_deref(),
            &stdio,
            &report_w,
            &start_r,
        )?;
        drop((report_w, start_r));
        let ends = stdio.parent_ends();
        let mut report = BufReader::new(receiver(report_r)?);
        let ready = tokio::time::timeout(SETUP_TIMEOUT, wait_ready(&mut report)).await;
        let set_up = match ready {
            Ok(Ok(())) => ends.finish().and_then(|parent| {
                let stdin = parent.stdin.map(super::stdin::forward).transpose()?;
                Ok((stdin, parent.outputs, parent.pty))
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("setup took longer than {SETUP_TIMEOUT:?}")),
        };
        let (stdin, outputs, pty) = match set_up {
            Ok(ends) => ends,
            Err(e) => {
                let _ = kill(pid, Signal::SIGKILL);
                return Err(e);
            }
        };
        let log = Rc::new(RefCell::new(log));
        let fanout = Rc::new(RefCell::new(Fanout::new(outputs.len())));
        for (fd, stream) in outputs {
            pump(fd, stream, log.clone(), fanout.clone());
        }
        let oom_kills_before = oom_kills(&spec.cgroup);
        self.by_pid.insert(pid, request.id.clone());
        self.running.insert(
            request.id,
            Container {
                pid,
                start: Some(start_w),
                report: Some(report),
                cgroup: spec.cgroup,
                oom_kills_before,
                log,
                fanout,
                stdin: Rc::new(RefCell::new(stdin)),
                stdin_once: request.stdin_once,
                pty: pty.map(Rc::new),
                exited: false,
            },
        );
        Ok(pid.as_raw())
    }

    /// Lets a created container exec its process; Ok once the exec happened.
    pub async fn start(&mut self, id: &str) -> Result<(), String> {
        let container = self
            .running
            .get_mut(id)
            .ok_or_else(|| format!("container {id} is not known to this monitor"))?;
        let start = container
            .start
            .take()
            .ok_or_else(|| format!("container {id} was already started"))?;
        nix::unistd::write(&start, &[START_BYTE]).map_err(|e| format!("cannot start {id}: {e}"))?;
        drop(start);
        let Some(mut report) = container.report.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SETUP_TIMEOUT, wait_exec(&mut report)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "container {id} did not exec within {SETUP_TIMEOUT:?}"
            )),
        }
    }

    /// Sends `signal` to the container's process (ignored once it has exited).
    pub fn signal(&self, id: &str, signal: i32) -> Result<(), String> {
        let container = self
            .running
            .get(id)
            .ok_or_else(|| format!("container {id} is not known to this monitor"))?;
        if container.exited {
            return Ok(());
        }
        let signal = Signal::try_from(signal).map_err(|e| format!("signal {signal}: {e}"))?;
        match kill(container.pid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(format!("cannot signal {id}: {e}")),
        }
    }

    /// Forgets a container; one that never started is told to exit without running.
    pub fn forget(&mut self, id: &str) {
        if let Some(container) = self.running.remove(id) {
            self.by_pid.remove(&container.pid);
            if !container.exited {
                let _ = kill(container.pid, Signal::SIGKILL);
            }
            // Its exit will not be recorded any more: attach sessions end without one.
            container.fanout.borrow_mut().close();
        }
    }

    /// Reopens a container's log file after kubelet rotated it.
    pub fn reopen_log(&self, id: &str) -> Result<(), String> {
        let container = self
            .running
            .get(id)
            .ok_or_else(|| format!("container {id} is not known to this monitor"))?;
        match container.log.borrow_mut().as_mut() {
            Some(log) => log
                .reopen()
                .map_err(|e| format!("cannot reopen the log of {id}: {e}")),
            None => Ok(()),
        }
    }

    /// Called for every reaped child: records a container's exit durably, or hands an exec
    /// session its exit code.
    pub fn exited(&mut self, pid: Pid, code: i32) {
        if let Some(waiter) = self.exec_waiters.remove(&pid) {
            let _ = waiter.send(code);
            return;
        }
        let Some(id) = self.by_pid.get(&pid).cloned() else {
            return;
        };
        let Some(container) = self.running.get_mut(&id) else {
            return;
        };
        container.exited = true;
        // Nobody can write to it any more; the forwarder closes once sessions let go.
        container.stdin.borrow_mut().take();
        if !container.fanout.borrow_mut().exited(code) {
            // Output held open by processes that escaped the container must not keep
            // attach sessions from getting the exit.
            let fanout = container.fanout.clone();
            tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                fanout.borrow_mut().finish();
            });
        }
        let oom_killed = oom_kills(&container.cgroup) > container.oom_kills_before;
        let exit = Exit {
            code,
            finished_at: crate::ids::now_nanos(),
            oom_killed,
        };
        if let Err(e) = write_exit(&container_dir(&self.pod_dir, &id), &exit) {
            eprintln!("monitor: cannot record the exit of {id}: {e}");
        }
        self.exit_count += 1;
        self.write_exit_count();
        eprintln!("monitor: container {id} exited with {code}");
    }

    /// Every container's pid and whether it still runs.
    pub fn list(&self) -> Vec<(String, i32, bool)> {
        self.running
            .iter()
            .map(|(id, c)| (id.clone(), c.pid.as_raw(), !c.exited))
            .collect()
    }

    /// Every exited container's output reached its log and its attach sessions got the exit.
    pub fn output_done(&self) -> bool {
        self.running
            .values()
            .all(|c| !c.exited || c.fanout.borrow().is_finished())
    }

    /// Attach sessions get their container's exit now, even with output still open.
    pub fn finish_sessions(&self) {
        for container in self.running.values().filter(|c| c.exited) {
            container.fanout.borrow_mut().finish();
        }
    }

    /// SIGKILL to every container (pod shutdown).
    pub fn kill_all(&self) {
        for container in self.running.values().filter(|c| !c.exited) {
            let _ = kill(container.pid, Signal::SIGKILL);
        }
    }

    /// Starts a command inside a running container (its namespaces, root, user and
    /// limits) with the stdio asked for, and returns once it runs.
    pub async fn exec_start(
        &mut self,
        id: &str,
        args: &[String],
        stdio: StdioRequest,
        size: Option<(u16, u16)>,
    ) -> Result<ExecRunning, String> {
        let target = self.running_container(id)?.pid;
        let dir = container_dir(&self.pod_dir, id);
        let mut spec: crate::executor::spec::ContainerSpec = std::fs::read(dir.join("spec.json"))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("cannot read the container's spec: {e}"))?;
        spec.args = args.to_vec();
        spec.exec_in = Some(target.as_raw());
        spec.tty = stdio.tty;
        self.exec_count += 1;
        let spec_path = dir.join(format!("exec-{}.json", self.exec_count));
        let json = serde_json::to_vec(&spec).map_err(|e| e.to_string())?;
        std::fs::write(&spec_path, json).map_err(|e| format!("cannot write the exec spec: {e}"))?;
        let cgroup2_dir = self.cgroup2_dir(&spec.cgroup);
        let result = self
            .run_exec(target, &spec_path, cgroup2_dir.as_deref(), stdio, size)
            .await;
        let _ = std::fs::remove_file(&spec_path);
        result
    }

    /// An attach session's share of a running container: its output from now on, its
    /// stdin if it has one and the session asks for it, and its pty for resizes.
    pub(super) fn attach(&self, request: &AttachRequest) -> Result<(Subscription, Input), String> {
        let container = self.running_container(&request.id)?;
        let output = container
            .fanout
            .borrow_mut()
            .subscribe(request.stdout, request.stderr)
            .ok_or_else(|| format!("container {} is not running", request.id))?;
        let stdin = request
            .stdin
            .then(|| container.stdin.borrow().clone())
            .flatten();
        let stdin_end = if container.stdin_once {
            StdinEnd::CloseContainer(container.stdin.clone())
        } else {
            StdinEnd::Detach
        };
        let input = Input {
            stdin,
            stdin_end,
            pty: container.pty.clone(),
        };
        Ok((output, input))
    }

    fn running_container(&self, id: &str) -> Result<&Container, String> {
        let container = self
            .running
            .get(id)
            .ok_or_else(|| format!("container {id} is not known to this monitor"))?;
        if container.exited || container.start.is_some() {
            return Err(format!("container {id} is not running"));
        }
        Ok(container)
    }

    /// The container cgroup's cgroup2 directory, if the host has a cgroup2 tree.
    fn cgroup2_dir(&self, cgroup: &str) -> Option<PathBuf> {
        if cgroup.is_empty() {
            return None;
        }
        self.cgroups.as_ref()?.unified_dir(cgroup).ok().flatten()
    }

    async fn run_exec(
        &mut self,
        target: Pid,
        spec_path: &Path,
        cgroup2_dir: Option<&Path>,
        stdio: StdioRequest,
        size: Option<(u16, u16)>,
    ) -> Result<ExecRunning, String> {
        let (report_r, report_w) = pipe_pair()?;
        let (start_r, start_w) = pipe_pair()?;
        let stdio = Stdio::new(stdio)?;
        // The session joins the container's PID namespace, whatever it is.
        let target_ns = std::fs::File::open(format!("/proc/{target}/ns/pid"))
            .map_err(|e| format!("container process {target} is gone: {e}"))?;
        setns(&target_ns, CloneFlags::CLONE_NEWPID)
            .map_err(|e| format!("cannot enter the container's PID namespace: {e}"))?;
        let args = executor_args(spec_path);
        // SAFETY: single-threaded monitor; the child only rearranges fds and execs.
        let forked = unsafe { super::spawn::fork_into(cgroup2_dir) };
        let restored = self.leave_pid_namespace(PidMode::Container);
        let pid = match forked {
            Err(e) => return Err(format!("cannot fork: {e}")),
            Ok(ForkResult::Child) => {
                // Its own process group, so a timeout or a client leaving kills everything
                // it started.
                let _ = nix::unistd::setsid();
                exec_executor(
                    stdio.child_ends(),
                    report_w.as_raw_fd(),
                    start_r.as_raw_fd(),
                    &args,
                )
            }
            Ok(ForkResult::Parent { child }) => child,
        };
        restored?;
        drop((report_w, start_r));
        let (exit_tx, exit) = tokio::sync::oneshot::channel();
        self.exec_waiters.insert(pid, exit_tx);
        let ends = stdio.parent_ends();
        let mut report = BufReader::new(receiver(report_r)?);
        let started = async {
            wait_ready(&mut report).await?;
            let parent = ends.finish()?;
            // The process starts at the client's size (a shell or `stty size` reads it at
            // once; a resize frame would come too late).
            if let (Some(pty), Some((width, height))) = (&parent.pty, size) {
                super::streams::resize(pty, width, height);
            }
            nix::unistd::write(&start_w, &[START_BYTE])
                .map_err(|e| format!("cannot start the exec: {e}"))?;
            wait_exec(&mut report).await?;
            Ok(parent)
        };
        let parent = match tokio::time::timeout(SETUP_TIMEOUT, started)
            .await
            .unwrap_or_else(|_| Err("the exec did not start in time".into()))
        {
            Ok(parent) => parent,
            Err(e) => {
                let _ = kill(pid, Signal::SIGKILL);
                return Err(e);
            }
        };
        let mut stdout = None;
        let mut stderr = None;
        for (fd, stream) in parent.outputs {
            let reader = Some(nonblocking_receiver(fd)?);
            match stream {
                Stream::Stdout => stdout = reader,
                Stream::Stderr => stderr = reader,
            }
        }
        Ok(ExecRunning {
            pid,
            stdio: ExecStdio {
                stdin: parent.stdin,
                stdout,
                stderr,
                pty: parent.pty,
            },
            exit,
        })
    }

    fn fork_executor(
        &self,
        request: &CreateRequest,
        cgroup2_dir: Option<&Path>,
        stdio: &Stdio,
        report_w: &OwnedFd,
        start_r: &OwnedFd,
    ) -> Result<Pid, String> {
        self.enter_pid_namespace(request.pid_mode)?;
        let args = executor_args(&request.spec);
        // SAFETY: the monitor is single-threaded, so the child may run ordinary code; it only
        // rearranges fds and execs.
        let forked = unsafe { super::spawn::fork_into(cgroup2_dir) };
        let restored = self.leave_pid_namespace(request.pid_mode);
        match forked {
            Err(e) => Err(format!("cannot fork: {e}")),
            Ok(ForkResult::Child) => {
                let child_fds = stdio.child_ends();
                exec_executor(child_fds, report_w.as_raw_fd(), start_r.as_raw_fd(), &args)
            }
            Ok(ForkResult::Parent { child }) => {
                restored?;
                Ok(child)
            }
        }
    }

    /// Points the PID namespace of the next child where the container wants it.
    fn enter_pid_namespace(&self, mode: PidMode) -> Result<(), String> {
        match mode {
            PidMode::Pod => Ok(()),
            PidMode::Container => {
                // A new PID namespace can only be made from the monitor's own, not while
                // children still go into the pod's.
                let own = std::fs::File::open("/proc/self/ns/pid").map_err(|e| e.to_string())?;
                setns(&own, CloneFlags::CLONE_NEWPID).map_err(|e| e.to_string())?;
                unshare(CloneFlags::CLONE_NEWPID)
                    .map_err(|e| format!("cannot create the container's PID namespace: {e}"))
            }
            PidMode::Host => {
                let own = std::fs::File::open("/proc/self/ns/pid").map_err(|e| e.to_string())?;
                setns(&own, CloneFlags::CLONE_NEWPID)
                    .map_err(|e| format!("cannot use the host PID namespace: {e}"))
            }
            PidMode::Target { pid } => {
                let target = std::fs::File::open(format!("/proc/{pid}/ns/pid"))
                    .map_err(|e| format!("target process {pid} is gone: {e}"))?;
                setns(&target, CloneFlags::CLONE_NEWPID)
                    .map_err(|e| format!("cannot join the target's PID namespace: {e}"))
            }
        }
    }

    /// Back to the pod's PID namespace for later children.
    fn leave_pid_namespace(&self, mode: PidMode) -> Result<(), String> {
        match (&self.pod_pid_ns, mode) {
            (_, PidMode::Pod) => Ok(()),
            (Some(pod), _) => setns(pod, CloneFlags::CLONE_NEWPID)
                .map_err(|e| format!("cannot return to the pod's PID namespace: {e}")),
            (None, _) => {
                let own = std::fs::File::open("/proc/self/ns/pid").map_err(|e| e.to_string())?;
                setns(&own, CloneFlags::CLONE_NEWPID).map_err(|e| e.to_string())
            }
        }
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

/// A process's stdio as [`StdioRequest`] asks: the child's fds 0-2 (and console socket), and
/// the monitor's ends.
struct Stdio {
    child: [OwnedFd; 3],
    /// A terminal's console socket, the executor's end (its fd 5).
    console: Option<OwnedFd>,
    parent: ParentEnds,
}

/// The monitor's ends of a process's stdio.
struct Parent {
    /// Where to write the process's input: a pipe, or a dup of the pty master.
    stdin: Option<OwnedFd>,
    outputs: Vec<(OwnedFd, Stream)>,
    /// A dup of the pty master, for resizes.
    pty: Option<OwnedFd>,
}

/// The monitor's ends as the fork leaves them: ready (pipes), or a terminal whose master the
/// executor sends once it has made it in the container's devpts.
enum ParentEnds {
    Ready(Parent),
    Terminal { socket: OwnedFd, stdin: bool },
}

impl ParentEnds {
    /// The ends to use; for a terminal, call once the executor reported `ready`.
    fn finish(self) -> Result<Parent, String> {
        let (socket, stdin) = match self {
            ParentEnds::Ready(parent) => return Ok(parent),
            ParentEnds::Terminal { socket, stdin } => (socket, stdin),
        };
        let master = crate::executor::terminal::receive_master(&socket)?;
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| e.to_string());
        Ok(Parent {
            // With or without stdin the process has the terminal on fd 0, as containerd
            // and CRI-O do; without stdin nothing is ever written to it.
            stdin: stdin.then(|| dup(&master)).transpose()?,
            pty: Some(dup(&master)?),
            outputs: vec![(master, Stream::Stdout)],
        })
    }
}

impl Stdio {
    fn new(request: StdioRequest) -> Result<Stdio, String> {
        let null = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(|e| format!("cannot open /dev/null: {e}"))
        };
        if request.tty {
            // The executor makes the pty inside the container and puts it on fds 0-2 in
            // place of these.
            use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
            let (ours, theirs) = socketpair(
                AddressFamily::Unix,
                SockType::Stream,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| format!("cannot create the console socket: {e}"))?;
            return Ok(Stdio {
                child: [null()?, null()?, null()?],
                console: Some(theirs),
                parent: ParentEnds::Terminal {
                    socket: ours,
                    stdin: request.stdin,
                },
            });
        }
        let mut parent = Parent {
            stdin: None,
            outputs: Vec::new(),
            pty: None,
        };
        let stdin = if request.stdin {
            let (read, write) = pipe_pair()?;
            parent.stdin = Some(write);
            read
        } else {
            null()?
        };
        let mut output = |wanted: bool, stream: Stream| -> Result<OwnedFd, String> {
            if !wanted {
                return null();
            }
            let (read, write) = pipe_pair()?;
            parent.outputs.push((read, stream));
            Ok(write)
        };
        let stdout = output(request.stdout, Stream::Stdout)?;
        let stderr = output(request.stderr, Stream::Stderr)?;
        Ok(Stdio {
            child: [stdin, stdout, stderr],
            console: None,
            parent: ParentEnds::Ready(parent),
        })
    }

    fn child_ends(&self) -> ChildFds {
        ChildFds {
            stdio: [
                self.child[0].as_raw_fd(),
                self.child[1].as_raw_fd(),
                self.child[2].as_raw_fd(),
            ],
            console: self.console.as_ref().map(|fd| fd.as_raw_fd()),
        }
    }

    /// The monitor's ends; the child's close here.
    fn parent_ends(self) -> ParentEnds {
        self.parent
    }
}

/// The fds a forked child moves into place before it execs the executor.
struct ChildFds {
    stdio: [RawFd; 3],
    console: Option<RawFd>,
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot create a pipe: {e}"))
}

fn receiver(fd: OwnedFd) -> Result<pipe::Receiver, String> {
    pipe::Receiver::from_owned_fd(fd).map_err(|e| format!("cannot watch a pipe: {e}"))
}

fn open_log(path: &Path) -> Result<Option<LogWriter>, String> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    LogWriter::open(path)
        .map(Some)
        .map_err(|e| format!("cannot open log {}: {e}", path.display()))
}

/// A pipe or pty master end to read with tokio. A pty master is not a pipe, but like one it
/// is a plain fd tokio can poll once it is nonblocking.
fn nonblocking_receiver(fd: OwnedFd) -> Result<pipe::Receiver, String> {
    super::stdin::set_nonblocking(&fd)?;
    pipe::Receiver::from_owned_fd_unchecked(fd).map_err(|e| format!("cannot watch a pipe: {e}"))
}

/// Copies one stdio stream of a container into its log, and to its attach sessions, until
/// the stream ends.
fn pump(
    fd: OwnedFd,
    stream: Stream,
    log: Rc<RefCell<Option<LogWriter>>>,
    fanout: Rc<RefCell<Fanout>>,
) {
    let Ok(mut receiver) = nonblocking_receiver(fd) else {
        fanout.borrow_mut().stream_ended();
        return;
    };
    tokio::task::spawn_local(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match receiver.read(&mut buf).await {
                // EIO: the pty's other side is closed, its end of stream.
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(log) = log.borrow_mut().as_mut() {
                        let _ = log.write(stream, &buf[..n]);
                    }
                    fanout.borrow_mut().publish(stream, &buf[..n]);
                    // Let attach sessions send this chunk before the next is read: a burst
                    // must not fill their queues while they never get to run.
                    tokio::task::yield_now().await;
                }
            }
        }
        if let Some(log) = log.borrow_mut().as_mut() {
            let _ = log.close_stream(stream);
        }
        fanout.borrow_mut().stream_ended();
    });
}

async fn wait_ready(report: &mut BufReader<pipe::Receiver>) -> Result<(), String> {
    loop {
        match next_message(report).await? {
            None => return Err("the executor exited before it was ready".into()),
            Some(Message::Ready) => return Ok(()),
            Some(Message::Warning(text)) => eprintln!("monitor: executor: {text}"),
            Some(Message::Error(text)) => return Err(text),
        }
    }
}

async fn wait_exec(report: &mut BufReader<pipe::Receiver>) -> Result<(), String> {
    loop {
        match next_message(report).await? {
            None => return Ok(()),
            Some(Message::Error(text)) => return Err(text),
            Some(_) => {}
        }
    }
}

async fn next_message(report: &mut BufReader<pipe::Receiver>) -> Result<Option<Message>, String> {
    let mut line = String::new();
    match report.read_line(&mut line).await {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(Message::parse(line.trim_end_matches('\n')))),
        Err(e) => Err(format!("cannot read the executor's report: {e}")),
    }
}

fn oom_kills(cgroup: &str) -> u64 {
    if cgroup.is_empty() {
        return 0;
    }
    crate::cgroup::Cgroups::detect()
        .ok()
        .and_then(|c| c.oom_kills(cgroup).ok())
        .unwrap_or(0)
}
