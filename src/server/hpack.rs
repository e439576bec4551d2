//! Just enough HPACK (RFC 7541) to read the header blocks a gRPC client sends, and to write a
//! header list back without touching the peer's dynamic table. Used by [`super::authority`].
//!
//! The decoder keeps the client's dynamic table in step; the encoder only writes literals
//! "without indexing", so what it writes never changes the receiver's table.

use std::collections::VecDeque;

/// Why a header block does not decode. The peer broke HPACK; the connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block ends inside a field")]
    Truncated,
    #[error("HPACK integer too large")]
    IntegerOverflow,
    #[error("header table index {0} out of range")]
    BadIndex(usize),
    #[error("dynamic table size update to {0} over the allowed {1}")]
    TableSizeTooLarge(usize, usize),
    #[error("dynamic table size update after a header field")]
    LateTableSizeUpdate,
    #[error("bad Huffman code (EOS, or padding that is not a prefix of EOS)")]
    BadHuffman,
}

/// A decoder for the header blocks of one connection, in order.
#[derive(Debug)]
pub struct Decoder {
    /// Newest entry first, as HPACK indexes them.
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Sum of the entries' sizes (name + value + 32 each).
    size: usize,
    /// The current limit, set by the encoder's size updates.
    max_size: usize,
    /// The limit the receiver announced (SETTINGS_HEADER_TABLE_SIZE).
    allowed_size: usize,
}

/// Size of an entry in the dynamic table (RFC 7541 §4.1).
fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + 32
}

impl Decoder {
    /// A decoder for a receiver that announced a table of `allowed_size` bytes.
    pub fn new(allowed_size: usize) -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: allowed_size,
            allowed_size,
        }
    }

    /// Decodes one complete header block, calling `field` with each name and value in order.
    pub fn decode(
        &mut self,
        mut block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let mut seen_field = false;
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                // Indexed field.
                let index = read_integer(&mut block, 7)?;
                let (name, value) = self.entry(index)?;
                field(name, value);
                seen_field = true;
            } else if first & 0xc0 == 0x40 {
                // Literal with incremental indexing: goes into the table.
                let (name, value) = self.literal(&mut block, 6)?;
                field(&name, &value);
                self.insert(name, value);
                seen_field = true;
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update: only before the first field of a block.
                if seen_field {
                    return Err(HpackError::LateTableSizeUpdate);
                }
                let size = read_integer(&mut block, 5)?;
                if size > self.allowed_size {
                    return Err(HpackError::TableSizeTooLarge(size, self.allowed_size));
                }
                self.max_size = size;
                self.evict_to(size);
            } else {
                // Literal without indexing (0000) or never indexed (0001): same layout.
                let (name, value) = self.literal(&mut block, 4)?;
                field(&name, &value);
                seen_field = true;
            }
        }
        Ok(())
    }

    /// Static entries first (1..=61), then the dynamic table, newest first.
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match index {
            0 => Err(HpackError::BadIndex(0)),
            1..=STATIC_LEN => {
                let (name, value) = STATIC_TABLE[index - 1];
                Ok((name.as_bytes(), value.as_bytes()))
            }
            _ => self
                .table
                .get(index - STATIC_LEN - 1)
                .map(|(name, value)| (name.as_slice(), value.as_slice()))
                .ok_or(HpackError::BadIndex(index)),
        }
    }

    /// A literal field whose name index has a `prefix`-bit integer (0: the name follows).
    fn literal(&self, block: &mut &[u8], prefix: u8) -> Result<(Vec<u8>, Vec<u8>), HpackError> {
        let index = read_integer(block, prefix)?;
        let name = if index == 0 {
            read_string(block)?
        } else {
            self.entry(index)?.0.to_vec()
        };
        let value = read_string(block)?;
        Ok((name, value))
    }

    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = entry_size(&name, &value);
        if size > self.max_size {
            // An entry larger than the table empties it and is not added (§4.4).
            self.evict_to(0);
            return;
        }
        self.evict_to(self.max_size - size);
        self.size += size;
        self.table.push_front((name, value));
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            let Some((name, value)) = self.table.pop_back() else {
                break;
            };
            self.size -= entry_size(&name, &value);
        }
    }
}

/// Appends `fields` to `out` as literals without indexing, names and values as plain octets.
pub fn encode_literals<'a>(
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    out: &mut Vec<u8>,
) {
    for (name, value) in fields {
        // 0000 + name index 0: a literal field without indexing with a literal name.
        out.push(0x00);
        write_string(name, out);
        write_string(value, out);
    }
}

