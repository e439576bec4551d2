//! Pod benchmark client (run by hack/bench-pods.sh against a release daemon): times pod up
//! (RunPodSandbox + CreateContainer + StartContainer of busybox, image present) and pod down
//! (StopPodSandbox + RemovePodSandbox) over N pods, and measures the memory of the daemon and
//! of each pod's monitor and pause. Prints figures; asserts nothing.
//!
//!   bench_pods <socket> <daemon pid> [pods]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferrocri::cri::v1::image_service_client::ImageServiceClient;
use ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient;
use ferrocri::cri::v1::*;
use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let socket = PathBuf::from(
        args.get(1)
            .ok_or("usage: bench_pods <socket> <daemon pid> [pods]")?,
    );
    let daemon_pid: u32 = args.get(2).ok_or("daemon pid missing")?.parse()?;
    let pods: usize = args.get(3).map(|n| n.parse()).transpose()?.unwrap_or(50);

    let channel = Endpoint::from_static("http://ferrocri.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await?;
    let mut client = RuntimeServiceClient::new(channel.clone());
    let mut images = ImageServiceClient::new(channel);
    images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;

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

const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

/// One pod with one running busybox container; returns the pod ID.
async fn pod_up(
    client: &mut RuntimeServiceClient<tonic::transport::Channel>,
    i: usize,
) -> Result<String, tonic::Status> {
    let pod = request(i);
    let sandbox_config = pod.config.clone();
    let id = client
        .run_pod_sandbox(pod)
        .await?
        .into_inner()
        .pod_sandbox_id;
    let container = client
        .create_container(CreateContainerRequest {
            pod_sandbox_id: id.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "sleep".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: BUSYBOX.into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "3600".into()],
                ..Default::default()
            }),
            sandbox_config,
        })
        .await?
        .into_inner()
        .container_id;
    client
        .start_container(StartContainerRequest {
            container_id: container,
        })
        .await?;
    Ok(id)
}

fn request(i: usize) -> RunPodSandboxRequest {
    RunPodSandboxRequest {
        config: Some(PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: format!("bench-{i}"),
                uid: format!("bench-uid-{i}"),
                namespace: "bench".into(),
                attempt: 0,
            }),
            hostname: format!("bench-{i}"),
            ..Default::default()
        }),
        runtime_handler: String::new(),
    }
}

async fn stop_remove(
    client: &mut RuntimeServiceClient<tonic::transport::Channel>,
    id: &str,
) -> Result<(), tonic::Status> {
    client
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await?;
    client
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await?;
    Ok(())
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{what}: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        at(0.50).as_secs_f64() * 1000.0,
        at(0.95).as_secs_f64() * 1000.0,
        at(1.0).as_secs_f64() * 1000.0
    );
}

fn field_kib(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    field_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

fn pss_kib(pid: u64) -> u64 {
    field_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}
