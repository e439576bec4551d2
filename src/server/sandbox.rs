//! Pod sandbox RPCs: turning requests into `sandbox::Sandboxes` calls and records into CRI
//! messages.

use std::collections::HashMap;

use tonic::Status;

use super::CriServer;
use crate::cri::v1::*;
use crate::sandbox::record::{SandboxRecord, SandboxState};
use crate::sandbox::stats;
use crate::telemetry::record_ids;

impl CriServer {
    pub(super) async fn run_pod_sandbox(
        &self,
        request: RunPodSandboxRequest,
    ) -> Result<RunPodSandboxResponse, Status> {
        let config = request
            .config
            .ok_or_else(|| super::errors::invalid_field("config", "is required"))?;
        let id = self
            .sandboxes()
            .run(config, request.runtime_handler)
            .await?;
        record_ids("pod", &id);
        Ok(RunPodSandboxResponse { pod_sandbox_id: id })
    }

    /// Stops the pod's containers (kubelet normally has, with their grace periods; what is
    /// left is killed) and then the pod.
    pub(super) async fn stop_pod_sandbox(&self, id: &str) -> Result<(), Status> {
        record_ids("pod", id);
        let Some(pod) = self.sandboxes().find(id).await? else {
            return Ok(());
        };
        let _one_at_a_time = self.lock_pod(&pod.id).await;
        // The containers are killed while the pod comes off its network (CNI DEL is the
        // slow part); the monitor's shutdown would kill them too, and records each exit.
        let containers = self.containers().of_sandbox(&pod.id).await?;
        let stop_containers = futures::future::try_join_all(
            containers
                .iter()
                .map(|container| self.containers().stop(&container.id, 0)),
        );
        let (containers, pod) = tokio::join!(stop_containers, self.sandboxes().stop(&pod.id));
        containers?;
        Ok(pod?)
    }

    /// Removes the pod's containers, then the pod.
    pub(super) async fn remove_pod_sandbox(&self, id: &str) -> Result<(), Status> {
        record_ids("pod", id);
        let Some(pod) = self.sandboxes().find(id).await? else {
            return Ok(());
        };
        let _one_at_a_time = self.lock_pod(&pod.id).await;
        for container in self.containers().of_sandbox(&pod.id).await? {
            self.containers().remove(&container.id).await?;
        }
        Ok(self.sandboxes().remove(&pod.id).await?)
    }

    pub(super) async fn pod_sandbox_status(
        &self,
        request: PodSandboxStatusRequest,
    ) -> Result<PodSandboxStatusResponse, Status> {
        record_ids("pod", &request.pod_sandbox_id);
        let record = self
            .sandboxes()
            .find(&request.pod_sandbox_id)
            .await?
            .ok_or_else(|| not_found(&request.pod_sandbox_id))?;
        let ready = self.sandboxes().is_running(&record).await;
        let info = if request.verbose {
            verbose_info(&record)
        } else {
            HashMap::new()
        };
        Ok(PodSandboxStatusResponse {
            status: Some(status_message(&record, ready)),
            info,
            containers_statuses: Vec::new(),
            timestamp: crate::sandbox::service::now_nanos(),
        })
    }

    pub(super) async fn list_pod_sandbox(
        &self,
        filter: Option<PodSandboxFilter>,
    ) -> Result<ListPodSandboxResponse, Status> {
        let filter = filter.unwrap_or_default();
        let items = self
            .sandboxes()
            .list()
            .await?
            .into_iter()
            // A pod still being created is not there yet for kubelet.
            .filter(|r| r.state != SandboxState::Creating)
            .filter(|r| filter.id.is_empty() || r.id.starts_with(&filter.id))
            .filter(|r| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|s| s.state == cri_state(r) as i32)
            })
            .filter(|r| labels_match(&r.config.0.labels, &filter.label_selector))
            .map(|r| PodSandbox {
                id: r.id.clone(),
                metadata: Some(r.metadata()),
                state: cri_state(&r) as i32,
                created_at: r.created_at,
                labels: r.config.0.labels.clone(),
                annotations: r.config.0.annotations.clone(),
                runtime_handler: r.runtime_handler.clone(),
            })
            .collect();
        Ok(ListPodSandboxResponse { items })
    }

    pub(super) async fn pod_sandbox_stats(&self, id: &str) -> Result<PodSandboxStats, Status> {
        record_ids("pod", id);
        let record = self
            .sandboxes()
            .find(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok(stats::pod_stats(self.sandboxes(), &record))
    }

    pub(super) async fn list_pod_sandbox_stats(
        &self,
        filter: Option<PodSandboxStatsFilter>,
    ) -> Result<Vec<PodSandboxStats>, Status> {
        let filter = filter.unwrap_or_default();
        Ok(self
            .sandboxes()
            .list()
            .await?
            .into_iter()
            .filter(|r| r.state == SandboxState::Ready)
            .filter(|r| filter.id.is_empty() || r.id.starts_with(&filter.id))
            .filter(|r| labels_match(&r.config.0.labels, &filter.label_selector))
            .map(|r| stats::pod_stats(self.sandboxes(), &r))
            .collect())
    }
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("pod sandbox {id:?} not found"))
}

fn cri_state(record: &SandboxRecord) -> PodSandboxState {
    match record.state {
        SandboxState::Ready => PodSandboxState::SandboxReady,
        _ => PodSandboxState::SandboxNotready,
    }
}

/// Every selector label must be present with the same value.
pub(super) fn labels_match(
    labels: &HashMap<String, String>,
    selector: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn status_message(record: &SandboxRecord, running: bool) -> PodSandboxStatus {
    let config = &record.config.0;
    let state = if running {
        PodSandboxState::SandboxReady
    } else {
        PodSandboxState::SandboxNotready
    };
    let options = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    PodSandboxStatus {
        id: record.id.clone(),
        metadata: Some(record.metadata()),
        state: state as i32,
        created_at: record.created_at,
        network: Some(PodSandboxNetworkStatus {
            ip: record.ip.clone(),
            additional_ips: record
                .additional_ips
                .iter()
                .map(|ip| PodIp { ip: ip.clone() })
                .collect(),
        }),
        linux: Some(LinuxPodSandboxStatus {
            namespaces: Some(Namespace {
                options: Some(options),
            }),
        }),
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        runtime_handler: record.runtime_handler.clone(),
    }
}

/// What `crictl inspectp` shows under "info".
fn verbose_info(record: &SandboxRecord) -> HashMap<String, String> {
    let info = serde_json::json!({
        "netns": record.netns,
        "network": record.network,
        "ip": record.ip,
        "cgroup": record.cgroup,
        "monitorPid": record.monitor_pid,
        "pid": record.pause_pid,
        "dir": record.dir,
        "state": record.state,
    });
    HashMap::from([("info".to_owned(), info.to_string())])
}
