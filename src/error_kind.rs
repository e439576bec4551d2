//! The kind of a failure, as far as a caller can act on it: the small vocabulary shared by the
//! monitor's answers (it travels over the monitor socket), the domain errors that keep a
//! source from another layer, and `server/errors.rs`, which alone turns a kind into a gRPC
//! code.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The thing named does not exist.
    NotFound,
    /// The thing to make exists already.
    AlreadyExists,
    /// A value in the request is wrong whatever the state.
    InvalidArgument,
    /// The request is fine, the state is not (not running, already started).
    FailedPrecondition,
    /// Out of space, processes or another limit of the host: retry once there is room.
    ResourceExhausted,
    /// A part ferrocri depends on cannot be reached now.
    Unavailable,
    /// ferrocri's own fault, or one nobody could name. Also what an older peer's answer
    /// without a kind, or a kind this build does not know, reads as.
    #[default]
    #[serde(other)]
    Internal,
}

impl ErrorKind {
    /// The kind an OS error number stands for: a full disk or quota and a process limit are
    /// the host's limits; everything else is internal.
    pub fn of_errno(errno: i32) -> ErrorKind {
        match errno {
            libc::ENOSPC | libc::EDQUOT | libc::EAGAIN | libc::ENOMEM => {
                ErrorKind::ResourceExhausted
            }
            _ => ErrorKind::Internal,
        }
    }

    /// The kind of an I/O error (see [`ErrorKind::of_errno`]).
    pub fn of_io(e: &std::io::Error) -> ErrorKind {
        e.raw_os_error()
            .map_or(ErrorKind::Internal, ErrorKind::of_errno)
    }

    /// The kind of an error that crossed a process boundary as text only (an executor's or
    /// the pause's report): a full disk or quota shows as its OS error number.
    pub fn of_text(text: &str) -> ErrorKind {
        if text.contains("(os error 28)") || text.contains("(os error 122)") {
            ErrorKind::ResourceExhausted
        } else {
            ErrorKind::Internal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_travel_as_snake_case_and_unknown_ones_read_as_internal() {
        let json = serde_json::to_string(&ErrorKind::FailedPrecondition).unwrap();
        assert_eq!(json, "\"failed_precondition\"");
        let back: ErrorKind = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ErrorKind::FailedPrecondition);
        let future: ErrorKind = serde_json::from_str("\"out_of_patience\"").unwrap();
        assert_eq!(future, ErrorKind::Internal);
    }

    #[test]
    fn host_limits_are_resource_exhausted() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(ErrorKind::of_io(&full), ErrorKind::ResourceExhausted);
        assert_eq!(
            ErrorKind::of_text(&full.to_string()),
            ErrorKind::ResourceExhausted
        );
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(ErrorKind::of_io(&denied), ErrorKind::Internal);
        assert_eq!(
            ErrorKind::of_io(&std::io::Error::other("x")),
            ErrorKind::Internal
        );
    }
}