fn write_string(s: &[u8], out: &mut Vec<u8>) {
    // H bit clear: not Huffman coded.
    write_integer(s.len(), 7, 0x00, out);
    out.extend_from_slice(s);
}

/// An integer with a `prefix`-bit prefix (§5.1); `flags` are the bits above the prefix.
fn write_integer(mut value: usize, prefix: u8, flags: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_integer(block: &mut &[u8], prefix: u8) -> Result<usize, HpackError> {
    let (&first, mut rest) = block.split_first().ok_or(HpackError::Truncated)?;
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(first) & max;
    if value == max {
        let mut shift = 0u32;
        loop {
            let (&byte, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
            rest = tail;
            // Nothing legitimate needs more than 2^28; refuse before anything can overflow.
            if shift > 21 {
                return Err(HpackError::IntegerOverflow);
            }
            value += usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
    }
    *block = rest;
    Ok(value)
}

fn read_string(block: &mut &[u8]) -> Result<Vec<u8>, HpackError> {
    let huffman = block.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = read_integer(block, 7)?;
    if len > block.len() {
        return Err(HpackError::Truncated);
    }
    let (raw, rest) = block.split_at(len);
    *block = rest;
    if huffman {
        huffman_decode(raw)
    } else {
        Ok(raw.to_vec())
    }
}

/// Decodes HPACK's Huffman code. The code is canonical: symbols sorted by (bit length,
/// value) take consecutive codes, so the bit lengths alone define it.
fn huffman_decode(bits: &[u8]) -> Result<Vec<u8>, HpackError> {
    let canon = canonical_code();
    let mut out = Vec::with_capacity(bits.len() * 8 / 5);
    // The code read so far and its length; `first` is the first code of that length.
    let (mut code, mut len) = (0u32, 0usize);
    let (mut first, mut rank) = (0u32, 0usize);
    for byte in bits {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            let count = u32::from(canon.count[len]);
            if code - first < count {
                let symbol = canon.symbols[rank + (code - first) as usize];
                if symbol == EOS {
                    return Err(HpackError::BadHuffman);
                }
                out.push(symbol as u8);
                (code, len, first, rank) = (0, 0, 0, 0);
            } else {
                // Not a code of this length: the codes of the next length start after
                // this length's, one bit longer.
                first = (first + count) << 1;
                rank += count as usize;
                if len == MAX_CODE_LEN {
                    return Err(HpackError::BadHuffman);
                }
            }
        }
    }
    // At most 7 bits of padding, all ones (the start of EOS).
    if len > 7 || code != (1 << len) - 1 {
        return Err(HpackError::BadHuffman);
    }
    Ok(out)
}

const EOS: u16 = 256;
const MAX_CODE_LEN: usize = 30;

/// Symbols in code order and how many codes each bit length has.
struct Canonical {
    symbols: [u16; 257],
    count: [u16; MAX_CODE_LEN + 1],
}

fn canonical_code() -> &'static Canonical {
    static CODE: std::sync::OnceLock<Canonical> = std::sync::OnceLock::new();
    CODE.get_or_init(|| {
        let mut count = [0u16; MAX_CODE_LEN + 1];
        for &len in &HUFFMAN_BIT_LENGTHS {
            count[usize::from(len)] += 1;
        }
        let mut order: Vec<u16> = (0..=EOS).collect();
        order.sort_by_key(|&s| (HUFFMAN_BIT_LENGTHS[usize::from(s)], s));
        let mut symbols = [0u16; 257];
        symbols.copy_from_slice(&order);
        Canonical { symbols, count }
    })
}

/// Bit length of each symbol's code, 0..=255 then EOS (RFC 7541 Appendix B).
#[rustfmt::skip]
const HUFFMAN_BIT_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    30,
];

const STATIC_LEN: usize = 61;

