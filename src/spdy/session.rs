//! The per-connection task: a read loop that dispatches frames and a writer that
//! drains the outgoing queue, plus the [`Connection`] and [`Incoming`] handles.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frame::{self, Frame, FrameError, Setting, goaway, rst, setting};
use super::headers::{HeaderDecoder, HeaderEncoder, HeaderError};
use super::state::{MAX_WINDOW, Outgoing, Shared, State, StreamState};
use super::stream::Stream;
use super::{Config, Headers, PeerFlowControl};

/// How much to ask the transport for per read.
const READ_CHUNK: usize = 64 * 1024;
/// Queue size above which the read loop stops answering control frames (e.g. a PING
/// flood from a peer that does not read) until the writer catches up.
const CONTROL_QUEUE_LIMIT: usize = 1 << 20;

/// Handle to a running session. Cheap to clone; dropping it does not end the session.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

/// Streams opened by the peer, in the order their SYN_STREAM arrived.
pub struct Incoming {
    streams: mpsc::UnboundedReceiver<Stream>,
}

impl Incoming {
    /// The next peer-opened stream; `None` once the session has ended.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.streams.recv().await
    }
}

impl Connection {
    /// Sends GOAWAY, flushes queued frames, shuts the transport down and waits for the
    /// session to end. Streams still open then fail with `ConnectionAborted`.
    pub async fn close(&self) {
        {
            let mut st = self.shared.lock();
            if !st.closing {
                let last_good_stream_id = st.last_peer_stream_id;
                st.push_frame(Frame::GoAway {
                    last_good_stream_id,
                    status: goaway::OK,
                });
                st.closing = true;
                st.wake_all_writers();
            }
        }
        self.shared.writer_wake.notify_one();
        self.closed().await;
    }

    /// Resolves once the session has ended: peer closed, protocol error, or `close()`.
    pub async fn closed(&self) {
        let mut ended = self.shared.ended.subscribe();
        // An error means the sender is gone, which also means the session is over.
        let _ = ended.wait_for(|ended| *ended).await;
    }

    pub fn is_closed(&self) -> bool {
        *self.shared.ended.borrow()
    }
}

pub(super) fn spawn<IO>(io: IO, config: Config) -> (Connection, Incoming)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let enforce = config.peer_flow_control == PeerFlowControl::Enforce;
    let shared = Arc::new(Shared::new(config, enforce));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(io, shared.clone(), tx));
    (Connection { shared }, Incoming { streams: rx })
}

enum ReadEnd {
    /// Transport EOF or read error: nothing to tell the peer.
    Transport,
    /// The peer broke the protocol: say GOAWAY PROTOCOL_ERROR before closing.
    Protocol(String),
}

