//! Session state shared by the session task and the stream handles.
//!
//! One `std::sync::Mutex` guards everything; critical sections are short and never
//! await. Outgoing frames go through one ordered queue so header blocks are
//! compressed in wire order and a stream's FIN or RST never overtakes its DATA.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;
use tokio::sync::{Notify, watch};

use super::Config;
use super::Headers;
use super::frame::{Frame, rst};

/// SPDY/3.1 initial window, for both streams and the session.
pub const DEFAULT_WINDOW: i64 = 64 * 1024;
/// Windows are 31-bit quantities.
pub const MAX_WINDOW: i64 = 0x7FFF_FFFF;
/// Announce consumed bytes once half of the initial window has been read.
const WINDOW_UPDATE_THRESHOLD: u32 = (DEFAULT_WINDOW / 2) as u32;

/// A frame waiting for the writer task.
pub enum Outgoing {
    Frame(Frame),
    /// Header blocks are compressed by the writer, in queue order.
    Reply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
}

impl Outgoing {
    /// Approximate wire size, used only for queue back-pressure.
    pub fn cost(&self) -> usize {
        match self {
            Outgoing::Frame(Frame::Data { data, .. }) => 8 + data.len(),
            Outgoing::Frame(_) => 32,
            Outgoing::Reply { headers, .. } => {
                32 + headers
                    .iter()
                    .map(|(n, v)| n.len() + v.len() + 8)
                    .sum::<usize>()
            }
        }
    }
}

#[derive(Default)]
pub struct StreamState {
    /// Received DATA not yet read by the application, in arrival order.
    pub recv: VecDeque<Bytes>,
    pub recv_buffered: usize,
    /// Bytes read by the application and not yet announced with WINDOW_UPDATE.
    pub recv_consumed: u32,
    pub remote_fin: bool,
    pub local_fin: bool,
    /// RST_STREAM sent or received: the stream is dead in both directions.
    pub reset: bool,
    pub replied: bool,
    /// What the peer still allows us to send (may go negative after SETTINGS shrink it).
    pub send_window: i64,
    pub read_waker: Option<Waker>,
    pub write_waker: Option<Waker>,
    /// Live `Stream`/`StreamReader`/`StreamWriter` values; the entry goes when it hits 0.
    pub handles: u8,
}

impl StreamState {
    fn wake(&mut self) {
        if let Some(waker) = self.read_waker.take() {
            waker.wake();
        }
        if let Some(waker) = self.write_waker.take() {
            waker.wake();
        }
    }

    /// Drops unread data; returns how many bytes that was, for session-window credit.
    fn discard_received(&mut self) -> usize {
        let dropped = self.recv_buffered;
        self.recv.clear();
        self.recv_buffered = 0;
        dropped
    }
}

pub struct State {
    pub streams: HashMap<u32, StreamState>,
    /// Highest stream id the peer has opened; lower ids not in `streams` are closed.
    pub last_peer_stream_id: u32,
    queue: VecDeque<Outgoing>,
    pub queued_bytes: usize,
    pub queue_waiters: Vec<Waker>,
    pub session_send_window: i64,
    session_recv_consumed: u32,
    pub buffered_total: usize,
    pub peer_initial_window: i64,
    /// Whether writers wait for the peer's windows (see the module docs for why this varies).
    pub enforce_peer_windows: bool,
    /// No new application frames; the writer drains the queue and shuts the transport.
    pub closing: bool,
    pub ended: bool,
}

impl State {
    pub fn new(enforce_peer_windows: bool) -> Self {
        Self {
            streams: HashMap::new(),
            last_peer_stream_id: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            queue_waiters: Vec::new(),
            session_send_window: DEFAULT_WINDOW,
            session_recv_consumed: 0,
            buffered_total: 0,
            peer_initial_window: DEFAULT_WINDOW,
            enforce_peer_windows,
            closing: false,
            ended: false,
        }
    }

    pub fn push(&mut self, out: Outgoing) {
        if self.ended {
            return;
        }
        self.queued_bytes += out.cost();
        self.queue.push_back(out);
    }

    pub fn push_frame(&mut self, frame: Frame) {
        self.push(Outgoing::Frame(frame));
    }

