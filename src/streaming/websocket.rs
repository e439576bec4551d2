//! WebSocket transports: remotecommand's binary channel protocols (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`: every message starts with its channel number) and a plain byte
//! stream over binary messages, which carries SPDY for `SPDY/3.1+portforward.k8s.io`.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::PollSender;

use super::remotecommand::{Channels, Version};
use crate::monitor::protocol::StdioRequest;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: "this channel is closed"; the payload's byte names the channel.
const CLOSE: u8 = 255;

/// Biggest message we send; larger writes go out in several.
const MAX_MESSAGE: usize = 64 * 1024;
/// Messages queued towards the client or towards the session before back-pressure.
const QUEUE: usize = 16;

/// How long a client may take to answer our close before its connection is dropped.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends a channel session's WebSocket once the session is over.
pub struct Closer {
    outgoing: mpsc::Sender<Message>,
    writer: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<()>,
}

impl Closer {
    /// Sends a normal close after everything written so far, waits until it is out, and
    /// gives the client a moment to close its side; a client that does not is dropped.
    pub async fn close(mut self) {
        // Clients treat a close without a status code as an error.
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: Default::default(),
        };
        let _ = self.outgoing.send(Message::Close(Some(normal))).await;
        drop(self.outgoing);
        let _ = self.writer.await;
        if tokio::time::timeout(CLOSE_TIMEOUT, &mut self.reader)
            .await
            .is_err()
        {
            self.reader.abort();
        }
    }
}

/// A remotecommand session's channels over one WebSocket, a future that resolves when the
/// client has gone, and the closer of the connection.
pub fn channels<IO>(
    ws: WebSocketStream<IO>,
    version: Version,
    stdio: StdioRequest,
) -> (
    Channels,
    impl std::future::Future<Output = ()> + Send,
    Closer,
)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (outgoing, mut queued) = mpsc::channel::<Message>(QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(message) = queued.recv().await {
            let last = message.is_close();
            if sink.send(message).await.is_err() || last {
                break;
            }
        }
    });
    let (stdin_tx, stdin) = input_channel(stdio.stdin);
    let (resize_tx, resize) = input_channel(stdio.tty && version.resizes());
    let (gone_tx, client_gone) = oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut inputs = [(STDIN, stdin_tx), (RESIZE, resize_tx)];
        while let Some(Ok(message)) = source.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                // Pings are answered by the WebSocket layer; text is not part of these
                // protocols.
                _ => continue,
            };
            let Some((&channel, payload)) = data.split_first() else {
                continue;
            };
            let target = match channel {
                CLOSE if version >= Version::V5 => {
                    if let Some(&closed) = payload.first() {
                        inputs
                            .iter_mut()
                            .filter(|(c, _)| *c == closed)
                            .for_each(|(_, tx)| *tx = None);
                    }
                    continue;
                }
                _ => inputs.iter().find(|(c, _)| *c == channel),
            };
            if let Some((_, Some(tx))) = target {
                let _ = tx.send(Ok(data.slice(1..))).await;
            }
        }
        let _ = gone_tx.send(());
    });
    let output = |open: bool, channel: u8| {
        open.then(|| {
            Box::new(ChannelWriter::new(channel, outgoing.clone()))
                as super::remotecommand::BoxWrite
        })
    };
    let channels = Channels {
        stdin,
        stdout: output(stdio.stdout, STDOUT),
        stderr: output(stdio.stderr && !stdio.tty, STDERR),
        error: Box::new(ChannelWriter::new(ERROR, outgoing.clone())),
        resize,
        holds: Vec::new(),
    };
    let gone = async move {
        let _ = client_gone.await;
    };
    let closer = Closer {
        outgoing,
        writer,
        reader,
    };
    (channels, gone, closer)
}

type InputSender = Option<mpsc::Sender<std::io::Result<Bytes>>>;

fn input_channel(open: bool) -> (InputSender, Option<super::remotecommand::BoxRead>) {
    if !open {
        return (None, None);
    }
    let (tx, rx) = mpsc::channel(QUEUE);
    let reader = tokio_util::io::StreamReader::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    (Some(tx), Some(Box::new(reader)))
}

/// Writes into one channel: each write becomes a message behind the channel's number, queued
/// in order with every other channel's.
struct ChannelWriter {
    channel: u8,
    queue: PollSender<Message>,
}

impl ChannelWriter {
    fn new(channel: u8, outgoing: mpsc::Sender<Message>) -> ChannelWriter {
        ChannelWriter {
            channel,
            queue: PollSender::new(outgoing),
        }
    }
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let closed = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        ready!(self.queue.poll_reserve(cx)).map_err(|_| closed())?;
        let n = buf.len().min(MAX_MESSAGE);
        let mut message = Vec::with_capacity(n + 1);
        message.push(self.channel);
        message.extend_from_slice(&buf[..n]);
        self.queue
            .send_item(Message::Binary(message.into()))
            .map_err(|_| closed())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A WebSocket as a byte stream: binary messages in, binary messages out.
pub struct ByteStream<IO> {
    ws: WebSocketStream<IO>,
    unread: Bytes,
}

impl<IO> ByteStream<IO> {
    pub fn new(ws: WebSocketStream<IO>) -> ByteStream<IO> {
        ByteStream {
            ws,
            unread: Bytes::new(),
        }
    }
}

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> std::io::Error {
    std::io::Error::other(e)
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for ByteStream<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.unread.is_empty() {
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.unread = data,
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(ws_error(e))),
            }
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ByteStream<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(ws_error)?;
        let n = buf.len().min(MAX_MESSAGE);
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(ws_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(ws_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(ws_error)
    }
}
