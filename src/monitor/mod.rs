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
pub mod error;
mod fanout;
pub mod frames;
pub mod layout;
pub mod logs;
pub mod pause;
pub mod process;
pub mod protocol;
mod requests;
pub mod session;
mod spawn;
mod stdin;
mod stdio;
mod streams;
pub mod title;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

use error::RequestError;
use layout::{PAUSE_EXIT_FILE, PID_FILE, SOCKET, SPEC_FILE, namespace_pin};
use protocol::{PodSpec, Ready};

/// Entry point of `ferrocri-monitor monitor`. stdout is the pipe the daemon reads the ready line
/// from; stderr is the monitor's log file.
pub fn run(dir: &Path) -> std::process::ExitCode {
    let started = prepare(dir).and_then(|(spec, pause, listener)| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RequestError::io("cannot start the event loop"))?;
        Ok((spec, pause, listener, runtime))
    });
    let (spec, pause, listener, runtime) = match started {
        Ok(parts) => parts,
        Err(e) => {
            announce(&failed(&e));
            eprintln!("monitor: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Log pumps are local tasks: the monitor is one thread and its state is not Send.
    let local = tokio::task::LocalSet::new();
    match runtime.block_on(local.run_until(serve(dir, spec, pause, listener))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monitor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Before the event loop (no threads yet, so forking is safe): detach from the daemon,
/// read the spec, listen, start the pause, pin its namespaces.
fn prepare(dir: &Path) -> Result<(PodSpec, Pid, std::os::unix::net::UnixListener), RequestError> {
    // Own session: signals to the daemon's process group never reach the pod.
    let _ = nix::unistd::setsid();
    // Working in the pod dir keeps the socket path short: a unix socket path has at most
    // 107 bytes, and state dirs can be long. The daemon connects through /proc/self/fd.
    std::env::set_current_dir(dir)
        .map_err(RequestError::io(format!("cannot enter {}", dir.display())))?;
    let _ = std::fs::remove_file(SOCKET);
    let listener = std::os::unix::net::UnixListener::bind(SOCKET)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(RequestError::io(format!(
            "cannot listen on {}",
            dir.join(SOCKET).display()
        )))?;
    std::fs::write(PID_FILE, std::process::id().to_string())
        .map_err(RequestError::io("cannot write the pid file"))?;
    let spec = read_spec(&dir.join(SPEC_FILE))?;
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
fn join_cgroup(spec: &PodSpec) -> Result<(), RequestError> {
    if spec.cgroup.is_empty() {
        return Ok(());
    }
    let cgroups =
        crate::cgroup::Cgroups::detect().map_err(RequestError::io("cannot find cgroups"))?;
    cgroups
        .add_process(&spec.cgroup, std::process::id() as i32)
        .map_err(|source| RequestError::Cgroup {
            what: "cannot join the pod cgroup",
            source,
        })
}

fn read_spec(path: &Path) -> Result<PodSpec, RequestError> {
    let bytes =
        std::fs::read(path).map_err(RequestError::io(format!("cannot read {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|source| RequestError::Spec {
        path: path.to_owned(),
        source,
    })
}

/// Forks the pause; with a private PID namespace it becomes that namespace's PID 1, and so
/// will every later child of this monitor.
fn start_pause(spec: &PodSpec) -> Result<Pid, RequestError> {
    // With a pod user namespace too, the PID namespace is the monitor's (the host user
    // namespace's): a PID namespace's init must be forked by its maker, and the pause is the
    // monitor's child. Nothing inside needs it owned by the pod: /proc is mounted by the
    // executor before it joins the user namespace.
    if spec.private_pid {
        unshare(CloneFlags::CLONE_NEWPID)
            .map_err(RequestError::os("cannot create the pod's PID namespace"))?;
    }
    let (read_end, write_end): (OwnedFd, OwnedFd) =
        nix::unistd::pipe().map_err(RequestError::os("cannot create a pipe"))?;
    // SAFETY: this process has a single thread here (no runtime yet), so the child may run
    // ordinary code until it execs or exits.
    match unsafe { fork() } {
        Err(e) => Err(RequestError::os("cannot fork the pause process")(e)),
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
                    Err(RequestError::Reported(message))
                }
            }
        }
    }
}

/// Bind-mounts the pause's IPC and UTS namespaces into the pod dir, so containers can join
/// them and cleanup never depends on the pause being alive.
fn pin_namespaces(dir: &Path, pause: Pid, spec: &PodSpec) -> Result<(), RequestError> {
    let ns_dir = dir.join("ns");
    let cannot_create = |path: &Path| RequestError::io(format!("cannot create {}", path.display()));
    std::fs::create_dir_all(&ns_dir).map_err(cannot_create(&ns_dir))?;
    for (kind, wanted) in [("ipc", spec.private_ipc), ("uts", spec.private_uts)] {
        if !wanted {
            continue;
        }
        let pin = namespace_pin(dir, kind);
        std::fs::File::create(&pin).map_err(cannot_create(&pin))?;
        let source = format!("/proc/{pause}/ns/{kind}");
        nix::mount::mount(
            Some(source.as_str()),
            &pin,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(RequestError::os(format!(
            "cannot pin {source} at {}",
            pin.display()
        )))?;
    }
    Ok(())
}

/// The ready line of a monitor that could not start.
fn failed(e: &RequestError) -> Ready {
    Ready::Failed {
        kind: e.kind(),
        message: e.to_string(),
    }
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

/// What the monitor keeps while it serves: its pause and its containers.
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
) -> Result<(), RequestError> {
    let fail = |what: &str| {
        let what = what.to_owned();
        move |source| {
            let e = RequestError::Os { what, source };
            announce(&failed(&e));
            e
        }
    };
    let mut children = signal(SignalKind::child()).map_err(fail("cannot watch SIGCHLD"))?;
    let listener = UnixListener::from_std(listener).map_err(fail("cannot watch the socket"))?;
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
                if requests::handle(stream, dir, &mut state, &mut children).await {
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
