//! Container lifecycle on the daemon's side: records, the rootfs folders, the container
//! cgroup, and asking the pod's monitor to create, start, signal and forget processes. Exits
//! are read from what the monitor recorded, so they are right even after a daemon restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::build::{self, Paths};
use super::cache::RecordCache;
use super::events::EventHub;
use super::exit_watch::{Change, ExitWatch};
use super::record::{ContainerRecord, State};
use crate::cgroup::Cgroups;
use crate::cri::stored::Stored;
use crate::cri::v1::{ContainerConfig, ContainerEventType, PodSandboxConfig};
use crate::error_kind::ErrorKind;
use crate::ids::{new_id, now_nanos};
use crate::image::service::Images;
use crate::inflight::Inflight;
use crate::keyed_lock::KeyedLocks;
use crate::monitor::client::{MonitorError, PodMonitor};
use crate::monitor::layout as monitor_layout;
use crate::monitor::protocol::{
    self, AttachRequest, CreateRequest, ExecRequest, ExecStreamRequest, StdioRequest,
};
use crate::monitor::session::{SessionReader, SessionWriter};
use crate::sandbox::record::{SandboxRecord, SandboxState};
use crate::sandbox::service::Sandboxes;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A bad value whose field path the message starts with (`config.mounts[2]...`).
    #[error("{0}")]
    InvalidValue(String),
    #[error("{0}")]
    NotFound(String),
    #[error("container name {name:?} is already used by container {existing}")]
    NameInUse { name: String, existing: String },
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Timeout(String),
    /// A step that failed for a reason from below (the monitor, the file system, a
    /// cgroup…); `kind` is how, as far as the caller can act on it.
    #[error("{step}: {source}")]
    Failed {
        step: &'static str,
        kind: ErrorKind,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Shared(Arc<ContainerError>),
}

impl From<Arc<ContainerError>> for ContainerError {
    fn from(e: Arc<ContainerError>) -> Self {
        ContainerError::Shared(e)
    }
}

impl ContainerError {
    pub fn root(&self) -> &ContainerError {
        match self {
            ContainerError::Shared(inner) => inner.root(),
            other => other,
        }
    }
}

/// The error of a failed step, keeping its source (an error or a message) and its kind.
pub fn failed<E>(step: &'static str) -> impl FnOnce(E) -> ContainerError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |source| {
        let source = source.into();
        let kind = kind_of(&*source);
        ContainerError::Failed { step, kind, source }
    }
}

/// How a step failed: as the pod monitor answered, as an OS error number says, or (for a
/// message) as its text shows; otherwise internal.
fn kind_of(e: &(dyn std::error::Error + 'static)) -> ErrorKind {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(monitor) = err.downcast_ref::<MonitorError>() {
            return monitor.kind();
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.raw_os_error().is_some()
        {
            return ErrorKind::of_io(io);
        }
        next = err.source();
    }
    ErrorKind::of_text(&e.to_string())
}

pub struct Containers {
    records: RecordCache,
    images: Arc<Images>,
    sandboxes: Arc<Sandboxes>,
    pub(super) cgroups: Option<Arc<Cgroups>>,
    /// Writable-layer usage kept between stats calls (`stats.rs`).
    pub(super) layer_usage: Arc<super::layer_usage::LayerUsage>,
    root: PathBuf,
    creating: Inflight<String, String, ContainerError>,
    /// Per pod, the monitor's exit count whose exits the last list has read.
    exits_read: std::sync::Mutex<HashMap<String, u64>>,
    events: EventHub,
    /// A container's state changes and their events, one at a time per container, so that
    /// subscribers see each container's events in the order of its states.
    transitions: KeyedLocks,
    /// StartContainer, one at a time per container.
    starting: KeyedLocks,
    /// None when inotify is not available: exits are then found by lists and status calls.
    exit_watch: Option<ExitWatch>,
    /// Pods whose CONTAINER_STOPPED_EVENT went out (a stop and the pause's exit both report
    /// it; it goes out once), until their CONTAINER_DELETED_EVENT.
    pub(super) pods_stopped: std::sync::Mutex<std::collections::HashSet<String>>,
    /// CDI spec folders, in rising priority (`cdi.spec_dirs`).
    cdi_dirs: Vec<PathBuf>,
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
            cgroups: sandboxes.cgroups(),
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