async fn run<IO>(io: IO, shared: Arc<Shared>, incoming: mpsc::UnboundedSender<Stream>)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (reader, writer) = tokio::io::split(io);
    let reading = read_loop(reader, shared.clone(), incoming);
    let writing = write_loop(writer, shared.clone());
    tokio::pin!(reading, writing);
    tokio::select! {
        end = &mut reading => {
            {
                let mut st = shared.lock();
                if let ReadEnd::Protocol(reason) = end {
                    tracing::debug!(%reason, "spdy: protocol error, sending GOAWAY");
                    let last_good_stream_id = st.last_peer_stream_id;
                    st.push_frame(Frame::GoAway { last_good_stream_id, status: goaway::PROTOCOL_ERROR });
                }
                st.closing = true;
                st.wake_all_writers();
            }
            shared.writer_wake.notify_one();
            let _ = tokio::time::timeout(shared.config.close_timeout, &mut writing).await;
        }
        result = &mut writing => {
            if let Err(err) = result {
                tracing::debug!(%err, "spdy: transport write failed");
            }
        }
    }
    shared.lock().end();
    shared.ended.send_replace(true);
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut transport: W,
    shared: Arc<Shared>,
) -> io::Result<()> {
    let mut encoder = HeaderEncoder::new();
    let mut wire = Vec::with_capacity(READ_CHUNK);
    loop {
        let (batch, closing) = {
            let mut st = shared.lock();
            (st.take_queue(), st.closing)
        };
        if batch.is_empty() {
            if closing {
                transport.flush().await?;
                let _ = transport.shutdown().await;
                return Ok(());
            }
            // notify_one stores a permit, so a push between the check and here is not lost.
            shared.writer_wake.notified().await;
            continue;
        }
        wire.clear();
        let mut cost = 0;
        for out in batch {
            cost += out.cost();
            match out {
                Outgoing::Frame(frame) => frame.encode(&mut wire),
                Outgoing::Reply {
                    stream_id,
                    fin,
                    headers,
                } => Frame::SynReply {
                    stream_id,
                    fin,
                    header_block: encoder.encode(&headers).into(),
                }
                .encode(&mut wire),
            }
        }
        transport.write_all(&wire).await?;
        transport.flush().await?;
        shared.lock().release_queue(cost);
        shared.queue_drained.notify_waiters();
        if wire.capacity() > 4 * READ_CHUNK {
            wire = Vec::with_capacity(READ_CHUNK);
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut transport: R,
    shared: Arc<Shared>,
    incoming: mpsc::UnboundedSender<Stream>,
) -> ReadEnd {
    let mut dispatcher = Dispatcher {
        decoder: HeaderDecoder::new(shared.config.max_header_block_len),
        shared,
        incoming,
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        loop {
            match frame::parse(&buf, dispatcher.shared.config.max_frame_len) {
                Ok(Some((frame, used))) => {
                    buf.advance(used);
                    if let Err(end) = dispatcher.handle(frame).await {
                        return end;
                    }
                }
                Ok(None) => break,
                Err(err) => return ReadEnd::Protocol(err.to_string()),
            }
        }
        buf.reserve(READ_CHUNK);
        match transport.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return ReadEnd::Transport,
            Ok(_) => {}
        }
    }
}

fn protocol(reason: impl Into<String>) -> ReadEnd {
    ReadEnd::Protocol(reason.into())
}

impl From<FrameError> for ReadEnd {
    fn from(err: FrameError) -> Self {
        ReadEnd::Protocol(err.to_string())
    }
}

struct Dispatcher {
    shared: Arc<Shared>,
    decoder: HeaderDecoder,
    incoming: mpsc::UnboundedSender<Stream>,
}

/// What a header block decoded to, once session-fatal failures are ruled out.
type BlockResult = Result<Headers, HeaderError>;

impl Dispatcher {
    async fn handle(&mut self, frame: Frame) -> Result<(), ReadEnd> {
        self.wait_for_queue_room().await;
        match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => self.on_data(stream_id, fin, data).await,
            Frame::SynStream {
                stream_id,
                fin,
                unidirectional,
                header_block,
                ..
            } => {
                let headers = self.decode(&header_block)?;
                self.on_syn_stream(stream_id, fin, unidirectional, headers)
            }
            Frame::SynReply {
                stream_id,
                header_block,
                ..
            } => self.on_syn_reply(stream_id, &header_block),
            Frame::Headers {
                stream_id,
                fin,
                header_block,
            } => {
                let headers = self.decode(&header_block)?;
                self.on_headers(stream_id, fin, headers);
                Ok(())
            }
            Frame::RstStream { stream_id, .. } => {
                self.shared.lock().reset_stream(stream_id, None);
                self.shared.read_space.notify_waiters();
                Ok(())
            }
            Frame::Settings { entries, .. } => self.on_settings(&entries),
            Frame::Ping { id } => {
                // Server-initiated pings use even ids, so an odd id is the peer's to echo.
                if id % 2 == 1 {
                    self.shared.lock().push_frame(Frame::Ping { id });
                    self.shared.writer_wake.notify_one();
                }
                Ok(())
            }
            Frame::GoAway { .. } => {
                // The peer opens no more streams; existing ones run until the transport closes.
                Ok(())
            }
            Frame::WindowUpdate { stream_id, delta } => self.on_window_update(stream_id, delta),
            Frame::UnknownControl { frame_type } => {
                tracing::trace!(frame_type, "spdy: ignoring unknown control frame");
                Ok(())
            }
        }
    }

    fn on_syn_reply(&mut self, stream_id: u32, header_block: &[u8]) -> Result<(), ReadEnd> {
        // Decoded only to keep the shared zlib context in step with the peer.
        let _ = self.decode(header_block)?;
        // We never open streams, so no SYN_REPLY is ever expected.
        let mut st = self.shared.lock();
        if st.streams.contains_key(&stream_id) {
            st.reset_stream(stream_id, Some(rst::PROTOCOL_ERROR));
        } else {
            st.push_frame(Frame::RstStream {
                stream_id,
                status: rst::INVALID_STREAM,
            });
        }
        drop(st);
        self.shared.writer_wake.notify_one();
        Ok(())
    }

    /// Only the initial window size matters to us; a change applies to every open stream.
    fn on_settings(&mut self, entries: &[Setting]) -> Result<(), ReadEnd> {
        let mut st = self.shared.lock();
        for entry in entries {
            if entry.id != setting::INITIAL_WINDOW_SIZE {
                continue;
            }
            let value = i64::from(entry.value);
            if value > MAX_WINDOW {
                return Err(protocol("SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1"));
            }
            let delta = value - st.peer_initial_window;
            st.peer_initial_window = value;
            for stream in st.streams.values_mut() {
                stream.send_window += delta;
            }
            self.peer_speaks_flow_control(&mut st);
        }
        st.wake_all_writers();
        Ok(())
    }

    /// Decodes a header block. Compression failures kill the session (the shared zlib
    /// context is lost); layout errors are returned for the caller to reset the stream.
    fn decode(&mut self, block: &[u8]) -> Result<BlockResult, ReadEnd> {
        match self.decoder.decode(block) {
            Err(HeaderError::Compression(reason)) => Err(protocol(reason)),
            other => Ok(other),
        }
    }

    fn peer_speaks_flow_control(&self, st: &mut State) {
        if self.shared.config.peer_flow_control == PeerFlowControl::Auto {
            st.enforce_peer_windows = true;
        }
    }

    async fn wait_for_queue_room(&self) {
        loop {
            let drained = self.shared.queue_drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let st = self.shared.lock();
                if st.queued_bytes < CONTROL_QUEUE_LIMIT || st.closing {
                    return;
                }
            }
            drained.await;
        }
    }

    fn on_syn_stream(
        &mut self,
        stream_id: u32,
        fin: bool,
        unidirectional: bool,
        headers: BlockResult,
    ) -> Result<(), ReadEnd> {
        let mut st = self.shared.lock();
        if stream_id == 0 || stream_id.is_multiple_of(2) {
            return Err(protocol(format!("peer opened stream id {stream_id}")));
        }
        if stream_id <= st.last_peer_stream_id {
            if st.streams.contains_key(&stream_id) {
                st.reset_stream(stream_id, Some(rst::PROTOCOL_ERROR));
                drop(st);
                self.shared.writer_wake.notify_one();
                return Ok(());
            }
            return Err(protocol(format!("stream id {stream_id} is not increasing")));
        }
        st.last_peer_stream_id = stream_id;
        let refuse = |st: &mut State, status| {
            st.push_frame(Frame::RstStream { stream_id, status });
        };
        let headers = match headers {
            Ok(headers) => headers,
            Err(_) => {
                refuse(&mut st, rst::PROTOCOL_ERROR);
                drop(st);
                self.shared.writer_wake.notify_one();
                return Ok(());
            }
        };
        if st.closing || st.streams.len() >= self.shared.config.max_concurrent_streams {
            refuse(&mut st, rst::REFUSED_STREAM);
            drop(st);
            self.shared.writer_wake.notify_one();
            return Ok(());
        }
        let send_window = st.peer_initial_window;
        st.streams.insert(
            stream_id,
            StreamState {
                remote_fin: fin,
                local_fin: unidirectional,
                send_window,
                handles: 1,
                ..StreamState::default()
            },
        );
        drop(st);
        let stream = Stream::new(self.shared.clone(), stream_id, headers);
        if let Err(mpsc::error::SendError(stream)) = self.incoming.send(stream) {
            // Nobody accepts streams any more.
            self.shared
                .lock()
                .reset_stream(stream.id(), Some(rst::REFUSED_STREAM));
            drop(stream);
            self.shared.writer_wake.notify_one();
        }
        Ok(())
    }

    async fn on_data(
        &mut self,
        stream_id: u32,
        fin: bool,
        data: bytes::Bytes,
    ) -> Result<(), ReadEnd> {
        if stream_id == 0 {
            return Err(protocol("DATA on stream 0"));
        }
        let len = data.len();
        loop {
            let space = self.shared.read_space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let mut st = self.shared.lock();
                let config = &self.shared.config;
                let over_total = st.buffered_total >= config.max_buffered_total;
                let last_peer_stream_id = st.last_peer_stream_id;
                let Some(stream) = st.streams.get_mut(&stream_id) else {
                    // Ids we have seen are closed streams whose DATA may still be in
                    // flight; anything else was never opened.
                    if stream_id > last_peer_stream_id || stream_id.is_multiple_of(2) {
                        st.push_frame(Frame::RstStream {
                            stream_id,
                            status: rst::INVALID_STREAM,
                        });
                    }
                    st.credit_consumed(None, len);
                    break;
                };
                if stream.reset {
                    st.credit_consumed(None, len);
                    break;
                }
                if stream.remote_fin {
                    st.reset_stream(stream_id, Some(rst::STREAM_ALREADY_CLOSED));
                    st.credit_consumed(None, len);
                    break;
                }
                let full = stream.recv_buffered >= config.max_buffered_per_stream || over_total;
                if len == 0 || !full {
                    if len > 0 {
                        stream.recv_buffered += len;
                        stream.recv.push_back(data.clone());
                    }
                    if fin {
                        stream.remote_fin = true;
                    }
                    if let Some(waker) = stream.read_waker.take() {
                        waker.wake();
                    }
                    st.buffered_total += len;
                    return Ok(());
                }
            }
            // Back-pressure: leave the transport unread until the application catches up.
            space.await;
        }
        self.shared.writer_wake.notify_one();
        Ok(())
    }

    fn on_headers(&mut self, stream_id: u32, fin: bool, headers: BlockResult) {
        let mut st = self.shared.lock();
        let last_peer_stream_id = st.last_peer_stream_id;
        let known = st.streams.contains_key(&stream_id);
        if known && headers.is_err() {
            st.reset_stream(stream_id, Some(rst::PROTOCOL_ERROR));
        } else if let Some(stream) = st.streams.get_mut(&stream_id) {
            // Extra headers carry nothing Kubernetes uses; only the FIN matters.
            if fin && !stream.reset {
                stream.remote_fin = true;
                if let Some(waker) = stream.read_waker.take() {
                    waker.wake();
                }
            }
        } else if stream_id > last_peer_stream_id || stream_id.is_multiple_of(2) {
            st.push_frame(Frame::RstStream {
                stream_id,
                status: rst::INVALID_STREAM,
            });
        }
        drop(st);
        self.shared.writer_wake.notify_one();
    }

    fn on_window_update(&mut self, stream_id: u32, delta: u32) -> Result<(), ReadEnd> {
        let delta = i64::from(delta);
        let mut st = self.shared.lock();
        self.peer_speaks_flow_control(&mut st);
        if stream_id == 0 {
            st.session_send_window += delta;
            if st.session_send_window > MAX_WINDOW {
                return Err(protocol("session window above 2^31-1"));
            }
        } else if let Some(stream) = st.streams.get_mut(&stream_id) {
            stream.send_window += delta;
            if stream.send_window > MAX_WINDOW {
                st.reset_stream(stream_id, Some(rst::FLOW_CONTROL_ERROR));
                drop(st);
                self.shared.writer_wake.notify_one();
                return Ok(());
            }
        }
        st.wake_all_writers();
        Ok(())
    }
}
