//! Arbitrary bytes through the frame parser and, for header-bearing frames, one
//! connection-long header decoder, as the session would use them.
#![no_main]

use ferrocri::spdy::frame::{self, Frame};
use ferrocri::spdy::headers::{self, HeaderDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = HeaderDecoder::new(64 * 1024);
    let mut rest = data;
    while let Ok(Some((frame, used))) = frame::parse(rest, 1 << 20) {
        rest = &rest[used..];
        let block = match &frame {
            Frame::SynStream { header_block, .. }
            | Frame::SynReply { header_block, .. }
            | Frame::Headers { header_block, .. } => header_block,
            _ => continue,
        };
        if decoder.decode(block).is_err() {
            break;
        }
        // Whatever parses must re-encode to the same frame.
        let wire = frame.to_bytes();
        assert_eq!(
            frame::parse(&wire, 1 << 20).ok().flatten().map(|(f, _)| f),
            Some(frame)
        );
    }
    let _ = headers::parse_plain(data);
});
