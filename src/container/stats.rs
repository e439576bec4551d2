//! ContainerStats: CPU and memory from the container's cgroup (`Cgroups::usage`, a handful of
//! small cgroupfs reads), the usage of its writable layer (kept between calls:
//! `layer_usage`). Pod stats, which hold these, are `sandbox/stats.rs`.

use std::path::PathBuf;
use std::sync::Arc;

use super::layer_usage::LayerUsage;
use super::record::ContainerRecord;
use super::service::Containers;
use crate::cri::v1::*;
use crate::ids::now_nanos;
use crate::sandbox::edges::CgroupDriver;

impl Containers {
    /// The stats of one container (ContainerStats).
    pub fn stats(&self, record: &ContainerRecord) -> ContainerStats {
        let (stats, stale) = read(self.cgroups.as_deref(), &self.layer_usage, record);
        self.layer_usage
            .refresh_in_background(stale.into_iter().collect());
        stats
    }

    /// The stats of many containers (ListContainerStats, ListPodSandboxStats), in their order,
    /// read off the async runtime by up to one thread per core.
    pub async fn stats_of(&self, records: Vec<Arc<ContainerRecord>>) -> Vec<ContainerStats> {
        let (cgroups, layers) = (self.cgroups.clone(), self.layer_usage.clone());
        let work = move || {
            let read = |r: &Arc<ContainerRecord>| read(cgroups.as_deref(), &layers, r);
            let (stats, stale): (Vec<_>, Vec<_>) =
                crate::parallel::map(&records, read).into_iter().unzip();
            layers.refresh_in_background(stale.into_iter().flatten().collect());
            stats
        };
        tokio::task::spawn_blocking(work).await.unwrap_or_default()
    }
}

/// The container's stats, and its layer to measure again when its figure is getting old.
fn read(
    cgroups: Option<&dyn CgroupDriver>,
    layers: &LayerUsage,
    record: &ContainerRecord,
) -> (ContainerStats, Option<(String, PathBuf)>) {
    let timestamp = now_nanos();
    let value = |v: u64| Some(UInt64Value { value: v });
    let cgroup = cgroups
        .and_then(|c| c.usage(&record.cgroup).ok())
        .unwrap_or_default();
    let upper = record.dir.join("upper");
    let (layer, stale) = layers.get(&record.id, &upper);
    let limit = cgroup.limits.memory_bytes;
    let stats = ContainerStats {
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
            // When it was measured, which may be a few seconds ago (`layer_usage`).
            timestamp: layer.measured_at,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: record.dir.display().to_string(),
            }),
            used_bytes: value(layer.bytes),
            inodes_used: value(layer.inodes),
        }),
        swap: Some(SwapUsage {
            timestamp,
            swap_usage_bytes: value(cgroup.swap_usage_bytes),
            swap_available_bytes: None,
        }),
        io: None,
    };
    (stats, stale.then(|| (record.id.clone(), upper)))
}
