//! The RuntimeService: each RPC decodes its request and hands it to its domain module.

use tonic::{Request, Response, Status};

use super::CriServer;
use super::list_streams::ServerStream;
use crate::cri::v1::runtime_service_server::RuntimeService;
use crate::cri::v1::*;
use crate::validate::checked;

const CHECKPOINT: &str = "checkpoint/restore is not supported";

cri_service! {
    impl RuntimeService for CriServer {
        async fn version(
            &self,
            _request: Request<VersionRequest>,
        ) -> Result<Response<VersionResponse>, Status> {
            Ok(Response::new(CriServer::version(self)))
        }

        async fn status(
            &self,
            request: Request<StatusRequest>,
        ) -> Result<Response<StatusResponse>, Status> {
            let verbose = checked(request)?.verbose;
            CriServer::status(self, verbose).await.map(Response::new)
        }

        async fn runtime_config(
            &self,
            _request: Request<RuntimeConfigRequest>,
        ) -> Result<Response<RuntimeConfigResponse>, Status> {
            Ok(Response::new(CriServer::runtime_config(self)))
        }

        async fn run_pod_sandbox(
            &self,
            request: Request<RunPodSandboxRequest>,
        ) -> Result<Response<RunPodSandboxResponse>, Status> {
            CriServer::run_pod_sandbox(self, checked(request)?).await.map(Response::new)
        }

        async fn stop_pod_sandbox(
            &self,
            request: Request<StopPodSandboxRequest>,
        ) -> Result<Response<StopPodSandboxResponse>, Status> {
            CriServer::stop_pod_sandbox(self, &checked(request)?.pod_sandbox_id).await?;
            Ok(Response::new(StopPodSandboxResponse {}))
        }

        async fn remove_pod_sandbox(
            &self,
            request: Request<RemovePodSandboxRequest>,
        ) -> Result<Response<RemovePodSandboxResponse>, Status> {
            CriServer::remove_pod_sandbox(self, &checked(request)?.pod_sandbox_id).await?;
            Ok(Response::new(RemovePodSandboxResponse {}))
        }

        async fn pod_sandbox_status(
            &self,
            request: Request<PodSandboxStatusRequest>,
        ) -> Result<Response<PodSandboxStatusResponse>, Status> {
            CriServer::pod_sandbox_status(self, checked(request)?).await.map(Response::new)
        }

        async fn list_pod_sandbox(
            &self,
            request: Request<ListPodSandboxRequest>,
        ) -> Result<Response<ListPodSandboxResponse>, Status> {
            CriServer::list_pod_sandbox(self, checked(request)?.filter).await.map(Response::new)
        }

        async fn pod_sandbox_stats(
            &self,
            request: Request<PodSandboxStatsRequest>,
        ) -> Result<Response<PodSandboxStatsResponse>, Status> {
            let stats = CriServer::pod_sandbox_stats(self, &checked(request)?.pod_sandbox_id).await?;
            Ok(Response::new(PodSandboxStatsResponse { stats: Some(stats) }))
        }

        async fn list_pod_sandbox_stats(
            &self,
            request: Request<ListPodSandboxStatsRequest>,
        ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
            let stats = CriServer::list_pod_sandbox_stats(self, checked(request)?.filter).await?;
            Ok(Response::new(ListPodSandboxStatsResponse { stats }))
        }

        async fn create_container(
            &self,
            request: Request<CreateContainerRequest>,
        ) -> Result<Response<CreateContainerResponse>, Status> {
            CriServer::create_container(self, checked(request)?).await.map(Response::new)
        }

        async fn start_container(
            &self,
            request: Request<StartContainerRequest>,
        ) -> Result<Response<StartContainerResponse>, Status> {
            CriServer::start_container(self, &checked(request)?.container_id).await?;
            Ok(Response::new(StartContainerResponse {}))
        }

        async fn stop_container(
            &self,
            request: Request<StopContainerRequest>,
        ) -> Result<Response<StopContainerResponse>, Status> {
            let request = checked(request)?;
            CriServer::stop_container(self, &request.container_id, request.timeout).await?;
            Ok(Response::new(StopContainerResponse {}))
        }

        async fn remove_container(
            &self,
            request: Request<RemoveContainerRequest>,
        ) -> Result<Response<RemoveContainerResponse>, Status> {
            CriServer::remove_container(self, &checked(request)?.container_id).await?;
            Ok(Response::new(RemoveContainerResponse {}))
        }

        async fn list_containers(
            &self,
            request: Request<ListContainersRequest>,
        ) -> Result<Response<ListContainersResponse>, Status> {
            CriServer::list_containers(self, checked(request)?.filter).await.map(Response::new)
        }

        async fn container_status(
            &self,
            request: Request<ContainerStatusRequest>,
        ) -> Result<Response<ContainerStatusResponse>, Status> {
            CriServer::container_status(self, checked(request)?).await.map(Response::new)
        }

        async fn reopen_container_log(
            &self,
            request: Request<ReopenContainerLogRequest>,
        ) -> Result<Response<ReopenContainerLogResponse>, Status> {
            CriServer::reopen_container_log(self, &checked(request)?.container_id).await?;
            Ok(Response::new(ReopenContainerLogResponse {}))
        }

        async fn container_stats(
            &self,
            request: Request<ContainerStatsRequest>,
        ) -> Result<Response<ContainerStatsResponse>, Status> {
            let stats = CriServer::container_stats(self, &checked(request)?.container_id).await?;
            Ok(Response::new(ContainerStatsResponse { stats: Some(stats) }))
        }

        async fn list_container_stats(
            &self,
            request: Request<ListContainerStatsRequest>,
        ) -> Result<Response<ListContainerStatsResponse>, Status> {
            let stats = CriServer::list_container_stats(self, checked(request)?.filter).await?;
            Ok(Response::new(ListContainerStatsResponse { stats }))
        }

        async fn update_container_resources(
            &self,
            request: Request<UpdateContainerResourcesRequest>,
        ) -> Result<Response<UpdateContainerResourcesResponse>, Status> {
            let request = checked(request)?;
            crate::telemetry::record_ids("container", &request.container_id);
            self.containers()
                .update_resources(&request.container_id, request.linux)
                .await?;
            Ok(Response::new(UpdateContainerResourcesResponse {}))
        }

        async fn exec_sync(
            &self,
            request: Request<ExecSyncRequest>,
        ) -> Result<Response<ExecSyncResponse>, Status> {
            CriServer::exec_sync(self, checked(request)?).await.map(Response::new)
        }

        async fn exec(&self, request: Request<ExecRequest>) -> Result<Response<ExecResponse>, Status> {
            CriServer::exec(self, checked(request)?).await.map(Response::new)
        }

        async fn attach(
            &self,
            request: Request<AttachRequest>,
        ) -> Result<Response<AttachResponse>, Status> {
            CriServer::attach(self, checked(request)?).await.map(Response::new)
        }

        async fn port_forward(
            &self,
            request: Request<PortForwardRequest>,
        ) -> Result<Response<PortForwardResponse>, Status> {
            CriServer::port_forward(self, checked(request)?).await.map(Response::new)
        }

        async fn update_pod_sandbox_resources(
            &self,
            request: Request<UpdatePodSandboxResourcesRequest>,
        ) -> Result<Response<UpdatePodSandboxResourcesResponse>, Status> {
            CriServer::update_pod_sandbox_resources(self, checked(request)?).await?;
            Ok(Response::new(UpdatePodSandboxResourcesResponse {}))
        }

        type GetContainerEventsStream = ServerStream<ContainerEventResponse>;

        async fn get_container_events(
            &self,
            _request: Request<GetEventsRequest>,
        ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
            self.container_events().map(Response::new)
        }

        type StreamPodSandboxesStream = ServerStream<StreamPodSandboxesResponse>;

        async fn stream_pod_sandboxes(
            &self,
            request: Request<StreamPodSandboxesRequest>,
        ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
            let filter = checked(request)?.filter;
            let items = CriServer::list_pod_sandbox(self, filter).await?.items;
            let pages = self.pages(items, |pod_sandboxes| StreamPodSandboxesResponse {
                pod_sandboxes,
            });
            Ok(Response::new(pages))
        }

        type StreamContainersStream = ServerStream<StreamContainersResponse>;

        async fn stream_containers(
            &self,
            request: Request<StreamContainersRequest>,
        ) -> Result<Response<Self::StreamContainersStream>, Status> {
            let filter = checked(request)?.filter;
            let items = CriServer::list_containers(self, filter).await?.containers;
            let pages = self.pages(items, |containers| StreamContainersResponse { containers });
            Ok(Response::new(pages))
        }

        type StreamContainerStatsStream = ServerStream<StreamContainerStatsResponse>;

        async fn stream_container_stats(
            &self,
            request: Request<StreamContainerStatsRequest>,
        ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
            let filter = checked(request)?.filter;
            let items = CriServer::list_container_stats(self, filter).await?;
            let pages = self.pages(items, |container_stats| StreamContainerStatsResponse {
                container_stats,
            });
            Ok(Response::new(pages))
        }

        type StreamPodSandboxStatsStream = ServerStream<StreamPodSandboxStatsResponse>;

        async fn stream_pod_sandbox_stats(
            &self,
            request: Request<StreamPodSandboxStatsRequest>,
        ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
            let filter = checked(request)?.filter;
            let items = CriServer::list_pod_sandbox_stats(self, filter).await?;
            let pages = self.pages(items, |pod_sandbox_stats| StreamPodSandboxStatsResponse {
                pod_sandbox_stats,
            });
            Ok(Response::new(pages))
        }

        type StreamPodSandboxMetricsStream = ServerStream<StreamPodSandboxMetricsResponse>;

        /// ListPodSandboxMetrics in pages.
        async fn stream_pod_sandbox_metrics(
            &self,
            _request: Request<StreamPodSandboxMetricsRequest>,
        ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
            let items = CriServer::list_pod_sandbox_metrics(self).await?;
            let pages = self.pages(items, |pod_sandbox_metrics| StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics,
            });
            Ok(Response::new(pages))
        }

        async fn list_metric_descriptors(
            &self,
            _request: Request<ListMetricDescriptorsRequest>,
        ) -> Result<Response<ListMetricDescriptorsResponse>, Status> {
            Ok(Response::new(ListMetricDescriptorsResponse {
                descriptors: crate::cri_metrics::descriptors(),
            }))
        }

        async fn list_pod_sandbox_metrics(
            &self,
            _request: Request<ListPodSandboxMetricsRequest>,
        ) -> Result<Response<ListPodSandboxMetricsResponse>, Status> {
            let pod_metrics = CriServer::list_pod_sandbox_metrics(self).await?;
            Ok(Response::new(ListPodSandboxMetricsResponse { pod_metrics }))
        }

        async fn update_runtime_config(
            &self,
            request: Request<UpdateRuntimeConfigRequest>,
        ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
            CriServer::update_runtime_config(self, checked(request)?).await?;
            Ok(Response::new(UpdateRuntimeConfigResponse {}))
        }
    }
    pending {
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse = "CheckpointContainer", CHECKPOINT;
        checkpoint_pod(CheckpointPodRequest) -> CheckpointPodResponse = "CheckpointPod", CHECKPOINT;
        restore_pod(RestorePodRequest) -> RestorePodResponse = "RestorePod", CHECKPOINT;
    }
    pending_streams {
    }
}
