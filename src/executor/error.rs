//! The executor's one error type: a message that says what was being done, on which path,
//! and why it failed. It travels to the monitor as text (`error: <message>` on the report
//! pipe), so it is a string built up with context rather than a tree of types.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// The text of an errno, without Rust's " (os error N)" suffix: these messages are read by
/// people looking at a failed container, and the shell-style text is what they expect.
pub fn errno_text(errno: i32) -> &'static str {
    nix::errno::Errno::from_raw(errno).desc()
}

impl From<nix::errno::Errno> for Error {
    fn from(e: nix::errno::Errno) -> Error {
        Error(e.desc().to_owned())
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Error {
        Error(errno_text(e.raw_os_error()).to_owned())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        match e.raw_os_error() {
            Some(errno) => Error(errno_text(errno).to_owned()),
            None => Error(e.to_string()),
        }
    }
}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error(message.to_owned())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error(e.to_string())
    }
}

impl From<crate::cgroup::CgroupError> for Error {
    fn from(e: crate::cgroup::CgroupError) -> Error {
        Error(e.to_string())
    }
}

impl From<caps::errors::CapsError> for Error {
    fn from(e: caps::errors::CapsError) -> Error {
        Error(e.to_string())
    }
}

/// Prefixes an error with what was being done: `.context(|| format!("mount {dest}"))`.
pub trait Context<T> {
    fn context<C: fmt::Display>(self, what: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context<C: fmt::Display>(self, what: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {}", what(), e.into().0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_prefixes_and_errno_has_no_suffix() {
        let failed: std::result::Result<(), _> = Err(std::io::Error::from_raw_os_error(2));
        let e = failed.context(|| "open /x").unwrap_err();
        assert_eq!(e.message(), "open /x: No such file or directory");
        let nested: Result<()> = Err(e);
        let e = nested.context(|| "rootfs").unwrap_err();
        assert_eq!(e.message(), "rootfs: open /x: No such file or directory");
    }
}
