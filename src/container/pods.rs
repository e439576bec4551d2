//! What spans a pod and its containers: RunPodSandbox's container-side bookkeeping (exit
//! watch, events), StopPodSandbox and RemovePodSandbox (the containers first, then the pod),
//! and the per-pod lock under which a pod and its containers are stopped, removed or
//! updated one operation at a time.

use std::sync::Arc;

use tokio::sync::OwnedMutexGuard;

use super::service::{ContainerError, Containers};
use crate::cri::v1::{ContainerEventType, LinuxContainerResources, PodSandboxConfig};
use crate::keyed_lock::KeyedLocks;
use crate::sandbox::record::SandboxState;
use crate::sandbox::service::{SandboxError, Sandboxes};

/// A failure of an operation on a pod and its containers: whichever side failed.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Container(#[from] ContainerError),
}

pub struct Pods {
    sandboxes: Arc<Sandboxes>,
    containers: Arc<Containers>,
    /// Stop, Remove and UpdateResources of one pod, and Stop and Remove of its containers,
    /// run one at a time.
    locks: KeyedLocks,
}

impl Pods {
    pub fn new(sandboxes: Arc<Sandboxes>, containers: Arc<Containers>) -> Pods {
        Pods {
            sandboxes,
            containers,
            locks: KeyedLocks::default(),
        }
    }

    /// Holds off other Stop and Remove calls on the pod `sandbox_id` (a full ID).
    async fn lock(&self, sandbox_id: &str) -> OwnedMutexGuard<()> {
        self.locks.lock(sandbox_id).await
    }

    /// RunPodSandbox: the pod, then its folder watched for container exits and the pod's
    /// created and started events.
    pub async fn run(
        &self,
        config: PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String, SandboxError> {
        let id = self.sandboxes.run(config, runtime_handler).await?;
        if let Some(pod) = self.sandboxes.find(&id).await? {
            self.containers.watch_pod(&pod).await;
            for kind in [
                ContainerEventType::ContainerCreatedEvent,
                ContainerEventType::ContainerStartedEvent,
            ] {
                self.containers.publish_pod(kind, &pod).await;
            }
        }
        Ok(id)
    }

    /// StopPodSandbox: stops the pod's containers (kubelet normally has, with their grace
    /// periods; what is left is killed) and then the pod. An unknown ID is fine.
    pub async fn stop(&self, id: &str) -> Result<(), PodError> {
        let Some(pod) = self.sandboxes.find(id).await? else {
            return Ok(());
        };
        let _one_at_a_time = self.lock(&pod.id).await;
        // The containers are killed while the pod comes off its network (CNI DEL is the
        // slow part); the monitor's shutdown would kill them too, and records each exit.
        let containers = self.containers.of_sandbox(&pod.id).await?;
        let stop_containers = futures::future::try_join_all(
            containers
                .iter()
                .map(|container| self.containers.stop(&container.id, 0)),
        );
        let (containers, stopped) = tokio::join!(stop_containers, self.sandboxes.stop(&pod.id));
        containers?;
        stopped?;
        if pod.state == SandboxState::Ready
            && let Some(pod) = self.sandboxes.find(&pod.id).await?
        {
            let stopped = ContainerEventType::ContainerStoppedEvent;
            self.containers.publish_pod(stopped, &pod).await;
        }
        Ok(())
    }

    /// RemovePodSandbox: removes the pod's containers, then the pod. An unknown ID is fine.
    pub async fn remove(&self, id: &str) -> Result<(), PodError> {
        let Some(pod) = self.sandboxes.find(id).await? else {
            return Ok(());
        };
        let _one_at_a_time = self.lock(&pod.id).await;
        for container in self.containers.of_sandbox(&pod.id).await? {
            self.containers.remove(&container.id).await?;
        }
        self.sandboxes.remove(&pod.id).await?;
        let deleted = ContainerEventType::ContainerDeletedEvent;
        self.containers.publish_pod(deleted, &pod).await;
        Ok(())
    }

    /// UpdatePodSandboxResources, under the pod's lock (so a Stop cannot be undone by it).
    pub async fn update_resources(
        &self,
        id: &str,
        overhead: Option<LinuxContainerResources>,
        resources: Option<LinuxContainerResources>,
    ) -> Result<(), SandboxError> {
        let pod = self
            .sandboxes
            .find(id)
            .await?
            .ok_or_else(|| SandboxError::NotFound(id.to_owned()))?;
        let _one_at_a_time = self.lock(&pod.id).await;
        self.sandboxes
            .update_resources(&pod.id, overhead, resources)
            .await
    }

    /// StopContainer, under its pod's lock.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), ContainerError> {
        let _one_at_a_time = self.lock_pod_of(id).await?;
        self.containers.stop(id, timeout).await
    }

    /// RemoveContainer, under its pod's lock.
    pub async fn remove_container(&self, id: &str) -> Result<(), ContainerError> {
        let _one_at_a_time = self.lock_pod_of(id).await?;
        self.containers.remove(id).await
    }

    /// The lock of the container's pod (None for an unknown container: nothing to guard).
    async fn lock_pod_of(&self, id: &str) -> Result<Option<OwnedMutexGuard<()>>, ContainerError> {
        match self.containers.status(id).await {
            Ok(record) => Ok(Some(self.lock(&record.sandbox_id).await)),
            Err(e) if matches!(e.root(), ContainerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
