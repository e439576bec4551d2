//! Any `:authority` is accepted on the CRI socket.
//!
//! On a unix socket the authority means nothing, and clients send what they like: gRPC C-core
//! (Python, Ruby, PHP, C++) sends the percent-encoded socket path (`run%2Fferrocri%2F…`),
//! grpc-java the path itself. h2, under tonic, refuses any authority the `http` crate cannot
//! parse and resets the stream with PROTOCOL_ERROR before a handler runs (h2 has no option to
//! relax this). [`AnyAuthority`] sits between the socket and the server and reads what the
//! client sends: frames pass unchanged, and so do header blocks — until one carries an
//! authority h2 would refuse. From then on every header block of that connection is decoded
//! and written again (literals that leave h2's HPACK table alone), with such an authority
//! replaced by `localhost`. Input that is not well-formed HTTP/2 is passed on untouched for h2
//! to refuse as it always did.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::hpack;

/// What a client's unusable authority becomes.
const REPLACEMENT: &[u8] = b"localhost";
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// h2's defaults, which the server does not change: the largest frame a client may send and
/// the HPACK table size it may use.
const MAX_FRAME_LEN: usize = 16_384;
const HPACK_TABLE_SIZE: usize = 4_096;
/// Header blocks and decoded header lists larger than this are not inspected (h2 refuses
/// header lists over 16 KiB anyway).
const MAX_BLOCK_LEN: usize = 64 * 1024;

/// A server connection that makes any client authority acceptable to h2.
pub struct AnyAuthority<S> {
    inner: S,
    /// Bytes read from the client, not yet handled.
    input: BytesMut,
    /// Bytes ready for the server.
    output: BytesMut,
    state: State,
    decoder: hpack::Decoder,
    /// Header blocks are written again from here on (h2's HPACK table no longer follows the
    /// client's).
    rewriting: bool,
    eof: bool,
}

enum State {
    Preface,
    FrameHeader,
    /// Passing on the rest of a frame that is not a header block.
    Payload(usize),
    /// A HEADERS frame and its CONTINUATIONs, until END_HEADERS.
    HeaderBlock(Block),
    /// Not inspecting any more: everything passes as it is.
    Passthrough,
}

#[derive(Default)]
struct Block {
    /// The frames as received.
    raw: BytesMut,
    /// The header block fragments, without padding and priority.
    fragment: Vec<u8>,
    stream_id: u32,
    end_stream: bool,
}

struct FrameHeader {
    len: usize,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHeader {
    fn parse(bytes: &[u8]) -> FrameHeader {
        FrameHeader {
            len: usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]),
            kind: bytes[3],
            flags: bytes[4],
            stream_id: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.len as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[self.kind, self.flags]);
        out.extend_from_slice(&self.stream_id.to_be_bytes());
    }
}

impl<S> AnyAuthority<S> {
    pub fn new(inner: S) -> AnyAuthority<S> {
        AnyAuthority {
            inner,
            input: BytesMut::new(),
            output: BytesMut::new(),
            state: State::Preface,
            decoder: hpack::Decoder::new(HPACK_TABLE_SIZE),
            rewriting: false,
            eof: false,
        }
    }

    /// Moves what can be handled from `input` to `output`; false when more input is needed.
    fn step(&mut self) -> io::Result<bool> {
        match std::mem::replace(&mut self.state, State::Passthrough) {
            State::Passthrough => self.pass_input(),
            State::Preface => {
                let n = self.input.len().min(PREFACE.len());
                if self.input[..n] != PREFACE[..n] {
                    // Not HTTP/2 with prior knowledge: h2 will say so.
                    return self.pass_input();
                }
                if n < PREFACE.len() {
                    self.state = State::Preface;
                    return Ok(false);
                }
                self.output.extend_from_slice(&self.input.split_to(n));
                self.state = State::FrameHeader;
                Ok(true)
            }
            State::Payload(left) => {
                let n = left.min(self.input.len());
                self.output.extend_from_slice(&self.input.split_to(n));
                self.state = if n == left {
                    State::FrameHeader
                } else {
                    State::Payload(left - n)
                };
                Ok(n > 0 || left == 0)
            }
            State::FrameHeader => self.frame(None),
            State::HeaderBlock(block) => self.frame(Some(block)),
        }
    }

