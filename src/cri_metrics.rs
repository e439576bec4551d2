//! CRI metrics (ListMetricDescriptors, ListPodSandboxMetrics) under cAdvisor's names, which
//! the kubelet serves on `/metrics/cadvisor` with its `PodAndContainerStatsFromCRI` gate.
//!
//! The kubelet reads the descriptors once at start and drops any metric whose name it was not
//! told about or whose label values do not match the descriptor's keys in number, so every
//! metric built here comes from one `Family` of `FAMILIES`. Label keys and names follow
//! containerd 2.x: `pod, namespace, container, id, image`, then `interface` for network and
//! `device` for file systems; pod-level network series have an empty container and image
//! and the sandbox ID as `id`. Values are unsigned integers (the CRI's `UInt64Value`), so CPU
//! seconds are whole seconds, as containerd serves them.

use crate::cgroup::Stats;
use crate::cri::v1::{
    ContainerMetrics, Metric, MetricDescriptor, MetricType, PodSandboxMetrics, UInt64Value,
};

/// Which label keys follow the base ones.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Extra {
    None,
    Interface,
    Device,
    /// `container_memory_failures_total`: `failure_type`, `scope`.
    Failure,
}

pub struct Family {
    pub name: &'static str,
    help: &'static str,
    extra: Extra,
    kind: MetricType,
}

const BASE_LABELS: [&str; 5] = ["pod", "namespace", "container", "id", "image"];

macro_rules! families {
    ($($id:ident = $name:literal, $kind:ident, $extra:ident, $help:literal;)*) => {
        $(pub const $id: Family = Family {
            name: $name,
            help: $help,
            extra: Extra::$extra,
            kind: MetricType::$kind,
        };)*
        /// Every family served, in the order ListMetricDescriptors lists them.
        pub const FAMILIES: &[Family] = &[$($id),*];
    };
}

