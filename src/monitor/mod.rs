//! The per-pod monitor: `ferrocri-monitor monitor --dir <pod state dir>` (a binary of its own,
//! `src/bin/ferrocri-monitor.rs`), one small single-threaded
//! process per pod. It forks the pod's pause process, pins the pod's IPC and UTS namespaces,
//! reaps its children and answers the daemon on `<dir>/monitor.sock`. It runs on without the
//! daemon: a daemon crash or restart stops nothing of the pod.
//!
//! Files in the pod dir: `pod.json` (the spec, from the daemon), `monitor.pid`,
//! `monitor.sock`, `ns/ipc` and `ns/uts` (bind-mount pins), `pause.exit` (the pause's wait
//! status once it has died).

pub mod client;
pub mod containers;
mod fanout;
pub mod frames;
pub mod layout;
pub mod logs;
pub mod pause;
pub mod protocol;
pub mod session;
mod spawn;
mod stdin;
mod streams;
pub mod title;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

use layout::{PAUSE_EXIT_FILE, PID_FILE, SOCKET, SPEC_FILE, namespace_pin, unpin_namespaces};
use protocol::{PodSpec, PodStatus, Ready, Request, Response};

/// Entry point of `ferrocri-monitor monitor`. stdout is the pipe the daemon reads the ready line
/// from; stderr is the monitor's log file.
pub fn run(dir: &Path) -> std::process::ExitCode {
    let started = prepare(dir).and_then(|(spec, pause, listener)| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the event loop: {e}"))?;
        Ok((spec, pause, listener, runtime))
    });
    let (spec, pause, listener, runtime) = match started {
        Ok(parts) => parts,
        Err(message) => {
            announce(&Ready::Failed {
                message: message.clone(),
            });
            eprintln!("monitor: {message}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Log pumps are local tasks: the monitor is one thread and its state is not Send.
    let local = tokio::task::LocalSet::new();
    match runtime.block_on(local.run_until(serve(dir, spec, pause, listener))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("monitor: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Before the event loop (no threads yet, so forking is safe): detach from the daemon,
/// read the spec, listen, start the pause, pin its namespaces.
fn prepare(dir: &Path) -> Result<(PodSpec, Pid, std::os::unix::net::UnixListener), String> {
    // Own session: signals to the daemon's process group never reach the pod.
    let _ = nix::unistd::setsid();
    // Working in the pod dir keeps the socket path short: a unix socket path has at most
    // 107 bytes, and state dirs can be long. The daemon connects through /proc/self/fd.
    std::env::set_current_dir(dir).map_err(|e| format!("cannot enter {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(SOCKET);
    let listener = std::os::unix::net::UnixListener::bind(SOCKET)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("cannot listen on {}: {e}", dir.join(SOCKET).display()))?;
    std::fs::write(PID_FILE, std::process::id().to_string())
        .map_err(|e| format!("cannot write the pid file: {e}"))?;
    let spec_path = dir.join(SPEC_FILE);
    let spec: PodSpec = std::fs::read(&spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("cannot read {}: {e}", spec_path.display()))?;
    join_cgroup(&spec)?;
    // Named before the fork, so the pause never shows the monitor's arguments.
    title::set(
        title::MONITOR_COMM,
        &title::monitor_words(&spec.pod_namespace, &spec.pod_name, &spec.sandbox_id),
    );
    let pause = start_pause(&spec)?;
    if let Err(e) = pin_namespaces(dir, pause, &spec) {
        let _ = kill(pause, Signal::SIGKILL);
        let _ = waitpid(pause, None);
        return Err(e);
    }
    Ok((spec, pause, listener))
}

/// Moves the monitor into the pod cgroup before the pause is forked, so the pause and
/// everything else of the pod start there and the daemon can always find and kill them.
fn join_cgroup(spec: &PodSpec) -> Result<(), String> {
    if spec.cgroup.is_empty() {
        return Ok(());
    }
    let cgroups =
        crate::cgroup::Cgroups::detect().map_err(|e| format!("cannot find cgroups: {e}"))?;
    cgroups
        .add_process(&spec.cgroup, std::process::id() as i32)
        .map_err(|e| format!("cannot join the pod cgroup: {e}"))
}

/// Forks the pause; with a private PID namespace it becomes that namespace's PID 1, and so
/// will every later child of this monitor.
fn start_pause(spec: &PodSpec) -> Result<Pid, String> {
    // With a pod user namespace too, the PID namespace is the monitor's (the host user
    // namespace's): a PID namespace's init must be forked by its maker, and the pause is the
    // monitor's child. Nothing inside needs it owned by the pod: /proc is mounted by the
    // executor before it joins the user namespace.
    if spec.private_pid {
        unshare(CloneFlags::CLONE_NEWPID)
            .map_err(|e| format!("cannot create the pod's PID namespace: {e}"))?;
    }
    let (read_end, write_end): (OwnedFd, OwnedFd) =
        nix::unistd::pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    // SAFETY: this process has a single thread here (no runtime yet), so the child may run
    // ordinary code until it execs or exits.
    match unsafe { fork() } {
        Err(e) => Err(format!("cannot fork the pause process: {e}")),
        Ok(ForkResult::Child) => {
            drop(read_end);
            pause::run(spec, write_end)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(write_end);
            match pause::read_report(read_end) {
                Ok(()) => Ok(child),
                Err(message) => {
                    let _ = kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    Err(message)
                }
            }
        }
    }
}

/// Bind-mounts the pause's IPC and UTS namespaces into the pod dir, so containers can join
/// them and cleanup never depends on the pause being alive.
fn pin_namespaces(dir: &Path, pause: Pid, spec: &PodSpec) -> Result<(), String> {
    let ns_dir = dir.join("ns");
    std::fs::create_dir_all(&ns_dir)
        .map_err(|e| format!("cannot create {}: {e}", ns_dir.display()))?;
    for (kind, wanted) in [("ipc", spec.private_ipc), ("uts", spec.private_uts)] {
        if !wanted {
            continue;
        }
        let pin = namespace_pin(dir, kind);
        std::fs::File::create(&pin).map_err(|e| format!("cannot create {}: {e}", pin.display()))?;
        let source = format!("/proc/{pause}/ns/{kind}");
        nix::mount::mount(
            Some(source.as_str()),
            &pin,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("cannot pin {source} at {}: {e}", pin.display()))?;
    }
    Ok(())
}

/// Writes the one ready line to stdout, then points stdout at /dev/null so the daemon's
/// read ends.
fn announce(ready: &Ready) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(ready).unwrap_or_default());
    let _ = out.flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

struct State {
    pause: Pid,
    pause_exit: Option<i32>,
    containers: containers::Containers,
}

async fn serve(
    dir: &Path,
    spec: PodSpec,
    pause: Pid,
    listener: std::os::unix::net::UnixListener,
) -> Result<(), String> {
    let fail = |message: String| {
        announce(&Ready::Failed {
            message: message.clone(),
        });
        message
    };
    let mut children =
        signal(SignalKind::child()).map_err(|e| fail(format!("cannot watch SIGCHLD: {e}")))?;
    let listener = UnixListener::from_std(listener)
        .map_err(|e| fail(format!("cannot watch the socket: {e}")))?;
    let socket = dir.join(SOCKET);
    let mut state = State {
        pause,
        pause_exit: None,
        containers: containers::Containers::new(dir, pause, spec.private_pid),
    };
    // The pause may have died between the fork and the signal watcher.
    reap(dir, &mut state);
    announce(&Ready::Ok {
        monitor_pid: std::process::id() as i32,
        pause_pid: pause.as_raw(),
    });
    eprintln!("monitor: pod {} ready, pause pid {pause}", spec.sandbox_id);
    loop {
        tokio::select! {
            _ = children.recv() => reap(dir, &mut state),
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                if handle(stream, dir, &mut state, &mut children).await {
                    let _ = std::fs::remove_file(&socket);
                    return Ok(());
                }
            }
        }
    }
}

/// Collects every exited child; records the pause's exit durably.
fn reap(dir: &Path, state: &mut State) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    state.containers.exited(pid, wait_code(&status));
                }
                if status.pid() == Some(state.pause) && state.pause_exit.is_none() {
                    let code = wait_code(&status);
                    state.pause_exit = Some(code);
                    let _ = std::fs::write(dir.join(PAUSE_EXIT_FILE), code.to_string());
                    eprintln!("monitor: pause exited ({status:?})");
                }
            }
        }
    }
}

