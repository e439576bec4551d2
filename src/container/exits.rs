//! Exits: the monitor records each container's exit in the pod folder; they are read as
//! the exit watch reports them, or by lists and status calls, and recorded once each.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::exit_watch::{Change, ExitWatch};
use super::record::{ContainerRecord, State};
use super::service::{ContainerError, Containers, failed};
use crate::cri::v1::ContainerEventType;
use crate::monitor::layout as monitor_layout;
use crate::sandbox::record::{SandboxRecord, SandboxState};

impl Containers {
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
    pub(super) async fn catch_up_exits(&self) {
        let Some(watch) = &self.exit_watch else {
            return;
        };
        match watch.pending().await {
            Ok((_handling, changes)) => self.handle_changes(watch, changes).await,
            Err(e) => tracing::warn!(error = %e, "reading the exit watch failed"),
        }
    }

    pub(super) async fn handle_changes(&self, watch: &ExitWatch, changes: Vec<Change>) {
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
    pub(super) async fn read_exits(&self, pod: &str, dir: &Path) -> bool {
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

    /// A running container whose exit the monitor recorded becomes exited.
    pub(super) async fn refresh(
        &self,
        record: ContainerRecord,
    ) -> Result<ContainerRecord, ContainerError> {
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
    pub(super) async fn refresh_in(
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
    pub(super) async fn mark_exited(
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
        self.save_and_publish(&record, ContainerEventType::ContainerStoppedEvent)
            .await?;
        poststop(&record);
        Ok(record)
    }

    /// Writes a state change and publishes its event. Callers hold the container's
    /// transition lock, so subscribers see its events in the order of its states.
    pub(super) async fn save_and_publish(
        &self,
        record: &ContainerRecord,
        event: ContainerEventType,
    ) -> Result<(), ContainerError> {
        self.records.update(record.clone()).await?;
        self.publish(event, &record.id, &record.sandbox_id).await;
        Ok(())
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
}

/// The CDI poststop hooks of a container whose exit was just recorded, in the background:
/// lists and status calls that noticed the exit do not wait for them.
pub(super) fn poststop(record: &ContainerRecord) {
    if let Some(hooks) = super::cdi::DaemonHooks::load(&record.dir) {
        let (id, pid) = (record.id.clone(), record.pid);
        tokio::task::spawn_blocking(move || hooks.run("poststop", &id, pid));
    }
}
