//! The RuntimeService: each RPC decodes its request and hands it to its domain module.

use tonic::{Request, Response, Status};

use super::CriServer;
use crate::cri::v1::runtime_service_server::RuntimeService;
use crate::cri::v1::*;

const SANDBOXES: &str = "pod sandboxes are not supported yet";
const CONTAINERS: &str = "containers are not supported yet";
const STREAMING: &str = "the streaming server is not available yet";
const STATS: &str = "stats need running containers, which are not supported yet";
const LIST_STREAMING: &str = "use the unary List RPC (kubelet falls back to it)";
const CHECKPOINT: &str = "checkpoint/restore is not supported";
const EVENTS: &str = "container events are not supported; kubelet's generic PLEG polls instead";
const METRICS: &str = "pod metrics are not supported; use ListPodSandboxStats";

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
            let verbose = request.into_inner().verbose;
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
            CriServer::run_pod_sandbox(self, request.into_inner()).await.map(Response::new)
        }

        async fn stop_pod_sandbox(
            &self,
            request: Request<StopPodSandboxRequest>,
        ) -> Result<Response<StopPodSandboxResponse>, Status> {
            CriServer::stop_pod_sandbox(self, &request.into_inner().pod_sandbox_id).await?;
            Ok(Response::new(StopPodSandboxResponse {}))
        }

        async fn remove_pod_sandbox(
            &self,
            request: Request<RemovePodSandboxRequest>,
        ) -> Result<Response<RemovePodSandboxResponse>, Status> {
            CriServer::remove_pod_sandbox(self, &request.into_inner().pod_sandbox_id).await?;
            Ok(Response::new(RemovePodSandboxResponse {}))
        }

        async fn pod_sandbox_status(
            &self,
            request: Request<PodSandboxStatusRequest>,
        ) -> Result<Response<PodSandboxStatusResponse>, Status> {
            CriServer::pod_sandbox_status(self, request.into_inner()).await.map(Response::new)
        }

        async fn list_pod_sandbox(
            &self,
            request: Request<ListPodSandboxRequest>,
        ) -> Result<Response<ListPodSandboxResponse>, Status> {
            CriServer::list_pod_sandbox(self, request.into_inner().filter).await.map(Response::new)
        }

        async fn pod_sandbox_stats(
            &self,
            request: Request<PodSandboxStatsRequest>,
        ) -> Result<Response<PodSandboxStatsResponse>, Status> {
            let stats = CriServer::pod_sandbox_stats(self, &request.into_inner().pod_sandbox_id).await?;
            Ok(Response::new(PodSandboxStatsResponse { stats: Some(stats) }))
        }

        async fn list_pod_sandbox_stats(
            &self,
            request: Request<ListPodSandboxStatsRequest>,
        ) -> Result<Response<ListPodSandboxStatsResponse>, Status> {
            let stats = CriServer::list_pod_sandbox_stats(self, request.into_inner().filter).await?;
            Ok(Response::new(ListPodSandboxStatsResponse { stats }))
        }

        async fn update_runtime_config(
            &self,
            request: Request<UpdateRuntimeConfigRequest>,
        ) -> Result<Response<UpdateRuntimeConfigResponse>, Status> {
            CriServer::update_runtime_config(self, request.into_inner()).await?;
            Ok(Response::new(UpdateRuntimeConfigResponse {}))
        }
    }
    pending {
        create_container(CreateContainerRequest) -> CreateContainerResponse = "CreateContainer", CONTAINERS;
        start_container(StartContainerRequest) -> StartContainerResponse = "StartContainer", CONTAINERS;
        stop_container(StopContainerRequest) -> StopContainerResponse = "StopContainer", CONTAINERS;
        remove_container(RemoveContainerRequest) -> RemoveContainerResponse = "RemoveContainer", CONTAINERS;
        list_containers(ListContainersRequest) -> ListContainersResponse = "ListContainers", CONTAINERS;
        container_status(ContainerStatusRequest) -> ContainerStatusResponse = "ContainerStatus", CONTAINERS;
        update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse = "UpdateContainerResources", CONTAINERS;
        reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse = "ReopenContainerLog", CONTAINERS;
        exec_sync(ExecSyncRequest) -> ExecSyncResponse = "ExecSync", CONTAINERS;
        exec(ExecRequest) -> ExecResponse = "Exec", STREAMING;
        attach(AttachRequest) -> AttachResponse = "Attach", STREAMING;
        port_forward(PortForwardRequest) -> PortForwardResponse = "PortForward", STREAMING;
        container_stats(ContainerStatsRequest) -> ContainerStatsResponse = "ContainerStats", STATS;
        list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse = "ListContainerStats", STATS;
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse = "CheckpointContainer", CHECKPOINT;
        checkpoint_pod(CheckpointPodRequest) -> CheckpointPodResponse = "CheckpointPod", CHECKPOINT;
        restore_pod(RestorePodRequest) -> RestorePodResponse = "RestorePod", CHECKPOINT;
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse = "ListMetricDescriptors", METRICS;
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse = "ListPodSandboxMetrics", METRICS;
        update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest) -> UpdatePodSandboxResourcesResponse = "UpdatePodSandboxResources", SANDBOXES;
    }
    pending_streams {
        StreamPodSandboxesStream, stream_pod_sandboxes(StreamPodSandboxesRequest) -> StreamPodSandboxesResponse = "StreamPodSandboxes", LIST_STREAMING;
        StreamContainersStream, stream_containers(StreamContainersRequest) -> StreamContainersResponse = "StreamContainers", LIST_STREAMING;
        StreamContainerStatsStream, stream_container_stats(StreamContainerStatsRequest) -> StreamContainerStatsResponse = "StreamContainerStats", LIST_STREAMING;
        StreamPodSandboxStatsStream, stream_pod_sandbox_stats(StreamPodSandboxStatsRequest) -> StreamPodSandboxStatsResponse = "StreamPodSandboxStats", LIST_STREAMING;
        StreamPodSandboxMetricsStream, stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest) -> StreamPodSandboxMetricsResponse = "StreamPodSandboxMetrics", METRICS;
        GetContainerEventsStream, get_container_events(GetEventsRequest) -> ContainerEventResponse = "GetContainerEvents", EVENTS;
    }
}
