//! The monitor's protocol handling: one request read from a connection, turned into the
//! action on the pod's containers, and its answer written back. ExecSync, exec and attach
//! keep their connection on a task of their own, so the monitor goes on reaping (and can
//! deliver their exits) meanwhile.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use tokio::net::UnixStream;
use tokio::signal::unix::Signal as SignalStream;

use super::containers::Containers;
use super::error::RequestError;
use super::layout::unpin_namespaces;
use super::protocol::{
    self, AttachRequest, ContainerState, ExecRequest, ExecStreamRequest, PodStatus, Request,
    Response, StdioRequest,
};
use super::{State, process, reap, streams};

/// Answers one connection; returns true when the monitor should exit.
pub(super) async fn handle(
    mut stream: UnixStream,
    dir: &Path,
    state: &mut State,
    children: &mut SignalStream,
) -> bool {
    let read = protocol::read_message::<Request, _>(&mut stream);
    let request = match tokio::time::timeout(Duration::from_secs(5), read).await {
        Err(_) => return false,
        Ok(Err(e)) => Err(RequestError::Request(e)),
        Ok(Ok(request)) => Ok(request),
    };
    let response = match request {
        Err(e) => e.into(),
        Ok(Request::Status) => Response::Status(status(state)),
        Ok(Request::Shutdown) => {
            shutdown(dir, state, children).await;
            answer(&mut stream, Response::Done).await;
            return true;
        }
        Ok(Request::ExecSync(exec)) => return exec_sync(stream, &mut state.containers, exec).await,
        Ok(Request::Exec(exec)) => return exec_session(stream, &mut state.containers, exec).await,
        Ok(Request::Attach(attach)) => {
            return attach_session(stream, &state.containers, attach).await;
        }
        Ok(Request::CreateContainer(create)) => {
            let created = state.containers.create(create).await;
            answered(created.map(|pid| Response::Created { pid }))
        }
        Ok(Request::StartContainer { id }) => {
            answered(state.containers.start(&id).await.map(|()| Response::Done))
        }
        Ok(Request::SignalContainer { id, signal }) => answered(
            state
                .containers
                .signal(&id, signal)
                .map(|()| Response::Done),
        ),
        Ok(Request::RemoveContainer { id }) => {
            state.containers.forget(&id);
            Response::Done
        }
        Ok(Request::ReopenLog { id }) => {
            answered(state.containers.reopen_log(&id).map(|()| Response::Done))
        }
    };
    answer(&mut stream, response).await;
    false
}

/// The answer to a request that gets one answer.
fn answered(result: Result<Response, RequestError>) -> Response {
    result.unwrap_or_else(Response::from)
}

/// Starts the command; its output and exit are answered from a task of their own.
async fn exec_sync(mut stream: UnixStream, containers: &mut Containers, exec: ExecRequest) -> bool {
    let capture = StdioRequest::CAPTURE;
    match containers
        .exec_start(&exec.id, &exec.args, capture, None)
        .await
    {
        Ok(running) => {
            let timeout = (exec.timeout_ms > 0).then(|| Duration::from_millis(exec.timeout_ms));
            tokio::task::spawn_local(async move {
                let result = process::finish_exec(running, timeout).await;
                answer(&mut stream, Response::ExecResult(result)).await;
            });
        }
        Err(e) => answer(&mut stream, e.into()).await,
    }
    false
}

/// Starts the command; the connection then carries the session's frames.
async fn exec_session(
    mut stream: UnixStream,
    containers: &mut Containers,
    exec: ExecStreamRequest,
) -> bool {
    let stdio = StdioRequest {
        tty: exec.tty,
        stdin: exec.stdin,
        stdout: exec.stdout,
        stderr: exec.stderr && !exec.tty,
    };
    match containers
        .exec_start(&exec.id, &exec.args, stdio, exec.size)
        .await
    {
        Ok(running) => {
            tokio::task::spawn_local(async move {
                // A client gone already is noticed by the session, which kills.
                answer(&mut stream, Response::Done).await;
                streams::serve_exec(stream, running.pid, running.stdio, running.exit).await;
            });
        }
        Err(e) => answer(&mut stream, e.into()).await,
    }
    false
}

/// Attaches; the connection then carries the session's frames.
async fn attach_session(
    mut stream: UnixStream,
    containers: &Containers,
    attach: AttachRequest,
) -> bool {
    match containers.attach(&attach) {
        Ok((output, input)) => {
            tokio::task::spawn_local(async move {
                // A client gone already ends the session at once (stdin_once applies).
                answer(&mut stream, Response::Done).await;
                streams::serve_attach(stream, output, input).await;
            });
        }
        Err(e) => answer(&mut stream, e.into()).await,
    }
    false
}

/// Writes the answer; a client that left no longer needs it.
async fn answer(stream: &mut UnixStream, response: Response) {
    let _ = protocol::write_message(stream, &response).await;
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
            .map(|(id, pid, running)| ContainerState { id, pid, running })
            .collect(),
    }
}

/// Kills the pause (and with it a private PID namespace's every process) and waits for it.
async fn shutdown(dir: &Path, state: &mut State, children: &mut SignalStream) {
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
