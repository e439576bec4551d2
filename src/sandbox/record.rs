//! What the store keeps of a pod sandbox.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cri::stored::Stored;
use crate::cri::v1::{NamespaceMode, PodSandboxConfig, PodSandboxMetadata};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// RunPodSandbox is under way; a record still in this state at start-up is the leftover
    /// of a crash and is torn down.
    Creating,
    Ready,
    NotReady,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub state: SandboxState,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub runtime_handler: String,
    pub config: Stored<PodSandboxConfig>,
    /// The pod's state folder: namespace pins, /dev/shm, resolv.conf, hosts, the monitor.
    pub dir: PathBuf,
    /// Pinned network namespace; None for host-network pods.
    pub netns: Option<PathBuf>,
    /// CNI network the pod was attached to (its DEL uses the cached ADD).
    pub network: String,
    pub ip: String,
    pub additional_ips: Vec<String>,
    /// The cgroup of the monitor and the pause.
    pub cgroup: String,
    pub monitor_pid: i32,
    pub pause_pid: i32,
}

impl SandboxRecord {
    pub fn metadata(&self) -> PodSandboxMetadata {
        self.config.0.metadata.clone().unwrap_or_default()
    }

    fn namespace_mode(
        &self,
        pick: impl Fn(&crate::cri::v1::NamespaceOption) -> i32,
    ) -> NamespaceMode {
        self.config
            .0
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .map(|n| NamespaceMode::try_from(pick(n)).unwrap_or(NamespaceMode::Pod))
            .unwrap_or(NamespaceMode::Pod)
    }

    pub fn network_mode(&self) -> NamespaceMode {
        self.namespace_mode(|n| n.network)
    }

    pub fn pid_mode(&self) -> NamespaceMode {
        self.namespace_mode(|n| n.pid)
    }

    pub fn ipc_mode(&self) -> NamespaceMode {
        self.namespace_mode(|n| n.ipc)
    }

    /// The pod's uid/gid mappings when it has a user namespace of its own (mode POD).
    pub fn userns_mappings(&self) -> Option<crate::userns::Mappings> {
        let options = self
            .config
            .0
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .and_then(|n| n.userns_options.as_ref());
        crate::userns::mappings_of(options).ok().flatten()
    }

    /// Where the pod's user namespace is pinned, when it has one.
    pub fn userns_pin(&self) -> Option<std::path::PathBuf> {
        self.userns_mappings()
            .map(|_| self.dir.join("ns").join("user"))
    }

    pub fn host_network(&self) -> bool {
        self.network_mode() == NamespaceMode::Node
    }
}

/// The CRI name key: unique per (name, namespace, uid, attempt), as kubelet expects.
pub fn name_key(meta: &PodSandboxMetadata) -> String {
    format!(
        "{}_{}_{}_{}",
        meta.name, meta.namespace, meta.uid, meta.attempt
    )
}
