//! The monitor's side of exec and attach sessions, once the request was answered and the
//! connection carries frames (`frames.rs`). Each session is one local task that races its
//! output (process → client) against its input (client → stdin, resizes): output is only
//! read from the process while the previous frame is being written, so a client that stops
//! reading back-pressures the process instead of filling the monitor's memory, and input
//! keeps watching for the client leaving even while the process does not read its stdin.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf, pipe};
use tokio::sync::oneshot;

use super::fanout::{Event, Subscription};
use super::frames::{Frame, FrameReader, write_frame};
use super::logs::Stream;
use super::stdin::{self, StdinCommand, StdinSender};

/// How much output one read takes from a process (well under a frame's maximum).
const CHUNK: usize = 32 * 1024;

/// After an exec's process exited, how long output still held open by processes that
/// escaped it may delay the exit frame (as for ExecSync).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// What a session does with the client's frames.
pub(super) struct Input {
    /// None: the session has no stdin (not asked for, none to give, or closed).
    pub(super) stdin: Option<StdinSender>,
    pub(super) stdin_end: StdinEnd,
    /// The pty master, for resizes; None without a terminal.
    pub(super) pty: Option<Rc<OwnedFd>>,
}

/// What the end of a session's stdin (close frame, or the client leaving) means.
pub(super) enum StdinEnd {
    /// The exec's own stdin: it closes.
    CloseProcess,
    /// Attach to a container that keeps its stdin open for the next attach.
    Detach,
    /// Attach to a `stdin_once` container: its stdin closes for good (the slot is emptied,
    /// so later attaches get none).
    CloseContainer(Rc<RefCell<Option<StdinSender>>>),
}

impl Input {
    fn end_stdin(&mut self) {
        let Some(sender) = self.stdin.take() else {
            return;
        };
        match &self.stdin_end {
            StdinEnd::Detach => {}
            StdinEnd::CloseProcess => stdin::close(sender),
            StdinEnd::CloseContainer(slot) => {
                slot.borrow_mut().take();
                stdin::close(sender);
            }
        }
    }
}

/// An exec started with its own stdio (see `Containers::exec_start`).
pub(super) struct ExecStdio {
    pub(super) stdin: Option<OwnedFd>,
    pub(super) stdout: Option<pipe::Receiver>,
    pub(super) stderr: Option<pipe::Receiver>,
    pub(super) pty: Option<OwnedFd>,
}

/// Runs an exec session to its end. A client that leaves before the process exited gets
/// the process's whole group killed (it runs in a session of its own).
pub(super) async fn serve_exec(
    stream: UnixStream,
    pid: Pid,
    stdio: ExecStdio,
    mut exit: oneshot::Receiver<i32>,
) {
    let (read, mut write) = stream.into_split();
    let mut frames = FrameReader::new(read);
    let stdin = match stdio.stdin.map(stdin::forward).transpose() {
        Ok(stdin) => stdin,
        Err(e) => {
            eprintln!("monitor: exec {pid}: {e}");
            None
        }
    };
    let mut input = Input {
        stdin,
        stdin_end: StdinEnd::CloseProcess,
        pty: stdio.pty.map(Rc::new),
    };
    let mut code = None;
    tokio::select! {
        _ = exec_output(&mut write, stdio.stdout, stdio.stderr, &mut exit, &mut code) => {}
        () = take_input(&mut frames, &mut input) => {}
    }
    // Only a process not reaped yet is killed: the group id of a reaped leader could name
    // somebody else's group by now.
    if code.is_none() && matches!(exit.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
        let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
        let _ = kill(pid, Signal::SIGKILL);
    }
}

