//! SPDY/3.1 frame codec: bytes <-> [`Frame`], with no I/O and no state.
//!
//! Header blocks stay compressed here; `headers.rs` owns the zlib contexts
//! because they span the whole connection.

use bytes::Bytes;

pub const VERSION: u16 = 3;

/// Every frame starts with 8 bytes: control bit, version/stream id, type, flags, length.
pub const FRAME_HEADER_LEN: usize = 8;

/// The length field has 24 bits, so no frame body can be longer than this.
pub const WIRE_MAX_FRAME_LEN: usize = 0x00FF_FFFF;

pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
pub const FLAG_SETTINGS_CLEAR: u8 = 0x01;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// Stream and window fields are 31 bits; the top bit is reserved and ignored on input.
const U31_MASK: u32 = 0x7FFF_FFFF;

/// RST_STREAM status codes (SPDY/3.1 section 2.4.2).
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const UNSUPPORTED_VERSION: u32 = 4;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    pub const STREAM_IN_USE: u32 = 8;
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
    pub const FRAME_TOO_LARGE: u32 = 11;
}

/// GOAWAY status codes.
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INTERNAL_ERROR: u32 = 2;
}

/// SETTINGS ids this implementation reads or writes.
pub mod setting {
    pub const MAX_CONCURRENT_STREAMS: u32 = 4;
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        slot: u8,
        fin: bool,
        unidirectional: bool,
        header_block: Bytes,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        header_block: Bytes,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        header_block: Bytes,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control frame type we do not implement (e.g. CREDENTIAL); the spec says to ignore it.
    UnknownControl {
        frame_type: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unsupported SPDY version {0}")]
    UnsupportedVersion(u16),
    #[error("frame length {len} exceeds limit {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed {frame} frame: {reason}")]
    Malformed {
        frame: &'static str,
        reason: &'static str,
    },
}

fn malformed(frame: &'static str, reason: &'static str) -> FrameError {
    FrameError::Malformed { frame, reason }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Parses one frame from the front of `input`.
///
/// Returns `Ok(None)` when `input` does not yet hold a whole frame, otherwise the frame
/// and how many bytes it used. `max_frame_len` bounds the body length; it is checked
/// from the header alone so an oversized frame is refused before it is buffered.
pub fn parse(input: &[u8], max_frame_len: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    if input.len() < FRAME_HEADER_LEN {
        return Ok(None);
    }
    let first = u32_at(input, 0);
    let flags = input[4];
    let len = (u32_at(input, 4) & 0x00FF_FFFF) as usize;
    let is_control = first & 0x8000_0000 != 0;
    if is_control {
        // Check the version before the length so a non-SPDY/3 peer gets a precise error.
        let version = ((first >> 16) & 0x7FFF) as u16;
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
    }
    if len > max_frame_len {
        return Err(FrameError::TooLarge {
            len,
            limit: max_frame_len,
        });
    }
    let total = FRAME_HEADER_LEN + len;
    if input.len() < total {
        return Ok(None);
    }
    let body = &input[FRAME_HEADER_LEN..total];
    let frame = if is_control {
        parse_control((first & 0xFFFF) as u16, flags, body)?
    } else {
        Frame::Data {
            stream_id: first & U31_MASK,
            fin: flags & FLAG_FIN != 0,
            data: Bytes::copy_from_slice(body),
        }
    };
    Ok(Some((frame, total)))
}

fn parse_control(frame_type: u16, flags: u8, body: &[u8]) -> Result<Frame, FrameError> {
    let fin = flags & FLAG_FIN != 0;
    let exact = |name: &'static str, want: usize| {
        if body.len() == want {
            Ok(())
        } else {
            Err(malformed(name, "wrong length"))
        }
    };
    Ok(match frame_type {
        TYPE_SYN_STREAM => parse_syn_stream(flags, body)?,
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            let name = if frame_type == TYPE_SYN_REPLY {
                "SYN_REPLY"
            } else {
                "HEADERS"
            };
            if body.len() < 4 {
                return Err(malformed(name, "shorter than 4 bytes"));
            }
            let stream_id = u32_at(body, 0) & U31_MASK;
            let header_block = Bytes::copy_from_slice(&body[4..]);
            if frame_type == TYPE_SYN_REPLY {
                Frame::SynReply {
                    stream_id,
                    fin,
                    header_block,
                }
            } else {
                Frame::Headers {
                    stream_id,
                    fin,
                    header_block,
                }
            }
        }
        TYPE_RST_STREAM => {
            exact("RST_STREAM", 8)?;
            Frame::RstStream {
                stream_id: u32_at(body, 0) & U31_MASK,
                status: u32_at(body, 4),
            }
        }
        TYPE_SETTINGS => parse_settings(flags, body)?,
        TYPE_PING => {
            exact("PING", 4)?;
            Frame::Ping {
                id: u32_at(body, 0),
            }
        }
        TYPE_GOAWAY => {
            exact("GOAWAY", 8)?;
            Frame::GoAway {
                last_good_stream_id: u32_at(body, 0) & U31_MASK,
                status: u32_at(body, 4),
            }
        }
        TYPE_WINDOW_UPDATE => {
            exact("WINDOW_UPDATE", 8)?;
            Frame::WindowUpdate {
                stream_id: u32_at(body, 0) & U31_MASK,
                delta: u32_at(body, 4) & U31_MASK,
            }
        }
        other => Frame::UnknownControl { frame_type: other },
    })
}

