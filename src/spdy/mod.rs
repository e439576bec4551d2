//! Server side of SPDY/3.1, as spoken by Kubernetes streaming clients
//! (client-go's `httpstream/spdy` on top of `moby/spdystream`) for exec, attach and
//! port-forward.
//!
//! # Layout
//! - `frame.rs`: pure codec between bytes and [`frame::Frame`]; no state, no I/O.
//! - `headers.rs`: name/value header blocks and the per-direction zlib contexts
//!   (SPDY/3 dictionary, sync flush, decompressed-size limit).
//! - `state.rs`: the state shared by the session task and stream handles, under one mutex.
//! - `session.rs`: the task that reads and dispatches frames and the writer that
//!   serialises the single outgoing queue; [`Connection`] and [`Incoming`].
//! - `stream.rs`: [`Stream`], [`StreamReader`], [`StreamWriter`] (tokio `AsyncRead`/`AsyncWrite`).
//!
//! [`serve`] spawns one task per connection. The client opens streams (odd ids) with
//! SYN_STREAM; we never open streams. Each accepted stream must be answered with
//! [`Stream::reply`] because the Go client blocks until SYN_REPLY arrives; a write on a
//! stream that was not replied to sends an empty SYN_REPLY first, since spdystream
//! silently drops DATA on unreplied streams.
//!
//! # Flow control
//! moby/spdystream (what every Kubernetes client uses) never sends WINDOW_UPDATE or
//! SETTINGS and ignores both when received: its `Connection` dispatches them to a
//! default "unhandled frame" branch, and `Stream.Write` emits one DATA frame per call
//! of any size, with no window accounting. Therefore:
//! - Sending: we always track the peer's stream and session windows, but only *wait*
//!   on them once the peer has shown it implements SPDY/3.1 flow control, i.e. it sent a
//!   WINDOW_UPDATE or SETTINGS_INITIAL_WINDOW_SIZE ([`PeerFlowControl::Auto`], the
//!   default). Waiting on a spdystream peer would stall every stream after 64 KiB.
//!   [`PeerFlowControl::Enforce`] and [`PeerFlowControl::Ignore`] force either behaviour.
//!   Writers are still back-pressured by a bounded outgoing queue and TCP.
//! - Receiving: we send WINDOW_UPDATE (stream and session) as the application
//!   consumes data, as the spec asks; spdystream ignores them. A peer that overruns our
//!   window is not punished (spdystream always would); instead memory is bounded by
//!   [`Config::max_buffered_per_stream`] and [`Config::max_buffered_total`]: when
//!   exceeded, the session stops reading the transport until the application reads,
//!   pushing back on the peer through TCP. That is head-of-line blocking for the other
//!   streams of the connection, which spdystream has as well.
//!
//! # Errors and endings
//! - Stream reads: buffered data in order, then EOF (`Ok(0)`) after the peer's FIN.
//!   After RST_STREAM (either side) unread data is dropped and reads and writes fail with
//!   `ConnectionReset`. If the session ends before the peer's FIN, buffered data is
//!   still delivered, then reads fail with `ConnectionAborted`.
//! - Stream errors (DATA on an unknown stream, duplicate SYN_STREAM, ...) answer with
//!   RST_STREAM; session errors (bad version, malformed or oversized frame, broken
//!   header compression) send GOAWAY PROTOCOL_ERROR and end the session.
//! - Dropping the last handle of a stream that is not closed in both directions sends
//!   RST_STREAM CANCEL. Dropping [`Connection`] does not end the session.

pub mod frame;
pub mod headers;
mod session;
mod state;
mod stream;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use session::{Connection, Incoming};
pub use stream::{Stream, StreamReader, StreamWriter};

/// Header name/value pairs; names lower-case as on the wire. A header with several
/// values appears as several pairs.
pub type Headers = Vec<(String, String)>;

/// Whether to wait for the peer's flow-control windows before sending DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerFlowControl {
    /// Wait on windows once the peer sends WINDOW_UPDATE or SETTINGS_INITIAL_WINDOW_SIZE.
    #[default]
    Auto,
    /// Always wait on windows (strict SPDY/3.1).
    Enforce,
    /// Never wait on windows.
    Ignore,
}

/// Limits of one session. The defaults suit Kubernetes streaming.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest frame body accepted. spdystream sends one DATA frame per `Write`, up to the
    /// 24-bit wire limit, so lowering this can break large writes from Go clients.
    pub max_frame_len: usize,
    /// Largest decompressed header block (zlib bomb guard).
    pub max_header_block_len: usize,
    /// Peer streams open at once; extra SYN_STREAMs get RST_STREAM REFUSED_STREAM.
    pub max_concurrent_streams: usize,
    /// Unread bytes buffered per stream before the session stops reading the transport.
    pub max_buffered_per_stream: usize,
    /// Unread bytes buffered across all streams before the session stops reading.
    pub max_buffered_total: usize,
    pub peer_flow_control: PeerFlowControl,
    /// How long closing may spend flushing queued frames before dropping the transport.
    pub close_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_len: frame::WIRE_MAX_FRAME_LEN,
            max_header_block_len: 1 << 20,
            max_concurrent_streams: 256,
            max_buffered_per_stream: 1 << 20,
            max_buffered_total: 16 << 20,
            peer_flow_control: PeerFlowControl::Auto,
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Runs a server-side SPDY/3.1 session over `io` (an already upgraded connection) on a
/// spawned tokio task, with default limits.
pub fn serve<IO>(io: IO) -> (Connection, Incoming)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    serve_with(io, Config::default())
}

/// Like [`serve`] with explicit limits.
pub fn serve_with<IO>(io: IO, config: Config) -> (Connection, Incoming)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    session::spawn(io, config)
}
