//! GNU sparse files in PAX form: formats 0.0 and 0.1 (the map in PAX records) and 1.0 (the map
//! at the start of the entry's data), as GNU tar `--sparse --format=posix` writes them. Go's
//! archive/tar reads all three, so a layer may hold them (`docker import` keeps a tarball as it
//! is). The old GNU `S` entries are the tar crate's business; this is only the PAX kind.
//!
//! Here is the reading of the map and its checks; `unpack.rs` writes the file.

use std::io::Read;

const PREFIX: &[u8] = b"GNU.sparse.";
/// Bounds on a 1.0 map, so a hostile one costs little memory (Go allows 1 MiB too).
const MAX_MAP_BYTES: usize = 1 << 20;

/// One stretch of a sparse file's data: `length` bytes at `offset`; between stretches, holes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    pub length: u64,
}

/// What an entry's PAX records say about it being a sparse file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaxSparse {
    /// The file's real name (the header carries a placeholder such as `GNUSparseFile.0/x`).
    pub name: Option<Vec<u8>>,
    /// The file's size, holes included.
    pub real_size: u64,
    /// The map, or `None` for format 1.0, where it opens the entry's data.
    pub map: Option<Vec<Chunk>>,
}

fn decimal(text: &[u8]) -> Result<u64, &'static str> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err("a number in the sparse map is not decimal");
    }
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or("a number in the sparse map is too large")
}

fn pairs(numbers: &[u64]) -> Result<Vec<Chunk>, &'static str> {
    if !numbers.len().is_multiple_of(2) {
        return Err("the sparse map has an odd count of numbers");
    }
    Ok(numbers
        .chunks_exact(2)
        .map(|pair| Chunk {
            offset: pair[0],
            length: pair[1],
        })
        .collect())
}

/// Reads the `GNU.sparse.*` records among an entry's PAX records; `None` when there are none.
pub fn from_pax<'a>(
    records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<Option<PaxSparse>, &'static str> {
    let (mut major, mut minor, mut name) = (None, None, None);
    let (mut real_size, mut size, mut map_text) = (None, None, None);
    let (mut offsets, mut lengths) = (Vec::new(), Vec::new());
    let mut seen = false;
    for (key, value) in records {
        let Some(field) = key.strip_prefix(PREFIX) else {
            continue;
        };
        seen = true;
        match field {
            b"major" => major = Some(decimal(value)?),
            b"minor" => minor = Some(decimal(value)?),
            b"name" => name = Some(value.to_vec()),
            b"realsize" => real_size = Some(decimal(value)?),
            b"size" => size = Some(decimal(value)?),
            b"map" => map_text = Some(value),
            b"offset" => offsets.push(decimal(value)?),
            b"numbytes" => lengths.push(decimal(value)?),
            _ => {}
        }
    }
    if !seen {
        return Ok(None);
    }
    let real_size = real_size
        .or(size)
        .ok_or("no GNU.sparse.realsize or GNU.sparse.size record")?;
    let map = match (major, minor) {
        (Some(1), Some(0)) => None,
        (Some(0) | None, _) if map_text.is_some() => {
            let text = map_text.unwrap_or_default();
            let numbers = if text.is_empty() {
                Vec::new()
            } else {
                text.split(|&b| b == b',')
                    .map(decimal)
                    .collect::<Result<Vec<_>, _>>()?
            };
            Some(pairs(&numbers)?)
        }
        (Some(0) | None, _) if !offsets.is_empty() || !lengths.is_empty() => {
            if offsets.len() != lengths.len() {
                return Err("GNU.sparse.offset and GNU.sparse.numbytes records do not pair up");
            }
            let numbers: Vec<u64> = offsets
                .iter()
                .zip(&lengths)
                .flat_map(|(&o, &l)| [o, l])
                .collect();
            Some(pairs(&numbers)?)
        }
        _ => return Err("unknown GNU sparse format version"),
    };
    Ok(Some(PaxSparse {
        name,
        real_size,
        map,
    }))
}

/// Reads a format 1.0 map from the start of the entry's data: decimal numbers, one a line —
/// the count of chunks, then offset and length of each — padded to whole 512-byte blocks.
/// Returns the map and the bytes it took.
pub fn read_map<R: Read>(data: &mut R) -> Result<(Vec<Chunk>, u64), &'static str> {
    let mut text = Vec::new();
    let mut numbers: Vec<u64> = Vec::new();
    // `start`: where the next number begins; `scanned`: how far no newline was found.
    let (mut start, mut scanned) = (0, 0);
    loop {
        while let Some(newline) = text
            .get(scanned.max(start)..)
            .and_then(|rest: &[u8]| rest.iter().position(|&b| b == b'\n'))
        {
            let newline = scanned.max(start) + newline;
            let number = decimal(&text[start..newline])?;
            start = newline + 1;
            numbers.push(number);
            let count = numbers[0];
            if count > (MAX_MAP_BYTES / 4) as u64 {
                return Err("the sparse map lists too many chunks");
            }
            if numbers.len() as u64 == 1 + 2 * count {
                return Ok((pairs(&numbers[1..])?, text.len() as u64));
            }
        }
        scanned = text.len();
        if text.len() >= MAX_MAP_BYTES {
            return Err("the sparse map is too long");
        }
        let mut block = [0u8; 512];
        data.read_exact(&mut block)
            .map_err(|_| "the sparse map is cut short")?;
        text.extend_from_slice(&block);
    }
}