fn parse_syn_stream(flags: u8, body: &[u8]) -> Result<Frame, FrameError> {
    if body.len() < 10 {
        return Err(malformed("SYN_STREAM", "shorter than 10 bytes"));
    }
    Ok(Frame::SynStream {
        stream_id: u32_at(body, 0) & U31_MASK,
        associated_to: u32_at(body, 4) & U31_MASK,
        priority: body[8] >> 5,
        slot: body[9],
        fin: flags & FLAG_FIN != 0,
        unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
        header_block: Bytes::copy_from_slice(&body[10..]),
    })
}

fn parse_settings(flags: u8, body: &[u8]) -> Result<Frame, FrameError> {
    if body.len() < 4 {
        return Err(malformed("SETTINGS", "shorter than 4 bytes"));
    }
    let count = u32_at(body, 0) as usize;
    // Compare against the body length before allocating: the count is peer-chosen.
    if count.checked_mul(8) != Some(body.len() - 4) {
        return Err(malformed("SETTINGS", "entry count does not match length"));
    }
    let entries = body[4..]
        .chunks_exact(8)
        .map(|entry| Setting {
            flags: entry[0],
            id: u32_at(entry, 0) & 0x00FF_FFFF,
            value: u32_at(entry, 4),
        })
        .collect();
    Ok(Frame::Settings {
        clear: flags & FLAG_SETTINGS_CLEAR != 0,
        entries,
    })
}

fn push_control_header(out: &mut Vec<u8>, frame_type: u16, flags: u8, len: usize) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&frame_type.to_be_bytes());
    push_flags_and_len(out, flags, len);
}

fn push_flags_and_len(out: &mut Vec<u8>, flags: u8, len: usize) {
    // Callers never build bodies above the 24-bit limit (DATA is chunked, header
    // blocks are bounded), so truncating here cannot silently corrupt a valid frame.
    let len = (len.min(WIRE_MAX_FRAME_LEN)) as u32;
    out.extend_from_slice(&((u32::from(flags) << 24) | len).to_be_bytes());
}

fn fin_flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

