//! Container events, the Stream* list RPCs and UpdatePodSandboxResources against the real
//! daemon over its socket, with busybox from the local test registry (127.0.0.1:5000 through
//! hack/certs.d), real pods, cgroups and monitors. One test at a time.

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::pods::*;
use ctr::*;
use ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient;
use ferrocri::cri::v1::*;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Streaming};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CREATED: i32 = ContainerEventType::ContainerCreatedEvent as i32;
const STARTED: i32 = ContainerEventType::ContainerStartedEvent as i32;
const STOPPED: i32 = ContainerEventType::ContainerStoppedEvent as i32;
const DELETED: i32 = ContainerEventType::ContainerDeletedEvent as i32;

/// A [`start_env`] daemon with `[cri]` settings added to its configuration.
fn start_env_with(slot: u8, cri: &str) -> PodEnv {
    let mut env = start_env(slot);
    env.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    env.daemon.wait(Duration::from_secs(30));
    let mut text = std::fs::read_to_string(&env.daemon.config_path).expect("read config");
    text.push_str(&format!("\n[cri]\n{cri}\n"));
    std::fs::write(&env.daemon.config_path, text).expect("write config");
    env.daemon.restart();
    env
}

/// A GetContainerEvents subscription.
struct Subscriber {
    stream: Streaming<ContainerEventResponse>,
}

impl Subscriber {
    async fn new(rt: &mut RuntimeServiceClient<Channel>) -> Subscriber {
        let stream = rt
            .get_container_events(GetEventsRequest {})
            .await
            .expect("GetContainerEvents")
            .into_inner();
        Subscriber { stream }
    }

    /// The next event (within 10 s).
    async fn next(&mut self) -> ContainerEventResponse {
        tokio::time::timeout(Duration::from_secs(10), self.stream.message())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .expect("the stream is not over")
    }

    /// Events until one about `id` of kind `kind` (that one included).
    async fn until(&mut self, id: &str, kind: i32) -> Vec<ContainerEventResponse> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let done = event.container_id == id && event.container_event_type == kind;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

fn kinds_of(events: &[ContainerEventResponse], id: &str) -> Vec<i32> {
    events
        .iter()
        .filter(|e| e.container_id == id)
        .map(|e| e.container_event_type)
        .collect()
}

/// The status of `id` inside the event's container statuses.
fn status_in<'a>(event: &'a ContainerEventResponse, id: &str) -> Option<&'a ContainerStatus> {
    event.containers_statuses.iter().find(|s| s.id == id)
}

/// Every event carries its pod's status and the statuses of all the pod's containers.
fn check_event(event: &ContainerEventResponse, pod_id: &str, uid: &str) {
    assert!(event.created_at > 0, "{event:?}");
    let pod = event
        .pod_sandbox_status
        .as_ref()
        .unwrap_or_else(|| panic!("no pod status: {event:?}"));
    assert_eq!(pod.id, pod_id);
    let meta = pod.metadata.as_ref().expect("pod metadata");
    assert_eq!(meta.uid, uid);
    if event.container_id != pod_id && event.container_event_type != DELETED {
        let status = status_in(event, &event.container_id)
            .unwrap_or_else(|| panic!("the event's container is not in its statuses: {event:?}"));
        let want = match event.container_event_type {
            CREATED => ContainerState::ContainerCreated,
            STARTED => ContainerState::ContainerRunning,
            _ => ContainerState::ContainerExited,
        };
        assert_eq!(status.state, want as i32, "{event:?}");
        assert!(
            status.metadata.is_some() && status.image.is_some(),
            "{status:?}"
        );
    }
}

async fn stop_and_remove_pod(rt: &mut RuntimeServiceClient<Channel>, id: &str) {
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    })
    .await
    .expect("RemovePodSandbox");
}

async fn stop_container(rt: &mut RuntimeServiceClient<Channel>, id: &str, timeout: i64) {
    rt.stop_container(StopContainerRequest {
        container_id: id.to_owned(),
        timeout,
    })
    .await
    .expect("StopContainer");
}

