//! Entry names as the ecosystem writes them, made into paths beneath the layer root.

use std::ffi::CString;

use super::error::UnpackReason;
use super::{OPAQUE_MARKER, WHITEOUT_META_PREFIX, WHITEOUT_PREFIX};

/// Splits an entry path into normal components (no empty, `.` or `..` ones); empty means the
/// layer root. A leading `/` means the layer root too (as in containerd and Docker). `..` is
/// resolved lexically and must not climb above the root, with or without a leading `/`.
pub(super) fn clean_path(raw: &[u8]) -> Result<Vec<&[u8]>, UnpackReason> {
    if raw.contains(&0) {
        return Err(UnpackReason::Invalid("path contains a NUL byte"));
    }
    let mut parts = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(UnpackReason::PathEscapes);
                }
            }
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

/// What an entry's name makes of it, before its tar type is looked at.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Role<'a> {
    Plain,
    /// Hide this name of the parent directory in the layers below.
    Whiteout(&'a [u8]),
    /// Hide all of the parent directory's content in the layers below.
    Opaque,
}

pub(super) fn role<'a>(parts: &[&'a [u8]]) -> Result<Role<'a>, UnpackReason> {
    let Some((name, dirs)) = parts.split_last() else {
        return Ok(Role::Plain);
    };
    if dirs.iter().any(|dir| dir.starts_with(WHITEOUT_PREFIX)) {
        return Err(UnpackReason::BadWhiteout(
            "a parent directory has a whiteout name",
        ));
    }
    if *name == OPAQUE_MARKER {
        return Ok(Role::Opaque);
    }
    if name.starts_with(WHITEOUT_META_PREFIX) {
        return Err(UnpackReason::BadWhiteout("unknown whiteout metadata entry"));
    }
    match name.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(Role::Plain),
        Some(b"" | b"." | b"..") => Err(UnpackReason::BadWhiteout("it names no file")),
        Some(hidden) => Ok(Role::Whiteout(hidden)),
    }
}

pub(super) fn cstring(bytes: &[u8]) -> Result<CString, UnpackReason> {
    CString::new(bytes).map_err(|_| UnpackReason::Invalid("name contains a NUL byte"))
}

/// Components in a cleaned path; the root (empty) has none.
pub(super) fn depth(path: &[u8]) -> usize {
    if path.is_empty() {
        0
    } else {
        1 + path.iter().filter(|&&b| b == b'/').count()
    }
}
