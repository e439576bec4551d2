//! Container lifecycle on the daemon's side: the `Containers` service, its state and the
//! helpers its operations share. The operations live by kind next to it: `create.rs`
//! (CreateContainer and its undo), `lifecycle.rs` (start, stop, remove, updates), `exits.rs`
//! (reading the exits the monitors record, lists) and `sessions.rs` (exec and attach).
//! Processes are asked of the pod's monitor; exits are read from what the monitor recorded,
//! so they are right even after a daemon restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::cache::RecordCache;
use super::events::EventHub;
use super::exit_watch::ExitWatch;
use super::record::{ContainerRecord, State};
use crate::image::service::Images;
use crate::inflight::Inflight;
use crate::keyed_lock::KeyedLocks;
use crate::monitor::client::MonitorError;
use crate::monitor::layout as monitor_layout;
use crate::sandbox::edges::{CgroupDriver, MonitorClient, Monitors};
use crate::sandbox::record::SandboxRecord;
use crate::sandbox::service::Sandboxes;
use crate::store::{Store, StoreError};

pub use super::error::{ContainerError, failed};
pub use super::sessions::AttachInfo;

pub struct Containers {
    pub(super) records: RecordCache,
    pub(super) images: Arc<Images>,
    pub(super) sandboxes: Arc<Sandboxes>,
    pub(super) cgroups: Option<Arc<dyn CgroupDriver>>,
    /// The pods' monitors (the pod service's edge, so unit tests run on fakes).
    pub(super) monitors: Arc<dyn Monitors>,
    /// Writable-layer usage kept between stats calls (`stats.rs`).
    pub(super) layer_usage: Arc<super::layer_usage::LayerUsage>,
    pub(super) root: PathBuf,
    pub(super) creating: Inflight<String, String, ContainerError>,
    /// Per pod, the monitor's exit count whose exits the last list has read.
    pub(super) exits_read: std::sync::Mutex<HashMap<String, u64>>,
    pub(super) events: EventHub,
    /// A container's state changes and their events, one at a time per container, so that
    /// subscribers see each container's events in the order of its states.
    pub(super) transitions: KeyedLocks,
    /// StartContainer, one at a time per container.
    pub(super) starting: KeyedLocks,
    /// None when inotify is not available: exits are then found by lists and status calls.
    pub(super) exit_watch: Option<ExitWatch>,
    /// Pods whose CONTAINER_STOPPED_EVENT went out (a stop and the pause's exit both report
    /// it; it goes out once), until their CONTAINER_DELETED_EVENT.
    pub(super) pods_stopped: std::sync::Mutex<std::collections::HashSet<String>>,
    /// CDI spec folders, in rising priority (`cdi.spec_dirs`).
    pub(super) cdi_dirs: Vec<PathBuf>,
}

impl Containers {
    pub fn new(
        root_dir: &std::path::Path,
        store: Store,
        images: Arc<Images>,
        sandboxes: Arc<Sandboxes>,
        event_buffer: usize,
        cdi_dirs: Vec<PathBuf>,
    ) -> Containers {
        let exit_watch = ExitWatch::new()
            .inspect_err(|e| {
                let effect = "container exits are noticed only when listed";
                tracing::warn!(error = %e, "no inotify: {effect}");
            })
            .ok();
        Containers {
            records: RecordCache::new(store),
            images,
            cgroups: sandboxes.cgroup_driver(),
            monitors: sandboxes.monitors(),
            layer_usage: Arc::default(),
            sandboxes,
            root: root_dir.join("containers"),
            creating: Inflight::default(),
            exits_read: Default::default(),
            events: EventHub::new(event_buffer),
            transitions: KeyedLocks::default(),
            starting: KeyedLocks::default(),
            exit_watch,
            pods_stopped: Default::default(),
            cdi_dirs,
        }
    }

    pub(super) fn events(&self) -> &EventHub {
        &self.events
    }

    pub(super) fn sandboxes(&self) -> &Sandboxes {
        &self.sandboxes
    }

    pub(super) async fn all_records(&self) -> Result<Vec<Arc<ContainerRecord>>, StoreError> {
        self.records.all().await
    }

    /// The container, which must be running, and its sandbox.
    pub(super) async fn running(
        &self,
        id: &str,
    ) -> Result<(ContainerRecord, SandboxRecord), ContainerError> {
        let record = self.status(id).await?;
        if record.state != State::Running {
            return Err(ContainerError::Precondition(format!(
                "container {} is not running",
                record.id
            )));
        }
        let sandbox = self.sandbox_of(&record).await?;
        Ok((record, sandbox))
    }

    /// The monitor of the container's pod.
    pub(super) fn monitor(&self, sandbox: &SandboxRecord) -> Box<dyn MonitorClient> {
        self.monitors.of(&sandbox.dir)
    }

    pub(super) async fn signal(
        &self,
        sandbox: &SandboxRecord,
        id: &str,
        signal: i32,
    ) -> Result<(), ContainerError> {
        self.monitor(sandbox)
            .signal(id, signal)
            .await
            .map_err(talking)
    }

    pub(super) async fn sandbox_of(
        &self,
        record: &ContainerRecord,
    ) -> Result<SandboxRecord, ContainerError> {
        self.sandboxes
            .find(&record.sandbox_id)
            .await
            .map_err(|e| failed("finding the sandbox")(e.to_string()))?
            .ok_or_else(|| {
                ContainerError::NotFound(format!(
                    "pod sandbox {} of container {} is gone",
                    record.sandbox_id, record.id
                ))
            })
    }

    pub(super) async fn find(&self, id: &str) -> Result<Option<ContainerRecord>, ContainerError> {
        let found = self.records.find(id).await?;
        Ok(found.map(Arc::unwrap_or_clone))
    }

    pub(super) async fn get(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        self.find(id)
            .await?
            .ok_or_else(|| ContainerError::NotFound(format!("container {id:?} not found")))
    }
}

/// A failed monitor request, as the container operations report it.
pub(super) fn talking(e: MonitorError) -> ContainerError {
    failed("talking to the pod monitor")(e)
}

/// Where the daemon writes a container's executor spec for the monitor to read.
pub(super) fn spec_file(sandbox: &SandboxRecord, id: &str) -> PathBuf {
    monitor_layout::container_dir(&sandbox.dir, id).join("spec.json")
}
