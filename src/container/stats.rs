//! ContainerStats: CPU and memory from the container's cgroup, the usage of its writable
//! layer. Pod stats, which hold these, are `sandbox/stats.rs`.

use std::sync::Arc;

use super::record::ContainerRecord;
use crate::cgroup::Cgroups;
use crate::cri::v1::*;
use crate::ids::now_nanos;
use crate::sandbox::service::Sandboxes;

/// Below this many containers one thread reads them all.
const PER_THREAD: usize = 32;

/// The stats of one container, as ContainerStats and inside PodSandboxStats.
pub fn container_stats(sandboxes: &Sandboxes, record: &ContainerRecord) -> ContainerStats {
    read(sandboxes.cgroups().as_deref(), record)
}

/// The stats of many containers (ListContainerStats), in their order, read off the async
/// runtime by up to one thread per core: each is a handful of small cgroupfs reads
/// (`Cgroups::usage`) and a walk of the writable layer.
pub async fn many(
    sandboxes: &Sandboxes,
    records: Vec<Arc<ContainerRecord>>,
) -> Vec<ContainerStats> {
    let cgroups = sandboxes.cgroups();
    let work = move || {
        let cgroups = cgroups.as_deref();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = records.len().div_ceil(PER_THREAD).clamp(1, cores);
        if threads == 1 {
            return records.iter().map(|r| read(cgroups, r)).collect();
        }
        let chunk = records.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = records
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || part.iter().map(|r| read(cgroups, r)).collect::<Vec<_>>())
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|part| part.join().unwrap_or_default())
                .collect()
        })
    };
    tokio::task::spawn_blocking(work).await.unwrap_or_default()
}

fn read(cgroups: Option<&Cgroups>, record: &ContainerRecord) -> ContainerStats {
    let timestamp = now_nanos();
    let value = |v: u64| Some(UInt64Value { value: v });
    let cgroup = cgroups
        .and_then(|c| c.usage(&record.cgroup).ok())
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