/// Copies the exec's output to the client until it ended and the process exited, then
/// sends the exit frame.
async fn exec_output(
    write: &mut OwnedWriteHalf,
    mut stdout: Option<pipe::Receiver>,
    mut stderr: Option<pipe::Receiver>,
    exit: &mut oneshot::Receiver<i32>,
    code: &mut Option<i32>,
) -> std::io::Result<()> {
    let (mut out_buf, mut err_buf) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut grace_end = None;
    while stdout.is_some() || stderr.is_some() || code.is_none() {
        tokio::select! {
            n = read_chunk(stdout.as_mut(), &mut out_buf), if stdout.is_some() => match n {
                Some(n) => write_frame(write, &Frame::Stdout(out_buf[..n].to_vec())).await?,
                None => stdout = None,
            },
            n = read_chunk(stderr.as_mut(), &mut err_buf), if stderr.is_some() => match n {
                Some(n) => write_frame(write, &Frame::Stderr(err_buf[..n].to_vec())).await?,
                None => stderr = None,
            },
            exited = &mut *exit, if code.is_none() => {
                *code = Some(exited.unwrap_or(-1));
                grace_end = Some(tokio::time::Instant::now() + OUTPUT_GRACE);
            }
            () = sleep_until(grace_end), if grace_end.is_some() => break,
        }
    }
    write_frame(write, &Frame::Exit(code.unwrap_or(-1))).await?;
    write.shutdown().await
}

/// Runs an attach session until the container's exit was sent or the client left.
pub(super) async fn serve_attach(stream: UnixStream, mut output: Subscription, mut input: Input) {
    let (read, mut write) = stream.into_split();
    let mut frames = FrameReader::new(read);
    tokio::select! {
        _ = attach_output(&mut write, &mut output) => {}
        () = take_input(&mut frames, &mut input) => {}
    }
    input.end_stdin();
}

async fn attach_output(
    write: &mut OwnedWriteHalf,
    output: &mut Subscription,
) -> std::io::Result<()> {
    while let Some(event) = output.next().await {
        let frame = match event {
            Event::Output(Stream::Stdout, bytes) => Frame::Stdout(bytes),
            Event::Output(Stream::Stderr, bytes) => Frame::Stderr(bytes),
            Event::Exit(code) => {
                write_frame(write, &Frame::Exit(code)).await?;
                return write.shutdown().await;
            }
        };
        write_frame(write, &frame).await?;
    }
    Ok(())
}

/// Carries out the client's frames until it leaves (end of file, a broken connection or a
/// frame a client must not send).
async fn take_input(frames: &mut FrameReader<OwnedReadHalf>, input: &mut Input) {
    let socket = frames.get_ref().as_ref().as_raw_fd();
    loop {
        let Ok(Some(frame)) = frames.next().await else {
            return;
        };
        match frame {
            Frame::Stdin(bytes) => {
                // No stdin (never asked for, none to give, or closed): ignored, as containerd
                // ignores attach input for a container without stdin.
                let Some(sender) = input.stdin.clone().filter(|_| !bytes.is_empty()) else {
                    continue;
                };
                tokio::select! {
                    permit = sender.reserve() => match permit {
                        Ok(permit) => permit.send(StdinCommand::Data(bytes)),
                        // The process closed its stdin or exited.
                        Err(_) => input.stdin = None,
                    },
                    () = frames.closed() => return,
                    () = hung_up(socket) => return,
                }
            }
            Frame::CloseStdin => input.end_stdin(),
            Frame::Resize { width, height } => {
                if let Some(pty) = &input.pty {
                    resize(pty, width, height);
                }
            }
            Frame::Stdout(_) | Frame::Stderr(_) | Frame::Exit(_) => return,
        }
    }
}

/// Resolves once the client's side of the socket is closed. [`FrameReader::closed`] sees
/// that only while it has room to read ahead; with a whole frame waiting (the process does
/// not read its stdin, the client keeps sending) the hang-up is asked of the kernel instead,
/// a few times a second: reading on would buffer without bound.
async fn hung_up(socket: RawFd) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut poll = libc::pollfd {
            fd: socket,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no waiting; the socket outlives this future.
        let ready = unsafe { libc::poll(&mut poll, 1, 0) };
        if ready > 0 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
            return;
        }
    }
}

/// Sets the terminal size; the kernel tells the foreground process group (SIGWINCH).
pub(super) fn resize(pty: &OwnedFd, width: u16, height: u16) {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize, which lives across the call.
    unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &size) };
}

/// One read; None at end of file or on an error (EIO: a pty whose other side closed).
async fn read_chunk(reader: Option<&mut pipe::Receiver>, buf: &mut [u8]) -> Option<usize> {
    match reader {
        Some(reader) => match reader.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
