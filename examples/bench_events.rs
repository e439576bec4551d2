//! Event benchmark client (run by hack/bench-events.sh against a release daemon): how long a
//! container's exit takes to reach a GetContainerEvents subscriber. One pod; N times, a
//! busybox container that sleeps a moment and exits is created and started; the time is from
//! the exit the monitor recorded (the status's `finished_at`, taken when it reaped the
//! process) to the arrival of CONTAINER_STOPPED_EVENT here (same host, same clock). It covers
//! the monitor's durable exit file, the exit watch, the record update and the gRPC stream.
//! Then N containers that sleep until the same moment and exit: the same figure under a burst.
//! Prints figures; asserts nothing.
//!
//!   bench_events <socket> [exits]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Runtime, report, stop_remove};
use ferrocri::cri::v1::*;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let socket = PathBuf::from(args.get(1).ok_or("usage: bench_events <socket> [exits]")?);
    let exits: usize = args.get(2).map(|n| n.parse()).transpose()?.unwrap_or(100);
    let mut client = common::connect(socket).await?;
    let mut events = client
        .get_container_events(GetEventsRequest {})
        .await?
        .into_inner();
    let (pod, config) = common::run_pod(&mut client, 0).await?;

    let mut one_at_a_time = Vec::with_capacity(exits);
    for i in 0..exits {
        let id = run(&mut client, &pod, &config, &format!("one-{i}"), "0.05").await?;
        let latency = stopped(&mut events, std::slice::from_ref(&id)).await?;
        one_at_a_time.extend(latency);
        remove(&mut client, id).await?;
    }
    report(
        &format!("exit to event, {exits} exits one at a time"),
        &mut one_at_a_time,
    );

    // A burst: every container sleeps until the same moment (creating and starting them takes
    // well under 100 ms each), then exits.
    let mut ids = Vec::with_capacity(exits);
    let at = std::time::Instant::now() + Duration::from_millis(1000 + 100 * exits as u64);
    for i in 0..exits {
        let left = at.saturating_duration_since(std::time::Instant::now());
        let seconds = format!("{:.3}", left.as_secs_f64().max(0.001));
        ids.push(run(&mut client, &pod, &config, &format!("burst-{i}"), &seconds).await?);
    }
    let mut burst = stopped(&mut events, &ids).await?;
    report(&format!("exit to event, {exits} exits at once"), &mut burst);

    stop_remove(&mut client, &pod).await?;
    Ok(())
}

/// Creates and starts a container that sleeps `seconds`, then exits.
async fn run(
    client: &mut Runtime,
    pod: &str,
    config: &Option<PodSandboxConfig>,
    name: &str,
    seconds: &str,
) -> Result<String, tonic::Status> {
    let id = common::create_busybox(client, pod, config.clone(), name, &["sleep", seconds]).await?;
    common::start(client, id.clone()).await?;
    Ok(id)
}

async fn remove(client: &mut Runtime, id: String) -> Result<(), tonic::Status> {
    client
        .remove_container(RemoveContainerRequest { container_id: id })
        .await?;
    Ok(())
}

/// Waits for CONTAINER_STOPPED_EVENT of each of `ids`; returns, for each, the time from the
/// exit to the event's arrival.
async fn stopped(
    events: &mut tonic::Streaming<ContainerEventResponse>,
    ids: &[String],
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let mut latencies = Vec::with_capacity(ids.len());
    while latencies.len() < ids.len() {
        let event = tokio::time::timeout(Duration::from_secs(60), events.message())
            .await??
            .ok_or("the event stream ended")?;
        let arrived = ferrocri::ids::now_nanos();
        if event.container_event_type != ContainerEventType::ContainerStoppedEvent as i32
            || !ids.contains(&event.container_id)
        {
            continue;
        }
        let finished_at = event
            .containers_statuses
            .iter()
            .find(|s| s.id == event.container_id)
            .map(|s| s.finished_at)
            .ok_or("the event lacks its container's status")?;
        latencies.push(Duration::from_nanos((arrived - finished_at).max(0) as u64));
    }
    Ok(latencies)
}
