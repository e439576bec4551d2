//! Application-facing stream handles: tokio `AsyncRead` over received DATA and
//! `AsyncWrite` that queues DATA frames.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Headers;
use super::frame::Frame;
use super::state::{Outgoing, Shared, State};

/// Largest DATA payload we send; keeps one busy stream from hogging the transport.
pub const MAX_DATA_CHUNK: usize = 16 * 1024;
/// Queue size above which `poll_write` waits for the writer task.
const DATA_QUEUE_LIMIT: usize = 256 * 1024;

/// Keeps a stream entry alive; the last one dropped cancels an unfinished stream.
struct StreamHandle {
    shared: Arc<Shared>,
    id: u32,
}

impl StreamHandle {
    fn duplicate(&self) -> Self {
        if let Some(stream) = self.shared.lock().streams.get_mut(&self.id) {
            stream.handles = stream.handles.saturating_add(1);
        }
        Self {
            shared: self.shared.clone(),
            id: self.id,
        }
    }

    /// Runs `f` on the state; if it queued frames, wake the writer afterwards.
    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut st = self.shared.lock();
        let queued_before = st.queued_bytes;
        let result = f(&mut st);
        let queued = st.queued_bytes != queued_before;
        drop(st);
        if queued {
            self.shared.writer_wake.notify_one();
        }
        result
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let id = self.id;
        let (result, consumed) = self.with_state(|st| {
            let ended = st.ended;
            let Some(stream) = st.streams.get_mut(&id) else {
                return (Poll::Ready(Err(io::ErrorKind::NotConnected.into())), 0);
            };
            if stream.reset {
                return (Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())), 0);
            }
            let mut copied = 0;
            while buf.remaining() > 0 {
                let Some(chunk) = stream.recv.front_mut() else {
                    break;
                };
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk.split_to(n));
                copied += n;
                if chunk.is_empty() {
                    stream.recv.pop_front();
                }
            }
            if copied > 0 {
                stream.recv_buffered -= copied;
                st.buffered_total = st.buffered_total.saturating_sub(copied);
                st.credit_consumed(Some(id), copied);
                return (Poll::Ready(Ok(())), copied);
            }
            if stream.remote_fin || buf.remaining() == 0 {
                return (Poll::Ready(Ok(())), 0);
            }
            if ended {
                return (Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into())), 0);
            }
            stream.read_waker = Some(cx.waker().clone());
            (Poll::Pending, 0)
        });
        if consumed > 0 {
            self.shared.read_space.notify_waiters();
        }
        result
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let id = self.id;
        self.with_state(|st| {
            let closing = st.closing;
            let queue_full = st.queued_bytes >= DATA_QUEUE_LIMIT;
            let enforce = st.enforce_peer_windows;
            let session_window = st.session_send_window;
            let Some(stream) = st.streams.get_mut(&id) else {
                return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            };
            if stream.reset {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            if closing || stream.local_fin {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let mut len = data.len().min(MAX_DATA_CHUNK);
            if enforce {
                let window = stream.send_window.min(session_window);
                if window <= 0 {
                    stream.write_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                len = len.min(window as usize);
            }
            if queue_full {
                st.queue_waiters.push(cx.waker().clone());
                return Poll::Pending;
            }
            stream.send_window -= len as i64;
            let needs_reply = !stream.replied;
            stream.replied = true;
            st.session_send_window -= len as i64;
            if needs_reply {
                // spdystream drops DATA that arrives before SYN_REPLY.
                st.push(Outgoing::Reply {
                    stream_id: id,
                    fin: false,
                    headers: Vec::new(),
                });
            }
            st.push_frame(Frame::Data {
                stream_id: id,
                fin: false,
                data: Bytes::copy_from_slice(&data[..len]),
            });
            Poll::Ready(Ok(len))
        })
    }

    fn poll_shutdown(&self) -> Poll<io::Result<()>> {
        let id = self.id;
        self.with_state(|st| {
            let closing = st.closing;
            let Some(stream) = st.streams.get_mut(&id) else {
                return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            };
            if stream.local_fin {
                return Poll::Ready(Ok(()));
            }
            if stream.reset {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            if closing {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            stream.local_fin = true;
            let needs_reply = !stream.replied;
            stream.replied = true;
            // A FIN travels on SYN_REPLY if none was sent yet, else on an empty DATA frame.
            if needs_reply {
                st.push(Outgoing::Reply {
                    stream_id: id,
                    fin: true,
                    headers: Vec::new(),
                });
            } else {
                st.push_frame(Frame::Data {
                    stream_id: id,
                    fin: true,
                    data: Bytes::new(),
                });
            }
            Poll::Ready(Ok(()))
        })
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        let id = self.id;
        self.with_state(|st| st.release_handle(id));
        // The read loop may be waiting for this stream's buffer to drain.
        self.shared.read_space.notify_waiters();
    }
}

/// A peer-opened stream. Reading yields the peer's DATA; writing sends DATA.
pub struct Stream {
    handle: StreamHandle,
    headers: Headers,
}

/// Read half of a [`Stream`].
pub struct StreamReader {
    handle: StreamHandle,
}

/// Write half of a [`Stream`]; `poll_shutdown` half-closes (FIN).
pub struct StreamWriter {
    handle: StreamHandle,
}

impl Stream {
    pub(super) fn new(shared: Arc<Shared>, id: u32, headers: Headers) -> Self {
        Self {
            handle: StreamHandle { shared, id },
            headers,
        }
    }

    pub fn id(&self) -> u32 {
        self.handle.id
    }

    /// Headers of the peer's SYN_STREAM.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// First value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sends SYN_REPLY; `fin` also half-closes our side. Only the first reply is allowed.
    pub async fn reply(&self, headers: Headers, fin: bool) -> io::Result<()> {
        let id = self.handle.id;
        self.handle.with_state(|st| {
            let closing = st.closing;
            let Some(stream) = st.streams.get_mut(&id) else {
                return Err(io::ErrorKind::NotConnected.into());
            };
            if stream.reset {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            if closing {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            if stream.replied {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "SYN_REPLY already sent on this stream",
                ));
            }
            stream.replied = true;
            if fin {
                stream.local_fin = true;
            }
            st.push(Outgoing::Reply {
                stream_id: id,
                fin,
                headers,
            });
            Ok(())
        })
    }

    /// Sends RST_STREAM with `status` (see [`super::frame::rst`]); later I/O fails with
    /// `ConnectionReset`. Does nothing if the stream is already reset.
    pub fn reset(&self, status: u32) {
        let id = self.handle.id;
        self.handle
            .with_state(|st| st.reset_stream(id, Some(status)));
        self.handle.shared.read_space.notify_waiters();
    }

    pub fn into_split(self) -> (StreamReader, StreamWriter) {
        let writer = StreamWriter {
            handle: self.handle.duplicate(),
        };
        (
            StreamReader {
                handle: self.handle,
            },
            writer,
        )
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.handle.poll_read(cx, buf)
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.handle.poll_read(cx, buf)
    }
}

/// Frames are handed to the session writer, which flushes the transport after every
/// batch, so `poll_flush` has nothing left to do.
macro_rules! impl_async_write {
    ($type:ty) => {
        impl AsyncWrite for $type {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                data: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.handle.poll_write(cx, data)
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.handle.poll_shutdown()
            }
        }
    };
}

impl_async_write!(Stream);
impl_async_write!(StreamWriter);

impl StreamReader {
    pub fn id(&self) -> u32 {
        self.handle.id
    }
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.handle.id
    }
}