    /// The next frame; `block` is a header block waiting for its CONTINUATION frames.
    fn frame(&mut self, block: Option<Block>) -> io::Result<bool> {
        if self.input.len() < FRAME_HEADER_LEN {
            self.state = block.map_or(State::FrameHeader, State::HeaderBlock);
            return Ok(false);
        }
        let header = FrameHeader::parse(&self.input[..FRAME_HEADER_LEN]);
        let expected = match &block {
            None => header.kind == HEADERS,
            Some(block) => header.kind == CONTINUATION && header.stream_id == block.stream_id,
        };
        if !expected {
            if let Some(block) = block {
                // Anything but its CONTINUATION inside a header block: h2 ends the connection.
                return self.give_up(block);
            }
            self.output
                .extend_from_slice(&self.input.split_to(FRAME_HEADER_LEN));
            self.state = State::Payload(header.len);
            return Ok(true);
        }
        let held = block.as_ref().map_or(0, |b| b.raw.len());
        if header.len > MAX_FRAME_LEN || held + header.len > MAX_BLOCK_LEN {
            return self.give_up(block.unwrap_or_default());
        }
        if self.input.len() < FRAME_HEADER_LEN + header.len {
            // The whole frame first; the state stays as it was.
            self.state = block.map_or(State::FrameHeader, State::HeaderBlock);
            return Ok(false);
        }
        let mut block = block.unwrap_or(Block {
            stream_id: header.stream_id,
            end_stream: header.flags & END_STREAM != 0,
            ..Block::default()
        });
        let frame = self.input.split_to(FRAME_HEADER_LEN + header.len);
        let Some(fragment) = fragment(&header, &frame[FRAME_HEADER_LEN..]) else {
            block.raw.extend_from_slice(&frame);
            return self.give_up(block);
        };
        block.fragment.extend_from_slice(fragment);
        block.raw.extend_from_slice(&frame);
        if header.flags & END_HEADERS == 0 {
            self.state = State::HeaderBlock(block);
        } else {
            // `finish` may stop the inspection (State::Passthrough).
            self.state = State::FrameHeader;
            self.finish(block)?;
        }
        Ok(true)
    }

    /// A complete header block: passed as it came, or written again.
    fn finish(&mut self, block: Block) -> io::Result<()> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut list_len = 0usize;
        let mut bad_authority = false;
        let decoded = self.decoder.decode(&block.fragment, |name, value| {
            if name == b":authority" && http::uri::Authority::try_from(value).is_err() {
                bad_authority = true;
            }
            list_len += name.len() + value.len() + 32;
            if list_len <= MAX_BLOCK_LEN {
                fields.push((name.to_vec(), value.to_vec()));
            }
        });
        if let Err(e) = decoded {
            if self.rewriting {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // h2 finds the same fault and ends the connection with COMPRESSION_ERROR.
            self.output.extend_from_slice(&block.raw);
            self.state = State::Passthrough;
            return Ok(());
        }
        if !self.rewriting && !bad_authority {
            self.output.extend_from_slice(&block.raw);
            return Ok(());
        }
        if list_len > MAX_BLOCK_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP/2 header list too large",
            ));
        }
        if !self.rewriting {
            tracing::debug!(
                "a client sent an :authority h2 refuses; its header blocks are rewritten"
            );
            self.rewriting = true;
        }
        let mut encoded = Vec::new();
        hpack::encode_literals(
            fields.iter().map(|(name, value)| {
                let value = if name == b":authority"
                    && http::uri::Authority::try_from(value.as_slice()).is_err()
                {
                    REPLACEMENT
                } else {
                    value.as_slice()
                };
                (name.as_slice(), value)
            }),
            &mut encoded,
        );
        self.write_block(&block, &encoded);
        Ok(())
    }

    /// `encoded` as a HEADERS frame and as many CONTINUATIONs as the frame size needs.
    fn write_block(&mut self, block: &Block, encoded: &[u8]) {
        let mut out = Vec::with_capacity(encoded.len() + FRAME_HEADER_LEN);
        let mut chunks = encoded.chunks(MAX_FRAME_LEN).peekable();
        let mut kind = HEADERS;
        let mut flags = if block.end_stream { END_STREAM } else { 0 };
        loop {
            let chunk = chunks.next().unwrap_or_default();
            let last = chunks.peek().is_none();
            if last {
                flags |= END_HEADERS;
            }
            FrameHeader {
                len: chunk.len(),
                kind,
                flags,
                stream_id: block.stream_id,
            }
            .write(&mut out);
            out.extend_from_slice(chunk);
            if last {
                break;
            }
            (kind, flags) = (CONTINUATION, 0);
        }
        self.output.extend_from_slice(&out);
    }

    /// Stops inspecting: what was held back and everything after it goes to h2 as it came.
    fn give_up(&mut self, block: Block) -> io::Result<bool> {
        if self.rewriting {
            // h2's HPACK table no longer matches the client's: the original bytes would not
            // decode there either.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed HTTP/2 header block",
            ));
        }
        self.output.extend_from_slice(&block.raw);
        self.pass_input()
    }

    fn pass_input(&mut self) -> io::Result<bool> {
        self.state = State::Passthrough;
        let moved = !self.input.is_empty();
        self.output.extend_from_slice(&self.input.split());
        Ok(moved)
    }
}