families! {
    CPU_USAGE = "container_cpu_usage_seconds_total", Counter, None, "CPU time used, user and system, in whole seconds.";
    CPU_USER = "container_cpu_user_seconds_total", Counter, None, "CPU time used in user mode, in whole seconds.";
    CPU_SYSTEM = "container_cpu_system_seconds_total", Counter, None, "CPU time used in kernel mode, in whole seconds.";
    CFS_PERIODS = "container_cpu_cfs_periods_total", Counter, None, "CFS bandwidth periods elapsed.";
    CFS_THROTTLED_PERIODS = "container_cpu_cfs_throttled_periods_total", Counter, None, "CFS bandwidth periods in which the container was throttled.";
    CFS_THROTTLED_SECONDS = "container_cpu_cfs_throttled_seconds_total", Counter, None, "Time the container spent throttled, in whole seconds.";
    MEMORY_USAGE = "container_memory_usage_bytes", Gauge, None, "Memory charged to the container, page cache included, in bytes.";
    MEMORY_WORKING_SET = "container_memory_working_set_bytes", Gauge, None, "Memory usage minus inactive file cache, in bytes.";
    MEMORY_RSS = "container_memory_rss", Gauge, None, "Anonymous memory of the container, in bytes.";
    MEMORY_CACHE = "container_memory_cache", Gauge, None, "Page cache charged to the container, in bytes.";
    MEMORY_MAPPED_FILE = "container_memory_mapped_file", Gauge, None, "Memory-mapped files of the container, in bytes.";
    MEMORY_KERNEL = "container_memory_kernel_usage", Gauge, None, "Kernel memory charged to the container, in bytes.";
    MEMORY_SWAP = "container_memory_swap", Gauge, None, "Swap used by the container, in bytes.";
    MEMORY_MAX_USAGE = "container_memory_max_usage_bytes", Gauge, None, "Highest memory usage seen, in bytes.";
    MEMORY_FAILCNT = "container_memory_failcnt", Counter, None, "Times memory usage reached the limit (cgroup v1 only).";
    MEMORY_ACTIVE_FILE = "container_memory_total_active_file_bytes", Gauge, None, "Active file cache of the container, in bytes.";
    MEMORY_INACTIVE_FILE = "container_memory_total_inactive_file_bytes", Gauge, None, "Inactive file cache of the container, in bytes.";
    MEMORY_FAILURES = "container_memory_failures_total", Counter, Failure, "Page faults in the container, by type.";
    OOM_EVENTS = "container_oom_events_total", Counter, None, "Processes of the container killed by the kernel's OOM killer.";
    NET_RX_BYTES = "container_network_receive_bytes_total", Counter, Interface, "Bytes received.";
    NET_RX_PACKETS = "container_network_receive_packets_total", Counter, Interface, "Packets received.";
    NET_RX_DROPPED = "container_network_receive_packets_dropped_total", Counter, Interface, "Packets dropped on receive.";
    NET_RX_ERRORS = "container_network_receive_errors_total", Counter, Interface, "Receive errors.";
    NET_TX_BYTES = "container_network_transmit_bytes_total", Counter, Interface, "Bytes sent.";
    NET_TX_PACKETS = "container_network_transmit_packets_total", Counter, Interface, "Packets sent.";
    NET_TX_DROPPED = "container_network_transmit_packets_dropped_total", Counter, Interface, "Packets dropped on send.";
    NET_TX_ERRORS = "container_network_transmit_errors_total", Counter, Interface, "Send errors.";
    FS_USAGE = "container_fs_usage_bytes", Gauge, Device, "Bytes held by the container's writable layer.";
    FS_LIMIT = "container_fs_limit_bytes", Gauge, Device, "Size of the file system holding the writable layer, in bytes.";
    FS_INODES = "container_fs_inodes_total", Gauge, Device, "Inodes held by the container's writable layer.";
    FS_INODES_FREE = "container_fs_inodes_free", Gauge, Device, "Free inodes on the file system holding the writable layer.";
    THREADS = "container_threads", Gauge, None, "Tasks (threads) in the container's cgroup.";
    PROCESSES = "container_processes", Gauge, None, "Processes in the container's cgroup.";
    FILE_DESCRIPTORS = "container_file_descriptors", Gauge, None, "Open file descriptors of the container's processes.";
    SOCKETS = "container_sockets", Gauge, None, "Open sockets of the container's processes.";
    THREADS_MAX = "container_threads_max", Gauge, None, "The container's task limit (pids.max), 0 when unlimited.";
    LAST_SEEN = "container_last_seen", Gauge, None, "When these metrics were read, in seconds since the epoch.";
    START_TIME = "container_start_time_seconds", Gauge, None, "When the container started, in seconds since the epoch.";
    SPEC_CPU_PERIOD = "container_spec_cpu_period", Gauge, None, "CFS period of the container, in microseconds.";
    SPEC_CPU_SHARES = "container_spec_cpu_shares", Gauge, None, "CPU shares of the container.";
    SPEC_MEMORY_LIMIT = "container_spec_memory_limit_bytes", Gauge, None, "Memory limit of the container in bytes, 0 when unlimited.";
    SPEC_MEMORY_RESERVATION = "container_spec_memory_reservation_limit_bytes", Gauge, None, "Memory soft limit of the container in bytes, 0 when none.";
    SPEC_MEMORY_SWAP_LIMIT = "container_spec_memory_swap_limit_bytes", Gauge, None, "Swap limit of the container in bytes (v1: memory + swap), 0 when none.";
}

impl Family {
    fn label_keys(&self) -> Vec<String> {
        let extra: &[&str] = match self.extra {
            Extra::None => &[],
            Extra::Interface => &["interface"],
            Extra::Device => &["device"],
            Extra::Failure => &["failure_type", "scope"],
        };
        BASE_LABELS
            .iter()
            .chain(extra)
            .map(|k| k.to_string())
            .collect()
    }
}

/// The answer of ListMetricDescriptors.
pub fn descriptors() -> Vec<MetricDescriptor> {
    FAMILIES
        .iter()
        .map(|f| MetricDescriptor {
            name: f.name.to_owned(),
            help: f.help.to_owned(),
            label_keys: f.label_keys(),
        })
        .collect()
}

/// Counters of one network interface (a line of /proc/net/dev).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Who a pod is, for its labels.
pub struct PodIdentity<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub sandbox_id: &'a str,
}

