//! A process's stdin as the monitor holds it: one local task owns the write end (a pipe, or
//! a dup of the pty master) and writes what sessions send it, in order, with back-pressure
//! (a bounded channel; the task waits while the process does not read). Closing it gives the
//! process end of file — for a pipe; a terminal has no end of file to give, so for a pty
//! closing only stops forwarding.

use std::os::fd::OwnedFd;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::error::RequestError;

pub(super) enum StdinCommand {
    Data(Vec<u8>),
    Close,
}

/// Handle on a process's stdin; clones write to the same stream.
pub(super) type StdinSender = mpsc::Sender<StdinCommand>;

/// Starts forwarding to `fd` (made nonblocking here) and returns the handle.
pub(super) fn forward(fd: OwnedFd) -> Result<StdinSender, RequestError> {
    set_nonblocking(&fd)?;
    let mut sink = tokio::net::unix::pipe::Sender::from_owned_fd_unchecked(fd)
        .map_err(RequestError::io("cannot watch the stdin pipe"))?;
    // A few chunks in flight: sessions wait beyond that, so memory stays bounded.
    let (tx, mut rx) = mpsc::channel(4);
    tokio::task::spawn_local(async move {
        while let Some(StdinCommand::Data(bytes)) = rx.recv().await {
            // An error means the process closed its stdin or exited: nothing more to do.
            if sink.write_all(&bytes).await.is_err() {
                break;
            }
        }
        // Close, or every handle gone: the write end closes here.
    });
    Ok(tx)
}

/// Asks for the stdin to close once what was sent before is written; never waits.
pub(super) fn close(stdin: StdinSender) {
    tokio::task::spawn_local(async move {
        let _ = stdin.send(StdinCommand::Close).await;
    });
}

/// tokio polls fds that do not block; a pty master or a pipe end shares its flags with
/// every dup of it, which is fine: the monitor only ever uses them through tokio.
pub(super) fn set_nonblocking(fd: &OwnedFd) -> Result<(), RequestError> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let what = "cannot make an fd nonblocking";
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(RequestError::os(what))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags))
        .map(drop)
        .map_err(RequestError::os(what))
}
