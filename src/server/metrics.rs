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

    /// The stats of one container, as ContainerStats and inside PodSandboxStats.
    pub(super) fn container_stats_message(&self, record: &ContainerRecord) -> ContainerStats {
        let timestamp = now_nanos();
        let value = |v: u64| Some(UInt64Value { value: v });
        let cgroup = self
            .sandboxes()
            .cgroup_stats(&record.cgroup)
            .unwrap_or_default();
        let (bytes, inodes) = crate::rootfs::usage::disk_usage(&record.dir.join("upper"));
        let limit = cgroup.limits.memory_bytes;
        ContainerStats {
            attributes: Some(ContainerAttributes {
                id: record.id.clone(),
                metadata: record.config.0.metadata.clone(),
                labels: record.config.0.labels.clone(),
                annotations: record.config.0.annotations.clone(),
            }),
            cpu: Some(CpuUsage {
                timestamp,
                usage_core_nano_seconds: value(cgroup.cpu_usage_ns),
                ..Default::default()
            }),
            memory: Some(MemoryUsage {
                timestamp,
                working_set_bytes: value(cgroup.memory_working_set_bytes),
                // What is left under the limit, as cAdvisor counts it; unset without a limit.
                available_bytes: (limit > 0)
                    .then(|| value(limit.saturating_sub(cgroup.memory_working_set_bytes)))
                    .flatten(),
                usage_bytes: value(cgroup.memory_usage_bytes),
                rss_bytes: value(cgroup.memory_rss_bytes),
                page_faults: value(cgroup.page_faults),
                major_page_faults: value(cgroup.major_page_faults),
                ..Default::default()
            }),
            writable_layer: Some(FilesystemUsage {
                timestamp,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: record.dir.display().to_string(),
                }),
                used_bytes: value(bytes),
                inodes_used: value(inodes),
            }),
            swap: Some(SwapUsage {
                timestamp,
                swap_usage_bytes: value(cgroup.swap_usage_bytes),
                swap_available_bytes: None,
            }),
            io: None,
        }
    }
}

/// (size in bytes, free inodes) of the file system holding `dir`.
fn filesystem_of(dir: &std::path::Path) -> Option<(u64, u64)> {
    let fs = rustix::fs::statvfs(dir).ok()?;
    Some((fs.f_blocks.saturating_mul(fs.f_frsize), fs.f_ffree))
}
