//! The binary frames of an exec or attach session. After the monitor has answered an
//! `Exec` or `Attach` request with `Done`, the same connection carries frames both ways:
//!
//! ```text
//! [kind u8][payload length u32, big-endian][payload]
//! ```
//!
//! daemon → monitor: stdin data, stdin closed (EOF), terminal resize (width u16, height u16);
//! monitor → daemon: stdout data, stderr data, exit (i32, the exit code or 128 + signal), after
//! which the monitor closes the connection. Both sides use this module.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest payload of one frame: it bounds what either side buffers per session.
pub const MAX_PAYLOAD: usize = 64 * 1024;

const HEADER: usize = 5;

const STDIN: u8 = 1;
const CLOSE_STDIN: u8 = 2;
const RESIZE: u8 = 3;
const STDOUT: u8 = 4;
const STDERR: u8 = 5;
const EXIT: u8 = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize { width: u16, height: u16 },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
}

impl Frame {
    /// The frame as it goes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, &[u8]) = match self {
            Frame::Stdin(data) => (STDIN, data),
            Frame::CloseStdin => (CLOSE_STDIN, &[]),
            Frame::Stdout(data) => (STDOUT, data),
            Frame::Stderr(data) => (STDERR, data),
            Frame::Resize { width, height } => {
                let mut size = [0u8; 4];
                size[..2].copy_from_slice(&width.to_be_bytes());
                size[2..].copy_from_slice(&height.to_be_bytes());
                return header_and(RESIZE, &size);
            }
            Frame::Exit(code) => return header_and(EXIT, &code.to_be_bytes()),
        };
        header_and(kind, payload)
    }

    /// Takes one whole frame off the front of `buf`; None while it holds less than one.
    fn decode(buf: &mut BytesMut) -> std::io::Result<Option<Frame>> {
        if buf.len() < HEADER {
            return Ok(None);
        }
        let kind = buf[0];
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(invalid(format!("frame of {len} bytes is too large")));
        }
        if buf.len() < HEADER + len {
            return Ok(None);
        }
        buf.advance(HEADER);
        let payload = buf.split_to(len);
        let fixed = |want: usize| {
            if len == want {
                Ok(())
            } else {
                Err(invalid(format!("frame kind {kind} with {len} bytes")))
            }
        };
        Ok(Some(match kind {
            STDIN => Frame::Stdin(payload.to_vec()),
            STDOUT => Frame::Stdout(payload.to_vec()),
            STDERR => Frame::Stderr(payload.to_vec()),
            CLOSE_STDIN => fixed(0).map(|()| Frame::CloseStdin)?,
            RESIZE => fixed(4).map(|()| Frame::Resize {
                width: u16::from_be_bytes([payload[0], payload[1]]),
                height: u16::from_be_bytes([payload[2], payload[3]]),
            })?,
            EXIT => fixed(4).map(|()| {
                Frame::Exit(i32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]))
            })?,
            other => return Err(invalid(format!("unknown frame kind {other}"))),
        }))
    }
}

fn header_and(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> std::io::Result<()> {
    w.write_all(&frame.encode()).await
}

/// Reads frames from one side of a session. Every method is cancel-safe (a partial frame
/// stays in the buffer), so callers can race it against other work in `select!`.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(8 * 1024),
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The next frame; None when the other side closed between frames.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            if let Some(frame) = Frame::decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// Resolves when the other side has closed the connection (or broken it), reading
    /// ahead at most one frame; stays pending once a whole frame's worth waits to be taken
    /// (the caller then needs another way to notice). This is how a caller blocked on
    /// something else notices a client that left.
    pub async fn closed(&mut self) {
        loop {
            if self.buf.len() >= HEADER + MAX_PAYLOAD {
                std::future::pending::<()>().await;
            }
            match self.fill().await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        // Never read past one frame's worth: the peer is back-pressured instead.
        let room = (HEADER + MAX_PAYLOAD).saturating_sub(self.buf.len()).max(1);
        self.buf.reserve(room);
        (&mut self.inner)
            .take(room as u64)
            .read_buf(&mut self.buf)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_kind_round_trips_even_byte_by_byte() {
        let frames = vec![
            Frame::Stdin(b"echo hi\n".to_vec()),
            Frame::Stdin(Vec::new()),
            Frame::CloseStdin,
            Frame::Resize {
                width: 80,
                height: 24,
            },
            Frame::Stdout(vec![7; MAX_PAYLOAD]),
            Frame::Stderr(b"err".to_vec()),
            Frame::Exit(-1),
            Frame::Exit(137),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let (mut a, b) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            a.write_all(&wire).await.unwrap();
        });
        let mut reader = FrameReader::new(b);
        for want in &frames {
            assert_eq!(reader.next().await.unwrap().as_ref(), Some(want));
        }
        writer.await.unwrap();
        assert_eq!(reader.next().await.unwrap(), None);
    }

    #[test]
    fn wire_layout_is_kind_length_payload() {
        assert_eq!(
            Frame::Resize {
                width: 0x0102,
                height: 0x0304
            }
            .encode(),
            [3, 0, 0, 0, 4, 1, 2, 3, 4]
        );
        assert_eq!(Frame::Exit(3).encode(), [6, 0, 0, 0, 4, 0, 0, 0, 3]);
        assert_eq!(
            Frame::Stdout(b"ab".to_vec()).encode(),
            [4, 0, 0, 0, 2, b'a', b'b']
        );
    }

    #[tokio::test]
    async fn bad_frames_are_errors() {
        for wire in [
            vec![9, 0, 0, 0, 0],             // unknown kind
            vec![1, 0xff, 0xff, 0xff, 0xff], // too large
            vec![3, 0, 0, 0, 1, 0],          // resize of the wrong size
            vec![4, 0, 0, 0, 3, b'a'],       // cut short
        ] {
            let mut reader = FrameReader::new(wire.as_slice());
            assert!(reader.next().await.is_err(), "{wire:?}");
        }
    }

    #[tokio::test]
    async fn closed_notices_the_peer_leaving_but_keeps_the_frame() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(b);
        a.write_all(&Frame::CloseStdin.encode()).await.unwrap();
        drop(a);
        reader.closed().await;
        assert_eq!(reader.next().await.unwrap(), Some(Frame::CloseStdin));
        assert_eq!(reader.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn closed_stays_pending_with_a_full_frame_waiting() {
        let (mut a, b) = tokio::io::duplex(2 * MAX_PAYLOAD);
        let mut reader = FrameReader::new(b);
        a.write_all(&Frame::Stdin(vec![1; MAX_PAYLOAD]).encode())
            .await
            .unwrap();
        a.write_all(&Frame::CloseStdin.encode()).await.unwrap();
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), reader.closed()).await;
        assert!(
            waited.is_err(),
            "closed() returned with the peer still there"
        );
        assert!(
            matches!(reader.next().await.unwrap(), Some(Frame::Stdin(d)) if d.len() == MAX_PAYLOAD)
        );
        assert_eq!(reader.next().await.unwrap(), Some(Frame::CloseStdin));
    }
}
