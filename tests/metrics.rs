//! CRI metrics and pod stats against the real daemon over its socket: busybox from the local
//! test registry (127.0.0.1:5000 through hack/certs.d), real pods, cgroups and network
//! namespaces. The figures must move when a container burns CPU, holds memory, writes to its
//! writable layer and receives packets.

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::pods::*;
use ctr::*;
use ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient;
use ferrocri::cri::v1::*;
use tonic::transport::Channel;

/// The container waits for /go, then holds 40 MB in a shell variable, burns about 2 s of CPU
/// (a count, so a busy host only makes it longer), writes /done and sleeps (not as the last
/// command, which ash would exec, freeing the variable).
const WORKLOAD: &str = "while [ ! -e /go ]; do sleep 0.1; done; \
    x=$(head -c 40000000 /dev/zero | tr '\\0' a); \
    i=0; while [ $i -lt 2500000 ]; do i=$((i+1)); done; \
    echo ${#x} > /done; sleep 3600; echo never";

const MIB: u64 = 1 << 20;

/// Metric values of one container or pod, by name and label values after the base five.
type Values = HashMap<(String, Vec<String>), u64>;

fn values(metrics: &[Metric]) -> Values {
    metrics
        .iter()
        .map(|m| {
            (
                (m.name.clone(), m.label_values[5..].to_vec()),
                m.value.map(|v| v.value).unwrap_or(0),
            )
        })
        .collect()
}

fn get(v: &Values, name: &str) -> u64 {
    *v.get(&(name.to_owned(), vec![]))
        .unwrap_or_else(|| panic!("{name} missing from {:?}", v.keys()))
}

async fn pod_metrics(rt: &mut RuntimeServiceClient<Channel>, pod_id: &str) -> PodSandboxMetrics {
    rt.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .expect("ListPodSandboxMetrics")
        .into_inner()
        .pod_metrics
        .into_iter()
        .find(|p| p.pod_sandbox_id == pod_id)
        .expect("the pod in ListPodSandboxMetrics")
}

async fn container_stats_in_pod(
    rt: &mut RuntimeServiceClient<Channel>,
    pod_id: &str,
) -> Vec<ContainerStats> {
    rt.list_pod_sandbox_stats(ListPodSandboxStatsRequest {
        filter: Some(PodSandboxStatsFilter {
            id: pod_id.to_owned(),
            ..Default::default()
        }),
    })
    .await
    .expect("ListPodSandboxStats")
    .into_inner()
    .stats
    .into_iter()
    .next()
    .expect("the pod in ListPodSandboxStats")
    .linux
    .expect("linux stats")
    .containers
}