/// What is read of one running container.
pub struct ContainerSample<'a> {
    pub name: &'a str,
    pub id: &'a str,
    /// The image as the user named it.
    pub image: &'a str,
    pub started_at_ns: i64,
    pub cgroup: Stats,
    pub oom_kills: u64,
    /// (bytes, inodes) of the writable layer.
    pub writable_layer: (u64, u64),
    /// The file system under the writable layer: (size in bytes, free inodes).
    pub filesystem: Option<(u64, u64)>,
    pub processes: ProcessCounts,
}

/// Processes of a container and what they hold open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCounts {
    pub processes: u64,
    pub file_descriptors: u64,
    pub sockets: u64,
}

/// Counts the open descriptors and sockets of `pids` from /proc (a process that is gone or
/// unreadable counts as holding none).
pub fn count_processes(pids: &[i32]) -> ProcessCounts {
    let mut counts = ProcessCounts {
        processes: pids.len() as u64,
        ..Default::default()
    };
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            counts.file_descriptors += 1;
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            if target.to_string_lossy().starts_with("socket:") {
                counts.sockets += 1;
            }
        }
    }
    counts
}

/// Collects the metrics of one pod or container, which share their base labels.
struct Sink {
    metrics: Vec<Metric>,
    labels: Vec<String>,
    timestamp: i64,
}

impl Sink {
    fn new(labels: Vec<String>, timestamp: i64) -> Self {
        Sink {
            metrics: Vec::new(),
            labels,
            timestamp,
        }
    }

    fn push(&mut self, family: &Family, extra: &[&str], value: u64) {
        let mut label_values = self.labels.clone();
        label_values.extend(extra.iter().map(|v| v.to_string()));
        self.metrics.push(Metric {
            name: family.name.to_owned(),
            timestamp: self.timestamp,
            metric_type: family.kind as i32,
            label_values,
            value: Some(UInt64Value { value }),
        });
    }
}

const NS_PER_SECOND: u64 = 1_000_000_000;

/// The metrics of a pod: network counters at pod level (one series per interface), the rest
/// per container.
pub fn pod_metrics(
    pod: &PodIdentity,
    interfaces: &[InterfaceCounters],
    containers: &[ContainerSample],
    timestamp: i64,
) -> PodSandboxMetrics {
    let pod_labels = [pod.name, pod.namespace, "", pod.sandbox_id, ""];
    let mut sink = Sink::new(pod_labels.map(str::to_owned).to_vec(), timestamp);
    for i in interfaces {
        let name = [i.name.as_str()];
        sink.push(&NET_RX_BYTES, &name, i.rx_bytes);
        sink.push(&NET_RX_PACKETS, &name, i.rx_packets);
        sink.push(&NET_RX_DROPPED, &name, i.rx_dropped);
        sink.push(&NET_RX_ERRORS, &name, i.rx_errors);
        sink.push(&NET_TX_BYTES, &name, i.tx_bytes);
        sink.push(&NET_TX_PACKETS, &name, i.tx_packets);
        sink.push(&NET_TX_DROPPED, &name, i.tx_dropped);
        sink.push(&NET_TX_ERRORS, &name, i.tx_errors);
    }
    PodSandboxMetrics {
        pod_sandbox_id: pod.sandbox_id.to_owned(),
        metrics: sink.metrics,
        container_metrics: containers
            .iter()
            .map(|c| container_metrics(pod, c, timestamp))
            .collect(),
    }
}

