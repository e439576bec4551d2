//! Seccomp for containers: ferrocri's RuntimeDefault profile, Localhost profiles in the
//! Docker/OCI JSON format, and turning a [`SeccompProfile`] into a kernel filter.
//!
//! - [`runtime_default`] is the profile a container gets when it asks for `RuntimeDefault`:
//!   the allow-list in `seccomp_default.json` (ferrocri's own, in the same JSON format as a
//!   Localhost profile), filtered for this architecture, the kernel and the container's
//!   capabilities.
//! - [`from_json`] reads a Localhost profile (`defaultAction`, `syscalls[]` with
//!   `names`/`name`, `action`, `errnoRet`, `args`, `includes`/`excludes`, `architectures` or
//!   `archMap`) and keeps only what applies here.
//! - [`compile`] builds the filter with libseccomp; [`Program::load`] (or [`load`], both
//!   steps at once) installs it on the calling thread. As runc does, names this libseccomp or
//!   architecture does not know are skipped, rules that repeat the default action are
//!   skipped, several conditions on one argument become separate rules, and a syscall
//!   numbered above every syscall the profile names answers `ENOSYS` instead of the default
//!   action, so a libc probing for a syscall newer than the profile falls back cleanly.
//!
//! Loading sets neither `no_new_privs` nor anything else: the executor decides that (the
//! kernel refuses the filter unless the thread has `no_new_privs` or `CAP_SYS_ADMIN`).

mod actions;
mod enosys;
mod profile;
mod program;
mod target;

pub use profile::{from_json, runtime_default};
pub use program::{Program, compile, load};

/// ferrocri's RuntimeDefault profile, in the Docker/OCI JSON format.
const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;
/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
const MAX_INSTRUCTIONS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("the seccomp profile is not valid JSON for a profile: {0}")]
    Json(#[source] serde_json::Error),
    #[error("unknown seccomp action {action:?}{}", in_rule(rule))]
    UnknownAction {
        action: String,
        rule: Option<String>,
    },
    #[error("seccomp action {action}{} is not supported: {reason}", in_rule(rule))]
    UnsupportedAction {
        action: String,
        rule: Option<String>,
        reason: &'static str,
    },
    #[error(
        "errno {errno} of seccomp action {action}{} is out of range (at most 65535)",
        in_rule(rule)
    )]
    BadErrno {
        action: String,
        errno: u32,
        rule: Option<String>,
    },
    #[error("unknown seccomp argument operator {op:?} in the rule for {rule}")]
    UnknownOp { op: String, rule: String },
    #[error("seccomp argument index {index} in the rule for {rule} is out of range (0 to 5)")]
    BadArgIndex { index: u32, rule: String },
    #[error("seccomp rule number {0} names no syscall (neither \"names\" nor \"name\")")]
    NoNames(usize),
    #[error("unknown seccomp architecture {0:?}")]
    UnknownArch(String),
    #[error("invalid minKernel {version:?} in the rule for {rule}: expected e.g. \"4.8\"")]
    BadKernelVersion { version: String, rule: String },
    #[error("cannot add the seccomp rule for {syscall} ({action}): {source}")]
    Rule {
        syscall: String,
        action: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("cannot build the seccomp filter: {what}: {source}")]
    Build {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("cannot build the seccomp filter: {what}: {source}")]
    Export {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the seccomp filter has {0} instructions, more than the kernel takes (4096)")]
    TooLong(usize),
    #[error("the kernel refused the seccomp filter: {source}{hint}")]
    Load {
        #[source]
        source: std::io::Error,
        hint: &'static str,
    },
}

impl SeccompError {
    /// The whole message, for logs and for the CRI error a caller gets.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

fn in_rule(rule: &Option<String>) -> String {
    match rule {
        Some(rule) => format!(" in the rule for {rule}"),
        None => " as the default action".to_string(),
    }
}

#[cfg(test)]
mod tests;