async fn remove_container(rt: &mut RuntimeServiceClient<Channel>, id: &str) {
    rt.remove_container(RemoveContainerRequest {
        container_id: id.to_owned(),
    })
    .await
    .expect("RemoveContainer");
}

/// CREATED, STARTED, STOPPED, DELETED for a container that exits by itself and for one that
/// StopContainer stops, each with the pod status and the pod's container statuses; the exit
/// arrives as it happens (no RPC is made while waiting for it); the pod's own events too,
/// including STOPPED when its pause dies.
#[tokio::test]
async fn events_follow_containers_and_pods_through_their_lives() {
    let _serial = SERIAL.lock().await;
    let env = start_env(1);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let mut events = Subscriber::new(&mut rt).await;
    // A second subscriber on its own connection gets the same events.
    let mut other = Subscriber::new(&mut env.runtime().await).await;

    let pod = pod_config("events", "fcet-ns", "uid-events", 0);
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    let seen = events.until(&pod_id, STARTED).await;
    assert_eq!(kinds_of(&seen, &pod_id), [CREATED, STARTED]);
    for event in &seen {
        check_event(event, &pod_id, "uid-events");
        let state = event.pod_sandbox_status.as_ref().unwrap().state;
        assert_eq!(state, PodSandboxState::SandboxReady as i32);
    }

    // A container that exits by itself, with code 3.
    let quick_config = busybox_config("quick", &["sh", "-c", "sleep 1; exit 3"], false);
    let quick = create(&env, &mut rt, &pod_id, &pod, quick_config).await;
    start(&env, &mut rt, &quick).await;
    let seen = events.until(&quick, STOPPED).await;
    assert_eq!(kinds_of(&seen, &quick), [CREATED, STARTED, STOPPED]);
    let stopped = seen.last().unwrap();
    check_event(stopped, &pod_id, "uid-events");
    let quick_status = status_in(stopped, &quick).unwrap();
    assert_eq!(
        (quick_status.exit_code, quick_status.reason.as_str()),
        (3, "Error")
    );
    // No RPC ran between the start and the exit, which came 1 s later: the exit watch found
    // it (no list or status call did), and published it after the monitor recorded it.
    assert!(
        stopped.created_at >= quick_status.finished_at,
        "{stopped:?}"
    );

    // A container StopContainer stops; the pod's statuses show both containers.
    let sleeper_config = busybox_config("sleeper", &["sleep", "3600"], false);
    let sleeper = create(&env, &mut rt, &pod_id, &pod, sleeper_config).await;
    start(&env, &mut rt, &sleeper).await;
    stop_container(&mut rt, &sleeper, 5).await;
    let seen = events.until(&sleeper, STOPPED).await;
    assert_eq!(kinds_of(&seen, &sleeper), [CREATED, STARTED, STOPPED]);
    let stopped = seen.last().unwrap();
    check_event(stopped, &pod_id, "uid-events");
    assert_eq!(status_in(stopped, &sleeper).unwrap().exit_code, 143);
    assert_eq!(status_in(stopped, &quick).unwrap().exit_code, 3);
    // Stopping it again changes nothing and publishes nothing.
    stop_container(&mut rt, &sleeper, 5).await;

    remove_container(&mut rt, &quick).await;
    remove_container(&mut rt, &sleeper).await;
    let seen = events.until(&sleeper, DELETED).await;
    assert_eq!(kinds_of(&seen, &quick), [DELETED]);
    assert_eq!(kinds_of(&seen, &sleeper), [DELETED], "no second STOPPED");
    let deleted = seen.last().unwrap();
    check_event(deleted, &pod_id, "uid-events");
    assert!(deleted.containers_statuses.is_empty(), "{deleted:?}");

    stop_and_remove_pod(&mut rt, &pod_id).await;
    let seen = events.until(&pod_id, DELETED).await;
    assert_eq!(kinds_of(&seen, &pod_id), [STOPPED, DELETED]);
    for event in &seen {
        check_event(event, &pod_id, "uid-events");
        let state = event.pod_sandbox_status.as_ref().unwrap().state;
        assert_eq!(state, PodSandboxState::SandboxNotready as i32);
    }

    // The other subscriber saw exactly the same events, in the same order.
    let mut all = Vec::new();
    while all.last().is_none_or(|e: &ContainerEventResponse| {
        e.container_id != pod_id || e.container_event_type != DELETED
    }) {
        all.push(other.next().await);
    }
    let summary = |e: &ContainerEventResponse| (e.container_id.clone(), e.container_event_type);
    let expected: Vec<_> = [
        (&pod_id, CREATED),
        (&pod_id, STARTED),
        (&quick, CREATED),
        (&quick, STARTED),
        (&quick, STOPPED),
        (&sleeper, CREATED),
        (&sleeper, STARTED),
        (&sleeper, STOPPED),
        (&quick, DELETED),
        (&sleeper, DELETED),
        (&pod_id, STOPPED),
        (&pod_id, DELETED),
    ]
    .into_iter()
    .map(|(id, kind)| (id.clone(), kind))
    .collect();
    assert_eq!(all.iter().map(summary).collect::<Vec<_>>(), expected);

    // A pod whose pause dies: STOPPED for the pod, not ready.
    let pod = pod_config("events-pause", "fcet-ns", "uid-events-pause", 0);
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    events.until(&pod_id, STARTED).await;
    let (_, info) = status(&mut rt, &pod_id).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(info.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the pause");
    let seen = events.until(&pod_id, STOPPED).await;
    let stopped = seen.last().unwrap();
    check_event(stopped, &pod_id, "uid-events-pause");
    let state = stopped.pod_sandbox_status.as_ref().unwrap().state;
    assert_eq!(state, PodSandboxState::SandboxNotready as i32);
    stop_and_remove_pod(&mut rt, &pod_id).await;
    env.assert_clean(&[pod_id]).await;
}

/// A channel whose HTTP/2 windows are small, so that a stream nobody reads stops taking
/// messages after a few.
async fn small_window_channel(socket: &Path) -> Channel {
    let socket = socket.to_owned();
    Endpoint::from_static("http://ferrocri.invalid")
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("connect to ferrocri")
}

/// A subscriber that never reads neither blocks the RPCs nor another subscriber; once it is a
/// buffer (`cri.event_buffer`) behind it is dropped: its stream ends with RESOURCE_EXHAUSTED.
#[tokio::test]
async fn a_subscriber_that_never_reads_blocks_nobody_and_is_dropped() {
    let _serial = SERIAL.lock().await;
    let env = start_env_with(2, "event_buffer = 8");
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let mut reader = Subscriber::new(&mut rt).await;
    let mut idle = Subscriber::new(&mut RuntimeServiceClient::new(
        small_window_channel(&env.daemon.socket).await,
    ))
    .await;

    // Big annotations make every event about this pod large (its status carries them).
    let mut pod = pod_config("idle", "fcet-ns", "uid-idle", 0);
    pod.annotations.insert("big".into(), "x".repeat(8 * 1024));
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for n in 0..10 {
        let config = busybox_config(&format!("c{n}"), &["true"], false);
        let id = create(&env, &mut rt, &pod_id, &pod, config).await;
        start(&env, &mut rt, &id).await;
        stop_container(&mut rt, &id, 0).await;
        remove_container(&mut rt, &id).await;
        ids.push(id);
    }
    let rpcs = started.elapsed();
    // The reading subscriber got every event, in order.
    let seen = reader.until(ids.last().unwrap(), DELETED).await;
    for id in &ids {
        assert_eq!(kinds_of(&seen, id), [CREATED, STARTED, STOPPED, DELETED]);
    }
    assert!(rpcs < Duration::from_secs(60), "40 RPCs took {rpcs:?}");

    // The idle one: what the connection held, then the error.
    let mut received = 0;
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), idle.stream.message()).await {
            Ok(Ok(Some(_))) => received += 1,
            Ok(Ok(None)) => panic!("the stream ended without an error after {received}"),
            Ok(Err(status)) => break status,
            Err(_) => panic!("the stream neither ended nor sent after {received} events"),
        }
    };
    assert_eq!(end.code(), Code::ResourceExhausted, "{end:?}");
    assert!(end.message().contains("fell behind"), "{end:?}");
    assert!(received < 42, "{received} events: it was not dropped");
    assert!(env.daemon.log().contains("fell behind"));

    // The daemon still serves events to new and old subscribers.
    let mut later = Subscriber::new(&mut rt).await;
    stop_and_remove_pod(&mut rt, &pod_id).await;
    for subscriber in [&mut reader, &mut later] {
        let seen = subscriber.until(&pod_id, DELETED).await;
        assert_eq!(kinds_of(&seen, &pod_id), [STOPPED, DELETED]);
    }
    env.assert_clean(&[pod_id]).await;
}

