//! PodSandboxStats: CPU, memory and process counts from the pod's cgroup, network counters
//! from the pod's network namespace (read through the pause's /proc/<pid>/net/dev).

use crate::cri::v1::*;

use super::record::SandboxRecord;
use super::service::{Sandboxes, now_nanos};

fn value(v: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value: v })
}

pub fn pod_stats(sandboxes: &Sandboxes, record: &SandboxRecord) -> PodSandboxStats {
    let timestamp = now_nanos();
    let cgroup = sandboxes.cgroup_stats(&record.cgroup);
    let (cpu, memory, process) = match cgroup {
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
    let network = (!record.host_network() && record.pause_pid > 0)
        .then(|| network_usage(record.pause_pid, timestamp))
        .flatten();
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
            containers: Vec::new(),
            io: None,
        }),
        windows: None,
    }
}

/// Interface counters of the pause's network namespace; eth0 is the default interface.
fn network_usage(pid: i32, timestamp: i64) -> Option<NetworkUsage> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    let interfaces: Vec<NetworkInterfaceUsage> = parse_net_dev(&text)
        .into_iter()
        .filter(|i| i.name != "lo")
        .collect();
    let default_interface = interfaces.iter().find(|i| i.name == "eth0").cloned();
    Some(NetworkUsage {
        timestamp,
        default_interface,
        interfaces,
    })
}

/// Parses /proc/net/dev: after `name:` come 8 receive then 8 transmit counters.
fn parse_net_dev(text: &str) -> Vec<NetworkInterfaceUsage> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let n: Vec<u64> = counters
                .split_whitespace()
                .map(|c| c.parse().unwrap_or(0))
                .collect();
            (n.len() >= 16).then(|| NetworkInterfaceUsage {
                name: name.trim().to_owned(),
                rx_bytes: value(n[0]),
                rx_errors: value(n[2]),
                tx_bytes: value(n[8]),
                tx_errors: value(n[10]),
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
        assert_eq!(eth0.rx_bytes, value(2048));
        assert_eq!(eth0.rx_errors, value(1));
        assert_eq!(eth0.tx_bytes, value(4096));
        assert_eq!(eth0.tx_errors, value(2));
    }
}
