//! What a tar header and its PAX records say about an entry: owner, mode, times, xattrs and
//! GNU sparse maps, with numeric fields read as Go's archive/tar reads them.

use std::io::{self, Read};

use rustix::fs::{Gid, Mode, Timespec, Timestamps, Uid};

use super::error::UnpackReason;
use super::sparse::{self, PaxSparse};
use super::{MAX_OWNER_ID, PAX_SPARSE_PREFIX, PAX_XATTR_PREFIX};

/// The entry's GNU sparse records, if it is a sparse file in PAX form.
pub(super) fn pax_sparse<R: Read>(
    entry: &mut tar::Entry<R>,
) -> Result<Option<PaxSparse>, UnpackReason> {
    let Some(records) = entry.pax_extensions().map_err(UnpackReason::Corrupt)? else {
        return Ok(None);
    };
    let records = records
        .map(|r| r.map(|r| (r.key_bytes(), r.value_bytes())))
        .collect::<io::Result<Vec<_>>>()
        .map_err(UnpackReason::Corrupt)?;
    sparse::from_pax(records).map_err(UnpackReason::BadSparse)
}

/// The attributes a tar header (and its PAX records) gives an entry.
pub(super) struct Meta {
    pub(super) uid: Uid,
    pub(super) gid: Gid,
    /// Permission bits including setuid, setgid and sticky.
    pub(super) mode: Mode,
    pub(super) atime: Timespec,
    pub(super) mtime: Timespec,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    pub(super) fn read<R: Read>(entry: &mut tar::Entry<R>) -> Result<Meta, UnpackReason> {
        let header = entry.header();
        let fields = header.as_old();
        let mut uid = numeric(&fields.uid).ok_or(UnpackReason::Invalid("bad uid field"))?;
        let mut gid = numeric(&fields.gid).ok_or(UnpackReason::Invalid("bad gid field"))?;
        let mode = numeric(&fields.mode).ok_or(UnpackReason::Invalid("bad mode field"))?;
        let mtime = numeric(&fields.mtime).ok_or(UnpackReason::Invalid("bad mtime field"))?;
        let mut mtime = Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        };
        let mut atime = match header.as_gnu().map(|gnu| numeric(&gnu.atime)) {
            Some(Some(secs)) if secs != 0 => Some(Timespec {
                tv_sec: secs,
                tv_nsec: 0,
            }),
            _ => None,
        };
        let mut xattrs = Vec::new();
        if let Some(records) = entry.pax_extensions().map_err(UnpackReason::Corrupt)? {
            for record in records {
                let record = record.map_err(UnpackReason::Corrupt)?;
                let (key, value) = (record.key_bytes(), record.value_bytes());
                if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                    xattrs.push((name.to_vec(), value.to_vec()));
                } else if key.starts_with(PAX_SPARSE_PREFIX) {
                    // Read by `pax_sparse`.
                } else if key == b"mtime" {
                    mtime = pax_time(value).ok_or(UnpackReason::Invalid("bad PAX mtime"))?;
                } else if key == b"atime" {
                    atime = Some(pax_time(value).ok_or(UnpackReason::Invalid("bad PAX atime"))?);
                } else if key == b"uid" {
                    uid = pax_decimal(value).ok_or(UnpackReason::Invalid("bad PAX uid"))?;
                } else if key == b"gid" {
                    gid = pax_decimal(value).ok_or(UnpackReason::Invalid("bad PAX gid"))?;
                }
            }
        }
        Ok(Meta {
            uid: Uid::from_raw_unchecked(owner_id(uid, "uid")?),
            gid: Gid::from_raw_unchecked(owner_id(gid, "gid")?),
            mode: Mode::from_raw_mode((mode & 0o7777) as u32),
            atime: atime.unwrap_or(mtime),
            mtime,
            xattrs,
        })
    }

    pub(super) fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }
}

/// A numeric header field as Go's archive/tar reads it: octal text, padded with NULs or
/// spaces on either side (empty reads as 0), or base-256 when the top bit of the first byte
/// is set — two's complement, so times before 1970 and values past the octal range fit.
/// `None` when it is neither or does not fit an i64.
pub(super) fn numeric(field: &[u8]) -> Option<i64> {
    let first = *field.first()?;
    if first & 0x80 != 0 {
        // 0xff.. is negative: invert every byte, read, invert back.
        let invert = if first & 0x40 != 0 { 0xff } else { 0 };
        let mut value: u64 = 0;
        for (i, &byte) in field.iter().enumerate() {
            let byte = byte ^ invert;
            let byte = if i == 0 { byte & 0x7f } else { byte };
            if value >> 56 != 0 {
                return None;
            }
            value = value << 8 | u64::from(byte);
        }
        let value = i64::try_from(value).ok()?;
        return Some(if invert == 0xff { !value } else { value });
    }
    let padding = |b: &u8| *b == 0 || *b == b' ';
    let start = field
        .iter()
        .position(|b| !padding(b))
        .unwrap_or(field.len());
    let text = field.get(start..)?;
    let text = text.get(..text.iter().position(padding).unwrap_or(text.len()))?;
    if text.is_empty() {
        return Some(0);
    }
    if !text.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    i64::from_str_radix(std::str::from_utf8(text).ok()?, 8).ok()
}

/// A PAX decimal number (`uid`, `gid`).
pub(super) fn pax_decimal(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A uid or gid chown can set.
pub(super) fn owner_id(id: i64, which: &'static str) -> Result<u32, UnpackReason> {
    u32::try_from(id)
        .ok()
        .filter(|&id| i64::from(id) <= MAX_OWNER_ID)
        .ok_or(UnpackReason::Owner { which, value: id })
}

/// Parses a PAX time: decimal seconds, optionally negative, optionally with a fraction.
pub(super) fn pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    // Nanoseconds: the first nine fraction digits, right-padded with zeros.
    let nanos = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0i64, |acc, digit| acc * 10 + i64::from(digit - b'0'));
    Some(match (negative, nanos) {
        (false, _) => Timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
        (true, 0) => Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        },
        (true, _) => Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nanos,
        },
    })
}
