//! Container stats inside pod stats, and the CRI metrics RPCs: what is read of each running
//! container (cgroup counters, writable layer, its file system) for ListPodSandboxStats and
//! ListPodSandboxMetrics.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::Status;

use super::CriServer;
use crate::container::record::{ContainerRecord, State};
use crate::cri::v1::*;
use crate::cri_metrics::{self, ContainerSample, PodIdentity};
use crate::ids::now_nanos;
use crate::sandbox::record::{SandboxRecord, SandboxState};
use crate::sandbox::stats::pod_interfaces;

impl CriServer {
    /// The running containers, by pod sandbox ID.
    pub(super) async fn running_containers_by_pod(
        &self,
    ) -> Result<HashMap<String, Vec<Arc<ContainerRecord>>>, Status> {
        let mut by_pod: HashMap<String, Vec<Arc<ContainerRecord>>> = HashMap::new();
        for record in self.containers().list().await? {
            if record.state == State::Running {
                by_pod
                    .entry(record.sandbox_id.clone())
                    .or_default()
                    .push(record);
            }
        }
        Ok(by_pod)
    }

    pub(super) async fn list_pod_sandbox_metrics(&self) -> Result<Vec<PodSandboxMetrics>, Status> {
        let mut by_pod = self.running_containers_by_pod().await?;
        let pods = self.sandboxes().list().await?;
        Ok(pods
            .iter()
            .filter(|pod| pod.state == SandboxState::Ready)
            .map(|pod| {
                let containers = by_pod.remove(&pod.id).unwrap_or_default();
                self.pod_metrics(pod, &containers)
            })
            .collect())
    }

    fn pod_metrics(
        &self,
        pod: &SandboxRecord,
        containers: &[Arc<ContainerRecord>],
    ) -> PodSandboxMetrics {
        let meta = pod.metadata();
        let identity = PodIdentity {
            name: &meta.name,
            namespace: &meta.namespace,
            sandbox_id: &pod.id,
        };
        let interfaces = (!pod.host_network() && pod.pause_pid > 0)
            .then(|| pod_interfaces(pod.pause_pid))
            .flatten()
            .unwrap_or_default();
        let names: Vec<String> = containers.iter().map(|c| c.name()).collect();
        let samples: Vec<ContainerSample> = containers
            .iter()
            .zip(&names)
            .map(|(c, name)| ContainerSample {
                name,
                id: &c.id,
                image: c
                    .config
                    .0
                    .image
                    .as_ref()
                    .map(|i| i.image.as_str())
                    .filter(|i| !i.is_empty())
                    .unwrap_or(&c.image_name),
                started_at_ns: c.started_at,
                cgroup: self.sandboxes().cgroup_stats(&c.cgroup).unwrap_or_default(),
                oom_kills: self
                    .sandboxes()
                    .cgroups()
                    .and_then(|cg| cg.oom_kills(&c.cgroup).ok())
                    .unwrap_or(0),
                writable_layer: crate::rootfs::usage::disk_usage(&c.dir.join("upper")),
                filesystem: filesystem_of(&c.dir),
                processes: cri_metrics::count_processes(
                    &self
                        .sandboxes()
                        .cgroups()
                        .and_then(|cg| cg.processes(&c.cgroup).ok())
                        .unwrap_or_default(),
                ),
            })
            .collect();
        cri_metrics::pod_metrics(&identity, &interfaces, &samples, now_nanos())
    }
}

/// (size in bytes, free inodes) of the file system holding `dir`.
fn filesystem_of(dir: &std::path::Path) -> Option<(u64, u64)> {
    let fs = rustix::fs::statvfs(dir).ok()?;
    Some((fs.f_blocks.saturating_mul(fs.f_frsize), fs.f_ffree))
}
