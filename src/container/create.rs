//! CreateContainer: the record, folders, cgroup and spec file of a container whose process
//! StartContainer makes; and undoing a create that failed or that a restart interrupted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::Instrument;

use super::build::{self, Paths};
use super::record::{ContainerRecord, State};
use super::service::{ContainerError, Containers, failed, spec_file};
use crate::cri::stored::Stored;
use crate::cri::v1::{ContainerConfig, ContainerEventType, PodSandboxConfig};
use crate::ids::{new_id, now_nanos};
use crate::image::catalog::ImageRecord;
use crate::monitor::layout as monitor_layout;
use crate::monitor::protocol;
use crate::sandbox::record::{SandboxRecord, SandboxState};
use crate::store::StoreError;

impl Containers {
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

    pub(super) async fn create_now(
        &self,
        sandbox: SandboxRecord,
        config: ContainerConfig,
        key: String,
    ) -> Result<String, ContainerError> {
        let (image_name, image) = self.image_of(&config).await?;
        let id = new_id();
        let dir = self.root.join(&id);
        let cgroup = container_cgroup(&sandbox, &id);
        let log_path = log_path_of(&sandbox, &config);
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
        let record = ContainerRecord {
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
        self.insert_record(key, &record).await?;
        self.finish_create(&sandbox, record, built, &config).await?;
        tracing::info!(container = %id, pod = %sandbox.id, "container created");
        Ok(id)
    }

    /// Stores the new record under its CRI name; a name in use is the caller's error.
    async fn insert_record(
        &self,
        key: String,
        record: &ContainerRecord,
    ) -> Result<(), ContainerError> {
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
            })
    }

    /// After the record is in: the files and cgroup the start needs, then CREATED. Any
    /// failure undoes the create.
    async fn finish_create(
        &self,
        sandbox: &SandboxRecord,
        mut record: ContainerRecord,
        built: build::Built,
        config: &ContainerConfig,
    ) -> Result<(), ContainerError> {
        let (id, dir, log_path) = (
            record.id.clone(),
            record.dir.clone(),
            record.log_path.clone(),
        );
        // Exits of this pod's containers are seen as they happen from now on.
        self.watch_pod(sandbox).await;
        if !log_path.as_os_str().is_empty()
            && let Err(e) = crate::sandbox::container_logs::remember(&sandbox.dir, &log_path)
        {
            tracing::warn!(container = %id, error = %e, "cannot note the container log for the pod's removal");
        }
        let mut spec = built.spec;
        spec.id = id.clone();
        let bundle = monitor_layout::container_dir(&sandbox.dir, &id);
        if let Err(e) = super::cdi::DaemonHooks::save(&dir, &bundle, &spec.hooks) {
            self.discard(sandbox, &record).await;
            return Err(failed("writing the CDI hooks")(e.to_string()));
        }
        // A TARGET must be a running container of this pod now; StartContainer looks it up
        // again, as that is when the process joins it.
        if let protocol::PidMode::Target { .. } = build::pid_mode_of(config, sandbox)
            && let Err(e) = self.target_pid(config, sandbox).await
        {
            self.discard(sandbox, &record).await;
            return Err(e);
        }
        if let Err(e) = self
            .prepare(sandbox, &record, &spec, &built.device_rules, config)
            .await
        {
            self.discard(sandbox, &record).await;
            return Err(e);
        }
        record.state = State::Created;
        if let Err(e) = self
            .records
            .update(record.clone())
            .instrument(tracing::debug_span!("create.store_update"))
            .await
        {
            self.discard(sandbox, &record).await;
            return Err(e.into());
        }
        self.publish(ContainerEventType::ContainerCreatedEvent, &id, &sandbox.id)
            .await;
        Ok(())
    }

    /// The image the config names, which must be present and runnable.
    async fn image_of(
        &self,
        config: &ContainerConfig,
    ) -> Result<(String, ImageRecord), ContainerError> {
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
        Ok((image_name, image))
    }

    /// The pid of the running container a TARGET PID namespace option names (same pod).
    pub(super) async fn target_pid(
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
    pub(super) async fn prepare(
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
    pub(super) async fn discard(&self, sandbox: &SandboxRecord, record: &ContainerRecord) {
        self.undo_create(Some(sandbox), record).await;
    }

    pub(super) async fn undo_create(
        &self,
        sandbox: Option<&SandboxRecord>,
        record: &ContainerRecord,
    ) {
        if let Some(sandbox) = sandbox {
            let _ = self.monitor(sandbox).remove(&record.id).await;
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
    pub(super) async fn remove_log(&self, record: &ContainerRecord) {
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

    pub(super) async fn remove_cgroup(&self, path: &str) {
        if let Some(cgroups) = self.cgroups.clone().filter(|_| !path.is_empty()) {
            let path = path.to_owned();
            let _ = tokio::task::spawn_blocking(move || {
                let _ = cgroups.kill_all(&path);
                cgroups.remove(&path)
            })
            .await;
        }
    }

    /// The empty lower dir one-layer image volumes stack on.
    pub(super) fn empty_lower(&self) -> Result<PathBuf, ContainerError> {
        let root_dir = self.root.parent().unwrap_or(&self.root);
        super::image_volumes::empty_lower(root_dir)
    }
}

/// In a user namespace pod every volume is an idmapped bind (never a chown): a host path on
/// a file system that cannot be idmapped fails here, naming the mount, rather than in the
/// executor. The probe makes a detached idmapped copy of the path and drops it.
pub(super) fn check_idmap_mounts(
    userns_pin: &Path,
    config: &ContainerConfig,
) -> Result<(), ContainerError> {
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
pub(super) fn stop_signal(config: &ContainerConfig, image_signal: Option<&str>) -> i32 {
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

/// The container's cgroup, next to its pod's (none when the pod has none).
fn container_cgroup(sandbox: &SandboxRecord, id: &str) -> String {
    match sandbox.cgroup.rsplit_once('/') {
        _ if sandbox.cgroup.is_empty() => String::new(),
        Some((parent, _)) => format!("{parent}/{id}"),
        None => format!("/{id}"),
    }
}

/// The CRI log file: the pod's log folder joined with the config's path, when both are set.
fn log_path_of(sandbox: &SandboxRecord, config: &ContainerConfig) -> PathBuf {
    match (&sandbox.config.0.log_directory, &config.log_path) {
        (d, p) if !d.is_empty() && !p.is_empty() => PathBuf::from(d).join(p),
        _ => PathBuf::new(),
    }
}
