//! A process's stdio as the monitor sets it up: the pipes (or, for a terminal, the console
//! socket the executor sends the pty master through), the fds the forked child moves into
//! place, the monitor's ends once the executor is ready, and the pumps that copy a
//! container's output into its CRI log and to its attach sessions.

use std::cell::RefCell;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::error::RequestError;
use super::fanout::Fanout;
use super::logs::{LogWriter, Stream};
use super::protocol::StdioRequest;

/// A process's stdio as [`StdioRequest`] asks: the child's fds 0-2 (and console socket), and
/// the monitor's ends.
pub(super) struct Stdio {
    child: [OwnedFd; 3],
    /// A terminal's console socket, the executor's end (its fd 5).
    console: Option<OwnedFd>,
    parent: ParentEnds,
}

/// The monitor's ends of a process's stdio.
pub(super) struct Parent {
    /// Where to write the process's input: a pipe, or a dup of the pty master.
    pub(super) stdin: Option<OwnedFd>,
    pub(super) outputs: Vec<(OwnedFd, Stream)>,
    /// A dup of the pty master, for resizes.
    pub(super) pty: Option<OwnedFd>,
}

/// The monitor's ends as the fork leaves them: ready (pipes), or a terminal whose master the
/// executor sends once it has made it in the container's devpts.
pub(super) enum ParentEnds {
    Ready(Parent),
    Terminal { socket: OwnedFd, stdin: bool },
}

impl ParentEnds {
    /// The ends to use; for a terminal, call once the executor reported `ready`.
    pub(super) fn finish(self) -> Result<Parent, RequestError> {
        let (socket, stdin) = match self {
            ParentEnds::Ready(parent) => return Ok(parent),
            ParentEnds::Terminal { socket, stdin } => (socket, stdin),
        };
        let master =
            crate::executor::terminal::receive_master(&socket).map_err(RequestError::Reported)?;
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(RequestError::io("cannot duplicate the pty master"))
        };
        Ok(Parent {
            // With or without stdin the process has the terminal on fd 0, as containerd
            // and CRI-O do; without stdin nothing is ever written to it.
            stdin: stdin.then(|| dup(&master)).transpose()?,
            pty: Some(dup(&master)?),
            outputs: vec![(master, Stream::Stdout)],
        })
    }
}

/// The fds a forked child moves into place before it execs the executor.
pub(super) struct ChildFds {
    pub(super) stdio: [RawFd; 3],
    pub(super) console: Option<RawFd>,
}

impl Stdio {
    pub(super) fn new(request: StdioRequest) -> Result<Stdio, RequestError> {
        let null = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(RequestError::io("cannot open /dev/null"))
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
            .map_err(RequestError::os("cannot create the console socket"))?;
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
        let mut output = |wanted: bool, stream: Stream| -> Result<OwnedFd, RequestError> {
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

    pub(super) fn child_ends(&self) -> ChildFds {
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
    pub(super) fn parent_ends(self) -> ParentEnds {
        self.parent
    }
}

pub(super) fn pipe_pair() -> Result<(OwnedFd, OwnedFd), RequestError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(RequestError::os("cannot create a pipe"))
}

pub(super) fn receiver(fd: OwnedFd) -> Result<pipe::Receiver, RequestError> {
    pipe::Receiver::from_owned_fd(fd).map_err(RequestError::io("cannot watch a pipe"))
}

/// A pipe or pty master end to read with tokio. A pty master is not a pipe, but like one it
/// is a plain fd tokio can poll once it is nonblocking.
pub(super) fn nonblocking_receiver(fd: OwnedFd) -> Result<pipe::Receiver, RequestError> {
    super::stdin::set_nonblocking(&fd)?;
    pipe::Receiver::from_owned_fd_unchecked(fd).map_err(RequestError::io("cannot watch a pipe"))
}

/// The container's CRI log (None when kubelet asked for none).
pub(super) fn open_log(path: &Path) -> Result<Option<LogWriter>, RequestError> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(RequestError::io(format!("cannot create {}", dir.display())))?;
    }
    LogWriter::open(path)
        .map(Some)
        .map_err(RequestError::io(format!(
            "cannot open log {}",
            path.display()
        )))
}

/// Copies one stdio stream of a container into its log, and to its attach sessions, until
/// the stream ends.
pub(super) fn pump(
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
