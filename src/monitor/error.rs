//! Why the monitor could not do what it was asked: its own typed error, whose kind travels
//! in the protocol's error answer ([`super::protocol::Response::Error`]) so the daemon can
//! give the caller the right gRPC code without reading the message.

use std::path::PathBuf;

use crate::error_kind::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("container {0} is not known to this monitor")]
    UnknownContainer(String),
    #[error("container {0} already exists")]
    ContainerExists(String),
    #[error("container {0} was already started")]
    AlreadyStarted(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("signal {signal}: {source}")]
    BadSignal {
        signal: i32,
        #[source]
        source: nix::errno::Errno,
    },
    /// A system call or file operation of the monitor's own.
    #[error("{what}: {source}")]
    Os {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Spec {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}: {source}")]
    Cgroup {
        what: &'static str,
        #[source]
        source: crate::cgroup::CgroupError,
    },
    /// What another process (the executor, the pause) reported as text.
    #[error("{0}")]
    Reported(String),
    #[error("{0} took longer than {1:?}")]
    Timeout(&'static str, std::time::Duration),
    #[error("cannot read the request: {0}")]
    Request(#[source] super::protocol::ProtocolError),
}

impl RequestError {
    /// A failed system call or file operation, with what it was doing.
    pub fn os(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> RequestError {
        let what = what.into();
        move |errno| RequestError::Os {
            what,
            source: errno.into(),
        }
    }

    /// A failed file operation, with what it was doing.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RequestError {
        let what = what.into();
        move |source| RequestError::Os { what, source }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            RequestError::UnknownContainer(_) => ErrorKind::NotFound,
            RequestError::ContainerExists(_) => ErrorKind::AlreadyExists,
            RequestError::AlreadyStarted(_) | RequestError::NotRunning(_) => {
                ErrorKind::FailedPrecondition
            }
            RequestError::BadSignal { .. } => ErrorKind::InvalidArgument,
            RequestError::Os { source, .. } => ErrorKind::of_io(source),
            RequestError::Reported(text) => ErrorKind::of_text(text),
            // A request this monitor cannot read came from the daemon: ferrocri's own fault.
            RequestError::Request(_)
            | RequestError::Spec { .. }
            | RequestError::Cgroup { .. }
            | RequestError::Timeout(..) => ErrorKind::Internal,
        }
    }
}

impl From<RequestError> for super::protocol::Response {
    fn from(e: RequestError) -> Self {
        super::protocol::Response::Error {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::protocol::{ProtocolError, Response, read_message, write_message};
    use super::*;

    /// The answer a failed request gets, through the wire and back as the daemon reads it.
    async fn answered(e: RequestError) -> (ErrorKind, String) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        write_message(&mut a, &Response::from(e)).await.unwrap();
        match read_message::<Response, _>(&mut b).await.unwrap() {
            Response::Error { kind, message } => (kind, message),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn error_answers_keep_their_kind_over_the_wire() {
        let cases = [
            (
                RequestError::UnknownContainer("c1".into()),
                ErrorKind::NotFound,
            ),
            (
                RequestError::ContainerExists("c1".into()),
                ErrorKind::AlreadyExists,
            ),
            (
                RequestError::NotRunning("c1".into()),
                ErrorKind::FailedPrecondition,
            ),
            (
                RequestError::BadSignal {
                    signal: 99,
                    source: nix::errno::Errno::EINVAL,
                },
                ErrorKind::InvalidArgument,
            ),
            (
                RequestError::os("cannot fork")(nix::errno::Errno::EAGAIN),
                ErrorKind::ResourceExhausted,
            ),
            (
                RequestError::io("cannot write the exec spec")(std::io::Error::from_raw_os_error(
                    libc::ENOSPC,
                )),
                ErrorKind::ResourceExhausted,
            ),
            (
                RequestError::Reported("mount: permission denied".into()),
                ErrorKind::Internal,
            ),
        ];
        for (error, kind) in cases {
            let message = error.to_string();
            assert_eq!(answered(error).await, (kind, message));
        }
    }

    #[tokio::test]
    async fn an_answer_without_a_kind_reads_as_internal() {
        // What a monitor of the previous release answers.
        use tokio::io::AsyncWriteExt;
        let (mut a, mut b) = tokio::io::duplex(4096);
        let old = serde_json::json!({"version": 1, "result": "error", "message": "boom"});
        let text = old.to_string();
        a.write_all(&(text.len() as u32).to_be_bytes())
            .await
            .unwrap();
        a.write_all(text.as_bytes()).await.unwrap();
        let got: Response = read_message(&mut b).await.unwrap();
        assert_eq!(
            got,
            Response::Error {
                kind: ErrorKind::Internal,
                message: "boom".into()
            }
        );
        let remote = ProtocolError::Remote {
            kind: ErrorKind::NotFound,
            message: "container x is not known to this monitor".into(),
        };
        assert_eq!(remote.kind(), ErrorKind::NotFound);
    }
}