    /// Watches the pod's folder for exits (nothing when it is watched already), then reads
    /// the exits recorded before: from then on lists leave the pod's exits to the watch.
    pub async fn watch_pod(&self, pod: &SandboxRecord) {
        let Some(watch) = &self.exit_watch else {
            return;
        };
        match watch.watch(&pod.id, &pod.dir) {
            Ok(true) => {
                if self.read_exits(&pod.id, &pod.dir).await {
                    watch.caught_up(&pod.id);
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(pod = %pod.id, error = %e, "cannot watch the pod folder for exits");
            }
        }
    }

    /// Watches every ready pod, then handles exits as the monitors record them, until the
    /// daemon exits.
    pub async fn watch_exits(self: Arc<Self>) {
        if self.exit_watch.is_none() {
            return;
        }
        match self.sandboxes.list().await {
            Ok(pods) => {
                for pod in pods.iter().filter(|p| p.state == SandboxState::Ready) {
                    self.watch_pod(pod).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list the pods to watch for exits"),
        }
        let Some(watch) = &self.exit_watch else {
            return;
        };
        loop {
            match watch.next().await {
                Ok((_handling, changes)) => self.handle_changes(watch, changes).await,
                Err(e) => {
                    let effect = "exits are noticed only when listed";
                    tracing::warn!(error = %e, "watching for exits failed; {effect}");
                    return;
                }
            }
        }
    }

    /// Handles the changes the watch has queued but not yet reported (a list calls this, so
    /// that an exit recorded before it began is in it).
    async fn catch_up_exits(&self) {
        let Some(watch) = &self.exit_watch else {
            return;
        };
        match watch.pending().await {
            Ok((_handling, changes)) => self.handle_changes(watch, changes).await,
            Err(e) => tracing::warn!(error = %e, "reading the exit watch failed"),
        }
    }

    async fn handle_changes(&self, watch: &ExitWatch, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Exits { pod, dir } => {
                    self.read_exits(&pod, &dir).await;
                }
                Change::PauseExit { pod } => {
                    if let Ok(Some(record)) = self.sandboxes.find(&pod).await {
                        self.publish_pod(ContainerEventType::ContainerStoppedEvent, &record)
                            .await;
                    }
                }
                Change::Overflow => {
                    for (pod, dir) in watch.watched() {
                        self.read_exits(&pod, &dir).await;
                    }
                }
            }
        }
    }

    /// Reads the exits the monitor recorded for the pod's running containers; false when
    /// some could not be read or recorded.
    async fn read_exits(&self, pod: &str, dir: &Path) -> bool {
        let records = match self.records.all().await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(pod, error = %e, "cannot read the container records");
                return false;
            }
        };
        let mut all_read = true;
        for record in records
            .into_iter()
            .filter(|r| r.sandbox_id == pod && r.state == State::Running)
        {
            if let Err(e) = self.refresh_in(record, Some(dir)).await {
                tracing::warn!(pod, error = %e, "cannot record a container exit");
                all_read = false;
            }
        }
        all_read
    }

    /// CreateContainer. Retries of a create still under way wait for it.
    pub async fn create(
        self: &Arc<Self>,
        sandbox_id: &str,
        config: ContainerConfig,
        _sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String, ContainerError> {
        // The request was checked at the door (`validate`).
        let meta = config.metadata.clone().unwrap_or_default();
        let sandbox = self
            .sandboxes
            .find(sandbox_id)
            .await
            .map_err(failed("finding the sandbox"))?
            .ok_or_else(|| {
                ContainerError::NotFound(format!("pod sandbox {sandbox_id:?} not found"))
            })?;
        if sandbox.state != SandboxState::Ready {
            return Err(ContainerError::Precondition(format!(
                "pod sandbox {} is not ready",
                sandbox.id
            )));
        }
        if let Some(pin) = sandbox.userns_pin() {
            check_idmap_mounts(&pin, &config)?;
        }
        let pod = sandbox.metadata();
        let key = format!(
            "{}_{}_{}_{}_{}",
            meta.name, pod.name, pod.namespace, pod.uid, meta.attempt
        );
        let this = self.clone();
        let work_key = key.clone();
        self.creating
            .run_detached(
                key,
                move || async move { this.create_now(sandbox, config, work_key).await },
                failed("creating"),
            )
            .await
            .map_err(ContainerError::from)
    }

    async fn create_now(
        &self,
        sandbox: SandboxRecord,
        config: ContainerConfig,
        key: String,
    ) -> Result<String, ContainerError> {
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let image = self
            .images
            .status(&image_name)
            .instrument(tracing::debug_span!("create.image"))
            .await
            .map_err(|e| ContainerError::Invalid {
                field: "config.image.image",
                message: e.to_string(),
            })?
            .ok_or_else(|| {
                ContainerError::NotFound(format!(
                    "image {image_name:?} is not present; pull it first"
                ))
            })?;
        if !image.artifact_type.is_empty() {
            return Err(ContainerError::Precondition(format!(
                "config.image.image: {image_name:?} is an OCI artifact ({}), not an image a \
                 container runs; it can be mounted as an image volume",
                image.artifact_type
            )));
        }
        let id = new_id();
        let dir = self.root.join(&id);
        let parent = sandbox
            .cgroup
            .rsplit_once('/')
            .map(|(p, _)| p.to_owned())
            .unwrap_or_default();
        let cgroup = if sandbox.cgroup.is_empty() {
            String::new()
        } else {
            format!("{parent}/{id}")
        };
        let log_path = match (&sandbox.config.0.log_directory, &config.log_path) {
            (d, p) if !d.is_empty() && !p.is_empty() => PathBuf::from(d).join(p),
            _ => PathBuf::new(),
        };
        let layer_dirs: Vec<PathBuf> = image
            .chain_ids()
            .rev()
            .map(|c| self.images.layer_path(c))
            .collect();
        let (image_volumes, volume_layers) =
            super::image_volumes::resolve(&self.images, &config, &self.empty_lower()?)
                .instrument(tracing::debug_span!("create.image_volumes"))
                .await?;
        let built_span = tracing::debug_span!("create.build").entered();
        let mut built = build::build(
            &config,
            &sandbox,
            &image,
            layer_dirs,
            &volume_layers,
            Paths {
                upper: dir.join("upper"),
                work: dir.join("work"),
                mount_point: dir.join("rootfs"),
                cgroup: cgroup.clone(),
            },
        )
        .map_err(|e| ContainerError::Invalid {
            field: e.field,
            message: e.message,
        })?;
        // Before anything is made, so an unknown device leaves nothing behind.
        if let Some(injection) = super::cdi::resolve(&self.cdi_dirs, &config)? {
            super::cdi::apply(&injection, &mut built)?;
        }
        drop(built_span);
        let stop_signal = stop_signal(
            &config,
            image.config.config.as_ref().map(|c| c.stop_signal.as_str()),
        );
        let mut record = ContainerRecord {
            id: id.clone(),
            sandbox_id: sandbox.id.clone(),
            state: State::Creating,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image_id: image.id.clone(),
            image_name,
            image_layers: image.chain_ids().cloned().collect(),
            image_volumes,
            log_path: log_path.clone(),
            dir: dir.clone(),
            cgroup: cgroup.clone(),
            pid: 0,
            uid: built.identity.uid,
            gid: built.identity.gid,
            groups: built.identity.groups.clone(),
            stop_signal,
            config: Stored(config.clone()),
        };
        self.records
            .insert(key.clone(), record.clone())
            .instrument(tracing::debug_span!("create.store_insert"))
            .await
            .map_err(|e| match e {
                StoreError::NameInUse { existing_id, .. } => ContainerError::NameInUse {
                    name: key,
                    existing: existing_id,
                },
                other => other.into(),
            })?;
        // Exits of this pod's containers are seen as they happen from now on.
        self.watch_pod(&sandbox).await;
        if !log_path.as_os_str().is_empty()
            && let Err(e) = crate::sandbox::container_logs::remember(&sandbox.dir, &log_path)
        {
            tracing::warn!(container = %id, error = %e, "cannot note the container log for the pod's removal");
        }
        let mut spec = built.spec;
        spec.id = id.clone();
        let bundle = monitor_layout::container_dir(&sandbox.dir, &id);
        if let Err(e) = super::cdi::DaemonHooks::save(&dir, &bundle, &spec.hooks) {
            self.discard(&sandbox, &record).await;
            return Err(failed("writing the CDI hooks")(e.to_string()));
        }
        // A TARGET must be a running container of this pod now; StartContainer looks it up
        // again, as that is when the process joins it.
        if let protocol::PidMode::Target { .. } = build::pid_mode_of(&config, &sandbox)
            && let Err(e) = self.target_pid(&config, &sandbox).await
        {
            self.discard(&sandbox, &record).await;
            return Err(e);
        }
        if let Err(e) = self
            .prepare(&sandbox, &record, &spec, &built.device_rules, &config)
            .await
        {
            self.discard(&sandbox, &record).await;
            return Err(e);
        }
        record.state = State::Created;
        if let Err(e) = self
            .records
            .update(record.clone())
            .instrument(tracing::debug_span!("create.store_update"))
            .await
        {
            self.discard(&sandbox, &record).await;
            return Err(e.into());
        }
        self.publish(ContainerEventType::ContainerCreatedEvent, &id, &sandbox.id)
            .await;
        tracing::info!(container = %id, pod = %sandbox.id, "container created");
        Ok(id)
    }

    /// The pid of the running container a TARGET PID namespace option names (same pod).
    async fn target_pid(
        &self,
        config: &ContainerConfig,
        sandbox: &SandboxRecord,
    ) -> Result<i32, ContainerError> {
        let target_id = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .map(|n| n.target_id.clone())
            .unwrap_or_default();
        let invalid = |message: String| ContainerError::Invalid {
            field: "config.linux.security_context.namespace_options.target_id",
            message,
        };
        if target_id.is_empty() {
            return Err(invalid("PID namespace TARGET needs a target_id".into()));
        }
        let target = self
            .find(&target_id)
            .await?
            .ok_or_else(|| invalid(format!("container {target_id:?} not found")))?;
        let target = self.refresh(target).await?;
        if target.sandbox_id != sandbox.id || target.state != State::Running {
            return Err(invalid(format!(
                "container {target_id:?} is not a running container of pod {}",
                sandbox.id
            )));
        }
        Ok(target.pid)
    }

    /// Folders, cgroup with limits and device rules (before any process is in it) and the
    /// spec file. The process is made by StartContainer (`spawn`), as containerd makes its
    /// task there: CreateContainer answers without waiting for a fork, an exec and the
    /// executor's mounts.
    async fn prepare(
        &self,
        sandbox: &SandboxRecord,
        record: &ContainerRecord,
        spec: &crate::executor::spec::ContainerSpec,
        device_rules: &[crate::cgroup::DeviceRule],
        config: &ContainerConfig,
    ) -> Result<(), ContainerError> {
        let folders = tracing::debug_span!("create.folders").entered();
        for d in [
            &spec.rootfs.upper_dir,
            &spec.rootfs.work_dir,
            &spec.rootfs.mount_point,
        ] {
            std::fs::create_dir_all(d).map_err(|e| {
                failed("creating the container folders")(format!("{}: {e}", d.display()))
            })?;
        }
        if let Some(mappings) = sandbox.userns_mappings() {
            // The one owner set by hand: the new, empty writable layer belongs to the pod's
            // root, so "/" and what the container writes are its own. The image layers below
            // are idmapped by the executor, never chowned.
            let (uid, gid) = (mappings.uid.host_id, mappings.gid.host_id);
            std::os::unix::fs::chown(&spec.rootfs.upper_dir, Some(uid), Some(gid)).map_err(
                |e| failed("creating the container folders")(format!("chown upper dir: {e}")),
            )?;
        }
        drop(folders);
        if let Some(cgroups) = self.cgroups.as_ref().filter(|_| !record.cgroup.is_empty()) {
            let resources = crate::cgroup::Resources::from_cri(
                config.linux.as_ref().and_then(|l| l.resources.as_ref()),
            );
            let (cgroups, path) = (cgroups.clone(), record.cgroup.clone());
            let device_rules = device_rules.to_vec();
            tokio::task::spawn_blocking(move || {
                cgroups.create(&path)?;
                cgroups.apply(&path, &resources)?;
                cgroups.set_devices(&path, &device_rules)
            })
            .instrument(tracing::debug_span!("create.cgroup"))
            .await
            .map_err(|e| failed("creating the container cgroup")(e.to_string()))?
            .map_err(|e| failed("creating the container cgroup")(e.to_string()))?;
        }
        let spec_span = tracing::debug_span!("create.spec_file").entered();
        let spec_path = spec_file(sandbox, &record.id);
        if let Some(monitor_dir) = spec_path.parent() {
            std::fs::create_dir_all(monitor_dir)
                .map_err(|e| failed("writing the spec")(e.to_string()))?;
        }
        let json =
            serde_json::to_vec(spec).map_err(|e| failed("writing the spec")(e.to_string()))?;
        std::fs::write(&spec_path, json).map_err(|e| failed("writing the spec")(e.to_string()))?;
        drop(spec_span);
        Ok(())
    }

    /// Has the monitor make the container's process, set up and waiting to exec: the
    /// executor's namespaces, mounts, pivot_root and limits, as `runc create` does.
    async fn spawn(
        &self,
        sandbox: &SandboxRecord,
        record: &ContainerRecord,
    ) -> Result<i32, ContainerError> {
        let config = &record.config.0;
        let pid_mode = match build::pid_mode_of(config, sandbox) {
            protocol::PidMode::Target { .. } => protocol::PidMode::Target {
                pid: self.target_pid(config, sandbox).await?,
            },
            other => other,
        };
        let request = CreateRequest {
            id: record.id.clone(),
            spec: spec_file(sandbox, &record.id),
            log_path: record.log_path.clone(),
            tty: config.tty,
            pid_mode,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
        };
        monitor(sandbox)
            .create(request)
            .instrument(tracing::debug_span!("start.monitor_create"))
            .await
            .map_err(talking)
    }

    /// At start-up: a container the previous run was still creating (its CreateContainer
    /// never answered, so no caller has its ID) is undone, which frees its name for the
    /// caller's retry; left, it would hold the name while no list shows it.
    pub async fn recover(&self) -> Result<(), ContainerError> {
        for record in self.records.all().await? {
            if record.state != State::Creating {
                continue;
            }
            let sandbox = self.sandboxes.find(&record.sandbox_id).await.ok().flatten();
            self.undo_create(sandbox.as_ref(), &record).await;
            tracing::info!(container = %record.id, "undid a container the last run left half created");
        }
        Ok(())
    }

    /// Undoes a create: the monitor forgets the process, the cgroup and folders go, and the
    /// record.
    async fn discard(&self, sandbox: &SandboxRecord, record: &ContainerRecord) {
        self.undo_create(Some(sandbox), record).await;
    }

    async fn undo_create(&self, sandbox: Option<&SandboxRecord>, record: &ContainerRecord) {
        if let Some(sandbox) = sandbox {
            let _ = monitor(sandbox).remove(&record.id).await;
            let _ =
                std::fs::remove_dir_all(monitor_layout::container_dir(&sandbox.dir, &record.id));
        }
        self.remove_cgroup(&record.cgroup).await;
        let _ = std::fs::remove_dir_all(&record.dir);
        self.remove_log(record).await;
        let _ = self.records.delete(record.id.clone()).await;
    }

    /// Deletes the CRI log file of a container whose creation failed: nobody got its ID,
    /// so no client will. A file another container logs to is left alone.
    async fn remove_log(&self, record: &ContainerRecord) {
        if record.log_path.as_os_str().is_empty() {
            return;
        }
        let shared = match self.all_records().await {
            Ok(all) => all
                .iter()
                .any(|r| r.id != record.id && r.log_path == record.log_path),
            Err(_) => true,
        };
        if !shared {
            let _ = std::fs::remove_file(&record.log_path);
        }
    }

    async fn remove_cgroup(&self, path: &str) {
        if let Some(cgroups) = self.cgroups.clone().filter(|_| !path.is_empty()) {
            let path = path.to_owned();
            let _ = tokio::task::spawn_blocking(move || {
                let _ = cgroups.kill_all(&path);
                cgroups.remove(&path)
            })
            .await;
        }
    }

    /// StartContainer: the waiting process execs its command.
    pub async fn start(&self, id: &str) -> Result<(), ContainerError> {
        let record = self.get(id).await?;
        let sandbox = self.sandbox_of(&record).await?;
        // One start at a time per container; a second finds it no longer created.
        let _one_start = self.starting.lock(&record.id).await;
        let mut record = self.get(id).await?;
        if record.state != State::Created {
            return Err(ContainerError::Precondition(format!(
                "container {} is {:?}, not created",
                record.id, record.state
            )));
        }
        let started = match self.spawn(&sandbox, &record).await {
            Ok(pid) => {
                record.pid = pid;
                monitor(&sandbox)
                    .start(&record.id)
                    .instrument(tracing::debug_span!("start.monitor_start"))
                    .await
                    .map_err(talking)
            }
            Err(e) => Err(e),
        };
        match started {
            Ok(_) => {
                record.state = State::Running;
                record.started_at = now_nanos();
                {
                    // Its exit may be counted already, even read by a list while the record
                    // said created: it is read after this write, and published after STARTED.
                    let _in_order = self.transitions.lock(&record.id).await;
                    self.records.update(record.clone()).await?;
                    self.publish(
                        ContainerEventType::ContainerStartedEvent,
                        &record.id,
                        &record.sandbox_id,
                    )
                    .await;
                }
                if let Some(hooks) = super::cdi::DaemonHooks::load(&record.dir) {
                    let (id, pid) = (record.id.clone(), record.pid);
                    let _ =
                        tokio::task::spawn_blocking(move || hooks.run("poststart", &id, pid)).await;
                }
                self.refresh(record.clone()).await?;
                tracing::info!(container = %record.id, "container started");
                Ok(())
            }
            Err(e) => {
                // No process, or it could not exec: the container is over, with the reason
                // kept for status.
                record.state = State::Exited;
                record.finished_at = now_nanos();
                record.exit_code = 128;
                record.reason = "StartError".into();
                record.message = e.to_string();
                let _in_order = self.transitions.lock(&record.id).await;
                self.records.update(record.clone()).await?;
                self.publish(
                    ContainerEventType::ContainerStoppedEvent,
                    &record.id,
                    &record.sandbox_id,
                )
                .await;
                poststop(&record);
                Err(e)
            }
        }
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout` seconds (0: at once).
    /// Idempotent; unknown IDs are fine.
    pub async fn stop(&self, id: &str, timeout: i64) -> Result<(), ContainerError> {
        let Some(record) = self.find(id).await? else {
            return Ok(());
        };
        let record = self.refresh(record).await?;
        match record.state {
            State::Exited => Ok(()),
            State::Creating | State::Created => {
                let sandbox = self.sandbox_of(&record).await?;
                let _ = monitor(&sandbox).remove(&record.id).await;
                self.mark_exited(record, 0, "Completed", now_nanos())
                    .await
                    .map(drop)
            }
            State::Running => {
                let sandbox = self.sandbox_of(&record).await?;
                if timeout > 0 {
                    let _ = signal(&sandbox, &record.id, record.stop_signal).await;
                    if self
                        .wait_exit(&sandbox, &record.id, Duration::from_secs(timeout as u64))
                        .await
                    {
                        let record = self.get(&record.id).await?;
                        self.refresh(record).await?;
                        return Ok(());
                    }
                }
                let _ = signal(&sandbox, &record.id, libc::SIGKILL).await;
                if !self
                    .wait_exit(&sandbox, &record.id, Duration::from_secs(10))
                    .await
                {
                    return Err(failed("stopping the container")(format!(
                        "container {} did not exit after SIGKILL",
                        record.id
                    )));
                }
                let record = self.get(&record.id).await?;
                self.refresh(record).await?;
                Ok(())
            }
        }
    }

    async fn wait_exit(&self, sandbox: &SandboxRecord, id: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        // A killed process is usually reaped within a millisecond or two: look again soon,
        // then less and less often.
        let mut pause = Duration::from_millis(1);
        loop {
            if monitor_layout::read_exit(&sandbox.dir, id).is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// RemoveContainer: stops it if it runs, then deletes everything. Idempotent.
    pub async fn remove(&self, id: &str) -> Result<(), ContainerError> {
        let Some(record) = self.find(id).await? else {
            return Ok(());
        };
        self.stop(&record.id, 0).await?;
        let sandbox = self.sandboxes.find(&record.sandbox_id).await.ok().flatten();
        if let Some(sandbox) = &sandbox {
            let _ = monitor(sandbox).remove(&record.id).await;
            let _ =
                std::fs::remove_dir_all(monitor_layout::container_dir(&sandbox.dir, &record.id));
        }
        self.remove_cgroup(&record.cgroup).await;
        // The log file stays for kubelet or crictl to delete (`sandbox::container_logs`).
        match std::fs::remove_dir_all(&record.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(container = %record.id, error = %e, "cannot remove the container folder");
            }
            _ => {}
        }
        {
            let _in_order = self.transitions.lock(&record.id).await;
            self.records.delete(record.id.clone()).await?;
            self.layer_usage.forget(&record.id);
            self.publish(
                ContainerEventType::ContainerDeletedEvent,
                &record.id,
                &record.sandbox_id,
            )
            .await;
        }
        tracing::info!(container = %record.id, "container removed");
        self.collect_images_left(&record).await;
        Ok(())
    }

    /// After a removal: when an image the container used (its rootfs or a volume) was
    /// removed meanwhile, its layers were kept for the container only; collect them now.
    async fn collect_images_left(&self, record: &ContainerRecord) {
        let used = std::iter::once(record.image_id.as_str())
            .chain(super::image_volumes::image_ids(&record.image_volumes));
        for id in used.filter(|id| !id.is_empty()) {
            if let Ok(None) = self.images.status(id).await {
                let images = self.images.clone();
                tokio::spawn(async move {
                    if let Err(e) = images.collect_garbage().await {
                        tracing::warn!(error = %e, "image garbage collection failed");
                    }
                });
                return;
            }
        }
    }

    /// The empty lower dir one-layer image volumes stack on.
    fn empty_lower(&self) -> Result<PathBuf, ContainerError> {
        let root_dir = self.root.parent().unwrap_or(&self.root);
        super::image_volumes::empty_lower(root_dir)
    }

    /// The container with this ID or unique ID prefix, its state brought up to date.
    pub async fn status(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let record = self.get(id).await?;
        self.refresh(record).await
    }

    /// Every container, states up to date.
    pub async fn list(&self) -> Result<Vec<Arc<ContainerRecord>>, ContainerError> {
        // kubelet lists every second. The exits of watched pods come through the exit watch,
        // whose queued changes are handled first; only the pods it does not cover (no
        // inotify, a failed watch, start-up) have their exit files read here: once their exit
        // count changed since the last list. The counts are read before the records, so every
        // exit counted is in a record that says running (and is read now), exited, or not
        // started yet (`start` reads it then).
        self.catch_up_exits().await;
        let pods = self
            .sandboxes
            .all()
            .await
            .map_err(|e| failed("listing the sandboxes")(e.to_string()))?;
        let unwatched: Vec<(&SandboxRecord, Option<u64>)> = pods
            .iter()
            .filter(|p| !self.exit_watch.as_ref().is_some_and(|w| w.covers(&p.id)))
            .map(|p| (p, monitor_layout::read_exit_count(&p.dir)))
            .collect();
        let unread: HashMap<&str, &Path> = {
            let read = self.exits_read.lock().unwrap_or_else(|p| p.into_inner());
            unwatched
                .iter()
                .filter(|(p, count)| count.is_none() || read.get(&p.id) != count.as_ref())
                .map(|(p, _)| (p.id.as_str(), p.dir.as_path()))
                .collect()
        };
        let records = self.records.all().await?;
        let out = if unread.is_empty() {
            records
        } else {
            let mut out = Vec::with_capacity(records.len());
            for record in records {
                let dir = unread.get(record.sandbox_id.as_str()).copied();
                out.push(self.refresh_in(record, dir).await?);
            }
            out
        };
        *self.exits_read.lock().unwrap_or_else(|p| p.into_inner()) = unwatched
            .into_iter()
            .filter_map(|(p, count)| Some((p.id.clone(), count?)))
            .collect();
        Ok(out)
    }

    /// Containers of one sandbox (RemovePodSandbox removes them).
    pub async fn of_sandbox(
        &self,
        sandbox_id: &str,
    ) -> Result<Vec<Arc<ContainerRecord>>, ContainerError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|c| c.sandbox_id == sandbox_id)
            .collect())
    }

    /// The containers of one pod (those still being created left out), states up to date;
    /// reads only that pod's exit files.
    pub async fn of_pod(
        &self,
        pod: &SandboxRecord,
    ) -> Result<Vec<Arc<ContainerRecord>>, ContainerError> {
        let mut out = Vec::new();
        for record in self.records.all().await? {
            if record.sandbox_id == pod.id && record.state != State::Creating {
                out.push(self.refresh_in(record, Some(&pod.dir)).await?);
            }
        }
        Ok(out)
    }

    /// ReopenContainerLog: the monitor reopens the file at the same path.
    pub async fn reopen_log(&self, id: &str) -> Result<(), ContainerError> {
        let (record, sandbox) = self.running(id).await?;
        monitor(&sandbox)
            .reopen_log(&record.id)
            .await
            .map_err(talking)
    }

    /// UpdateContainerResources: new cgroup limits for a created or running container, kept
    /// in its record so ContainerStatus reports them.
    pub async fn update_resources(
        &self,
        id: &str,
        linux: Option<crate::cri::v1::LinuxContainerResources>,
    ) -> Result<(), ContainerError> {
        let record = self.status(id).await?;
        if record.state == State::Exited {
            return Err(ContainerError::Precondition(format!(
                "container {} has exited",
                record.id
            )));
        }
        let Some(linux) = linux else {
            return Ok(());
        };
        if let Some(cgroups) = self.cgroups.clone().filter(|_| !record.cgroup.is_empty()) {
            let resources = crate::cgroup::Resources::from_cri(Some(&linux));
            let path = record.cgroup.clone();
            tokio::task::spawn_blocking(move || cgroups.apply(&path, &resources))
                .await
                .map_err(|e| failed("updating the container cgroup")(e.to_string()))?
                .map_err(|e| ContainerError::Invalid {
                    field: "linux",
                    message: e.to_string(),
                })?;
        }
        // Written onto the record as it is now: an exit recorded meanwhile stays recorded.
        let _in_order = self.transitions.lock(&record.id).await;
        let mut record = match self.records.find(&record.id).await? {
            Some(current) => Arc::unwrap_or_clone(current),
            None => {
                return Err(ContainerError::NotFound(format!(
                    "container {:?} not found",
                    record.id
                )));
            }
        };
        let config = &mut record.config.0;
        config.linux.get_or_insert_with(Default::default).resources = Some(linux);
        self.records.update(record).await?;
        Ok(())
    }

    /// ExecSync: runs `cmd` in the running container; `timeout` seconds (0: none).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<protocol::ExecResult, ContainerError> {
        if cmd.is_empty() {
            return Err(ContainerError::Invalid {
                field: "cmd",
                message: "must not be empty".into(),
            });
        }
        let (record, sandbox) = self.running(id).await?;
        let request = ExecRequest {
            id: record.id.clone(),
            args: cmd,
            timeout_ms: (timeout.max(0) as u64).saturating_mul(1000),
        };
        let result = monitor(&sandbox)
            .exec_sync(request)
            .await
            .map_err(talking)?;
        if result.timed_out {
            return Err(ContainerError::Timeout(format!(
                "command in container {} timed out after {timeout}s and was killed",
                record.id
            )));
        }
        Ok(result)
    }

    /// Checks an Exec request without running anything (the RPC calls it before handing out
    /// a streaming URL): NotFound, FailedPrecondition when the container does not run,
    /// InvalidArgument for an empty command or streams that make no session.
    pub async fn check_exec(
        &self,
        id: &str,
        cmd: &[String],
        stdio: StdioRequest,
    ) -> Result<(), ContainerError> {
        self.exec_target(id, cmd, stdio).await.map(drop)
    }

    /// Starts `cmd` in the running container as an interactive session (checked as
    /// [`Containers::check_exec`] does).
    pub async fn exec_session(
        &self,
        id: &str,
        cmd: Vec<String>,
        stdio: StdioRequest,
        size: Option<(u16, u16)>,
    ) -> Result<(SessionWriter, SessionReader), ContainerError> {
        let (record, sandbox) = self.exec_target(id, &cmd, stdio).await?;
        let StdioRequest {
            tty,
            stdin,
            stdout,
            stderr,
        } = stdio;
        let request = ExecStreamRequest {
            id: record.id,
            args: cmd,
            tty,
            stdin,
            stdout,
            stderr,
            size,
        };
        monitor(&sandbox)
            .exec(request)
            .await
            .map_err(failed("starting the exec session"))
    }

    async fn exec_target(
        &self,
        id: &str,
        cmd: &[String],
        stdio: StdioRequest,
    ) -> Result<(ContainerRecord, SandboxRecord), ContainerError> {
        if cmd.is_empty() {
            return Err(ContainerError::Invalid {
                field: "cmd",
                message: "must not be empty".into(),
            });
        }
        check_streams(stdio.stdin, stdio.stdout, stdio.stderr)?;
        if stdio.tty && stdio.stderr {
            // A terminal has one output stream (kubelet's streaming server refuses it too).
            return Err(ContainerError::Invalid {
                field: "stderr",
                message: "tty and stderr cannot both be true".into(),
            });
        }
        self.running(id).await
    }

    /// Checks an Attach request without attaching: NotFound, FailedPrecondition when the
    /// container does not run, InvalidArgument when no stream is asked for. Returns what
    /// the streaming side needs to know about the container.
    pub async fn check_attach(
        &self,
        id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<AttachInfo, ContainerError> {
        check_streams(stdin, stdout, stderr)?;
        let (record, _) = self.running(id).await?;
        Ok(attach_info(&record))
    }

    /// Attaches to the running container's stdio (checked as [`Containers::check_attach`]
    /// does). With a tty container, output comes as stdout only and resizes apply.
    pub async fn attach_session(
        &self,
        id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(SessionWriter, SessionReader), ContainerError> {
        check_streams(stdin, stdout, stderr)?;
        let (record, sandbox) = self.running(id).await?;
        let request = AttachRequest {
            id: record.id,
            stdin,
            stdout,
            stderr,
        };
        monitor(&sandbox)
            .attach(request)
            .await
            .map_err(failed("attaching to the container"))
    }

    /// The container, which must be running, and its sandbox.
    async fn running(&self, id: &str) -> Result<(ContainerRecord, SandboxRecord), ContainerError> {
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

    /// A running container whose exit the monitor recorded becomes exited.
    async fn refresh(&self, record: ContainerRecord) -> Result<ContainerRecord, ContainerError> {
        if record.state != State::Running {
            return Ok(record);
        }
        let dir = self
            .sandboxes
            .find(&record.sandbox_id)
            .await
            .ok()
            .flatten()
            .map(|s| s.dir);
        self.refresh_in(Arc::new(record), dir.as_deref())
            .await
            .map(Arc::unwrap_or_clone)
    }

    /// `refresh` with the pod's state folder already known (None: the pod is gone).
    async fn refresh_in(
        &self,
        record: Arc<ContainerRecord>,
        pod_dir: Option<&Path>,
    ) -> Result<Arc<ContainerRecord>, ContainerError> {
        let Some(pod_dir) = pod_dir.filter(|_| record.state == State::Running) else {
            return Ok(record);
        };
        match monitor_layout::read_exit(pod_dir, &record.id) {
            Some(exit) => {
                let reason = if exit.oom_killed {
                    "OOMKilled"
                } else if exit.code == 0 {
                    "Completed"
                } else {
                    "Error"
                };
                let code = if exit.oom_killed { 137 } else { exit.code };
                let record = Arc::unwrap_or_clone(record);
                self.mark_exited(record, code, reason, exit.finished_at)
                    .await
                    .map(Arc::new)
            }
            None => Ok(record),
        }
    }

    /// Records the exit and publishes CONTAINER_STOPPED_EVENT, once: whoever reads the exit
    /// first (the exit watch, a list, a status call, StopContainer) records it, the others
    /// find it recorded.
    async fn mark_exited(
        &self,
        record: ContainerRecord,
        code: i32,
        reason: &str,
        finished_at: i64,
    ) -> Result<ContainerRecord, ContainerError> {
        let _in_order = self.transitions.lock(&record.id).await;
        let mut record = match self.records.find(&record.id).await? {
            Some(current) if current.state == State::Exited => {
                return Ok(Arc::unwrap_or_clone(current));
            }
            Some(current) => Arc::unwrap_or_clone(current),
            // Removed meanwhile: nothing to record.
            None => return Ok(record),
        };
        record.state = State::Exited;
        record.exit_code = code;
        record.reason = reason.into();
        record.finished_at = finished_at;
        self.records.update(record.clone()).await?;
        self.publish(
            ContainerEventType::ContainerStoppedEvent,
            &record.id,
            &record.sandbox_id,
        )
        .await;
        poststop(&record);
        Ok(record)
    }

    async fn sandbox_of(&self, record: &ContainerRecord) -> Result<SandboxRecord, ContainerError> {
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

    async fn find(&self, id: &str) -> Result<Option<ContainerRecord>, ContainerError> {
        let found = self.records.find(id).await?;
        Ok(found.map(Arc::unwrap_or_clone))
    }

    async fn get(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        self.find(id)
            .await?
            .ok_or_else(|| ContainerError::NotFound(format!("container {id:?} not found")))
    }
}

/// What an attach session gets from the container's own configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachInfo {
    /// The container has a terminal: one output stream, resizes apply.
    pub tty: bool,
    /// The container was created with stdin (attach input reaches it; without, it is
    /// ignored).
    pub stdin: bool,
}

fn attach_info(record: &ContainerRecord) -> AttachInfo {
    AttachInfo {
        tty: record.config.0.tty,
        stdin: record.config.0.stdin,
    }
}

/// A session must carry at least one stream.
fn check_streams(stdin: bool, stdout: bool, stderr: bool) -> Result<(), ContainerError> {
    if stdin || stdout || stderr {
        return Ok(());
    }
    Err(ContainerError::Invalid {
        field: "stdin, stdout, stderr",
        message: "one of them must be set".into(),
    })
}

/// In a user namespace pod every volume is an idmapped bind (never a chown): a host path on
/// a file system that cannot be idmapped fails here, naming the mount, rather than in the
/// executor. The probe makes a detached idmapped copy of the path and drops it.
fn check_idmap_mounts(userns_pin: &Path, config: &ContainerConfig) -> Result<(), ContainerError> {
    let userns = std::fs::File::open(userns_pin)
        .map_err(|e| failed("opening the pod's user namespace")(e.to_string()))?;
    for m in &config.mounts {
        if m.host_path.is_empty() || !Path::new(&m.host_path).exists() {
            continue; // the build step reports a missing source
        }
        if let Err(e) = crate::userns::idmapped_tree(Path::new(&m.host_path), &userns, false) {
            return Err(ContainerError::Precondition(format!(
                "mount {} (host path {}): this pod has a user namespace and the host path \
                 cannot be idmapped: {e}",
                m.container_path, m.host_path
            )));
        }
    }
    Ok(())
}

/// The signal StopContainer sends first: the config's, else the image's, else SIGTERM
/// (KEP-4960's order). An image signal we cannot read falls back to SIGTERM, as the image
/// is not the caller's request.
fn stop_signal(config: &ContainerConfig, image_signal: Option<&str>) -> i32 {
    if let Some(sig) = super::signals::from_cri(config.stop_signal) {
        return sig;
    }
    match image_signal.filter(|s| !s.trim().is_empty()) {
        None => libc::SIGTERM,
        Some(name) => super::signals::from_name(name).unwrap_or_else(|| {
            tracing::warn!(
                stop_signal = name,
                "image StopSignal not understood; using SIGTERM"
            );
            libc::SIGTERM
        }),
    }
}

/// The CDI poststop hooks of a container whose exit was just recorded, in the background:
/// lists and status calls that noticed the exit do not wait for them.
fn poststop(record: &ContainerRecord) {
    if let Some(hooks) = super::cdi::DaemonHooks::load(&record.dir) {
        let (id, pid) = (record.id.clone(), record.pid);
        tokio::task::spawn_blocking(move || hooks.run("poststop", &id, pid));
    }
}

/// Where the daemon writes a container's executor spec for the monitor to read.
fn spec_file(sandbox: &SandboxRecord, id: &str) -> PathBuf {
    monitor_layout::container_dir(&sandbox.dir, id).join("spec.json")
}

/// The monitor of the container's pod.
fn monitor(sandbox: &SandboxRecord) -> PodMonitor {
    PodMonitor::of(&sandbox.dir)
}

/// A failed monitor request, as the container operations report it.
fn talking(e: MonitorError) -> ContainerError {
    failed("talking to the pod monitor")(e)
}

async fn signal(sandbox: &SandboxRecord, id: &str, signal: i32) -> Result<(), ContainerError> {
    monitor(sandbox).signal(id, signal).await.map_err(talking)
}
