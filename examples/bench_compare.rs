//! The CRI client of hack/bench-compare.sh: runs one scenario against one runtime's socket
//! (ferrocri or containerd — it only speaks the CRI) and prints its figures as one JSON object
//! of `"metric": number`, which the script puts side by side. Asserts nothing.
//!
//!   bench_compare lifecycle <socket> <pods>
//!   bench_compare burst <socket> <pods> <in flight>
//!   bench_compare density <socket> <daemon pid> <pods> <relist seconds> <idle seconds> <logs dir>
//!   bench_compare pull <socket> <image> <rounds>
//!   bench_compare exec <socket> <calls>
//!
//! Every pod is a pod sandbox plus one busybox `sleep` container logging to `<logs dir>` (as a
//! kubelet asks); pods are created with the same requests on both runtimes. "Per-pod runtime
//! processes" are the pause and its parent (ferrocri's monitor, containerd's shim).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BUSYBOX, Runtime, pss_kib, rss_kib};
use ferrocri::cri::v1::image_service_client::ImageServiceClient;
use ferrocri::cri::v1::*;
use tokio::sync::Semaphore;

type Figures = BTreeMap<String, f64>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> Result<&str, String> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("argument {i} missing; see the header of bench_compare.rs"))
    };
    let client = common::connect(PathBuf::from(arg(1)?))
        .await
        .map_err(|e| e.to_string())?;
    let logs = std::env::temp_dir().join(format!("bench-compare-logs.{}", std::process::id()));
    let mut figures = Figures::new();
    match arg(0)? {
        "lifecycle" => lifecycle(client, arg(2)?.parse()?, &logs, &mut figures).await?,
        "burst" => {
            burst(
                client,
                arg(2)?.parse()?,
                arg(3)?.parse()?,
                &logs,
                &mut figures,
            )
            .await?
        }
        "density" => {
            let pods = arg(3)?.parse()?;
            let relist = Duration::from_secs(arg(4)?.parse()?);
            let idle = Duration::from_secs(arg(5)?.parse()?);
            let logs = PathBuf::from(arg(6)?);
            density(
                client,
                arg(2)?.parse()?,
                pods,
                relist,
                idle,
                &logs,
                &mut figures,
            )
            .await?
        }
        "pull" => pull(client, arg(2)?, arg(3)?.parse()?, &mut figures).await?,
        "exec" => exec(client, arg(2)?.parse()?, &logs, &mut figures).await?,
        other => return Err(format!("unknown scenario {other}").into()),
    }
    let _ = std::fs::remove_dir_all(&logs);
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

/// p50 and p95 of `samples` in milliseconds, as `<what> p50 ms` and `<what> p95 ms`.
fn percentiles(figures: &mut Figures, what: &str, samples: &mut [Duration]) {
    if samples.is_empty() {
        return;
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    for (name, q) in [("p50", 0.50), ("p95", 0.95), ("p99", 0.99)] {
        if name == "p99" && samples.len() < 50 {
            continue;
        }
        figures.insert(format!("{what} {name} ms"), at(q).as_secs_f64() * 1000.0);
    }
}

/// A pod with one running busybox container; the time of each of its three RPCs.
struct PodUp {
    pod: String,
    run: Duration,
    create: Duration,
    start: Duration,
}

async fn pod_up(client: &mut Runtime, name: &str, logs: &Path) -> Result<PodUp, BoxError> {
    let log_directory = logs.join(name);
    std::fs::create_dir_all(&log_directory)?;
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("{name}-uid"),
            namespace: "bench".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_directory.to_string_lossy().into_owned(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/bench-compare/{name}"),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t = Instant::now();
    let pod = client
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let run = t.elapsed();
    let t = Instant::now();
    let container = client
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
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
                log_path: "sleep/0.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await?
        .into_inner()
        .container_id;
    let create = t.elapsed();
    let t = Instant::now();
    client
        .start_container(StartContainerRequest {
            container_id: container,
        })
        .await?;
    Ok(PodUp {
        pod,
        run,
        create,
        start: t.elapsed(),
    })
}

async fn stop_pod(client: &mut Runtime, pod: &str) -> Result<(), tonic::Status> {
    client
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await?;
    Ok(())
}

async fn remove_pod(client: &mut Runtime, pod: &str) -> Result<(), tonic::Status> {
    client
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        })
        .await?;
    Ok(())
}

/// Sequential pods: each RPC of a pod's life timed on its own.
async fn lifecycle(
    mut client: Runtime,
    pods: usize,
    logs: &Path,
    figures: &mut Figures,
) -> Result<(), BoxError> {
    // One pod first so that lazy start-up work does not count.
    let warm = pod_up(&mut client, "warm", logs).await?;
    stop_pod(&mut client, &warm.pod).await?;
    remove_pod(&mut client, &warm.pod).await?;
    let [mut run, mut create, mut start, mut stop, mut remove] = [(); 5].map(|_| Vec::new());
    for i in 0..pods {
        let up = pod_up(&mut client, &format!("seq-{i}"), logs).await?;
        run.push(up.run);
        create.push(up.create);
        start.push(up.start);
        let t = Instant::now();
        stop_pod(&mut client, &up.pod).await?;
        stop.push(t.elapsed());
        let t = Instant::now();
        remove_pod(&mut client, &up.pod).await?;
        remove.push(t.elapsed());
    }
    percentiles(figures, "RunPodSandbox", &mut run);
    percentiles(figures, "CreateContainer", &mut create);
    percentiles(figures, "StartContainer", &mut start);
    percentiles(figures, "StopPodSandbox", &mut stop);
    percentiles(figures, "RemovePodSandbox", &mut remove);
    Ok(())
}

