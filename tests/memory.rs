//! Bounded memory: the real daemon under a mixed load of large requests (pods with 256 KiB of
//! annotations, containers with up to 12 MiB of environment, requests over the 16 MiB limit,
//! lists) from several connections at once gives its memory back once everything is removed.
//! With glibc's malloc the same load left the daemon ~450 MiB above idle (freed memory kept in
//! per-thread arenas); see ARCHITECTURE.md, "Memory". Needs the local registry (busybox).

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::time::{Duration, Instant};

use common::pods::*;
use ctr::*;
use ferrocri::cri::v1::*;
use tonic::Code;

/// How far above its idle RSS the daemon may stay once everything is removed (the issue's
/// bound; what remains is SQLite's page cache and the stacks of idle blocking-pool threads,
/// which tokio ends after 10 s).
const SLACK_MIB: f64 = 10.0;

/// Anonymous resident memory: the heap and stacks, not the pages of the binary, which grow
/// as code runs for the first time and are shared with every other process that maps it.
fn rss_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("RssAnon");
    kib / 1024.0
}

/// `bytes` of environment in 64 KiB values (each under the kernel's 128 KiB per string).
fn big_env(bytes: usize) -> Vec<KeyValue> {
    (0..bytes / 65536)
        .map(|i| KeyValue {
            key: format!("BIG_{i}"),
            value: vec![b'v'; 65536 - 16],
        })
        .collect()
}

async fn one_pod(env: &PodEnv, worker: usize, round: usize) {
    let mut rt = env.daemon.runtime().await;
    let name = format!("mem-{worker}-{round}");
    let mut pod = pod_config(&name, "mem-ns", &name, 0);
    // 64 × 4 KiB: the 256 KiB Kubernetes allows for a pod's annotations.
    pod.annotations = (0..63)
        .map(|i| (format!("mem/a{i}"), "x".repeat(4000)))
        .collect();
    let pod_id = run_pod(env, &mut rt, pod.clone()).await;
    for c in 0..2 {
        // 1 MiB runs (under execve's limit); 12 MiB is refused at some point, never kept.
        let size = if (worker + round + c).is_multiple_of(3) {
            12 << 20
        } else {
            1 << 20
        };
        let mut config = busybox_config(&format!("c{c}"), &["sleep", "3600"], false);
        config.envs = big_env(size);
        let created = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.clone()),
            })
            .await;
        if let Ok(resp) = created {
            let id = resp.into_inner().container_id;
            env.note(&id);
            let _ = rt
                .start_container(StartContainerRequest { container_id: id })
                .await;
        }
        rt.list_containers(ListContainersRequest::default())
            .await
            .expect("ListContainers");
    }
    // Over the 16 MiB message limit: refused before any handler, as a bad request.
    let mut config = busybox_config("huge", &["true"], false);
    config.envs = big_env(17 << 20);
    let err = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(config),
            sandbox_config: None,
        })
        .await
        .expect_err("a 17 MiB request");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    rt.pod_sandbox_status(PodSandboxStatusRequest {
        pod_sandbox_id: pod_id.clone(),
        verbose: true,
    })
    .await
    .expect("PodSandboxStatus");
    stop_and_remove_pod(&mut rt, &pod_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rss_returns_to_idle_after_large_requests() {
    let env = start_env(0);
    pull_busybox(&env).await;
    let pid = env.daemon.pid();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mib(pid);

    let started = Instant::now();
    let mut peak = idle;
    for round in 0..3 {
        let workers: Vec<_> = (0..4).map(|w| one_pod(&env, w, round)).collect();
        futures::future::join_all(workers).await;
        peak = peak.max(rss_mib(pid));
    }
    let mut rt = env.daemon.runtime().await;
    let left = rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    assert!(left.is_empty(), "pods left: {left:?}");

    // jemalloc purges freed pages after about a second; idle blocking threads end after 10 s.
    let removed = Instant::now();
    let deadline = removed + Duration::from_secs(30);
    let mut after = rss_mib(pid);
    while after > idle + SLACK_MIB && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        after = rss_mib(pid);
    }
    eprintln!(
        "daemon anonymous RSS: idle {idle:.1} MiB, peak {peak:.1} MiB, {after:.1} MiB {:.0?} \
         after the removal (load {:.0?})",
        removed.elapsed(),
        started.elapsed() - removed.elapsed()
    );
    assert!(
        after <= idle + SLACK_MIB,
        "RSS {after:.1} MiB after everything was removed, idle was {idle:.1} MiB (peak {peak:.1})"
    );
    env.assert_clean(&[]).await;
}