/// The static table (RFC 7541 Appendix A), index 1 first.
const STATIC_TABLE: [(&str, &str); STATIC_LEN] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
        let mut fields = Vec::new();
        decoder.decode(block, |name, value| {
            fields.push((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ))
        })?;
        Ok(fields)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// RFC 7541 C.3: three requests on one connection, plain literals, dynamic table.
    #[test]
    fn rfc_requests_without_huffman() {
        let mut d = Decoder::new(4096);
        let first = hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
        assert_eq!(
            decode(&mut d, &first).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        assert_eq!(d.size, 57);
        let second = hex("8286 84be 5808 6e6f 2d63 6163 6865");
        assert_eq!(
            decode(&mut d, &second).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache")
            ])
        );
        assert_eq!(d.size, 110);
        let third = hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65");
        assert_eq!(
            decode(&mut d, &third).unwrap(),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ])
        );
        assert_eq!(d.size, 164);
    }

    /// RFC 7541 C.4: the same requests with Huffman-coded strings.
    #[test]
    fn rfc_requests_with_huffman() {
        let mut d = Decoder::new(4096);
        let first = hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff");
        assert_eq!(decode(&mut d, &first).unwrap()[3].1, "www.example.com");
        let second = hex("8286 84be 5886 a8eb 1064 9cbf");
        assert_eq!(decode(&mut d, &second).unwrap()[4].1, "no-cache");
        let third = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
        assert_eq!(
            decode(&mut d, &third).unwrap()[4],
            ("custom-key".to_string(), "custom-value".to_string())
        );
        assert_eq!(d.size, 164);
    }

    /// RFC 7541 C.6: responses with Huffman strings and evictions from a 256-byte table.
    #[test]
    fn rfc_responses_with_eviction() {
        let mut d = Decoder::new(256);
        let first = hex(
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        );
        assert_eq!(
            decode(&mut d, &first).unwrap(),
            pairs(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com")
            ])
        );
        assert_eq!(d.size, 222);
        let second = hex("4883 640e ff c1 c0 bf");
        assert_eq!(decode(&mut d, &second).unwrap()[0].1, "307");
        assert_eq!(d.size, 222);
        let third = hex(
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        );
        assert_eq!(
            decode(&mut d, &third).unwrap(),
            pairs(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                ("location", "https://www.example.com"),
                ("content-encoding", "gzip"),
                (
                    "set-cookie",
                    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
                )
            ])
        );
        assert_eq!(d.size, 215);
    }

    #[test]
    fn literals_round_trip_and_leave_the_table_alone() {
        let long = "x".repeat(300);
        let fields = [
            (b":authority".as_slice(), b"run%2Fferrocri.sock".as_slice()),
            (b"x-long", long.as_bytes()),
            (b"empty", b""),
        ];
        let mut block = Vec::new();
        encode_literals(fields, &mut block);
        let mut d = Decoder::new(4096);
        let decoded = decode(&mut d, &block).unwrap();
        assert_eq!(decoded[0].1, "run%2Fferrocri.sock");
        assert_eq!(decoded[1].1, long);
        assert_eq!(decoded[2].1, "");
        assert_eq!(d.size, 0);
    }

    #[test]
    fn bad_blocks_are_errors() {
        let mut d = Decoder::new(4096);
        // Index 0, an index past the tables, a string longer than the block.
        assert_eq!(decode(&mut d, &[0x80]), Err(HpackError::BadIndex(0)));
        assert_eq!(decode(&mut d, &[0xbe]), Err(HpackError::BadIndex(62)));
        assert_eq!(
            decode(&mut d, &[0x04, 0x05, b'a']),
            Err(HpackError::Truncated)
        );
        // A size update over the announced limit, and one after a field.
        assert_eq!(
            decode(&mut d, &[0x3f, 0xe2, 0x1f]),
            Err(HpackError::TableSizeTooLarge(4097, 4096))
        );
        assert_eq!(
            decode(&mut d, &[0x82, 0x20]),
            Err(HpackError::LateTableSizeUpdate)
        );
        // An integer that never ends, and one too large.
        assert_eq!(decode(&mut d, &[0xff, 0xff]), Err(HpackError::Truncated));
        assert_eq!(
            decode(&mut d, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(HpackError::IntegerOverflow)
        );
        // Huffman: EOS in the string, padding of 8 bits, padding that is not all ones.
        assert_eq!(
            decode(&mut d, &[0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00]),
            Err(HpackError::BadHuffman)
        );
        assert_eq!(
            decode(&mut d, &[0x00, 0x82, 0x07, 0xff, 0x00]),
            Err(HpackError::BadHuffman)
        );
        assert_eq!(
            decode(&mut d, &[0x00, 0x81, 0x00, 0x00]),
            Err(HpackError::BadHuffman)
        );
    }

    #[test]
    fn size_updates_evict() {
        let mut d = Decoder::new(4096);
        decode(&mut d, &hex("4001 61 0162")).unwrap();
        assert_eq!(d.size, 34);
        // Size update to 0 empties the table; then index 62 is gone.
        decode(&mut d, &[0x20]).unwrap();
        assert_eq!(d.size, 0);
        assert_eq!(decode(&mut d, &[0xbe]), Err(HpackError::BadIndex(62)));
    }
}