/// Checks the map against the file's size and the data stored for it: chunks in order, not
/// overlapping, inside the file, and together exactly the stored data.
pub fn check(map: &[Chunk], real_size: u64, stored: u64) -> Result<(), &'static str> {
    let mut end = 0u64;
    let mut total = 0u64;
    for chunk in map {
        if chunk.offset < end {
            return Err("sparse chunks overlap or are out of order");
        }
        end = chunk
            .offset
            .checked_add(chunk.length)
            .filter(|&e| e <= real_size)
            .ok_or("a sparse chunk lies past the end of the file")?;
        total = total.saturating_add(chunk.length);
    }
    if total != stored {
        return Err("the sparse map does not account for exactly the stored data");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(list: &[(&'static str, &'static str)]) -> Vec<(&'static [u8], &'static [u8])> {
        list.iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect()
    }

    fn chunks(list: &[(u64, u64)]) -> Vec<Chunk> {
        list.iter()
            .map(|&(offset, length)| Chunk { offset, length })
            .collect()
    }

    #[test]
    fn the_three_pax_formats() {
        assert_eq!(
            from_pax(records(&[("path", "x"), ("mtime", "1")])),
            Ok(None)
        );
        let v10 = from_pax(records(&[
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "real"),
            ("GNU.sparse.realsize", "10000"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(v10.name.as_deref(), Some(&b"real"[..]));
        assert_eq!((v10.real_size, v10.map), (10000, None));
        let v01 = from_pax(records(&[
            ("GNU.sparse.major", "0"),
            ("GNU.sparse.minor", "1"),
            ("GNU.sparse.size", "9000"),
            ("GNU.sparse.numblocks", "2"),
            ("GNU.sparse.map", "0,10,8000,1000"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(v01.map, Some(chunks(&[(0, 10), (8000, 1000)])));
        let v00 = from_pax(records(&[
            ("GNU.sparse.size", "50"),
            ("GNU.sparse.offset", "0"),
            ("GNU.sparse.numbytes", "5"),
            ("GNU.sparse.offset", "40"),
            ("GNU.sparse.numbytes", "10"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(v00.map, Some(chunks(&[(0, 5), (40, 10)])));
        assert_eq!(v00.real_size, 50);

        for bad in [
            &[("GNU.sparse.major", "2"), ("GNU.sparse.realsize", "1")][..],
            &[("GNU.sparse.map", "0,1")],
            &[("GNU.sparse.size", "9"), ("GNU.sparse.map", "0,1,2")],
            &[("GNU.sparse.size", "9"), ("GNU.sparse.map", "0,x")],
            &[("GNU.sparse.size", "9"), ("GNU.sparse.offset", "0")],
            &[("GNU.sparse.size", "-1"), ("GNU.sparse.map", "")],
        ] {
            assert!(from_pax(records(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn format_one_maps() {
        let mut data = b"2\n0\n512\n9488\n512\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(&[b'A'; 100]);
        let mut reader = &data[..];
        let (map, used) = read_map(&mut reader).unwrap();
        assert_eq!(map, chunks(&[(0, 512), (9488, 512)]));
        assert_eq!(used, 512);
        assert_eq!(reader.len(), 100);

        // A map longer than one block.
        let mut text = String::from("100\n");
        for i in 0..100 {
            text.push_str(&format!("{}\n1\n", i * 1000));
        }
        let mut data = text.into_bytes();
        data.resize(data.len().div_ceil(512) * 512, 0);
        let (map, used) = read_map(&mut &data[..]).unwrap();
        assert_eq!((map.len(), used), (100, data.len() as u64));

        let mut empty = b"0\n".to_vec();
        empty.resize(512, 0);
        assert_eq!(read_map(&mut &empty[..]).unwrap(), (Vec::new(), 512));
        for bad in [
            &b"2\n0\n5"[..],
            b"x\n",
            b"1\n0\n-1\n",
            b"",
            b"99999999999\n",
        ] {
            let mut data = bad.to_vec();
            data.resize(512, 0);
            assert!(read_map(&mut &data[..]).is_err(), "{bad:?}");
        }
        // A map that never ends is bounded.
        let endless = vec![b'1'; 4 << 20];
        assert!(read_map(&mut &endless[..]).is_err());
    }

    #[test]
    fn maps_are_checked_against_sizes() {
        assert!(check(&chunks(&[(0, 5), (40, 10)]), 50, 15).is_ok());
        assert!(check(&[], 50, 0).is_ok());
        assert!(check(&chunks(&[(0, 5), (40, 10)]), 49, 15).is_err());
        assert!(check(&chunks(&[(0, 5), (4, 10)]), 50, 15).is_err());
        assert!(check(&chunks(&[(40, 5), (0, 10)]), 50, 15).is_err());
        assert!(check(&chunks(&[(0, 5)]), 50, 6).is_err());
        assert!(check(&chunks(&[(u64::MAX, 5)]), u64::MAX, 5).is_err());
    }
}
