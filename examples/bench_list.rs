//! List benchmark client (run by hack/bench-list.sh against a release daemon): fills the
//! daemon with pods of busybox containers — most running `sleep 3600`, some created and never
//! started, one per pod exited (with one container per pod, it runs) — then times
//! ListContainers (no filter, and filtered by pod), StreamContainers (every page),
//! ListPodSandbox, ListContainerStats and ListPodSandboxStats, and removes everything. Prints
//! figures; asserts nothing.
//!
//!   bench_list <socket> <daemon pid> [pods] [containers per pod] [calls]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Runtime, report, rss_kib, stop_remove};
use ferrocri::cri::v1::*;
use futures::{StreamExt, TryStreamExt};

/// Pods set up or torn down at once: enough to keep both cores busy.
const PARALLEL: usize = 4;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let socket = PathBuf::from(
        args.get(1)
            .ok_or("usage: bench_list <socket> <daemon pid> [pods] [containers per pod] [calls]")?,
    );
    let daemon_pid: u32 = args.get(2).ok_or("daemon pid missing")?.parse()?;
    let arg = |i: usize, default: usize| -> Result<usize, std::num::ParseIntError> {
        args.get(i)
            .map(|n| n.parse())
            .transpose()
            .map(|n| n.unwrap_or(default))
    };
    let (pods, per_pod, calls) = (arg(3, 20)?, arg(4, 50)?, arg(5, 200)?);
    let client = common::connect(socket).await?;
    let idle_rss = rss_kib(daemon_pid);

    let started = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..pods)
        .map(|i| fill_pod(client.clone(), i, per_pod))
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
    let setup = started.elapsed();
    let loaded_rss = rss_kib(daemon_pid);

    let mut c = client.clone();
    let all = c
        .list_containers(ListContainersRequest::default())
        .await?
        .into_inner()
        .containers;
    let count = |s: ContainerState| all.iter().filter(|x| x.state == s as i32).count();
    println!(
        "{pods} pods x {per_pod} containers in {:.0} s: {} listed, {} running, {} created, {} exited",
        setup.as_secs_f64(),
        all.len(),
        count(ContainerState::ContainerRunning),
        count(ContainerState::ContainerCreated),
        count(ContainerState::ContainerExited),
    );

    let mut unfiltered = time(calls, |_| {
        let mut c = client.clone();
        async move {
            c.list_containers(ListContainersRequest::default()).await?;
            Ok(())
        }
    })
    .await?;
    report("ListContainers, no filter", &mut unfiltered);
    let mut streamed = time(calls, |_| {
        let mut c = client.clone();
        async move {
            let mut pages = c
                .stream_containers(StreamContainersRequest::default())
                .await?
                .into_inner();
            while pages.message().await?.is_some() {}
            Ok(())
        }
    })
    .await?;
    report("StreamContainers, no filter (all pages)", &mut streamed);
    let mut by_pod = time(calls, |i| {
        let mut c = client.clone();
        let filter = ContainerFilter {
            pod_sandbox_id: ids[i % ids.len()].clone(),
            ..Default::default()
        };
        async move {
            c.list_containers(ListContainersRequest {
                filter: Some(filter),
            })
            .await?;
            Ok(())
        }
    })
    .await?;
    report("ListContainers, pod_sandbox_id filter", &mut by_pod);
    let mut sandboxes = time(calls, |_| {
        let mut c = client.clone();
        async move {
            c.list_pod_sandbox(ListPodSandboxRequest::default()).await?;
            Ok(())
        }
    })
    .await?;
    report("ListPodSandbox, no filter", &mut sandboxes);
    let ticks = common::cpu_ticks(daemon_pid);
    let mut container_stats = time(calls, |_| {
        let mut c = client.clone();
        async move {
            c.list_container_stats(ListContainerStatsRequest::default())
                .await?;
            Ok(())
        }
    })
    .await?;
    report("ListContainerStats, no filter", &mut container_stats);
    cpu_per_call("ListContainerStats", ticks, daemon_pid, calls);
    let ticks = common::cpu_ticks(daemon_pid);
    let mut pod_stats = time(calls, |_| {
        let mut c = client.clone();
        async move {
            c.list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
                .await?;
            Ok(())
        }
    })
    .await?;
    report("ListPodSandboxStats, no filter", &mut pod_stats);
    cpu_per_call("ListPodSandboxStats", ticks, daemon_pid, calls);
    println!("daemon RSS: idle {idle_rss} KiB, loaded {loaded_rss} KiB");

    let started = Instant::now();
    futures::stream::iter(ids)
        .map(|id| {
            let mut c = client.clone();
            async move { stop_remove(&mut c, &id).await }
        })
        .buffer_unordered(PARALLEL)
        .try_collect::<()>()
        .await?;
    println!("teardown: {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Pod `i` with `n` busybox containers: a tenth created and never started, one that has
/// exited (code 3) when there are several, the rest running `sleep 3600`. Returns the pod ID.
async fn fill_pod(mut client: Runtime, i: usize, n: usize) -> Result<String, tonic::Status> {
    let (pod, config) = common::run_pod(&mut client, i).await?;
    let created = n / 10;
    for j in 0..n {
        let exits = n > 1 && j + 1 == n;
        let command: &[&str] = if exits {
            &["sh", "-c", "exit 3"]
        } else {
            &["sleep", "3600"]
        };
        let name = format!("c{j}");
        let id = common::create_busybox(&mut client, &pod, config.clone(), &name, command).await?;
        if exits || j >= created {
            common::start(&mut client, id).await?;
        }
    }
    Ok(pod)
}

/// The daemon's CPU time per call since `ticks` (the `calls` timed and ten untimed calls):
/// what a call costs whatever else the machine runs, unlike its latency.
fn cpu_per_call(what: &str, ticks: u64, daemon_pid: u32, calls: usize) {
    let used = common::cpu_ticks(daemon_pid).saturating_sub(ticks);
    println!(
        "{what}: daemon CPU {:.2} ms per call",
        used as f64 * 10.0 / (calls + 10) as f64
    );
}

/// `calls` timed calls after ten untimed ones (connection and caches warm).
async fn time<F, Fut>(calls: usize, mut call: F) -> Result<Vec<Duration>, tonic::Status>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    for i in 0..10 {
        call(i).await?;
    }
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls {
        let started = Instant::now();
        call(i).await?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}
