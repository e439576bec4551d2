//! The gauges the `/metrics` endpoint reads at each scrape: pods, containers and live
//! monitors by state, from the daemon's records (see `prometheus/endpoint.rs`).

use std::sync::Arc;

use futures::FutureExt;

use crate::container::record::State as ContainerState;
use crate::container::service::Containers;
use crate::prometheus::endpoint::Refresh;
use crate::prometheus::{StateLabels, metrics};
use crate::sandbox::record::{SandboxRecord, SandboxState};
use crate::sandbox::service::Sandboxes;

/// Where the gauges come from.
#[derive(Clone)]
pub struct Sources {
    pub sandboxes: Arc<Sandboxes>,
    pub containers: Arc<Containers>,
}

impl Sources {
    /// The endpoint's refresh: reads these sources.
    pub fn into_refresh(self) -> Refresh {
        Arc::new(move || {
            let sources = self.clone();
            async move { refresh(&sources).await }.boxed()
        })
    }
}

/// Sets the gauges of pods, containers and monitors from the daemon's records.
async fn refresh(sources: &Sources) {
    let m = metrics();
    if let Ok(pods) = sources.sandboxes.list().await {
        for (state, label) in [
            (SandboxState::Creating, "creating"),
            (SandboxState::Ready, "ready"),
            (SandboxState::NotReady, "notready"),
        ] {
            let count = pods.iter().filter(|p| p.state == state).count();
            m.pods
                .get_or_create(&StateLabels { state: label })
                .set(count as i64);
        }
        let (monitors, rss) = monitors_alive(&pods);
        m.monitors.set(monitors);
        m.monitor_rss.set(rss);
    }
    if let Ok(containers) = sources.containers.list().await {
        for (state, label) in [
            (ContainerState::Creating, "creating"),
            (ContainerState::Created, "created"),
            (ContainerState::Running, "running"),
            (ContainerState::Exited, "exited"),
        ] {
            let count = containers.iter().filter(|c| c.state == state).count();
            m.containers
                .get_or_create(&StateLabels { state: label })
                .set(count as i64);
        }
    }
}

/// The monitors of ready pods still running, and their resident memory in bytes together.
fn monitors_alive(pods: &[SandboxRecord]) -> (i64, i64) {
    let mut count = 0;
    let mut rss = 0;
    for pod in pods.iter().filter(|p| p.state == SandboxState::Ready) {
        if let Some(bytes) = monitor_rss(pod.monitor_pid) {
            count += 1;
            rss += bytes;
        }
    }
    (count, rss)
}

/// VmRSS of `pid` if it is a ferrocri monitor (a reused pid is someone else).
fn monitor_rss(pid: i32) -> Option<i64> {
    if pid <= 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut is_monitor = false;
    let mut rss = None;
    for line in status.lines() {
        if let Some(name) = line.strip_prefix("Name:") {
            is_monitor = name.trim() == crate::monitor::title::MONITOR_COMM;
        } else if let Some(value) = line.strip_prefix("VmRSS:") {
            let kib = value.trim().trim_end_matches("kB").trim();
            rss = kib.parse::<i64>().ok().map(|k| k * 1024);
        }
    }
    if is_monitor { rss } else { None }
}
