//! SPDY/3 name/value header blocks: the binary layout plus zlib with the SPDY/3 dictionary.
//!
//! SPDY compresses every header block of one direction with ONE zlib stream that lives
//! as long as the connection, so both [`HeaderEncoder`] and [`HeaderDecoder`] are
//! stateful and must see the blocks in wire order. A decompression failure leaves the
//! shared context unusable, which is why it is a session error, not a stream error.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::Headers;

/// Length-prefixed words at the start of the SPDY/3 dictionary (draft section 2.6.10.1).
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// Unprefixed text that ends the dictionary.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
    " 00:00:00",
    " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The zlib preset dictionary every SPDY/3 peer uses (1423 bytes, adler32 0xe3c6a7c2).
pub fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        let mut dict = Vec::with_capacity(1423);
        for word in DICTIONARY_WORDS {
            dict.extend_from_slice(&(word.len() as u32).to_be_bytes());
            dict.extend_from_slice(word.as_bytes());
        }
        dict.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        dict
    })
}

/// Multiple values of one header travel as one value joined by NUL.
const VALUE_SEPARATOR: char = '\0';

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The zlib stream is broken or exceeded the size limit; the connection cannot continue.
    #[error("header block decompression failed: {0}")]
    Compression(String),
    /// The block decompressed fine but its name/value layout is invalid; only the stream is affected.
    #[error("malformed header block: {0}")]
    Malformed(&'static str),
}

/// Compresses header blocks for one direction of a connection.
pub struct HeaderEncoder {
    zlib: Compress,
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderEncoder {
    pub fn new() -> Self {
        let mut zlib = Compress::new(Compression::default(), true);
        // Cannot fail on a fresh stream; if it ever did, peers would reject our blocks,
        // which is a visible, non-panicking failure.
        let _ = zlib.set_dictionary(dictionary());
        Self { zlib }
    }

    /// Serialises and compresses `headers`. Names are lower-cased and repeated names are
    /// merged into one NUL-joined value, because Go's spdystream rejects duplicates.
    pub fn encode(&mut self, headers: &[(String, String)]) -> Vec<u8> {
        let plain = serialize(headers);
        let mut out = Vec::with_capacity(plain.len() / 2 + 64);
        let mut consumed = 0usize;
        loop {
            out.reserve(plain.len() - consumed + 64);
            let in_before = self.zlib.total_in();
            let status = self
                .zlib
                .compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync);
            consumed += (self.zlib.total_in() - in_before) as usize;
            // A sync flush is complete once all input is taken and zlib left spare room.
            let done = consumed == plain.len() && out.len() < out.capacity();
            if done || !matches!(status, Ok(Status::Ok | Status::BufError)) {
                break;
            }
        }
        out
    }
}

fn serialize(headers: &[(String, String)]) -> Vec<u8> {
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match merged.iter_mut().find(|(existing, _)| *existing == name) {
            Some((_, joined)) => {
                joined.push(VALUE_SEPARATOR);
                joined.push_str(value);
            }
            None => merged.push((name, value.clone())),
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(merged.len() as u32).to_be_bytes());
    for (name, value) in &merged {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Decompresses header blocks for one direction of a connection.
pub struct HeaderDecoder {
    zlib: Decompress,
    max_block_len: usize,
}

impl HeaderDecoder {
    /// `max_block_len` bounds the decompressed size of a single block (zlib bomb guard).
    pub fn new(max_block_len: usize) -> Self {
        Self {
            zlib: Decompress::new(true),
            max_block_len,
        }
    }

    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderError> {
        let plain = self.inflate(block)?;
        parse_plain(&plain)
    }

    fn inflate(&mut self, block: &[u8]) -> Result<Vec<u8>, HeaderError> {
        let mut out = Vec::new();
        let mut consumed = 0usize;
        loop {
            // Grow the output in steps but never past limit + 1, so a bomb is caught
            // after at most `max_block_len` bytes of work.
            let room = (out.len() + 4096).min(self.max_block_len + 1);
            out.reserve_exact(room.saturating_sub(out.len()));
            let spare_before = out.capacity() - out.len();
            let in_before = self.zlib.total_in();
            let out_before = out.len();
            let result =
                self.zlib
                    .decompress_vec(&block[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.zlib.total_in() - in_before) as usize;
            let produced = out.len() - out_before;
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(HeaderError::Compression(
                        "peer ended the zlib stream".into(),
                    ));
                }
                Ok(_) => {}
                Err(err) if err.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(dictionary())
                        .map_err(|e| HeaderError::Compression(e.to_string()))?;
                    continue;
                }
                Err(err) => return Err(HeaderError::Compression(err.to_string())),
            }
            if out.len() > self.max_block_len {
                return Err(HeaderError::Compression(format!(
                    "decompressed header block exceeds {} bytes",
                    self.max_block_len
                )));
            }
            let input_left = consumed < block.len();
            let output_full = produced == spare_before;
            if !input_left && !output_full {
                return Ok(out);
            }
            let progressed = produced > 0 || self.zlib.total_in() > in_before;
            if !progressed {
                if input_left {
                    return Err(HeaderError::Compression("zlib made no progress".into()));
                }
                return Ok(out);
            }
        }
    }
}

fn take_u32(input: &mut &[u8]) -> Result<u32, HeaderError> {
    if input.len() < 4 {
        return Err(HeaderError::Malformed("truncated length field"));
    }
    let (head, rest) = input.split_at(4);
    *input = rest;
    Ok(u32::from_be_bytes([head[0], head[1], head[2], head[3]]))
}