/// The header block fragment of a HEADERS or CONTINUATION frame's payload; None when the
/// padding or priority fields do not fit.
fn fragment<'a>(header: &FrameHeader, payload: &'a [u8]) -> Option<&'a [u8]> {
    if header.kind == CONTINUATION {
        return Some(payload);
    }
    let mut body = payload;
    let mut pad = 0;
    if header.flags & PADDED != 0 {
        let (&len, rest) = body.split_first()?;
        pad = usize::from(len);
        body = rest;
    }
    if header.flags & PRIORITY != 0 {
        body = body.get(5..)?;
    }
    body.get(..body.len().checked_sub(pad)?)
}

impl<S: AsyncRead + Unpin> AsyncRead for AnyAuthority<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if matches!(this.state, State::Passthrough) && this.input.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.step()? {
                continue;
            }
            if this.eof {
                // A connection cut inside a frame: pass on what there is, then the end.
                let held = std::mem::replace(&mut this.state, State::Passthrough);
                if let State::HeaderBlock(block) = held {
                    this.output.extend_from_slice(&block.raw);
                }
                this.pass_input()?;
                if this.output.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.input.reserve(8 * 1024);
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.input
            ))?;
            this.eof = n == 0;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AnyAuthority<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AnyAuthority<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Hands out its bytes `chunk` at a time, as a socket may.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        chunk: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let n = this
                .chunk
                .min(this.data.len() - this.at)
                .min(buf.remaining());
            buf.put_slice(&this.data[this.at..this.at + n]);
            this.at += n;
            Poll::Ready(Ok(()))
        }
    }

    async fn through(data: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
        let mut conn = AnyAuthority::new(Trickle {
            data: data.to_vec(),
            at: 0,
            chunk,
        });
        let mut out = Vec::new();
        conn.read_to_end(&mut out).await?;
        Ok(out)
    }

    /// The same output whether the client's bytes come one at a time or all at once.
    async fn both_ways(data: &[u8]) -> Vec<u8> {
        let whole = through(data, usize::MAX).await.unwrap();
        assert_eq!(through(data, 1).await.unwrap(), whole);
        whole
    }

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        FrameHeader {
            len: payload.len(),
            kind,
            flags,
            stream_id,
        }
        .write(&mut out);
        out.extend_from_slice(payload);
        out
    }

    /// Frames after the preface: (kind, flags, stream, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        bytes = bytes.strip_prefix(PREFACE).expect("preface");
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let h = FrameHeader::parse(&bytes[..FRAME_HEADER_LEN]);
            let end = FRAME_HEADER_LEN + h.len;
            out.push((
                h.kind,
                h.flags,
                h.stream_id,
                bytes[FRAME_HEADER_LEN..end].to_vec(),
            ));
            bytes = &bytes[end..];
        }
        out
    }

    /// Decodes the header blocks of `frames` in order, as h2 would.
    fn raw_header_lists(frames: &[(u8, u8, u32, Vec<u8>)]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut decoder = hpack::Decoder::new(HPACK_TABLE_SIZE);
        let mut lists = Vec::new();
        let mut block = Vec::new();
        for (kind, flags, _, payload) in frames {
            if *kind != HEADERS && *kind != CONTINUATION {
                continue;
            }
            assert_eq!(flags & (PADDED | PRIORITY), 0, "no test sends either here");
            block.extend_from_slice(payload);
            if flags & END_HEADERS != 0 {
                let mut list = Vec::new();
                decoder
                    .decode(&block, |n, v| list.push((n.to_vec(), v.to_vec())))
                    .unwrap();
                lists.push(list);
                block.clear();
            }
        }
        lists
    }

    /// [`raw_header_lists`] as text.
    fn header_lists(frames: &[(u8, u8, u32, Vec<u8>)]) -> Vec<Vec<(String, String)>> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        raw_header_lists(frames)
            .into_iter()
            .map(|list| list.iter().map(|(n, v)| (text(n), text(v))).collect())
            .collect()
    }

    /// A plain literal with incremental indexing whose name is static entry `name_index`.
    fn indexed_literal(name_index: u8, value: &str) -> Vec<u8> {
        let mut out = vec![0x40 | name_index, value.len() as u8];
        out.extend_from_slice(value.as_bytes());
        out
    }

    fn start() -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        out
    }

    fn authority_of(list: &[(String, String)]) -> &str {
        &list.iter().find(|(n, _)| n == ":authority").unwrap().1
    }

    #[tokio::test]
    async fn usable_authorities_pass_unchanged() {
        let mut input = start();
        // RFC 7541 C.4.1: GET http://www.example.com/ with Huffman strings.
        let block = [
            0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab,
            0x90, 0xf4, 0xff,
        ];
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        input.extend(frame(0x0, END_STREAM, 1, b"hello"));
        input.extend(frame(0x6, 0, 0, &[0; 8])); // PING
        // The same authority again, from the dynamic table.
        input.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &[0x82, 0x86, 0x84, 0xbe],
        ));
        input.extend(frame(0x0, 0, 3, &[])); // an empty frame between others
        assert_eq!(both_ways(&input).await, input);
    }

    #[tokio::test]
    async fn an_unusable_authority_becomes_localhost() {
        let path = "/runtime.v1.RuntimeService/Version";
        let mut first = vec![0x83, 0x86]; // POST, http
        first.extend(indexed_literal(4, path)); // :path, into the table
        first.extend(indexed_literal(1, "tmp%2Fferrocri.sock")); // C-core's authority
        first.extend(indexed_literal(31, "application/grpc")); // content-type
        // Padded, with priority fields: both are dropped when the frame is written again.
        let mut padded = vec![3];
        padded.extend_from_slice(&[0, 0, 0, 0, 16]);
        padded.extend_from_slice(&first);
        padded.extend_from_slice(&[0; 3]);
        let mut input = start();
        input.extend(frame(HEADERS, END_HEADERS | PADDED | PRIORITY, 1, &padded));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        // The second request refers to the table: content-type 62, authority 63, path 64.
        let second = [0x83, 0x86, 0xc0, 0xbf, 0xbe];
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &second));

        let out = frames(&both_ways(&input).await);
        let kinds: Vec<(u8, u8, u32)> = out.iter().map(|f| (f.0, f.1, f.2)).collect();
        assert_eq!(
            kinds,
            [
                (0x4, 0, 0),
                (HEADERS, END_HEADERS, 1),
                (0x0, END_STREAM, 1),
                (HEADERS, END_HEADERS | END_STREAM, 3)
            ]
        );
        assert_eq!(out[2].3, b"\0\0\0\0\0");
        let lists = header_lists(&out);
        for list in &lists {
            assert_eq!(authority_of(list), "localhost");
            assert!(list.contains(&(":path".into(), path.into())), "{list:?}");
            assert!(list.contains(&("content-type".into(), "application/grpc".into())));
            assert_eq!(list[0], (":method".into(), "POST".into()));
        }
    }

    #[tokio::test]
    async fn the_authority_may_come_in_a_continuation_and_big_blocks_are_split() {
        let mut block = vec![0x83, 0x86, 0x84];
        // A 40 KiB value, then a grpc-java style authority (the socket path itself).
        let big = "v".repeat(40 * 1024);
        hpack::encode_literals([(b"x-big".as_slice(), big.as_bytes())], &mut block);
        block.extend(indexed_literal(1, "/run/ferrocri/ferrocri.sock"));
        let mut input = start();
        let mut chunks = block.chunks(MAX_FRAME_LEN).peekable();
        let mut kind = HEADERS;
        while let Some(chunk) = chunks.next() {
            let flags = if chunks.peek().is_none() {
                END_HEADERS
            } else {
                0
            };
            input.extend(frame(kind, flags, 1, chunk));
            kind = CONTINUATION;
        }
        let out = frames(&both_ways(&input).await);
        assert!(out.len() > 3, "split into CONTINUATIONs");
        assert_eq!(out[1].0, HEADERS);
        assert!(out.iter().all(|f| f.3.len() <= MAX_FRAME_LEN));
        assert!(out[2..].iter().all(|f| f.0 == CONTINUATION));
        let lists = header_lists(&out);
        assert_eq!(lists.len(), 1);
        assert_eq!(authority_of(&lists[0]), "localhost");
        assert!(lists[0].contains(&("x-big".into(), big)));
    }

    /// Header blocks from someone else's encoder: hyper's HTTP/2 client (h2: Huffman strings,
    /// its dynamic table) sends two requests with every byte a header value may hold; they
    /// pass unchanged and decode to what was sent.
    #[tokio::test]
    async fn blocks_from_hyper_pass_unchanged_and_decode() {
        use http_body_util::Empty;
        let (client_end, mut server_end) = tokio::io::duplex(1 << 20);
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(client_end),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        // Each byte a value may hold, followed by enough common letters that h2 chooses the
        // Huffman code for it: every symbol's code is then read at least once.
        let values: Vec<Vec<u8>> = std::iter::once(b'\t')
            .chain((0x20..=0xffu8).filter(|&b| b != 0x7f))
            .map(|b| [&[b][..], &[b'a'; 24]].concat())
            .collect();
        for _ in 0..2 {
            let mut request =
                http::Request::post("http://ferrocri.test/runtime.v1.RuntimeService/Version");
            for (i, value) in values.iter().enumerate() {
                request = request.header(
                    format!("x-byte-{i}"),
                    http::HeaderValue::from_bytes(value).unwrap(),
                );
            }
            let request = request.body(Empty::<bytes::Bytes>::new()).unwrap();
            let send = sender.send_request(request);
            tokio::spawn(send);
        }
        // Read until both header blocks are in.
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = server_end.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed early");
            raw.extend_from_slice(&buf[..n]);
            if frames_complete(&raw).is_some() && raw_header_lists(&frames(&raw)).len() == 2 {
                break;
            }
        }
        assert_eq!(both_ways(&raw).await, raw);
        for list in raw_header_lists(&frames(&raw)) {
            assert!(list.contains(&(b":authority".to_vec(), b"ferrocri.test".to_vec())));
            for (i, value) in values.iter().enumerate() {
                let name = format!("x-byte-{i}").into_bytes();
                assert!(list.contains(&(name, value.clone())), "x-byte-{i}");
            }
        }
    }

    /// Some(()) when `bytes` (after the preface) ends on a frame boundary.
    fn frames_complete(bytes: &[u8]) -> Option<()> {
        let mut rest = bytes.strip_prefix(PREFACE)?;
        while !rest.is_empty() {
            let header = FrameHeader::parse(rest.get(..FRAME_HEADER_LEN)?);
            rest = rest.get(FRAME_HEADER_LEN + header.len..)?;
        }
        Some(())
    }

    #[tokio::test]
    async fn input_that_is_not_http2_passes_unchanged() {
        let http1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(both_ways(http1).await, http1);
        // A header block that does not decode, and whatever follows it.
        let mut input = start();
        input.extend(frame(HEADERS, END_HEADERS, 1, &[0x80]));
        input.extend(frame(HEADERS, END_HEADERS, 3, &indexed_literal(1, "a%2Fb")));
        assert_eq!(both_ways(&input).await, input);
        // A frame other than CONTINUATION inside a header block.
        let mut input = start();
        input.extend(frame(HEADERS, 0, 1, &[0x82]));
        input.extend(frame(0x0, 0, 1, b"x"));
        input.extend(frame(HEADERS, END_HEADERS, 3, &indexed_literal(1, "a%2Fb")));
        assert_eq!(both_ways(&input).await, input);
        // Cut off inside a header block.
        let mut input = start();
        input.extend(frame(HEADERS, END_HEADERS, 1, &indexed_literal(1, "a%2Fb")));
        input.truncate(input.len() - 2);
        assert_eq!(both_ways(&input).await, input);
    }

    #[tokio::test]
    async fn a_broken_block_after_a_rewrite_ends_the_connection() {
        let mut input = start();
        input.extend(frame(HEADERS, END_HEADERS, 1, &indexed_literal(1, "a%2Fb")));
        input.extend(frame(HEADERS, END_HEADERS, 3, &[0x80]));
        let err = through(&input, usize::MAX).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
