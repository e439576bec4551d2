//! What the store keeps of a container.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cri::stored::Stored;
use crate::cri::v1::ContainerConfig;
use crate::image::digest::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// CreateContainer is under way; a leftover at start-up is undone.
    Creating,
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub state: State,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub config: Stored<ContainerConfig>,
    /// `sha256:<config digest>`: the image ID, the same in every API.
    pub image_id: String,
    /// The image reference the container was created with.
    pub image_name: String,
    /// The layers its rootfs stacks; image GC keeps them while this record exists.
    pub image_layers: Vec<Digest>,
    /// Absolute CRI log path, or empty.
    pub log_path: PathBuf,
    /// Persistent files: the writable layer (`upper`) and overlayfs `work`.
    pub dir: PathBuf,
    pub cgroup: String,
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// Signal StopContainer sends first (the image's StopSignal, else SIGTERM).
    pub stop_signal: i32,
}

impl ContainerRecord {
    pub fn name(&self) -> String {
        self.config
            .0
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default()
    }
}
