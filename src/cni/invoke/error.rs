//! What can go wrong running a CNI network list, and the operation it went wrong in.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// The CNI operation, as `CNI_COMMAND` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("invalid CNI attachment: {0}")]
    InvalidAttachment(String),
    #[error("CNI network {network:?} ({file}) is not usable: {reason}")]
    InvalidConfig {
        network: String,
        file: PathBuf,
        reason: String,
    },
    #[error(
        "CNI plugin {plugin:?} of network {network:?} is not in {dirs}; install it or fix cni.bin_dirs"
    )]
    PluginNotFound {
        network: String,
        plugin: String,
        dirs: String,
    },
    #[error("cannot run CNI plugin {path} ({command}): {source}")]
    Spawn {
        plugin: String,
        path: PathBuf,
        command: Command,
        source: io::Error,
    },
    /// The plugin reported an error the CNI way (`{"code", "msg", "details"}` on stdout).
    #[error(
        "CNI plugin {plugin:?} failed {command} for network {network:?}: {msg}{} (CNI error code {code})",
        if details.is_empty() { String::new() } else { format!(": {details}") }
    )]
    Plugin {
        network: String,
        plugin: String,
        command: Command,
        code: u64,
        msg: String,
        details: String,
    },
    /// The plugin failed without a CNI error on stdout.
    #[error("CNI plugin {plugin:?} failed {command} for network {network:?} ({status}): {output}")]
    PluginExit {
        network: String,
        plugin: String,
        command: Command,
        status: String,
        output: String,
    },
    #[error(
        "CNI plugin {plugin:?} did not finish {command} for network {network:?} within {timeout:?} and was killed"
    )]
    Timeout {
        network: String,
        plugin: String,
        command: Command,
        timeout: Duration,
    },
    #[error(
        "CNI plugin {plugin:?} printed an unusable {command} result for network {network:?}: {reason}"
    )]
    BadResult {
        network: String,
        plugin: String,
        command: Command,
        reason: String,
    },
    #[error("CNI cache entry {path}: {source}")]
    Cache { path: PathBuf, source: io::Error },
    #[error("CNI network {network:?} has cniVersion {version}; CHECK needs 0.4.0 or later")]
    CheckUnsupported { network: String, version: String },
    #[error(
        "no cached ADD result for container {container_id} on network {network:?} interface {ifname}; it was not added by this runtime or its ADD did not finish"
    )]
    NotAdded {
        network: String,
        container_id: String,
        ifname: String,
    },
}
