//! Pod benchmark client (run by hack/bench-pods.sh against a release daemon): times pod up
//! (RunPodSandbox + CreateContainer + StartContainer of busybox, image present) and pod down
//! (StopPodSandbox + RemovePodSandbox) over N pods, and measures the memory of the daemon and
//! of each pod's monitor and pause. Prints figures; asserts nothing.
//!
//!   bench_pods <socket> <daemon pid> [pods]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::{Runtime, pss_kib, report, rss_kib, stop_remove};
use ferrocri::cri::v1::*;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let socket = PathBuf::from(
        args.get(1)
            .ok_or("usage: bench_pods <socket> <daemon pid> [pods]")?,
    );
    let daemon_pid: u32 = args.get(2).ok_or("daemon pid missing")?.parse()?;
    let pods: usize = args.get(3).map(|n| n.parse()).transpose()?.unwrap_or(50);
    let mut client = common::connect(socket).await?;

    let idle_rss = rss_kib(daemon_pid);
    // One pod first so that lazy start-up work does not count.
    let warm = pod_up(&mut client, usize::MAX).await?;
    stop_remove(&mut client, &warm).await?;

    let mut up = Vec::new();
    let mut ids = Vec::new();
    for i in 0..pods {
        let started = Instant::now();
        let id = pod_up(&mut client, i).await?;
        up.push(started.elapsed());
        ids.push(id);
    }
    let loaded_rss = rss_kib(daemon_pid);
    let mut monitor_pss = Vec::new();
    let mut pause_pss = Vec::new();
    for id in &ids {
        let status = client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await?
            .into_inner();
        let info: serde_json::Value = serde_json::from_str(&status.info["info"])?;
        monitor_pss.push(pss_kib(info["monitorPid"].as_u64().unwrap_or(0)));
        pause_pss.push(pss_kib(info["pid"].as_u64().unwrap_or(0)));
    }
    let mut down = Vec::new();
    for id in &ids {
        let started = Instant::now();
        stop_remove(&mut client, id).await?;
        down.push(started.elapsed());
    }

    println!("pods: {pods}");
    report(
        "pod up (RunPodSandbox + CreateContainer + StartContainer)",
        &mut up,
    );
    report("pod down (StopPodSandbox + RemovePodSandbox)", &mut down);
    let avg = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
    println!(
        "per pod PSS: monitor {:.0} KiB + pause {:.0} KiB = {:.0} KiB",
        avg(&monitor_pss),
        avg(&pause_pss),
        avg(&monitor_pss) + avg(&pause_pss)
    );
    println!("daemon RSS: idle {idle_rss} KiB, with {pods} pods {loaded_rss} KiB");
    Ok(())
}

/// One pod with one running busybox container; returns the pod ID.
async fn pod_up(client: &mut Runtime, i: usize) -> Result<String, tonic::Status> {
    let (id, config) = common::run_pod(client, i).await?;
    let container =
        common::create_busybox(client, &id, config, "sleep", &["sleep", "3600"]).await?;
    common::start(client, container).await?;
    Ok(id)
}
