//! The daemon's side of exec and attach sessions: one connection to the pod's monitor per
//! session, split into a writer (stdin, stdin close, resizes) and a reader (output, then the
//! exit). Both halves are `Send`, for the streaming server's tasks. Dropping both closes the
//! connection, which the monitor takes as the client leaving: an exec is killed (its whole
//! process group), an attach detaches (closing the container's stdin if it is `stdin_once`
//! and this session carried stdin).

use std::path::Path;

use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::client::MonitorError;
use super::frames::{Frame, FrameReader, MAX_PAYLOAD, write_frame};
use super::layout::SOCKET;
use super::protocol::{self, AttachRequest, ExecStreamRequest, ProtocolError, Request, Response};

/// What a session delivers, in order: output, then the exit (code, or 128 + signal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
}

/// Starts `request.args` in the container as a session.
pub async fn exec(
    pod_dir: &Path,
    request: ExecStreamRequest,
) -> Result<(SessionWriter, SessionReader), MonitorError> {
    open(pod_dir, &Request::Exec(request)).await
}

/// Attaches to the container's stdio.
pub async fn attach(
    pod_dir: &Path,
    request: AttachRequest,
) -> Result<(SessionWriter, SessionReader), MonitorError> {
    open(pod_dir, &Request::Attach(request)).await
}

async fn open(
    pod_dir: &Path,
    request: &Request,
) -> Result<(SessionWriter, SessionReader), MonitorError> {
    let socket = pod_dir.join(SOCKET);
    let io = |source| ProtocolError::Io {
        path: socket.clone(),
        source,
    };
    let mut stream = protocol::connect(&socket).await.map_err(io)?;
    protocol::write_message(&mut stream, request)
        .await
        .map_err(io)?;
    match protocol::read_message(&mut stream).await {
        Ok(Response::Done) => {}
        Ok(Response::Error { kind, message }) => {
            return Err(ProtocolError::Remote { kind, message }.into());
        }
        Ok(other) => return Err(MonitorError::Unexpected(other)),
        Err(ProtocolError::Io { source, .. }) => return Err(io(source).into()),
        Err(e) => return Err(e.into()),
    }
    let (read, write) = stream.into_split();
    Ok((
        SessionWriter { write: Some(write) },
        SessionReader {
            frames: FrameReader::new(read),
        },
    ))
}

/// The client → container half of a session.
pub struct SessionWriter {
    /// Always Some until dropped.
    write: Option<OwnedWriteHalf>,
}

impl SessionWriter {
    /// Sends input for the process's stdin (ignored by the monitor when the session has no
    /// stdin). Waits while the process does not read.
    pub async fn stdin(&mut self, data: &[u8]) -> std::io::Result<()> {
        for chunk in data.chunks(MAX_PAYLOAD) {
            self.send(&Frame::Stdin(chunk.to_vec())).await?;
        }
        Ok(())
    }

    /// The client's stdin ended: an exec's stdin closes (end of file); an attach stops
    /// sending, and closes the container's stdin if it is `stdin_once`.
    pub async fn close_stdin(&mut self) -> std::io::Result<()> {
        self.send(&Frame::CloseStdin).await
    }

    /// New terminal size (ignored without a terminal).
    pub async fn resize(&mut self, width: u16, height: u16) -> std::io::Result<()> {
        self.send(&Frame::Resize { width, height }).await
    }

    async fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        match self.write.as_mut() {
            Some(write) => write_frame(write, frame).await,
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Drop for SessionWriter {
    fn drop(&mut self) {
        // Dropping an OwnedWriteHalf shuts the socket down for writing, which the monitor
        // would read as the client leaving; the connection must last while the reader does.
        if let Some(write) = self.write.take() {
            write.forget();
        }
    }
}

/// The container → client half of a session.
pub struct SessionReader {
    frames: FrameReader<OwnedReadHalf>,
}

impl SessionReader {
    /// The next output or the exit; None once the monitor closed the connection (after the
    /// exit; without one if the monitor or the container's record went away). An attach
    /// session that reads slower than the container writes loses the output that does not
    /// fit its 1 MiB queue in the monitor (the CRI log has all of it).
    pub async fn next(&mut self) -> std::io::Result<Option<Output>> {
        match self.frames.next().await? {
            None => Ok(None),
            Some(Frame::Stdout(data)) => Ok(Some(Output::Stdout(data))),
            Some(Frame::Stderr(data)) => Ok(Some(Output::Stderr(data))),
            Some(Frame::Exit(code)) => Ok(Some(Output::Exit(code))),
            Some(other) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the monitor sent {other:?}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send<T: Send>(_: &T) {}

    /// The streaming server runs sessions on the daemon's multi-threaded runtime.
    #[allow(dead_code)]
    fn halves_and_their_futures_are_send(
        mut w: SessionWriter,
        mut r: SessionReader,
        exec_request: ExecStreamRequest,
        attach_request: AttachRequest,
    ) {
        send(&w);
        send(&r);
        send(&w.stdin(b""));
        send(&w.close_stdin());
        send(&w.resize(1, 1));
        send(&r.next());
        send(&exec(Path::new("/"), exec_request));
        send(&attach(Path::new("/"), attach_request));
    }
}