#[tokio::test]
async fn metrics_and_pod_stats_follow_a_busy_container() {
    let env = start_env(1);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let pod = pod_config("metrics-pod", "fcct-ns", "uid-metrics", 0);
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    let mut config = busybox_config("worker", &["sh", "-c", WORKLOAD], false);
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: (128 * MIB) as i64,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = create(&env, &mut rt, &pod_id, &pod, config).await;
    start(&env, &mut rt, &id).await;

    // Every descriptor once; every metric served has one, with as many label values as keys.
    let descriptors: HashMap<String, usize> = rt
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .expect("ListMetricDescriptors")
        .into_inner()
        .descriptors
        .into_iter()
        .map(|d| (d.name, d.label_keys.len()))
        .collect();
    let before = pod_metrics(&mut rt, &pod_id).await;
    let all = before
        .metrics
        .iter()
        .chain(before.container_metrics.iter().flat_map(|c| &c.metrics));
    for m in all {
        assert_eq!(
            descriptors.get(&m.name),
            Some(&m.label_values.len()),
            "{m:?}"
        );
    }
    assert_eq!(before.container_metrics.len(), 1);
    let ctr = &before.container_metrics[0];
    assert_eq!(ctr.container_id, id);
    assert_eq!(
        ctr.metrics[0].label_values[..5],
        ["metrics-pod", "fcct-ns", "worker", id.as_str(), BUSYBOX]
    );
    let ctr_before = values(&ctr.metrics);
    assert_eq!(
        get(&ctr_before, "container_spec_memory_limit_bytes"),
        128 * MIB
    );
    let pod_before = values(&before.metrics);
    let eth0 = |name: &str, v: &Values| v[&(name.to_owned(), vec!["eth0".to_owned()])];
    let rx_before = eth0("container_network_receive_packets_total", &pod_before);

    // Work, and packets from the host to the pod.
    exec(&mut rt, &id, &["touch", "/go"], 10)
        .await
        .expect("touch /go");
    let ip = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.clone(),
            verbose: false,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner()
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .expect("pod IP");
    // Nothing listens on port 1: each connect is a SYN in and a RST out.
    for _ in 0..3 {
        let addr = std::net::SocketAddr::new(ip.parse().expect("IPv4"), 1);
        let refused = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2));
        assert!(refused.is_err());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = exec(&mut rt, &id, &["cat", "/done"], 10)
            .await
            .expect("cat");
        if done.exit_code == 0 {
            assert_eq!(String::from_utf8_lossy(&done.stdout).trim(), "40000000");
            break;
        }
        assert!(Instant::now() < deadline, "the workload did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let after = pod_metrics(&mut rt, &pod_id).await;
    let ctr_after = values(&after.container_metrics[0].metrics);
    let cpu = get(&ctr_after, "container_cpu_usage_seconds_total");
    assert!(cpu >= 1, "cpu seconds {cpu}");
    assert!(cpu > get(&ctr_before, "container_cpu_usage_seconds_total"));
    for name in [
        "container_memory_working_set_bytes",
        "container_memory_rss",
        "container_memory_usage_bytes",
    ] {
        let (b, a) = (get(&ctr_before, name), get(&ctr_after, name));
        assert!(a >= b + 30 * MIB, "{name}: {b} -> {a}");
    }
    let fs_usage = ctr_after[&("container_fs_usage_bytes".to_owned(), vec!["/".to_owned()])];
    assert!(fs_usage >= 9, "/done in the writable layer: {fs_usage}");
    assert!(get(&ctr_after, "container_threads") >= 2);
    // sh and its sleep; each holds stdin, stdout and stderr.
    assert!(get(&ctr_after, "container_processes") >= 2);
    assert!(get(&ctr_after, "container_file_descriptors") >= 6);
    let rx_after = eth0(
        "container_network_receive_packets_total",
        &values(&after.metrics),
    );
    assert!(
        rx_after >= rx_before + 3,
        "eth0 rx packets {rx_before} -> {rx_after}"
    );

    // The same container inside ListPodSandboxStats, in CRI units.
    let stats = container_stats_in_pod(&mut rt, &pod_id).await;
    assert_eq!(stats.len(), 1);
    let s = &stats[0];
    assert_eq!(s.attributes.as_ref().unwrap().id, id);
    let cpu_ns = s
        .cpu
        .as_ref()
        .unwrap()
        .usage_core_nano_seconds
        .unwrap()
        .value;
    assert!(cpu_ns >= 1_000_000_000, "cpu ns {cpu_ns}");
    let memory = s.memory.as_ref().unwrap();
    let ws = memory.working_set_bytes.unwrap().value;
    assert!(ws >= 40 * 1_000_000, "working set {ws}");
    assert_eq!(
        memory.available_bytes.unwrap().value,
        128 * MIB - ws,
        "available = limit - working set"
    );
    assert!(memory.rss_bytes.unwrap().value >= 40 * 1_000_000);
    assert!(memory.page_faults.unwrap().value > 0);
    assert!(s.writable_layer.as_ref().unwrap().used_bytes.unwrap().value >= 9);
    assert!(s.swap.is_some());

    // A stopped container leaves both lists; the pod stays.
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .expect("StopContainer");
    assert!(
        pod_metrics(&mut rt, &pod_id)
            .await
            .container_metrics
            .is_empty()
    );
    assert!(container_stats_in_pod(&mut rt, &pod_id).await.is_empty());
    stop_and_remove_pod(&mut rt, &pod_id).await;
    assert!(
        rt.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner()
            .pod_metrics
            .is_empty()
    );
    env.assert_clean(&[pod_id]).await;
}

