//! Pod sandbox RPCs: turning requests into `sandbox::Sandboxes` calls and records into CRI
//! messages.

use std::collections::HashMap;

use tonic::Status;

use super::filters::ListFilter;
use super::{CriServer, errors};
use crate::cri::v1::*;
use crate::sandbox::record::{SandboxRecord, SandboxState};
use crate::sandbox::stats;
use crate::sandbox::status::status_message;
use crate::telemetry::record_ids;

impl CriServer {
    pub(super) async fn run_pod_sandbox(
        &self,
        request: RunPodSandboxRequest,
    ) -> Result<RunPodSandboxResponse, Status> {
        let config = request.config.unwrap_or_default();
        let id = self.pods().run(config, request.runtime_handler).await?;
        record_ids("pod", &id);
        Ok(RunPodSandboxResponse { pod_sandbox_id: id })
    }

    pub(super) async fn stop_pod_sandbox(&self, id: &str) -> Result<(), Status> {
        record_ids("pod", id);
        Ok(self.pods().stop(id).await?)
    }

    pub(super) async fn remove_pod_sandbox(&self, id: &str) -> Result<(), Status> {
        record_ids("pod", id);
        Ok(self.pods().remove(id).await?)
    }

    pub(super) async fn update_pod_sandbox_resources(
        &self,
        request: UpdatePodSandboxResourcesRequest,
    ) -> Result<(), Status> {
        let UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: id,
            overhead,
            resources,
        } = request;
        record_ids("pod", &id);
        Ok(self
            .pods()
            .update_resources(&id, overhead, resources)
            .await?)
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
            .ok_or_else(|| errors::pod_not_found(&request.pod_sandbox_id))?;
        let timestamp = crate::ids::now_nanos();
        let ready = self.sandboxes().is_running(&record).await;
        let info = if request.verbose {
            verbose_info(&record)
        } else {
            HashMap::new()
        };
        // With the evented PLEG, kubelet takes the pod's container statuses from here.
        let containers = self.containers().of_pod(&record).await?;
        let containers_statuses =
            crate::container::status::pod_statuses(containers.iter().map(|c| c.as_ref()));
        Ok(PodSandboxStatusResponse {
            status: Some(status_message(&record, ready)),
            info,
            containers_statuses,
            timestamp,
        })
    }

    pub(super) async fn list_pod_sandbox(
        &self,
        filter: Option<PodSandboxFilter>,
    ) -> Result<ListPodSandboxResponse, Status> {
        let filter = filter.unwrap_or_default();
        let filter = ListFilter::from(&filter);
        let items = self
            .sandboxes()
            .all()
            .await?
            .iter()
            // A pod still being created is not there yet for kubelet.
            .filter(|r| r.state != SandboxState::Creating && filter.keeps(*r))
            .map(|r| PodSandbox {
                id: r.id.clone(),
                metadata: Some(r.metadata()),
                state: cri_state(r) as i32,
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
            .ok_or_else(|| errors::pod_not_found(id))?;
        let containers = self.running_containers_by_pod().await?;
        let readings = stats::read_one(self.sandboxes(), &record);
        let running = containers.get(&record.id).cloned().unwrap_or_default();
        let containers = self.containers().stats_of(running).await;
        Ok(stats::pod_stats(&record, readings, containers))
    }

    pub(super) async fn list_pod_sandbox_stats(
        &self,
        filter: Option<PodSandboxStatsFilter>,
    ) -> Result<Vec<PodSandboxStats>, Status> {
        let filter = filter.unwrap_or_default();
        let filter = ListFilter::from(&filter);
        let all = self.sandboxes().all().await?;
        let pods: Vec<&SandboxRecord> = all
            .iter()
            .filter(|r| r.state == SandboxState::Ready && filter.keeps(*r))
            .collect();
        // Every running container of these pods in one parallel pass, then every pod in
        // another; each pod's share of the first is put back in it.
        let mut by_pod = self.running_containers_by_pod().await?;
        let running: Vec<Vec<_>> = pods
            .iter()
            .map(|p| by_pod.remove(&p.id).unwrap_or_default())
            .collect();
        let counts: Vec<usize> = running.iter().map(Vec::len).collect();
        let container_stats = self
            .containers()
            .stats_of(running.into_iter().flatten().collect())
            .await;
        let readings = stats::read_many(self.sandboxes(), &pods).await;
        let mut container_stats = container_stats.into_iter();
        Ok(pods
            .into_iter()
            .zip(readings)
            .zip(counts)
            .map(|((pod, readings), n)| {
                let containers = container_stats.by_ref().take(n).collect();
                stats::pod_stats(pod, readings, containers)
            })
            .collect())
    }
}

pub(super) fn cri_state(record: &SandboxRecord) -> PodSandboxState {
    match record.state {
        SandboxState::Ready => PodSandboxState::SandboxReady,
        _ => PodSandboxState::SandboxNotready,
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