/// At shutdown the event streams end with UNAVAILABLE (so they do not hold the daemon for its
/// shutdown timeout); after a restart a new subscription gets new events.
#[tokio::test]
async fn event_streams_end_when_the_daemon_stops_and_start_again_after() {
    let _serial = SERIAL.lock().await;
    let daemon = common::Daemon::start("shutdown_timeout = \"30s\"");
    let mut events = Subscriber::new(&mut daemon.runtime().await).await;
    let stopping = Instant::now();
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let end = tokio::time::timeout(Duration::from_secs(10), events.stream.message())
        .await
        .expect("the stream ends")
        .expect_err("with an error");
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    // Waited for on another thread: this one keeps the client's connection answering the
    // server's GOAWAY and PING, as any live client does.
    let (mut daemon, exit) = tokio::task::spawn_blocking(move || {
        let mut daemon = daemon;
        let exit = daemon.wait(Duration::from_secs(10));
        (daemon, exit)
    })
    .await
    .unwrap();
    assert!(exit.success());
    assert!(stopping.elapsed() < Duration::from_secs(10));

    daemon.restart();
    let mut rt = daemon.runtime().await;
    let mut events = Subscriber::new(&mut rt).await;
    // A pod without network is enough to get events: host network.
    let mut pod = pod_config("restart", "fcet-ns", "uid-restart", 0);
    pod.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network: NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = rt
        .run_pod_sandbox(run_request(pod))
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(
        kinds_of(&events.until(&id, STARTED).await, &id),
        [CREATED, STARTED]
    );
    stop_and_remove_pod(&mut rt, &id).await;
}

