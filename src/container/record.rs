//! What the store keeps of a container.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cri::stored::Stored;
use crate::cri::v1::ContainerConfig;
use crate::digest::Digest;

pub use super::image_volumes::ImageVolume;

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
    /// Its image volumes (CRI `Mount.image`); image GC keeps their layers too.
    #[serde(default)]
    pub image_volumes: Vec<ImageVolume>,
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

#[cfg(test)]
impl ContainerRecord {
    /// A record of pod `p1` with nothing set but its ID and state, for unit tests.
    pub(crate) fn for_test(id: &str, state: State) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            sandbox_id: "p1".into(),
            state,
            created_at: 0,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            config: Default::default(),
            image_id: String::new(),
            image_name: String::new(),
            image_layers: Vec::new(),
            image_volumes: Vec::new(),
            log_path: Default::default(),
            dir: Default::default(),
            cgroup: String::new(),
            pid: 0,
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            stop_signal: 15,
        }
    }
}