/// A wait status as a shell would report it: the exit code, or 128 + the signal.
fn wait_code(status: &WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => *code,
        WaitStatus::Signaled(_, signal, _) => 128 + *signal as i32,
        _ => -1,
    }
}

/// Answers one connection; returns true when the monitor should exit.
async fn handle(
    mut stream: tokio::net::UnixStream,
    dir: &Path,
    state: &mut State,
    children: &mut tokio::signal::unix::Signal,
) -> bool {
    let request = tokio::time::timeout(
        Duration::from_secs(5),
        protocol::read_message::<Request, _>(&mut stream),
    )
    .await;
    let (response, exit) = match request {
        Err(_) => return false,
        Ok(Err(e)) => (
            Response::Error {
                message: e.to_string(),
            },
            false,
        ),
        Ok(Ok(Request::Status)) => (Response::Status(status(state)), false),
        Ok(Ok(Request::Shutdown)) => {
            shutdown(dir, state, children).await;
            (Response::Done, true)
        }
        Ok(Ok(Request::CreateContainer(create))) => (
            done(
                state
                    .containers
                    .create(create)
                    .await
                    .map(|pid| Response::Created { pid }),
            ),
            false,
        ),
        Ok(Ok(Request::StartContainer { id })) => (
            done(state.containers.start(&id).await.map(|()| Response::Done)),
            false,
        ),
        Ok(Ok(Request::SignalContainer { id, signal })) => (
            done(
                state
                    .containers
                    .signal(&id, signal)
                    .map(|()| Response::Done),
            ),
            false,
        ),
        Ok(Ok(Request::RemoveContainer { id })) => {
            state.containers.forget(&id);
            (Response::Done, false)
        }
        Ok(Ok(Request::ReopenLog { id })) => (
            done(state.containers.reopen_log(&id).map(|()| Response::Done)),
            false,
        ),
        Ok(Ok(Request::ExecSync(exec))) => match state
            .containers
            .exec_start(&exec.id, &exec.args, protocol::StdioRequest::CAPTURE, None)
            .await
        {
            // The session finishes on its own task, so the monitor keeps reaping (and can
            // deliver the session's exit) meanwhile.
            Ok(running) => {
                let timeout = (exec.timeout_ms > 0).then(|| Duration::from_millis(exec.timeout_ms));
                tokio::task::spawn_local(async move {
                    let result = containers::finish_exec(running, timeout).await;
                    let _ =
                        protocol::write_message(&mut stream, &Response::ExecResult(result)).await;
                });
                return false;
            }
            Err(message) => (Response::Error { message }, false),
        },
        Ok(Ok(Request::Exec(exec))) => {
            let stdio = protocol::StdioRequest {
                tty: exec.tty,
                stdin: exec.stdin,
                stdout: exec.stdout,
                stderr: exec.stderr && !exec.tty,
            };
            match state
                .containers
                .exec_start(&exec.id, &exec.args, stdio, exec.size)
                .await
            {
                Ok(running) => {
                    tokio::task::spawn_local(async move {
                        // A client gone already is noticed by the session, which kills.
                        let _ = protocol::write_message(&mut stream, &Response::Done).await;
                        streams::serve_exec(stream, running.pid, running.stdio, running.exit).await;
                    });
                    return false;
                }
                Err(message) => (Response::Error { message }, false),
            }
        }
        Ok(Ok(Request::Attach(attach))) => match state.containers.attach(&attach) {
            Ok((output, input)) => {
                tokio::task::spawn_local(async move {
                    // A client gone already ends the session at once (stdin_once applies).
                    let _ = protocol::write_message(&mut stream, &Response::Done).await;
                    streams::serve_attach(stream, output, input).await;
                });
                return false;
            }
            Err(message) => (Response::Error { message }, false),
        },
    };
    let _ = protocol::write_message(&mut stream, &response).await;
    exit
}

