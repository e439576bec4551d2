//! PodSandboxStats: CPU, memory and process counts from the pod's cgroup, network counters
//! from the pod's network namespace (read through the pause's /proc/<pid>/net/dev). The
//! kernel's figures are read first (`Readings`, for many pods in parallel), then the message
//! is built from them and the record.

use super::record::SandboxRecord;
use super::service::Sandboxes;
use crate::cgroup::{Cgroups, Stats};
use crate::cri::v1::*;
use crate::cri_metrics::InterfaceCounters;
use crate::ids::now_nanos;

fn value(v: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value: v })
}

/// What the kernel tells of a pod: its cgroup's counters and its network's interfaces.
pub struct Readings {
    timestamp: i64,
    cgroup: Option<Stats>,
    interfaces: Option<Vec<InterfaceCounters>>,
}

/// Reads the kernel's figures of a pod (blocking: cgroupfs and /proc reads).
fn read(cgroups: Option<&Cgroups>, cgroup: &str, pause_pid: Option<i32>) -> Readings {
    Readings {
        timestamp: now_nanos(),
        cgroup: cgroups.and_then(|c| c.usage_and_pids(cgroup).ok()),
        interfaces: pause_pid.and_then(pod_interfaces),
    }
}

/// The pause whose network namespace counts (none for a host-network pod).
fn network_pid(record: &SandboxRecord) -> Option<i32> {
    (!record.host_network() && record.pause_pid > 0).then_some(record.pause_pid)
}

/// The readings of one pod (PodSandboxStats).
pub fn read_one(sandboxes: &Sandboxes, record: &SandboxRecord) -> Readings {
    read(
        sandboxes.cgroups().as_deref(),
        &record.cgroup,
        network_pid(record),
    )
}

/// The readings of many pods (ListPodSandboxStats), in their order, read off the async
/// runtime by up to one thread per core.
pub async fn read_many(sandboxes: &Sandboxes, records: &[&SandboxRecord]) -> Vec<Readings> {
    let cgroups = sandboxes.cgroups();
    let pods: Vec<(String, Option<i32>)> = records
        .iter()
        .map(|r| (r.cgroup.clone(), network_pid(r)))
        .collect();
    let work = move || {
        crate::parallel::map(&pods, |(cgroup, pid)| {
            read(cgroups.as_deref(), cgroup, *pid)
        })
    };
    tokio::task::spawn_blocking(work).await.unwrap_or_default()
}

/// The stats of a pod from its readings; `containers` are the stats of its running
/// containers.
pub fn pod_stats(
    record: &SandboxRecord,
    readings: Readings,
    containers: Vec<ContainerStats>,
) -> PodSandboxStats {
    let timestamp = readings.timestamp;
    let (cpu, memory, process) = match readings.cgroup {
        Some(s) => (
            Some(CpuUsage {
                timestamp,
                usage_core_nano_seconds: value(s.cpu_usage_ns),
                ..Default::default()
            }),
            Some(MemoryUsage {
                timestamp,
                working_set_bytes: value(s.memory_working_set_bytes),
                usage_bytes: value(s.memory_usage_bytes),
                rss_bytes: value(s.memory_rss_bytes),
                page_faults: value(s.page_faults),
                major_page_faults: value(s.major_page_faults),
                ..Default::default()
            }),
            Some(ProcessUsage {
                timestamp,
                process_count: value(s.pids),
            }),
        ),
        None => (None, None, None),
    };
    let network = readings
        .interfaces
        .map(|interfaces| network_usage(interfaces, timestamp));
    let meta = record.metadata();
    PodSandboxStats {
        attributes: Some(PodSandboxAttributes {
            id: record.id.clone(),
            metadata: Some(meta),
            labels: record.config.0.labels.clone(),
            annotations: record.config.0.annotations.clone(),
        }),
        linux: Some(LinuxPodSandboxStats {
            cpu,
            memory,
            network,
            process,
            containers,
            io: None,
        }),
        windows: None,
    }
}

/// Interface counters of the pause's network namespace; eth0 is the default interface.
fn network_usage(interfaces: Vec<InterfaceCounters>, timestamp: i64) -> NetworkUsage {
    let interfaces: Vec<NetworkInterfaceUsage> = interfaces
        .into_iter()
        .map(|i| NetworkInterfaceUsage {
            name: i.name,
            rx_bytes: value(i.rx_bytes),
            rx_errors: value(i.rx_errors),
            tx_bytes: value(i.tx_bytes),
            tx_errors: value(i.tx_errors),
        })
        .collect();
    let default_interface = interfaces.iter().find(|i| i.name == "eth0").cloned();
    NetworkUsage {
        timestamp,
        default_interface,
        interfaces,
    }
}

/// The counters of the interfaces of `pid`'s network namespace but loopback; None when the
/// process is gone.
pub fn pod_interfaces(pid: i32) -> Option<Vec<InterfaceCounters>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    Some(
        parse_net_dev(&text)
            .into_iter()
            .filter(|i| i.name != "lo")
            .collect(),
    )
}

/// Parses /proc/net/dev: after `name:` come 8 receive counters (bytes packets errs drop fifo
/// frame compressed multicast) then 8 transmit ones (bytes packets errs drop ...).
fn parse_net_dev(text: &str) -> Vec<InterfaceCounters> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let n: Vec<u64> = counters
                .split_whitespace()
                .map(|c| c.parse().unwrap_or(0))
                .collect();
            (n.len() >= 16).then(|| InterfaceCounters {
                name: name.trim().to_owned(),
                rx_bytes: n[0],
                rx_packets: n[1],
                rx_errors: n[2],
                rx_dropped: n[3],
                tx_bytes: n[8],
                tx_packets: n[9],
                tx_errors: n[10],
                tx_dropped: n[11],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_parsing() {
        let text = "Inter-|   Receive                            |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    2048      10    1    0    0     0          0         0     4096      20    2    0    0     0       0          0\n";
        let parsed = parse_net_dev(text);
        assert_eq!(parsed.len(), 2);
        let eth0 = &parsed[1];
        assert_eq!(eth0.name, "eth0");
        assert_eq!((eth0.rx_bytes, eth0.rx_packets), (2048, 10));
        assert_eq!((eth0.rx_errors, eth0.rx_dropped), (1, 0));
        assert_eq!((eth0.tx_bytes, eth0.tx_packets), (4096, 20));
        assert_eq!((eth0.tx_errors, eth0.tx_dropped), (2, 0));
    }

    #[test]
    fn this_hosts_net_dev_parses() {
        let text = std::fs::read_to_string("/proc/self/net/dev").unwrap();
        let parsed = parse_net_dev(&text);
        assert!(parsed.iter().any(|i| i.name == "lo"), "{text}");
        assert_eq!(parsed.len(), text.lines().count() - 2);
    }
}