fn take_str(input: &mut &[u8]) -> Result<String, HeaderError> {
    let len = take_u32(input)? as usize;
    if input.len() < len {
        return Err(HeaderError::Malformed("string runs past the block"));
    }
    let (text, rest) = input.split_at(len);
    *input = rest;
    // Peers send ASCII in practice; a stray byte should not cost the whole stream.
    Ok(String::from_utf8_lossy(text).into_owned())
}

/// Parses the decompressed name/value block. NUL-joined values become separate pairs.
pub fn parse_plain(mut input: &[u8]) -> Result<Headers, HeaderError> {
    let count = take_u32(&mut input)? as usize;
    // Each pair needs at least 8 bytes; check before trusting `count` for allocation.
    if count > input.len() / 8 {
        return Err(HeaderError::Malformed("pair count exceeds block size"));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = take_str(&mut input)?;
        if name.is_empty() {
            return Err(HeaderError::Malformed("empty header name"));
        }
        let name = name.to_ascii_lowercase();
        let value = take_str(&mut input)?;
        for part in value.split(VALUE_SEPARATOR) {
            headers.push((name.clone(), part.to_string()));
        }
    }
    if !input.is_empty() {
        return Err(HeaderError::Malformed("trailing bytes after last pair"));
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Headers {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dictionary_is_the_spdy3_dictionary() {
        let dict = dictionary();
        assert_eq!(dict.len(), 1423);
        assert_eq!(adler32(dict), 0xe3c6_a7c2);
        assert!(dict.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(dict.ends_with(b"utf-,*,enq=0."));
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn encoder_announces_the_dictionary_id() {
        let block = HeaderEncoder::new().encode(&pairs(&[("streamtype", "data")]));
        // zlib header: CMF, FLG with FDICT (0x20), then the dictionary's adler32.
        assert_eq!(block[0] & 0x0F, 8, "deflate");
        assert_ne!(block[1] & 0x20, 0, "FDICT set");
        assert_eq!(&block[2..6], &0xe3c6_a7c2u32.to_be_bytes());
        // A sync flush ends with an empty stored block.
        assert!(block.ends_with(&[0x00, 0x00, 0xFF, 0xFF]));
    }

    #[test]
    fn round_trip_across_blocks_shares_one_context() {
        let mut encoder = HeaderEncoder::new();
        let mut decoder = HeaderDecoder::new(1 << 20);
        let first = pairs(&[("streamtype", "error"), ("requestid", "0")]);
        let second = pairs(&[("streamtype", "stdout"), ("requestid", "0")]);
        let block1 = encoder.encode(&first);
        let block2 = encoder.encode(&second);
        assert_eq!(decoder.decode(&block1).unwrap(), first);
        assert_eq!(decoder.decode(&block2).unwrap(), second);
        // The second block reuses history, so it must not decode with a fresh context.
        assert!(HeaderDecoder::new(1 << 20).decode(&block2).is_err());
    }

    #[test]
    fn names_lowercased_and_duplicates_merged() {
        let mut encoder = HeaderEncoder::new();
        let block = encoder.encode(&pairs(&[("X-A", "1"), ("x-a", "2"), ("Port", "80")]));
        let decoded = HeaderDecoder::new(1 << 20).decode(&block).unwrap();
        assert_eq!(
            decoded,
            pairs(&[("x-a", "1"), ("x-a", "2"), ("port", "80")])
        );
    }

    #[test]
    fn empty_block_round_trips() {
        let block = HeaderEncoder::new().encode(&[]);
        assert_eq!(HeaderDecoder::new(1 << 20).decode(&block).unwrap(), vec![]);
    }

    /// A SYN_STREAM header block exactly as a Go spdystream client (zlib level 9 with
    /// the dictionary) lays it out: decompressing it with our decoder proves dictionary
    /// and framing compatibility independent of our own encoder.
    #[test]
    fn decodes_block_compressed_by_an_independent_zlib() {
        let plain = serialize(&pairs(&[
            ("streamtype", "data"),
            ("port", "8080"),
            ("requestid", "1"),
        ]));
        let mut zlib = Compress::new(Compression::best(), true);
        zlib.set_dictionary(dictionary()).unwrap();
        let mut block = Vec::with_capacity(plain.len() + 128);
        zlib.compress_vec(&plain, &mut block, FlushCompress::Sync)
            .unwrap();
        let decoded = HeaderDecoder::new(1 << 20).decode(&block).unwrap();
        assert_eq!(
            decoded,
            pairs(&[("streamtype", "data"), ("port", "8080"), ("requestid", "1")])
        );
    }

    #[test]
    fn header_bomb_is_refused() {
        // 8 MiB of one repeated header value compresses to a few KiB.
        let huge = "a".repeat(8 << 20);
        let block = HeaderEncoder::new().encode(&pairs(&[("x", &huge)]));
        assert!(
            block.len() < 64 * 1024,
            "bomb should be small: {}",
            block.len()
        );
        let err = HeaderDecoder::new(1 << 20).decode(&block).unwrap_err();
        assert!(matches!(err, HeaderError::Compression(_)), "{err:?}");
    }

    #[test]
    fn garbage_is_a_compression_error() {
        let err = HeaderDecoder::new(1 << 20)
            .decode(&[1, 2, 3, 4, 5])
            .unwrap_err();
        assert!(matches!(err, HeaderError::Compression(_)));
    }

    #[test]
    fn plain_block_validation() {
        assert!(parse_plain(&[]).is_err());
        assert!(parse_plain(&[0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        // One pair with an empty name.
        assert_eq!(
            parse_plain(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::Malformed("empty header name"))
        );
        // Value length points past the end.
        assert!(parse_plain(&[0, 0, 0, 1, 0, 0, 0, 1, b'a', 0, 0, 0, 9]).is_err());
    }
}