fn container_metrics(pod: &PodIdentity, c: &ContainerSample, timestamp: i64) -> ContainerMetrics {
    let labels = [pod.name, pod.namespace, c.name, c.id, c.image];
    let mut sink = Sink::new(labels.map(str::to_owned).to_vec(), timestamp);
    let s = &c.cgroup;
    let seconds = |ns: u64| ns / NS_PER_SECOND;
    sink.push(&CPU_USAGE, &[], seconds(s.cpu_usage_ns));
    sink.push(&CPU_USER, &[], seconds(s.cpu_user_ns));
    sink.push(&CPU_SYSTEM, &[], seconds(s.cpu_system_ns));
    sink.push(&CFS_PERIODS, &[], s.cfs_periods);
    sink.push(&CFS_THROTTLED_PERIODS, &[], s.cfs_throttled_periods);
    sink.push(&CFS_THROTTLED_SECONDS, &[], seconds(s.cfs_throttled_ns));

    sink.push(&MEMORY_USAGE, &[], s.memory_usage_bytes);
    sink.push(&MEMORY_WORKING_SET, &[], s.memory_working_set_bytes);
    sink.push(&MEMORY_RSS, &[], s.memory_rss_bytes);
    sink.push(&MEMORY_CACHE, &[], s.memory_cache_bytes);
    sink.push(&MEMORY_MAPPED_FILE, &[], s.memory_mapped_file_bytes);
    sink.push(&MEMORY_KERNEL, &[], s.memory_kernel_bytes);
    sink.push(&MEMORY_SWAP, &[], s.swap_usage_bytes);
    sink.push(&MEMORY_MAX_USAGE, &[], s.memory_max_usage_bytes);
    sink.push(&MEMORY_FAILCNT, &[], s.memory_failcnt);
    sink.push(&MEMORY_ACTIVE_FILE, &[], s.memory_active_file_bytes);
    sink.push(&MEMORY_INACTIVE_FILE, &[], s.memory_inactive_file_bytes);
    // The counters are hierarchical (v1 total_*, v2 memory.stat), but a container's cgroup
    // has no child cgroups, so they are its own: scope "container", as containerd labels them.
    sink.push(&MEMORY_FAILURES, &["pgfault", "container"], s.page_faults);
    sink.push(
        &MEMORY_FAILURES,
        &["pgmajfault", "container"],
        s.major_page_faults,
    );
    sink.push(&OOM_EVENTS, &[], c.oom_kills);

    let (layer_bytes, layer_inodes) = c.writable_layer;
    sink.push(&FS_USAGE, &["/"], layer_bytes);
    sink.push(&FS_INODES, &["/"], layer_inodes);
    if let Some((size, inodes_free)) = c.filesystem {
        sink.push(&FS_LIMIT, &["/"], size);
        sink.push(&FS_INODES_FREE, &["/"], inodes_free);
    }

    sink.push(&THREADS, &[], s.pids);
    sink.push(&THREADS_MAX, &[], s.limits.pids);
    sink.push(&PROCESSES, &[], c.processes.processes);
    sink.push(&FILE_DESCRIPTORS, &[], c.processes.file_descriptors);
    sink.push(&SOCKETS, &[], c.processes.sockets);
    sink.push(&LAST_SEEN, &[], (timestamp.max(0) as u64) / NS_PER_SECOND);
    sink.push(
        &START_TIME,
        &[],
        (c.started_at_ns.max(0) as u64) / NS_PER_SECOND,
    );

    sink.push(&SPEC_CPU_PERIOD, &[], s.limits.cpu_period_us);
    sink.push(&SPEC_CPU_SHARES, &[], s.limits.cpu_shares);
    sink.push(&SPEC_MEMORY_LIMIT, &[], s.limits.memory_bytes);
    sink.push(
        &SPEC_MEMORY_RESERVATION,
        &[],
        s.limits.memory_reservation_bytes,
    );
    sink.push(&SPEC_MEMORY_SWAP_LIMIT, &[], s.limits.memory_swap_bytes);
    ContainerMetrics {
        container_id: c.id.to_owned(),
        metrics: sink.metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn sample(stats: Stats) -> ContainerSample<'static> {
        ContainerSample {
            name: "web",
            id: "c1",
            image: "docker.io/library/nginx:1",
            started_at_ns: 1_700_000_000_123_456_789,
            cgroup: stats,
            oom_kills: 2,
            writable_layer: (4096, 3),
            filesystem: Some((1 << 30, 1000)),
            processes: ProcessCounts::default(),
        }
    }

    const POD: PodIdentity = PodIdentity {
        name: "web-0",
        namespace: "default",
        sandbox_id: "s1",
    };

    fn eth0() -> InterfaceCounters {
        InterfaceCounters {
            name: "eth0".into(),
            rx_bytes: 10,
            rx_packets: 1,
            tx_bytes: 20,
            tx_packets: 2,
            ..Default::default()
        }
    }

    #[test]
    fn every_metric_matches_a_descriptor_in_name_and_label_count() {
        let descriptors: HashMap<String, usize> = descriptors()
            .into_iter()
            .map(|d| (d.name, d.label_keys.len()))
            .collect();
        assert_eq!(descriptors.len(), FAMILIES.len(), "a name twice");
        let m = pod_metrics(&POD, &[eth0()], &[sample(Stats::default())], 5);
        let all = m
            .metrics
            .iter()
            .chain(m.container_metrics.iter().flat_map(|c| &c.metrics));
        let mut served = HashSet::new();
        for metric in all {
            let keys = descriptors.get(&metric.name).expect(&metric.name);
            assert_eq!(*keys, metric.label_values.len(), "{}", metric.name);
            served.insert(metric.name.clone());
        }
        // Every family advertised is served by a pod with a network and a container.
        assert_eq!(served.len(), FAMILIES.len());
    }

    #[test]
    fn names_the_kubelet_e2e_reads_are_served() {
        let names: HashSet<String> = descriptors().into_iter().map(|d| d.name).collect();
        for n in [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
            "container_memory_usage_bytes",
            "container_memory_rss",
            "container_spec_memory_limit_bytes",
            "container_network_receive_bytes_total",
            "container_network_transmit_bytes_total",
            "container_fs_usage_bytes",
        ] {
            assert!(names.contains(n), "{n}");
        }
    }

    #[test]
    fn values_units_and_labels() {
        let mut stats = Stats {
            cpu_usage_ns: 2_999_999_999,
            memory_working_set_bytes: 7 << 20,
            ..Default::default()
        };
        stats.limits.memory_bytes = 64 << 20;
        let m = pod_metrics(&POD, &[eth0()], &[sample(stats)], 1_800_000_000_500_000_000);
        let find = |name: &str| {
            m.container_metrics[0]
                .metrics
                .iter()
                .find(|x| x.name == name)
                .unwrap()
                .clone()
        };
        let cpu = find("container_cpu_usage_seconds_total");
        assert_eq!(cpu.value.unwrap().value, 2, "whole seconds, truncated");
        assert_eq!(cpu.metric_type, MetricType::Counter as i32);
        assert_eq!(
            cpu.label_values,
            ["web-0", "default", "web", "c1", "docker.io/library/nginx:1"]
        );
        let ws = find("container_memory_working_set_bytes");
        assert_eq!(ws.value.unwrap().value, 7 << 20);
        assert_eq!(ws.metric_type, MetricType::Gauge as i32);
        assert_eq!(ws.timestamp, 1_800_000_000_500_000_000);
        assert_eq!(
            find("container_spec_memory_limit_bytes")
                .value
                .unwrap()
                .value,
            64 << 20
        );
        assert_eq!(
            find("container_start_time_seconds").value.unwrap().value,
            1_700_000_000
        );
        assert_eq!(
            find("container_last_seen").value.unwrap().value,
            1_800_000_000
        );
        assert_eq!(find("container_fs_usage_bytes").label_values[5], "/");
        let rx = &m.metrics[0];
        assert_eq!(rx.name, "container_network_receive_bytes_total");
        assert_eq!(rx.label_values, ["web-0", "default", "", "s1", "", "eth0"]);
        assert_eq!(rx.value.unwrap().value, 10);
        let faults: Vec<_> = m.container_metrics[0]
            .metrics
            .iter()
            .filter(|x| x.name == "container_memory_failures_total")
            .map(|x| x.label_values[5..].join(","))
            .collect();
        assert_eq!(faults, ["pgfault,container", "pgmajfault,container"]);
    }

    #[test]
    fn counts_this_process_fds_and_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let after = count_processes(&[std::process::id() as i32]);
        assert_eq!(after.processes, 1);
        // Other tests of this binary open and close files meanwhile: at least ours are there.
        assert!(after.sockets >= 1, "{after:?}");
        assert!(after.file_descriptors >= 2, "{after:?}");
        drop((listener, file));
        assert_eq!(
            count_processes(&[i32::MAX]).file_descriptors,
            0,
            "no such process"
        );
    }

    #[test]
    fn host_network_pod_has_no_pod_level_series() {
        let m = pod_metrics(&POD, &[], &[], 1);
        assert!(m.metrics.is_empty());
        assert!(m.container_metrics.is_empty());
        assert_eq!(m.pod_sandbox_id, "s1");
    }
}