/// Pages of every Stream* RPC, concatenated, are the unary list (with and without filters);
/// each page holds at most `cri.stream_page_size` items and at least one.
#[tokio::test]
async fn stream_lists_equal_the_unary_lists_in_pages() {
    let _serial = SERIAL.lock().await;
    let env = start_env_with(3, "stream_page_size = 3");
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let mut pod_ids = Vec::new();
    let mut containers = Vec::new();
    for n in 0..4 {
        let mut pod = pod_config(&format!("lists-{n}"), "fcet-ns", &format!("uid-l{n}"), 0);
        pod.labels.insert("half".into(), (n % 2).to_string());
        let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
        for c in 0..2 {
            let config = busybox_config(&format!("c{c}"), &["sleep", "3600"], false);
            let id = create(&env, &mut rt, &pod_id, &pod, config).await;
            if c == 0 {
                start(&env, &mut rt, &id).await;
            }
            containers.push(id);
        }
        pod_ids.push(pod_id);
    }

    let sizes_ok = |sizes: Vec<usize>, total: usize| {
        assert_eq!(sizes.iter().sum::<usize>(), total, "{sizes:?}");
        assert!(sizes.iter().all(|n| (1..=3).contains(n)), "{sizes:?}");
        sizes.len()
    };

    // Pods, with and without a label filter.
    for filter in [
        None,
        Some(PodSandboxFilter {
            label_selector: labels(&[("half", "1")]),
            ..Default::default()
        }),
    ] {
        let unary = list(&mut rt, filter.clone()).await;
        let pages: Vec<StreamPodSandboxesResponse> = collect_pages(
            rt.stream_pod_sandboxes(StreamPodSandboxesRequest { filter })
                .await
                .expect("StreamPodSandboxes")
                .into_inner(),
        )
        .await;
        sizes_ok(
            pages.iter().map(|p| p.pod_sandboxes.len()).collect(),
            unary.len(),
        );
        let streamed: Vec<_> = pages.into_iter().flat_map(|p| p.pod_sandboxes).collect();
        assert_eq!(streamed, unary);
    }

    // Containers: 8 of them, 3 pages; and one pod's.
    for filter in [
        None,
        Some(ContainerFilter {
            pod_sandbox_id: pod_ids[1].clone(),
            ..Default::default()
        }),
    ] {
        let unary = rt
            .list_containers(ListContainersRequest {
                filter: filter.clone(),
            })
            .await
            .expect("ListContainers")
            .into_inner()
            .containers;
        let pages: Vec<StreamContainersResponse> = collect_pages(
            rt.stream_containers(StreamContainersRequest { filter })
                .await
                .expect("StreamContainers")
                .into_inner(),
        )
        .await;
        sizes_ok(
            pages.iter().map(|p| p.containers.len()).collect(),
            unary.len(),
        );
        let streamed: Vec<_> = pages.into_iter().flat_map(|p| p.containers).collect();
        assert_eq!(streamed, unary);
    }
    let all = rt
        .list_containers(ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(all.len(), 8);

    // Stats change from one call to the next: the same containers and pods, in order.
    let unary: Vec<String> = rt
        .list_container_stats(ListContainerStatsRequest { filter: None })
        .await
        .expect("ListContainerStats")
        .into_inner()
        .stats
        .into_iter()
        .map(|s| s.attributes.unwrap().id)
        .collect();
    let pages: Vec<StreamContainerStatsResponse> = collect_pages(
        rt.stream_container_stats(StreamContainerStatsRequest { filter: None })
            .await
            .expect("StreamContainerStats")
            .into_inner(),
    )
    .await;
    assert_eq!(
        sizes_ok(pages.iter().map(|p| p.container_stats.len()).collect(), 4),
        2
    );
    let streamed: Vec<String> = pages
        .into_iter()
        .flat_map(|p| p.container_stats)
        .map(|s| {
            assert!(s.cpu.is_some() && s.memory.is_some());
            s.attributes.unwrap().id
        })
        .collect();
    assert_eq!(streamed, unary);
    assert_eq!(unary.len(), 4, "the running ones");

    let unary: Vec<String> = rt
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest { filter: None })
        .await
        .expect("ListPodSandboxStats")
        .into_inner()
        .stats
        .into_iter()
        .map(|s| s.attributes.unwrap().id)
        .collect();
    let pages: Vec<StreamPodSandboxStatsResponse> = collect_pages(
        rt.stream_pod_sandbox_stats(StreamPodSandboxStatsRequest { filter: None })
            .await
            .expect("StreamPodSandboxStats")
            .into_inner(),
    )
    .await;
    sizes_ok(pages.iter().map(|p| p.pod_sandbox_stats.len()).collect(), 4);
    let streamed: Vec<String> = pages
        .into_iter()
        .flat_map(|p| p.pod_sandbox_stats)
        .map(|s| s.attributes.unwrap().id)
        .collect();
    assert_eq!(streamed, unary);

    // Images, and an empty result: a stream without messages.
    let mut images = env.daemon.image().await;
    let unary = images
        .list_images(ListImagesRequest { filter: None })
        .await
        .expect("ListImages")
        .into_inner()
        .images;
    let pages: Vec<StreamImagesResponse> = collect_pages(
        images
            .stream_images(StreamImagesRequest { filter: None })
            .await
            .expect("StreamImages")
            .into_inner(),
    )
    .await;
    let streamed: Vec<_> = pages.into_iter().flat_map(|p| p.images).collect();
    assert_eq!(streamed, unary);
    let none: Vec<StreamContainersResponse> = collect_pages(
        rt.stream_containers(StreamContainersRequest {
            filter: Some(ContainerFilter {
                id: "nothing-has-this-id".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("StreamContainers")
        .into_inner(),
    )
    .await;
    assert!(none.is_empty(), "{none:?}");

    for pod_id in &pod_ids {
        stop_and_remove_pod(&mut rt, pod_id).await;
    }
    env.assert_clean(&pod_ids).await;
}

/// Every message of a stream (which must end without an error).
async fn collect_pages<T>(stream: Streaming<T>) -> Vec<T> {
    stream.map(|page| page.expect("a page")).collect().await
}

fn read_cgroup_file(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
        .trim()
        .to_owned()
}

/// The cgroup file holding `name` (v1 controller file or v2 file) of the pod's cgroup.
fn pod_cgroup_file(cgroup: &str, v1_controller: &str, v1_name: &str, v2_name: &str) -> String {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v2 {
        read_cgroup_file(
            &Path::new("/sys/fs/cgroup").join(cgroup.trim_start_matches('/')),
            v2_name,
        )
    } else {
        let dir = Path::new("/sys/fs/cgroup")
            .join(v1_controller)
            .join(cgroup.trim_start_matches('/'));
        read_cgroup_file(&dir, v1_name)
    }
}

/// UpdatePodSandboxResources writes the pod cgroup's limits and keeps them; bad requests are
/// InvalidArgument naming the field and change nothing; an unknown pod is NotFound, a stopped
/// one FailedPrecondition.
#[tokio::test]
async fn update_pod_sandbox_resources_changes_the_pod_cgroup() {
    let _serial = SERIAL.lock().await;
    let env = PodEnv::start(4, Chain::Standard);
    let mut rt = env.runtime().await;
    let pod_id = rt
        .run_pod_sandbox(run_request(pod_config(
            "resize",
            "fcet-ns",
            "uid-resize",
            0,
        )))
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    env.note(&pod_id);
    let (_, info) = status(&mut rt, &pod_id).await;
    let cgroup = info.cgroup.clone();
    let memory = || pod_cgroup_file(&cgroup, "memory", "memory.limit_in_bytes", "memory.max");
    let quota = || {
        let text = pod_cgroup_file(&cgroup, "cpu", "cpu.cfs_quota_us", "cpu.max");
        text.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let shares = || pod_cgroup_file(&cgroup, "cpu", "cpu.shares", "cpu.weight");

    let resources = LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 256 << 20,
        ..Default::default()
    };
    let update = |id: &str, overhead, resources| UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: id.to_owned(),
        overhead,
        resources,
    };
    rt.update_pod_sandbox_resources(update(
        &pod_id,
        Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        Some(resources.clone()),
    ))
    .await
    .expect("UpdatePodSandboxResources");
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(memory(), (256u64 << 20).to_string());
    assert_eq!(quota(), "50000");
    // cpu.weight on v2 is the shares converted as runc does.
    assert_eq!(shares(), if v2 { "20" } else { "512" });

    // Larger again, by a unique ID prefix.
    let bigger = LinuxContainerResources {
        memory_limit_in_bytes: 512 << 20,
        ..resources.clone()
    };
    rt.update_pod_sandbox_resources(update(&pod_id[..12], None, Some(bigger)))
        .await
        .expect("UpdatePodSandboxResources by prefix");
    assert_eq!(memory(), (512u64 << 20).to_string());

    // Bad requests name the field and change nothing.
    let cases = [
        (update("", None, None), "pod_sandbox_id"),
        (
            update(
                &pod_id,
                None,
                Some(LinuxContainerResources {
                    cpu_shares: 1,
                    ..Default::default()
                }),
            ),
            "resources.cpu_shares",
        ),
        (
            update(
                &pod_id,
                None,
                Some(LinuxContainerResources {
                    memory_limit_in_bytes: -5,
                    ..Default::default()
                }),
            ),
            "resources.memory_limit_in_bytes",
        ),
        (
            update(
                &pod_id,
                Some(LinuxContainerResources {
                    cpuset_cpus: "1-0".into(),
                    ..Default::default()
                }),
                None,
            ),
            "overhead.cpuset_cpus",
        ),
        (
            update(
                "no-such-pod",
                None,
                Some(LinuxContainerResources {
                    cpu_quota: 7,
                    ..Default::default()
                }),
            ),
            "resources.cpu_quota",
        ),
    ];
    for (request, field) in cases {
        let err = rt.update_pod_sandbox_resources(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().starts_with(field), "{field}: {err:?}");
    }
    if !v2 {
        let unified = LinuxContainerResources {
            unified: HashMap::from([("memory.high".to_owned(), "1G".to_owned())]),
            ..Default::default()
        };
        let err = rt
            .update_pod_sandbox_resources(update(&pod_id, None, Some(unified)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("resources.unified"), "{err:?}");
    }
    assert_eq!(memory(), (512u64 << 20).to_string());

    let err = rt
        .update_pod_sandbox_resources(update("no-such-pod", None, Some(resources.clone())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .expect("StopPodSandbox");
    let err = rt
        .update_pod_sandbox_resources(update(&pod_id, None, Some(resources)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .expect("RemovePodSandbox");
    env.assert_clean(&[pod_id]).await;
}

/// kubelet's order for an in-place CPU raise: UpdatePodSandboxResources first, then its own pod
/// cgroup (our cgroup's parent). cgroup v1 refuses a child's CFS quota above the parent's, so
/// the call must still succeed (it is a best-effort notice; an error made kubelet reject the
/// resize), and a lowering below the parent's quota must reach the sandbox cgroup.
#[tokio::test]
async fn update_pod_sandbox_resources_before_kubelet_raises_the_parent() {
    let _serial = SERIAL.lock().await;
    let cpu = Path::new("/sys/fs/cgroup/cpu");
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() || !cpu.exists() {
        eprintln!("no cgroup v1 cpu hierarchy: the refusal this test is about does not exist");
        return;
    }
    /// Removes the parent cgroup last, also when the test fails (after the pod's guard).
    struct RemoveDir(std::path::PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let parent_name = format!("fcet-parent-{}", std::process::id());
    let parent = cpu.join(&parent_name);
    std::fs::create_dir(&parent).expect("parent cgroup");
    let _parent_guard = RemoveDir(parent.clone());
    std::fs::write(parent.join("cpu.cfs_quota_us"), "20000").expect("parent quota");
    let env = PodEnv::start(5, Chain::Standard);
    let mut rt = env.runtime().await;
    let mut config = pod_config("resize-parent", "fcet-ns", "uid-resize-parent", 0);
    config.linux.as_mut().unwrap().cgroup_parent = format!("/{parent_name}");
    let pod_id = rt
        .run_pod_sandbox(run_request(config))
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    env.note(&pod_id);
    let (_, info) = status(&mut rt, &pod_id).await;
    let quota = || pod_cgroup_file(&info.cgroup, "cpu", "cpu.cfs_quota_us", "cpu.max");
    let update = |quota: i64| UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: pod_id.clone(),
        overhead: None,
        resources: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: quota,
            ..Default::default()
        }),
    };
    rt.update_pod_sandbox_resources(update(30_000))
        .await
        .expect("a raise above the parent's quota is accepted");
    assert_eq!(
        quota(),
        "-1",
        "the kernel refused it, so the cgroup kept its value"
    );
    rt.update_pod_sandbox_resources(update(15_000))
        .await
        .expect("a lowering");
    assert_eq!(quota(), "15000");
    stop_and_remove_pod(&mut rt, &pod_id).await;
    env.assert_clean(&[pod_id]).await;
    drop(env);
    std::fs::remove_dir(&parent).expect("remove the parent cgroup");
}
