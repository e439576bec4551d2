//! Container RPCs: requests into `container::service::Containers` calls, records into CRI
//! messages.

use std::collections::HashMap;

use tonic::Status;

use super::CriServer;
use super::filters::ListFilter;
use crate::container::record::State;
use crate::container::status::{cri_state, image_spec, status_message};
use crate::cri::v1::*;
use crate::telemetry::record_ids;

impl CriServer {
    pub(super) async fn create_container(
        &self,
        request: CreateContainerRequest,
    ) -> Result<CreateContainerResponse, Status> {
        record_ids("pod", &request.pod_sandbox_id);
        let config = request.config.unwrap_or_default();
        let id = self
            .containers()
            .create(&request.pod_sandbox_id, config, request.sandbox_config)
            .await?;
        record_ids("container", &id);
        Ok(CreateContainerResponse { container_id: id })
    }

    pub(super) async fn start_container(&self, id: &str) -> Result<(), Status> {
        record_ids("container", id);
        Ok(self.containers().start(id).await?)
    }

    pub(super) async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), Status> {
        record_ids("container", id);
        Ok(self.pods().stop_container(id, timeout).await?)
    }

    pub(super) async fn remove_container(&self, id: &str) -> Result<(), Status> {
        record_ids("container", id);
        Ok(self.pods().remove_container(id).await?)
    }

    pub(super) async fn container_status(
        &self,
        request: ContainerStatusRequest,
    ) -> Result<ContainerStatusResponse, Status> {
        record_ids("container", &request.container_id);
        let record = self.containers().status(&request.container_id).await?;
        let info = if request.verbose {
            let info = serde_json::json!({
                "pid": record.pid,
                "sandboxID": record.sandbox_id,
                "cgroup": record.cgroup,
                "dir": record.dir,
                "imageLayers": record.image_layers,
                "imageVolumes": record.image_volumes,
            });
            HashMap::from([("info".to_owned(), info.to_string())])
        } else {
            HashMap::new()
        };
        Ok(ContainerStatusResponse {
            status: Some(status_message(&record)),
            info,
        })
    }

    pub(super) async fn list_containers(
        &self,
        filter: Option<ContainerFilter>,
    ) -> Result<ListContainersResponse, Status> {
        let filter = filter.unwrap_or_default();
        let filter = ListFilter::from(&filter);
        let containers = self
            .containers()
            .list()
            .await?
            .into_iter()
            .filter(|r| r.state != State::Creating && filter.keeps(&**r))
            .map(|r| Container {
                id: r.id.clone(),
                pod_sandbox_id: r.sandbox_id.clone(),
                metadata: r.config.0.metadata.clone(),
                image: Some(image_spec(&r)),
                image_ref: r.image_id.clone(),
                state: cri_state(&r) as i32,
                created_at: r.created_at,
                labels: r.config.0.labels.clone(),
                annotations: r.config.0.annotations.clone(),
                image_id: r.image_id.clone(),
            })
            .collect();
        Ok(ListContainersResponse { containers })
    }

    pub(super) async fn exec_sync(
        &self,
        request: ExecSyncRequest,
    ) -> Result<ExecSyncResponse, Status> {
        record_ids("container", &request.container_id);
        let result = self
            .containers()
            .exec_sync(&request.container_id, request.cmd, request.timeout)
            .await?;
        Ok(ExecSyncResponse {
            stdout: result.stdout,
            stderr: result.stderr,
            exit_code: result.exit_code,
        })
    }

    pub(super) async fn reopen_container_log(&self, id: &str) -> Result<(), Status> {
        record_ids("container", id);
        Ok(self.containers().reopen_log(id).await?)
    }

    pub(super) async fn container_stats(&self, id: &str) -> Result<ContainerStats, Status> {
        record_ids("container", id);
        let record = self.containers().status(id).await?;
        Ok(self.containers().stats(&record))
    }

    pub(super) async fn list_container_stats(
        &self,
        filter: Option<ContainerStatsFilter>,
    ) -> Result<Vec<ContainerStats>, Status> {
        let filter = filter.unwrap_or_default();
        let filter = ListFilter::from(&filter);
        let records = self
            .containers()
            .list()
            .await?
            .into_iter()
            .filter(|r| r.state == State::Running && filter.keeps(&**r))
            .collect();
        Ok(self.containers().stats_of(records).await)
    }
}
