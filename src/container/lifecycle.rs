//! StartContainer (the monitor makes the process, then it execs), StopContainer,
//! RemoveContainer, and the changes to a container that lives: resources, log reopening.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::build;
use super::exits::poststop;
use super::record::{ContainerRecord, State};
use super::service::{ContainerError, Containers, failed, spec_file, talking};
use crate::cri::v1::ContainerEventType;
use crate::ids::now_nanos;
use crate::monitor::layout as monitor_layout;
use crate::monitor::protocol::{self, CreateRequest};
use crate::sandbox::record::SandboxRecord;

impl Containers {
    /// Has the monitor make the container's process, set up and waiting to exec: the
    /// executor's namespaces, mounts, pivot_root and limits, as `runc create` does.
    pub(super) async fn spawn(
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
        self.monitor(sandbox)
            .create(request)
            .instrument(tracing::debug_span!("start.monitor_create"))
            .await
            .map_err(talking)
    }

    /// StartContainer: the monitor makes the process (`spawn`), then it execs its command.
    pub async fn start(&self, id: &str) -> Result<(), ContainerError> {
        let record = self.get(id).await?;
        let sandbox = self.sandbox_of(&record).await?;
        // One start at a time per container; a second finds it no longer created.
        let _one_start = self.starting.lock(&record.id).await;
        let mut record = self.get(&record.id).await?;
        if record.state != State::Created {
            return Err(ContainerError::Precondition(format!(
                "container {} is {:?}, not created",
                record.id, record.state
            )));
        }
        let started = async {
            record.pid = self.spawn(&sandbox, &record).await?;
            self.monitor(&sandbox)
                .start(&record.id)
                .instrument(tracing::debug_span!("start.monitor_start"))
                .await
                .map_err(talking)
        }
        .await;
        match started {
            Ok(_) => {
                record.state = State::Running;
                record.started_at = now_nanos();
                {
                    // Its exit may be counted already, even read by a list while the record
                    // said created: it is read after this write, and published after STARTED.
                    let _in_order = self.transitions.lock(&record.id).await;
                    self.save_and_publish(&record, ContainerEventType::ContainerStartedEvent)
                        .await?;
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
                self.save_and_publish(&record, ContainerEventType::ContainerStoppedEvent)
                    .await?;
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
                let _ = self.monitor(&sandbox).remove(&record.id).await;
                self.mark_exited(record, 0, "Completed", now_nanos())
                    .await
                    .map(drop)
            }
            State::Running => {
                let sandbox = self.sandbox_of(&record).await?;
                if timeout > 0 {
                    let _ = self.signal(&sandbox, &record.id, record.stop_signal).await;
                    if self
                        .wait_exit(&sandbox, &record.id, Duration::from_secs(timeout as u64))
                        .await
                    {
                        let record = self.get(&record.id).await?;
                        self.refresh(record).await?;
                        return Ok(());
                    }
                }
                let _ = self.signal(&sandbox, &record.id, libc::SIGKILL).await;
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

    pub(super) async fn wait_exit(
        &self,
        sandbox: &SandboxRecord,
        id: &str,
        limit: Duration,
    ) -> bool {
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
            let _ = self.monitor(sandbox).remove(&record.id).await;
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
    pub(super) async fn collect_images_left(&self, record: &ContainerRecord) {
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

    /// ReopenContainerLog: the monitor reopens the file at the same path.
    pub async fn reopen_log(&self, id: &str) -> Result<(), ContainerError> {
        let (record, sandbox) = self.running(id).await?;
        self.monitor(&sandbox)
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
}