fn done(result: Result<Response, String>) -> Response {
    result.unwrap_or_else(|message| Response::Error { message })
}

fn status(state: &State) -> PodStatus {
    PodStatus {
        monitor_pid: std::process::id() as i32,
        pause_pid: state.pause.as_raw(),
        pause_exit: state.pause_exit,
        containers: state
            .containers
            .list()
            .into_iter()
            .map(|(id, pid, running)| protocol::ContainerState { id, pid, running })
            .collect(),
    }
}

/// Kills the pause (and with it a private PID namespace's every process) and waits for it.
async fn shutdown(dir: &Path, state: &mut State, children: &mut tokio::signal::unix::Signal) {
    state.containers.kill_all();
    if state.pause_exit.is_none() {
        let _ = kill(state.pause, Signal::SIGKILL);
    }
    // Reap the pause and every container, so each exit is recorded before the monitor goes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let all_done = |s: &State| s.pause_exit.is_some() && s.containers.list().iter().all(|c| !c.2);
    while !all_done(state) && tokio::time::Instant::now() < deadline {
        reap(dir, state);
        if !all_done(state) {
            let _ = tokio::time::timeout(Duration::from_millis(100), children.recv()).await;
        }
    }
    // What is still in the output pipes reaches the logs and attach sessions, and the
    // sessions get their exits, before the monitor goes (bounded: a process that escaped
    // may hold a pipe open).
    let settle = tokio::time::Instant::now() + Duration::from_millis(200);
    while !state.containers.output_done() && tokio::time::Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    state.containers.finish_sessions();
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    unpin_namespaces(dir);
}