/// `pods` pods brought up with `in_flight` at a time, as a kubelet's parallel pod workers do;
/// returns their IDs and the time each took.
async fn pods_up(
    client: &Runtime,
    prefix: &str,
    pods: usize,
    in_flight: usize,
    logs: &Path,
) -> Result<(Vec<String>, Vec<Duration>), BoxError> {
    let gate = Arc::new(Semaphore::new(in_flight));
    let mut tasks = Vec::new();
    for i in 0..pods {
        let (mut client, gate, logs) = (client.clone(), gate.clone(), logs.to_path_buf());
        let name = format!("{prefix}-{i}");
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let t = Instant::now();
            let up = pod_up(&mut client, &name, &logs).await?;
            Ok::<_, BoxError>((up.pod, t.elapsed()))
        }));
    }
    let (mut ids, mut times) = (Vec::new(), Vec::new());
    for task in tasks {
        let (id, took) = task.await??;
        ids.push(id);
        times.push(took);
    }
    Ok((ids, times))
}

async fn pods_down(client: &Runtime, pods: Vec<String>, in_flight: usize) -> Result<(), BoxError> {
    let gate = Arc::new(Semaphore::new(in_flight));
    let mut tasks = Vec::new();
    for pod in pods {
        let (mut client, gate) = (client.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            stop_pod(&mut client, &pod).await?;
            remove_pod(&mut client, &pod).await?;
            Ok::<_, BoxError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// A burst of pods created at once: throughput and latency per pod.
async fn burst(
    client: Runtime,
    pods: usize,
    in_flight: usize,
    logs: &Path,
    figures: &mut Figures,
) -> Result<(), BoxError> {
    let t = Instant::now();
    let (ids, mut times) = pods_up(&client, "burst", pods, in_flight, logs).await?;
    let wall = t.elapsed();
    figures.insert(
        format!("burst {pods}/{in_flight} pods/s"),
        pods as f64 / wall.as_secs_f64(),
    );
    percentiles(
        figures,
        &format!("burst {pods}/{in_flight} pod up"),
        &mut times,
    );
    pods_down(&client, ids, in_flight).await
}

/// CPU time (user + system, clock ticks) and times scheduled (a count of wake-ups) of `pid`'s
/// threads, from procfs.
fn cpu_and_runs(pid: u32) -> (u64, u64) {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command's closing parenthesis: utime and stime are 14 and 15.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split(' ').collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    let runs = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().nth(2)?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    (ticks, runs)
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
}

/// The pause of each pod and its parent (monitor or shim).
async fn runtime_processes(
    client: &mut Runtime,
    pods: &[String],
) -> Result<Vec<(u32, u32)>, BoxError> {
    let mut out = Vec::new();
    for pod in pods {
        let status = client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: true,
            })
            .await?
            .into_inner();
        let info: serde_json::Value =
            serde_json::from_str(status.info.get("info").map_or("{}", String::as_str))?;
        let pause = info["pid"].as_u64().unwrap_or(0) as u32;
        out.push((pause, parent_of(pause).unwrap_or(0)));
    }
    Ok(out)
}

/// CPU seconds and wake-ups per minute of the daemon and of all per-pod runtime processes
/// while `during` runs.
async fn measure_cpu<F: std::future::Future<Output = Result<(), BoxError>>>(
    figures: &mut Figures,
    what: &str,
    daemon: u32,
    per_pod: &[u32],
    during: F,
) -> Result<(), BoxError> {
    let sample = || {
        let d = cpu_and_runs(daemon);
        let p = per_pod
            .iter()
            .map(|&pid| cpu_and_runs(pid))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        (d, p)
    };
    let before = sample();
    let t = Instant::now();
    during.await?;
    let minutes = t.elapsed().as_secs_f64() / 60.0;
    let after = sample();
    let hz = 100.0; // USER_HZ on Linux
    figures.insert(
        format!("{what}: daemon CPU s/min"),
        after.0.0.saturating_sub(before.0.0) as f64 / hz / minutes,
    );
    figures.insert(
        format!("{what}: per-pod processes CPU s/min"),
        after.1.0.saturating_sub(before.1.0) as f64 / hz / minutes,
    );
    figures.insert(
        format!("{what}: daemon wake-ups/min"),
        after.0.1.saturating_sub(before.0.1) as f64 / minutes,
    );
    figures.insert(
        format!("{what}: per-pod processes wake-ups/min"),
        after.1.1.saturating_sub(before.1.1) as f64 / minutes,
    );
    Ok(())
}

async fn list_all(client: &mut Runtime, stats: bool) -> Result<(), tonic::Status> {
    client
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?;
    client
        .list_containers(ListContainersRequest::default())
        .await?;
    if stats {
        client
            .list_container_stats(ListContainerStatsRequest::default())
            .await?;
        client
            .list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
            .await?;
    }
    Ok(())
}

/// Many pods on one node: memory, list latencies, the cost of a kubelet-like relist loop and
/// of sitting idle.
async fn density(
    mut client: Runtime,
    daemon: u32,
    pods: usize,
    relist: Duration,
    idle: Duration,
    logs: &Path,
    figures: &mut Figures,
) -> Result<(), BoxError> {
    let idle_rss = rss_kib(daemon);
    let t = Instant::now();
    let (ids, _) = pods_up(&client, "dense", pods, 10, logs).await?;
    figures.insert(
        format!("density: {pods} pods up s"),
        t.elapsed().as_secs_f64(),
    );
    let processes = runtime_processes(&mut client, &ids).await?;
    let per_pod_pss: u64 = processes
        .iter()
        .map(|&(pause, parent)| pss_kib(pause as u64) + pss_kib(parent as u64))
        .sum();
    figures.insert(
        "density: daemon RSS idle MiB".into(),
        idle_rss as f64 / 1024.0,
    );
    figures.insert(
        format!("density: daemon RSS with {pods} pods MiB"),
        rss_kib(daemon) as f64 / 1024.0,
    );
    figures.insert(
        "density: per-pod PSS (pause + monitor/shim) KiB".into(),
        per_pod_pss as f64 / pods.max(1) as f64,
    );
    macro_rules! time_list {
        ($name:literal, $call:expr) => {{
            let mut samples = Vec::new();
            for _ in 0..30 {
                let t = Instant::now();
                $call.await?;
                samples.push(t.elapsed());
            }
            percentiles(
                figures,
                &format!("density: {} ({pods})", $name),
                &mut samples,
            );
        }};
    }
    time_list!(
        "ListPodSandbox",
        client.list_pod_sandbox(ListPodSandboxRequest::default())
    );
    time_list!(
        "ListContainers",
        client.list_containers(ListContainersRequest::default())
    );
    time_list!(
        "ListContainerStats",
        client.list_container_stats(ListContainerStatsRequest::default())
    );
    time_list!(
        "ListPodSandboxStats",
        client.list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
    );
    let per_pod: Vec<u32> = processes
        .iter()
        .flat_map(|&(pause, parent)| [pause, parent])
        .collect();
    // The kubelet relists pods and containers every second and reads stats every ~10 s.
    let mut relister = client.clone();
    measure_cpu(figures, "relist every 1 s", daemon, &per_pod, async move {
        let end = Instant::now() + relist;
        let mut tick = 0u64;
        while Instant::now() < end {
            list_all(&mut relister, tick.is_multiple_of(10)).await?;
            tick += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    })
    .await?;
    measure_cpu(figures, "idle", daemon, &per_pod, async move {
        tokio::time::sleep(idle).await;
        Ok(())
    })
    .await?;
    let t = Instant::now();
    pods_down(&client, ids, 10).await?;
    figures.insert(
        format!("density: {pods} pods down s"),
        t.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// Cold pulls: the image and its unreferenced blobs are removed before each round.
async fn pull(
    client: Runtime,
    image: &str,
    rounds: usize,
    figures: &mut Figures,
) -> Result<(), BoxError> {
    drop(client);
    let socket = PathBuf::from(std::env::args().nth(2).unwrap_or_default());
    let mut images = ImageServiceClient::new(common::channel(socket).await?);
    let spec = ImageSpec {
        image: image.into(),
        ..Default::default()
    };
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let _ = images
            .remove_image(RemoveImageRequest {
                image: Some(spec.clone()),
            })
            .await;
        let t = Instant::now();
        images
            .pull_image(PullImageRequest {
                image: Some(spec.clone()),
                ..Default::default()
            })
            .await?;
        samples.push(t.elapsed());
    }
    percentiles(figures, "cold pull", &mut samples);
    let _ = images
        .remove_image(RemoveImageRequest { image: Some(spec) })
        .await;
    Ok(())
}

/// ExecSync round trips of `true` in a running container.
async fn exec(
    mut client: Runtime,
    calls: usize,
    logs: &Path,
    figures: &mut Figures,
) -> Result<(), BoxError> {
    let up = pod_up(&mut client, "exec", logs).await?;
    let container = client
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                pod_sandbox_id: up.pod.clone(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .containers
        .pop()
        .ok_or("the exec pod has no container")?
        .id;
    let mut samples = Vec::new();
    for _ in 0..calls {
        let t = Instant::now();
        client
            .exec_sync(ExecSyncRequest {
                container_id: container.clone(),
                cmd: vec!["true".into()],
                timeout: 10,
            })
            .await?;
        samples.push(t.elapsed());
    }
    percentiles(figures, "ExecSync true", &mut samples);
    stop_pod(&mut client, &up.pod).await?;
    remove_pod(&mut client, &up.pod).await?;
    Ok(())
}
