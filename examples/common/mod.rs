//! What the benchmark clients share: the connection to the daemon's CRI socket, the busybox
//! image, pod requests, pod teardown and the figures they print.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use ferrocri::cri::v1::image_service_client::ImageServiceClient;
use ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient;
use ferrocri::cri::v1::*;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

pub const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

pub type Runtime = RuntimeServiceClient<Channel>;

/// A channel to the CRI socket at `socket`.
pub async fn channel(socket: PathBuf) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_static("http://ferrocri.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
}

/// A runtime client on the daemon's socket, with busybox pulled.
pub async fn connect(socket: PathBuf) -> Result<Runtime, Box<dyn std::error::Error>> {
    let channel = channel(socket).await?;
    ImageServiceClient::new(channel.clone())
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    Ok(RuntimeServiceClient::new(channel))
}

/// RunPodSandbox of pod `bench-<i>`; returns its ID and config.
pub async fn run_pod(
    client: &mut Runtime,
    i: usize,
) -> Result<(String, Option<PodSandboxConfig>), tonic::Status> {
    let config = Some(PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: format!("bench-{i}"),
            uid: format!("bench-uid-{i}"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: format!("bench-{i}"),
        ..Default::default()
    });
    let id = client
        .run_pod_sandbox(RunPodSandboxRequest {
            config: config.clone(),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    Ok((id, config))
}

/// CreateContainer of busybox running `command`; returns the container ID.
pub async fn create_busybox(
    client: &mut Runtime,
    pod: &str,
    sandbox_config: Option<PodSandboxConfig>,
    name: &str,
    command: &[&str],
) -> Result<String, tonic::Status> {
    create_container(client, pod, sandbox_config, name, BUSYBOX, command).await
}

/// CreateContainer of `image` running `command` (empty: the image's); returns its ID.
pub async fn create_container(
    client: &mut Runtime,
    pod: &str,
    sandbox_config: Option<PodSandboxConfig>,
    name: &str,
    image: &str,
    command: &[&str],
) -> Result<String, tonic::Status> {
    Ok(client
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: name.into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                command: command.iter().map(|c| c.to_string()).collect(),
                ..Default::default()
            }),
            sandbox_config,
        })
        .await?
        .into_inner()
        .container_id)
}

pub async fn start(client: &mut Runtime, container: String) -> Result<(), tonic::Status> {
    client
        .start_container(StartContainerRequest {
            container_id: container,
        })
        .await?;
    Ok(())
}

/// StopPodSandbox + RemovePodSandbox (which take the pod's containers with them).
pub async fn stop_remove(client: &mut Runtime, id: &str) -> Result<(), tonic::Status> {
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

/// Prints p50, p95 and max of `samples`.
pub fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{what}: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
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

pub fn rss_kib(pid: u32) -> u64 {
    field_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// CPU time (user + system) the process has used, in clock ticks (100 per second on Linux).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the parenthesised name: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

pub fn pss_kib(pid: u64) -> u64 {
    field_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}