/// ListContainerStats, ContainerStats and ListPodSandboxStats serve real figures: memory and
/// CPU time from the container's cgroup, and a file written into the writable layer shows
/// within `REFRESH_AFTER` (plus a walk) of being written, as the layer's usage is kept between
/// calls (`container/layer_usage.rs`); the figure carries when it was measured.
#[tokio::test]
async fn container_stats_show_memory_cpu_and_a_written_file() {
    let env = start_env(3);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let pod = pod_config("stats-pod", "fcct-ns", "uid-stats", 0);
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    let config = busybox_config("writer", &["sleep", "3600"], false);
    let id = create(&env, &mut rt, &pod_id, &pod, config).await;
    start(&env, &mut rt, &id).await;
    let filter = ContainerStatsFilter {
        id: id.clone(),
        ..Default::default()
    };
    let list = async |rt: &mut RuntimeServiceClient<Channel>| -> ContainerStats {
        let request = ListContainerStatsRequest {
            filter: Some(filter.clone()),
        };
        let mut stats = rt
            .list_container_stats(request)
            .await
            .expect("ListContainerStats")
            .into_inner()
            .stats;
        assert_eq!(stats.len(), 1, "{stats:?}");
        stats.remove(0)
    };
    let layer = |s: &ContainerStats| s.writable_layer.clone().expect("writable layer");
    let used = |l: &FilesystemUsage| l.used_bytes.expect("used bytes").value;

    let before = list(&mut rt).await;
    assert_eq!(before.attributes.as_ref().unwrap().id, id);
    assert!(used(&layer(&before)) < MIB, "{before:?}");
    let memory = before.memory.as_ref().expect("memory");
    assert!(memory.working_set_bytes.unwrap().value > 0, "{memory:?}");
    assert!(memory.usage_bytes.unwrap().value > 0, "{memory:?}");
    let cpu = before.cpu.as_ref().expect("cpu");
    assert!(cpu.usage_core_nano_seconds.unwrap().value > 0, "{cpu:?}");

    let write_began = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let dd = ["dd", "if=/dev/zero", "of=/written", "bs=1024", "count=1024"];
    let wrote = exec(&mut rt, &id, &dd, 10).await.expect("dd");
    assert_eq!(wrote.exit_code, 0, "{wrote:?}");
    let deadline =
        Instant::now() + ferrocri::container::layer_usage::REFRESH_AFTER + Duration::from_secs(10);
    let seen = loop {
        let l = layer(&list(&mut rt).await);
        if used(&l) >= MIB {
            break l;
        }
        assert!(
            Instant::now() < deadline,
            "the written file never showed: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(seen.inodes_used.unwrap().value >= 1, "{seen:?}");
    assert!(
        seen.timestamp >= write_began,
        "measured after the write: {seen:?}"
    );

    // ContainerStats and the container inside ListPodSandboxStats say the same.
    let one = rt
        .container_stats(ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .expect("ContainerStats")
        .into_inner()
        .stats
        .expect("stats");
    assert!(used(&layer(&one)) >= MIB, "{one:?}");
    let in_pod = container_stats_in_pod(&mut rt, &pod_id).await;
    assert_eq!(in_pod.len(), 1);
    assert!(used(&layer(&in_pod[0])) >= MIB, "{in_pod:?}");

    stop_and_remove_pod(&mut rt, &pod_id).await;
    env.assert_clean(&[pod_id]).await;
}

/// Latency of ListPodSandboxStats and ListPodSandboxMetrics with 20 pods of one running
/// container each (`cargo test --test metrics -- --ignored --nocapture`).
#[tokio::test]
#[ignore]
async fn bench_stats_and_metrics_with_20_pods() {
    let env = start_env(2);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let mut pods = Vec::new();
    for i in 0..20 {
        let pod = pod_config(&format!("bench-{i}"), "fcct-ns", &format!("uid-b{i}"), 0);
        let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
        let id = create(
            &env,
            &mut rt,
            &pod_id,
            &pod,
            busybox_config("sleeper", &["sleep", "3600"], false),
        )
        .await;
        start(&env, &mut rt, &id).await;
        pods.push(pod_id);
    }
    let mut report = Vec::new();
    for rpc in ["ListPodSandboxStats", "ListPodSandboxMetrics"] {
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let n = if rpc == "ListPodSandboxStats" {
                let r = rt.list_pod_sandbox_stats(ListPodSandboxStatsRequest::default());
                r.await.unwrap().into_inner().stats.len()
            } else {
                let r = rt.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {});
                r.await.unwrap().into_inner().pod_metrics.len()
            };
            times.push(t.elapsed());
            assert_eq!(n, 20);
        }
        times.sort();
        report.push(format!(
            "{rpc}, 20 pods: p50 {:.2} ms, p95 {:.2} ms",
            times[100].as_secs_f64() * 1e3,
            times[190].as_secs_f64() * 1e3
        ));
    }
    for line in report {
        println!("{line}");
    }
    for pod_id in &pods {
        stop_and_remove_pod(&mut rt, pod_id).await;
    }
    env.assert_clean(&pods).await;
}