impl Frame {
    /// Appends the wire form of this frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                out.extend_from_slice(&(stream_id & U31_MASK).to_be_bytes());
                push_flags_and_len(out, fin_flag(*fin), data.len());
                out.extend_from_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                fin,
                unidirectional,
                header_block,
            } => {
                let mut flags = fin_flag(*fin);
                if *unidirectional {
                    flags |= FLAG_UNIDIRECTIONAL;
                }
                push_control_header(out, TYPE_SYN_STREAM, flags, 10 + header_block.len());
                out.extend_from_slice(&(stream_id & U31_MASK).to_be_bytes());
                out.extend_from_slice(&(associated_to & U31_MASK).to_be_bytes());
                out.extend_from_slice(&[(priority & 0x07) << 5, *slot]);
                out.extend_from_slice(header_block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                header_block,
            } => {
                push_control_header(out, TYPE_SYN_REPLY, fin_flag(*fin), 4 + header_block.len());
                out.extend_from_slice(&(stream_id & U31_MASK).to_be_bytes());
                out.extend_from_slice(header_block);
            }
            Frame::Headers {
                stream_id,
                fin,
                header_block,
            } => {
                push_control_header(out, TYPE_HEADERS, fin_flag(*fin), 4 + header_block.len());
                out.extend_from_slice(&(stream_id & U31_MASK).to_be_bytes());
                out.extend_from_slice(header_block);
            }
            Frame::RstStream { stream_id, status } => {
                push_control_header(out, TYPE_RST_STREAM, 0, 8);
                out.extend_from_slice(&(stream_id & U31_MASK).to_be_bytes());
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::Settings { clear, entries } => encode_settings(out, *clear, entries),
            Frame::Ping { id } => {
                push_control_header(out, TYPE_PING, 0, 4);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                push_control_header(out, TYPE_GOAWAY, 0, 8);
                out.extend_from_slice(&(last_good_stream_id & U31_MASK).to_be_bytes());
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::WindowUpdate { stream_id, delta } => {
                push_control_header(out, TYPE_WINDOW_UPDATE, 0, 8);
                out.extend_from_slice(&(stream_id & U31_MASK).to_be_bytes());
                out.extend_from_slice(&(delta & U31_MASK).to_be_bytes());
            }
            Frame::UnknownControl { frame_type } => {
                push_control_header(out, *frame_type, 0, 0);
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

fn encode_settings(out: &mut Vec<u8>, clear: bool, entries: &[Setting]) {
    let flags = if clear { FLAG_SETTINGS_CLEAR } else { 0 };
    push_control_header(out, TYPE_SETTINGS, flags, 4 + 8 * entries.len());
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for entry in entries {
        let id_word = (u32::from(entry.flags) << 24) | (entry.id & 0x00FF_FFFF);
        out.extend_from_slice(&id_word.to_be_bytes());
        out.extend_from_slice(&entry.value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Frame {
        let (frame, used) = parse(bytes, WIRE_MAX_FRAME_LEN)
            .expect("valid frame")
            .expect("complete frame");
        assert_eq!(used, bytes.len());
        frame
    }

    /// Checks both directions against a hand-written byte vector.
    fn check_vector(frame: Frame, wire: &[u8]) {
        assert_eq!(frame.to_bytes(), wire, "encode {frame:?}");
        assert_eq!(decode_all(wire), frame, "decode {wire:02x?}");
    }

    #[test]
    fn data_vector() {
        check_vector(
            Frame::Data {
                stream_id: 5,
                fin: true,
                data: Bytes::from_static(b"hi"),
            },
            &[0, 0, 0, 5, 0x01, 0, 0, 2, b'h', b'i'],
        );
    }

    #[test]
    fn syn_stream_vector() {
        check_vector(
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                slot: 0,
                fin: false,
                unidirectional: true,
                header_block: Bytes::from_static(&[0xAA, 0xBB]),
            },
            &[
                0x80, 0x03, 0x00, 0x01, 0x02, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0, 0xAA, 0xBB,
            ],
        );
    }

    #[test]
    fn syn_reply_vector() {
        check_vector(
            Frame::SynReply {
                stream_id: 3,
                fin: true,
                header_block: Bytes::from_static(&[7]),
            },
            &[0x80, 0x03, 0x00, 0x02, 0x01, 0, 0, 5, 0, 0, 0, 3, 7],
        );
    }

    #[test]
    fn rst_stream_vector() {
        check_vector(
            Frame::RstStream {
                stream_id: 7,
                status: rst::CANCEL,
            },
            &[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 5],
        );
    }

    #[test]
    fn settings_vector() {
        check_vector(
            Frame::Settings {
                clear: false,
                entries: vec![Setting {
                    flags: 0,
                    id: setting::INITIAL_WINDOW_SIZE,
                    value: 0x0001_0000,
                }],
            },
            &[
                0x80, 0x03, 0x00, 0x04, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 7, 0, 1, 0, 0,
            ],
        );
    }

    #[test]
    fn ping_vector() {
        check_vector(
            Frame::Ping { id: 0x0102_0304 },
            &[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 1, 2, 3, 4],
        );
    }

    #[test]
    fn goaway_vector() {
        check_vector(
            Frame::GoAway {
                last_good_stream_id: 9,
                status: goaway::PROTOCOL_ERROR,
            },
            &[0x80, 0x03, 0x00, 0x07, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 1],
        );
    }

    #[test]
    fn headers_vector() {
        check_vector(
            Frame::Headers {
                stream_id: 1,
                fin: false,
                header_block: Bytes::new(),
            },
            &[0x80, 0x03, 0x00, 0x08, 0, 0, 0, 4, 0, 0, 0, 1],
        );
    }

    #[test]
    fn window_update_vector() {
        check_vector(
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 0x8000,
            },
            &[
                0x80, 0x03, 0x00, 0x09, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x80, 0,
            ],
        );
    }

    #[test]
    fn unknown_control_type_is_reported_not_rejected() {
        // CREDENTIAL (type 10) with a 3-byte body.
        let wire = [0x80, 0x03, 0x00, 0x0A, 0, 0, 0, 3, 1, 2, 3];
        assert_eq!(decode_all(&wire), Frame::UnknownControl { frame_type: 10 });
    }

    #[test]
    fn reserved_bits_are_ignored() {
        let wire = [
            0x80, 0x03, 0x00, 0x09, 0, 0, 0, 8, 0x80, 0, 0, 1, 0x80, 0, 0, 1,
        ];
        assert_eq!(
            decode_all(&wire),
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 1
            }
        );
    }

    #[test]
    fn truncated_input_needs_more() {
        let wire = Frame::Ping { id: 1 }.to_bytes();
        for cut in 0..wire.len() {
            assert_eq!(
                parse(&wire[..cut], WIRE_MAX_FRAME_LEN),
                Ok(None),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn two_frames_back_to_back() {
        let mut wire = Frame::Ping { id: 1 }.to_bytes();
        Frame::Ping { id: 3 }.encode(&mut wire);
        let (first, used) = parse(&wire, WIRE_MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!(first, Frame::Ping { id: 1 });
        assert_eq!(decode_all(&wire[used..]), Frame::Ping { id: 3 });
    }

    #[test]
    fn oversized_frame_rejected_from_header_alone() {
        // Only the 8-byte header is present; the declared 1 MiB body must not be awaited.
        let header = [0, 0, 0, 1, 0, 0x10, 0, 0];
        assert_eq!(
            parse(&header, 64 * 1024),
            Err(FrameError::TooLarge {
                len: 0x10_0000,
                limit: 64 * 1024
            })
        );
    }

    #[test]
    fn wrong_version_rejected() {
        let wire = [0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1];
        assert_eq!(
            parse(&wire, WIRE_MAX_FRAME_LEN),
            Err(FrameError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn fixed_size_frames_with_wrong_length_rejected() {
        for frame_type in [3u8, 6, 7, 9] {
            let wire = [0x80, 0x03, 0x00, frame_type, 0, 0, 0, 2, 0, 0];
            assert!(
                matches!(
                    parse(&wire, WIRE_MAX_FRAME_LEN),
                    Err(FrameError::Malformed { .. })
                ),
                "type {frame_type}"
            );
        }
    }

    #[test]
    fn settings_count_must_match_length() {
        // Claims 0x10000000 entries but carries none: must fail without allocating.
        let wire = [0x80, 0x03, 0x00, 0x04, 0, 0, 0, 4, 0x10, 0, 0, 0];
        assert!(matches!(
            parse(&wire, WIRE_MAX_FRAME_LEN),
            Err(FrameError::Malformed { .. })
        ));
    }

    #[test]
    fn short_syn_stream_rejected() {
        let wire = [0x80, 0x03, 0x00, 0x01, 0, 0, 0, 4, 0, 0, 0, 1];
        assert!(matches!(
            parse(&wire, WIRE_MAX_FRAME_LEN),
            Err(FrameError::Malformed { .. })
        ));
    }

    mod roundtrip {
        use super::*;
        use proptest::prelude::*;

        fn u31() -> impl Strategy<Value = u32> {
            0u32..=U31_MASK
        }

        fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
            proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
        }

        fn any_frame() -> impl Strategy<Value = Frame> {
            prop_oneof![
                (u31(), any::<bool>(), bytes(300)).prop_map(|(stream_id, fin, data)| {
                    Frame::Data {
                        stream_id,
                        fin,
                        data,
                    }
                }),
                (
                    u31(),
                    u31(),
                    0u8..8,
                    any::<u8>(),
                    any::<bool>(),
                    any::<bool>(),
                    bytes(100)
                )
                    .prop_map(
                        |(stream_id, associated_to, priority, slot, fin, unidirectional, hb)| {
                            Frame::SynStream {
                                stream_id,
                                associated_to,
                                priority,
                                slot,
                                fin,
                                unidirectional,
                                header_block: hb,
                            }
                        }
                    ),
                (u31(), any::<bool>(), bytes(100)).prop_map(|(stream_id, fin, header_block)| {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        header_block,
                    }
                }),
                (u31(), any::<bool>(), bytes(100)).prop_map(|(stream_id, fin, header_block)| {
                    Frame::Headers {
                        stream_id,
                        fin,
                        header_block,
                    }
                }),
                (u31(), any::<u32>())
                    .prop_map(|(stream_id, status)| Frame::RstStream { stream_id, status }),
                (
                    any::<bool>(),
                    proptest::collection::vec(
                        (any::<u8>(), 0u32..0x0100_0000, any::<u32>())
                            .prop_map(|(flags, id, value)| Setting { flags, id, value }),
                        0..5
                    )
                )
                    .prop_map(|(clear, entries)| Frame::Settings { clear, entries }),
                any::<u32>().prop_map(|id| Frame::Ping { id }),
                (u31(), any::<u32>()).prop_map(|(last_good_stream_id, status)| {
                    Frame::GoAway {
                        last_good_stream_id,
                        status,
                    }
                }),
                (u31(), u31())
                    .prop_map(|(stream_id, delta)| Frame::WindowUpdate { stream_id, delta }),
            ]
        }

        proptest! {
            #[test]
            fn encode_then_parse_is_identity(frame in any_frame()) {
                let wire = frame.to_bytes();
                let (back, used) = parse(&wire, WIRE_MAX_FRAME_LEN).unwrap().unwrap();
                prop_assert_eq!(used, wire.len());
                prop_assert_eq!(back, frame);
            }

            #[test]
            fn parse_never_panics(input in proptest::collection::vec(any::<u8>(), 0..64)) {
                let _ = parse(&input, 1024);
            }
        }
    }
}
