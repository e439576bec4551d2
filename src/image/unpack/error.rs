//! Why a layer could not be unpacked.

use std::io;

use super::MAX_OWNER_ID;

/// Why a layer could not be unpacked, naming the image, the layer and (when there is one) the
/// offending entry exactly as the tar spells it.
#[derive(Debug, thiserror::Error)]
#[error("cannot unpack layer {layer} of image {image}{}: {reason}", entry_label(.entry))]
pub struct UnpackError {
    pub image: String,
    pub layer: String,
    pub entry: Option<String>,
    pub reason: UnpackReason,
}

fn entry_label(entry: &Option<String>) -> String {
    entry
        .as_ref()
        .map(|path| format!(", entry {path:?}"))
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackReason {
    #[error("path escapes the layer directory")]
    PathEscapes,
    #[error("hard link target {0:?} escapes the layer directory")]
    LinkEscapes(String),
    #[error("hard link target {0:?} is a directory")]
    LinkToDirectory(String),
    #[error("hard link target {0:?} is not an earlier entry of this layer")]
    LinkTargetMissing(String),
    #[error("invalid whiteout: {0}")]
    BadWhiteout(&'static str),
    #[error("unsupported tar entry type {0:?}")]
    UnsupportedType(char),
    #[error("{which} {value} cannot be a Linux {which} (the range is 0 to {MAX_OWNER_ID})")]
    Owner { which: &'static str, value: i64 },
    #[error("invalid GNU sparse file: {0}")]
    BadSparse(&'static str),
    #[error("the stream ends inside this entry's data")]
    TruncatedData,
    #[error("invalid entry: {0}")]
    Invalid(&'static str),
    #[error("corrupt tar stream: {0}")]
    Corrupt(io::Error),
    #[error("the layer unpacks to more than {0} bytes of file data (image.max_layer_bytes)")]
    TooManyBytes(u64),
    #[error("the layer holds more than {0} entries (image.max_layer_files)")]
    TooManyFiles(u64),
    #[error("the target directory is not empty")]
    TargetNotEmpty,
    #[error("the kernel lacks openat2 (Linux 5.6 or later is required)")]
    NoOpenat2,
    #[error("cannot set xattr {key}: {source}")]
    Xattr { key: String, source: io::Error },
    #[error("{op}: {source}")]
    Io { op: &'static str, source: io::Error },
}

pub(super) fn io_err<E: Into<io::Error>>(op: &'static str) -> impl FnOnce(E) -> UnpackReason {
    move |e| UnpackReason::Io {
        op,
        source: e.into(),
    }
}

pub(super) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
