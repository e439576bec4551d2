//! The one error type of the cgroup driver; every variant names the cgroup it is about.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("cgroup {path} does not exist")]
    NotFound { path: String },
    #[error("cgroup {path}: cannot write {value:?} to {}: {source}", file.display())]
    Write {
        path: String,
        file: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("cgroup {path}: cannot read {}: {source}", file.display())]
    Read {
        path: String,
        file: PathBuf,
        source: io::Error,
    },
    #[error("cgroup {path}: {} holds {content:?}, which is not what the kernel writes there", file.display())]
    Parse {
        path: String,
        file: PathBuf,
        content: String,
    },
    #[error("cgroup {path}: cannot create {}: {source}", dir.display())]
    Create {
        path: String,
        dir: PathBuf,
        source: io::Error,
    },
    #[error("cgroup {path}: cannot remove {}: {source}", dir.display())]
    Remove {
        path: String,
        dir: PathBuf,
        source: io::Error,
    },
    #[error(
        "cgroup {path}: {setting} needs the {controller} controller, which this host does not mount"
    )]
    ControllerMissing {
        path: String,
        controller: &'static str,
        setting: String,
    },
    #[error("cgroup {path}: unified setting {key:?} needs cgroup v2, but this host uses cgroup v1")]
    UnifiedOnV1 { path: String, key: String },
    #[error("cgroup {path}: {setting} = {value:?} is invalid: {reason}")]
    InvalidValue {
        path: String,
        setting: String,
        value: String,
        reason: &'static str,
    },
    #[error("cgroup {path}: cannot {action} the device program: {source}")]
    DeviceProgram {
        path: String,
        action: &'static str,
        source: io::Error,
    },
    #[error("cgroup {path}: cannot send SIGKILL to process {pid}: {source}")]
    Signal {
        path: String,
        pid: i32,
        source: io::Error,
    },
    #[error("cgroup {path}: processes {pids:?} are still there {timeout:?} after SIGKILL")]
    KillTimeout {
        path: String,
        pids: Vec<i32>,
        timeout: Duration,
    },
}

impl CgroupError {
    /// A directory of the path vanished under the operation (a concurrent removal of a
    /// shared parent): worth doing again.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self,
            CgroupError::Create { source, .. }
            | CgroupError::Write { source, .. }
            | CgroupError::Read { source, .. }
                if source.kind() == io::ErrorKind::NotFound)
    }
}
