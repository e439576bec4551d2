//! The monitor's containers: the table of those it holds and what it does to them. It forks
//! each one (`process.rs`; the child execs `ferrocri-monitor executor`), holds its stdio and
//! writes it to the CRI log (`stdio.rs`), lets it run on StartContainer, signals it, reaps it
//! and records its exit durably in `<pod dir>/containers/<id>/exit.json` — all of which keeps
//! working while the daemon is away. It also starts exec processes (ExecSync and exec
//! sessions) and hands attach sessions a container's output and stdin.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::BufReader;
use tokio::net::unix::pipe;

use super::error::RequestError;
use super::fanout::{Fanout, Subscription};
use super::layout::{EXIT_FILE, EXITS_FILE, Exit, container_dir, write_exit};
use super::logs::{LogWriter, Stream};
use super::process::{self, ExecRunning, Fork, SyncFds};
use super::protocol::{AttachRequest, CreateRequest, PidMode, StdioRequest};
use super::stdin::StdinSender;
use super::stdio::{Stdio, nonblocking_receiver, open_log, pipe_pair, pump, receiver};
use super::streams::{ExecStdio, Input, StdinEnd};
use crate::executor::spec::ContainerSpec;

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

/// A created container's executor, ready to exec, with the monitor's ends of its stdio.
struct SetUp {
    stdin: Option<StdinSender>,
    outputs: Vec<(OwnedFd, Stream)>,
    pty: Option<OwnedFd>,
    report: BufReader<pipe::Receiver>,
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
    pub async fn create(&mut self, request: CreateRequest) -> Result<i32, RequestError> {
        if self.running.contains_key(&request.id) {
            return Err(RequestError::ContainerExists(request.id));
        }
        let dir = container_dir(&self.pod_dir, &request.id);
        std::fs::create_dir_all(&dir)
            .map_err(RequestError::io(format!("cannot create {}", dir.display())))?;
        let _ = std::fs::remove_file(dir.join(EXIT_FILE));
        let spec = read_spec(&request.spec)?;
        let log = open_log(&request.log_path)?;
        let (start_w, pid, set_up) = self.fork_container(&request, &spec).await?;
        let log = Rc::new(RefCell::new(log));
        let fanout = Rc::new(RefCell::new(Fanout::new(set_up.outputs.len())));
        for (fd, stream) in set_up.outputs {
            pump(fd, stream, log.clone(), fanout.clone());
        }
        let oom_kills_before = oom_kills(&spec.cgroup);
        self.by_pid.insert(pid, request.id.clone());
        let container = Container {
            pid,
            start: Some(start_w),
            report: Some(set_up.report),
            cgroup: spec.cgroup,
            oom_kills_before,
            log,
            fanout,
            stdin: Rc::new(RefCell::new(set_up.stdin)),
            stdin_once: request.stdin_once,
            pty: set_up.pty.map(Rc::new),
            exited: false,
        };
        self.running.insert(request.id, container);
        Ok(pid.as_raw())
    }

    /// Forks a container's executor and waits until it is ready to exec: the write end of
    /// its start pipe, its pid, and what the monitor keeps of its stdio.
    async fn fork_container(
        &self,
        request: &CreateRequest,
        spec: &ContainerSpec,
    ) -> Result<(OwnedFd, Pid, SetUp), RequestError> {
        let (report_r, report_w) = pipe_pair()?;
        let (start_r, start_w) = pipe_pair()?;
        let stdio = Stdio::new(StdioRequest {
            tty: request.tty,
            stdin: request.stdin,
            stdout: true,
            stderr: true,
        })?;
        let cgroup2_dir = self.cgroup2_dir(&spec.cgroup);
        let how = Fork {
            spec: &request.spec,
            cgroup2_dir: cgroup2_dir.as_deref(),
            pid_mode: request.pid_mode,
            pod_pid_ns: self.pod_pid_ns.as_ref(),
            own_group: false,
        };
        let sync = SyncFds {
            report: &report_w,
            start: &start_r,
        };
        let pid = process::fork_executor(&how, &stdio, sync)?;
        drop((report_w, start_r));
        let ends = stdio.parent_ends();
        let mut report = BufReader::new(receiver(report_r)?);
        let set_up = process::within_setup_time(pid, "setup", async {
            process::wait_ready(&mut report).await?;
            let parent = ends.finish()?;
            let stdin = parent.stdin.map(super::stdin::forward).transpose()?;
            Ok((stdin, parent.outputs, parent.pty))
        })
        .await?;
        let (stdin, outputs, pty) = set_up;
        let set_up = SetUp {
            stdin,
            outputs,
            pty,
            report,
        };
        Ok((start_w, pid, set_up))
    }

    /// Lets a created container exec its process; Ok once the exec happened.
    pub async fn start(&mut self, id: &str) -> Result<(), RequestError> {
        let container = self.known(id)?;
        let start = container
            .start
            .take()
            .ok_or_else(|| RequestError::AlreadyStarted(id.to_owned()))?;
        process::send_start(&start)?;
        drop(start);
        let Some(mut report) = container.report.take() else {
            return Ok(());
        };
        tokio::time::timeout(process::SETUP_TIMEOUT, process::wait_exec(&mut report))
            .await
            .unwrap_or(Err(RequestError::Timeout(
                "the exec",
                process::SETUP_TIMEOUT,
            )))
    }