    pub fn take_queue(&mut self) -> Vec<Outgoing> {
        self.queue.drain(..).collect()
    }

    /// The writer finished writing frames worth `cost`; let blocked writers retry.
    pub fn release_queue(&mut self, cost: usize) {
        self.queued_bytes = self.queued_bytes.saturating_sub(cost);
        for waker in self.queue_waiters.drain(..) {
            waker.wake();
        }
    }

    /// Records that `len` received bytes left our buffers, sending WINDOW_UPDATE when due.
    /// `stream_id` is `None` when the data was dropped rather than read by a stream.
    pub fn credit_consumed(&mut self, stream_id: Option<u32>, len: usize) {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.session_recv_consumed = self.session_recv_consumed.saturating_add(len);
        if self.session_recv_consumed >= WINDOW_UPDATE_THRESHOLD {
            let delta = self.session_recv_consumed.min(MAX_WINDOW as u32);
            self.session_recv_consumed -= delta;
            self.push_frame(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
        let Some(id) = stream_id else { return };
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.recv_consumed = stream.recv_consumed.saturating_add(len);
        // A peer that has finished sending needs no more credit on this stream.
        if stream.recv_consumed >= WINDOW_UPDATE_THRESHOLD && !stream.remote_fin && !stream.reset {
            let delta = stream.recv_consumed.min(MAX_WINDOW as u32);
            stream.recv_consumed -= delta;
            self.push_frame(Frame::WindowUpdate {
                stream_id: id,
                delta,
            });
        }
    }

    /// Marks a stream reset (sending RST_STREAM with `status` if given) and wakes its users.
    pub fn reset_stream(&mut self, id: u32, status: Option<u32>) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.reset {
            return;
        }
        stream.reset = true;
        let dropped = stream.discard_received();
        stream.wake();
        self.buffered_total = self.buffered_total.saturating_sub(dropped);
        if let Some(status) = status {
            self.push_frame(Frame::RstStream {
                stream_id: id,
                status,
            });
        }
        self.credit_consumed(None, dropped);
    }

    /// One handle went away; the last one removes the stream, cancelling it if still open.
    pub fn release_handle(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.handles = stream.handles.saturating_sub(1);
        if stream.handles > 0 {
            return;
        }
        let finished = stream.reset || (stream.local_fin && stream.remote_fin);
        if !finished {
            self.reset_stream(id, Some(rst::CANCEL));
        }
        if let Some(mut stream) = self.streams.remove(&id) {
            let dropped = stream.discard_received();
            self.buffered_total = self.buffered_total.saturating_sub(dropped);
            self.credit_consumed(None, dropped);
        }
    }

    pub fn wake_all_writers(&mut self) {
        for stream in self.streams.values_mut() {
            if let Some(waker) = stream.write_waker.take() {
                waker.wake();
            }
        }
        for waker in self.queue_waiters.drain(..) {
            waker.wake();
        }
    }

    /// The session is over: fail pending I/O and forget queued frames.
    pub fn end(&mut self) {
        self.ended = true;
        self.closing = true;
        self.queue.clear();
        self.queued_bytes = 0;
        for stream in self.streams.values_mut() {
            stream.wake();
        }
        self.wake_all_writers();
    }
}

pub struct Shared {
    state: Mutex<State>,
    pub config: Config,
    /// Something was queued, or closing began.
    pub writer_wake: Notify,
    /// The writer freed queue space (the read loop waits on this for control replies).
    pub queue_drained: Notify,
    /// An application reader consumed data or a stream went away.
    pub read_space: Notify,
    pub ended: watch::Sender<bool>,
}

impl Shared {
    pub fn new(config: Config, enforce_peer_windows: bool) -> Self {
        Self {
            state: Mutex::new(State::new(enforce_peer_windows)),
            config,
            writer_wake: Notify::new(),
            queue_drained: Notify::new(),
            read_space: Notify::new(),
            ended: watch::Sender::new(false),
        }
    }

    /// Locks the state. A panic elsewhere while holding the lock must not cascade, so a
    /// poisoned lock is used as is: every mutation leaves the state consistent.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