    /// Sends `signal` to the container's process (ignored once it has exited).
    pub fn signal(&mut self, id: &str, signal: i32) -> Result<(), RequestError> {
        let container = self.known(id)?;
        if container.exited {
            return Ok(());
        }
        let number = signal;
        let signal = Signal::try_from(signal).map_err(|source| RequestError::BadSignal {
            signal: number,
            source,
        })?;
        match kill(container.pid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(RequestError::os(format!("cannot signal {id}"))(e)),
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
    pub fn reopen_log(&mut self, id: &str) -> Result<(), RequestError> {
        let container = self.known(id)?;
        match container.log.borrow_mut().as_mut() {
            Some(log) => log
                .reopen()
                .map_err(RequestError::io(format!("cannot reopen the log of {id}"))),
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
    ) -> Result<ExecRunning, RequestError> {
        let target = self.running_container(id)?.pid;
        let dir = container_dir(&self.pod_dir, id);
        let mut spec = read_spec(&dir.join("spec.json"))?;
        spec.args = args.to_vec();
        spec.exec_in = Some(target.as_raw());
        spec.tty = stdio.tty;
        self.exec_count += 1;
        let spec_path = dir.join(format!("exec-{}.json", self.exec_count));
        let json = serde_json::to_vec(&spec).map_err(|e| RequestError::Spec {
            path: spec_path.clone(),
            source: e,
        })?;
        std::fs::write(&spec_path, json).map_err(RequestError::io("cannot write the exec spec"))?;
        let cgroup2_dir = self.cgroup2_dir(&spec.cgroup);
        let result = self
            .run_exec(target, &spec_path, cgroup2_dir.as_deref(), stdio, size)
            .await;
        let _ = std::fs::remove_file(&spec_path);
        result
    }

    async fn run_exec(
        &mut self,
        target: Pid,
        spec_path: &Path,
        cgroup2_dir: Option<&Path>,
        stdio: StdioRequest,
        size: Option<(u16, u16)>,
    ) -> Result<ExecRunning, RequestError> {
        let (report_r, report_w) = pipe_pair()?;
        let (start_r, start_w) = pipe_pair()?;
        let stdio = Stdio::new(stdio)?;
        let how = Fork {
            spec: spec_path,
            cgroup2_dir,
            // The session joins the container's PID namespace, whatever it is.
            pid_mode: PidMode::Target {
                pid: target.as_raw(),
            },
            pod_pid_ns: self.pod_pid_ns.as_ref(),
            own_group: true,
        };
        let sync = SyncFds {
            report: &report_w,
            start: &start_r,
        };
        let pid = process::fork_executor(&how, &stdio, sync)?;
        drop((report_w, start_r));
        let (exit_tx, exit) = tokio::sync::oneshot::channel();
        self.exec_waiters.insert(pid, exit_tx);
        let ends = stdio.parent_ends();
        let mut report = BufReader::new(receiver(report_r)?);
        let started = process::start_exec(&mut report, ends, &start_w, size);
        let parent = process::within_setup_time(pid, "the exec's start", started).await?;
        let mut stdout = None;
        let mut stderr = None;
        for (fd, stream) in parent.outputs {
            let reader = Some(nonblocking_receiver(fd)?);
            match stream {
                Stream::Stdout => stdout = reader,
                Stream::Stderr => stderr = reader,
            }
        }
        let stdio = ExecStdio {
            stdin: parent.stdin,
            stdout,
            stderr,
            pty: parent.pty,
        };
        Ok(ExecRunning { pid, stdio, exit })
    }

    /// An attach session's share of a running container: its output from now on, its
    /// stdin if it has one and the session asks for it, and its pty for resizes.
    pub(super) fn attach(
        &self,
        request: &AttachRequest,
    ) -> Result<(Subscription, Input), RequestError> {
        let container = self.running_container(&request.id)?;
        let output = container
            .fanout
            .borrow_mut()
            .subscribe(request.stdout, request.stderr)
            .ok_or_else(|| RequestError::NotRunning(request.id.clone()))?;
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

    fn known(&mut self, id: &str) -> Result<&mut Container, RequestError> {
        self.running
            .get_mut(id)
            .ok_or_else(|| RequestError::UnknownContainer(id.to_owned()))
    }

    fn running_container(&self, id: &str) -> Result<&Container, RequestError> {
        let container = self
            .running
            .get(id)
            .ok_or_else(|| RequestError::UnknownContainer(id.to_owned()))?;
        if container.exited || container.start.is_some() {
            return Err(RequestError::NotRunning(id.to_owned()));
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
}

fn read_spec(path: &Path) -> Result<ContainerSpec, RequestError> {
    let bytes = std::fs::read(path).map_err(RequestError::io(format!(
        "cannot read spec {}",
        path.display()
    )))?;
    serde_json::from_slice(&bytes).map_err(|source| RequestError::Spec {
        path: path.to_owned(),
        source,
    })
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
