//! Container events (GetContainerEvents): what happened to a container, or to a pod (then the
//! event's container ID is the pod's, as containerd sends them), with the pod's status and the
//! statuses of all its containers at that moment, which is what kubelet's evented PLEG keeps.
//!
//! Every subscriber reads from one bounded broadcast ring. Publishing never waits; a
//! subscriber that falls a whole ring behind is dropped (its stream ends with an error, and
//! kubelet relists), so a slow or vanished subscriber blocks neither the runtime nor the other
//! subscribers, and memory stays bounded whatever the subscribers do.

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::{self, error::RecvError};

use super::record::State;
use super::service::Containers;
use super::status;
use crate::cri::v1::{ContainerEventResponse, ContainerEventType};
use crate::ids::now_nanos;
use crate::sandbox::record::{SandboxRecord, SandboxState};

pub struct EventHub {
    /// None once the daemon shuts down.
    sender: Mutex<Option<broadcast::Sender<Arc<ContainerEventResponse>>>>,
}

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The subscriber fell behind by more than the buffer; this many events were lost to it.
    Lagged(u64),
    /// The daemon is shutting down.
    Closed,
}

pub struct Subscription(broadcast::Receiver<Arc<ContainerEventResponse>>);

impl Subscription {
    /// The next event, in the order they were published.
    pub async fn next(&mut self) -> Result<ContainerEventResponse, Ended> {
        match self.0.recv().await {
            Ok(event) => Ok((*event).clone()),
            Err(RecvError::Lagged(lost)) => Err(Ended::Lagged(lost)),
            Err(RecvError::Closed) => Err(Ended::Closed),
        }
    }
}

impl EventHub {
    /// A hub that keeps up to `buffer` events for its slowest subscriber.
    pub fn new(buffer: usize) -> EventHub {
        EventHub {
            sender: Mutex::new(Some(broadcast::channel(buffer.max(1)).0)),
        }
    }

    fn sender(&self) -> Option<broadcast::Sender<Arc<ContainerEventResponse>>> {
        self.sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// None once the hub is closed.
    pub fn subscribe(&self) -> Option<Subscription> {
        self.sender().map(|s| Subscription(s.subscribe()))
    }

    /// Whether anyone listens (events are only built when someone does).
    pub fn has_subscribers(&self) -> bool {
        self.sender().is_some_and(|s| s.receiver_count() > 0)
    }

    pub fn publish(&self, event: ContainerEventResponse) {
        if let Some(sender) = self.sender() {
            // An error only means nobody listens any more.
            let _ = sender.send(Arc::new(event));
        }
    }

    /// Ends every subscription once it has read what was published before.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Whether the pod's pause runs, as far as its record and its monitor's files tell (no
/// monitor round trip: events are built on the runtime's own paths).
fn pod_ready(pod: &SandboxRecord) -> bool {
    pod.state == SandboxState::Ready
        && !pod
            .dir
            .join(crate::monitor::layout::PAUSE_EXIT_FILE)
            .exists()
}

impl Containers {
    /// A new subscription to the events; None while the daemon shuts down.
    pub fn subscribe_events(&self) -> Option<Subscription> {
        self.events().subscribe()
    }

    /// Ends every event subscription (at shutdown, so that no stream holds the server open).
    pub fn close_events(&self) {
        self.events().close();
    }

    /// Publishes an event about container `id` of pod `sandbox_id`.
    pub(super) async fn publish(&self, kind: ContainerEventType, id: &str, sandbox_id: &str) {
        if !self.events().has_subscribers() {
            return;
        }
        let pod = self.sandboxes().find(sandbox_id).await.ok().flatten();
        self.publish_with(kind, id, sandbox_id, pod.as_ref()).await;
    }

    /// Publishes an event about the pod itself, from its record as it is now (for
    /// CONTAINER_DELETED_EVENT, as it was just before it went).
    /// A pod's STOPPED goes out once, whether StopPodSandbox or the pause's exit reports it.
    pub async fn publish_pod(&self, kind: ContainerEventType, pod: &SandboxRecord) {
        {
            let mut stopped = self.pods_stopped.lock().unwrap_or_else(|p| p.into_inner());
            match kind {
                ContainerEventType::ContainerStoppedEvent if !stopped.insert(pod.id.clone()) => {
                    return;
                }
                ContainerEventType::ContainerDeletedEvent => {
                    stopped.remove(&pod.id);
                }
                _ => {}
            }
        }
        if self.events().has_subscribers() {
            self.publish_with(kind, &pod.id, &pod.id, Some(pod)).await;
        }
    }

    async fn publish_with(
        &self,
        kind: ContainerEventType,
        id: &str,
        sandbox_id: &str,
        pod: Option<&SandboxRecord>,
    ) {
        // The time is taken before the statuses are read: kubelet keeps the newest status by
        // this time, so a status must never claim a time later than what it has seen (a
        // container created in between would be missing from kubelet's view until the next
        // event).
        let created_at = now_nanos();
        let records = match self.all_records().await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the container records for an event");
                Vec::new()
            }
        };
        let containers_statuses = status::pod_statuses(
            records
                .iter()
                .filter(|r| r.sandbox_id == sandbox_id && r.state != State::Creating)
                .map(|r| r.as_ref()),
        );
        let deleted = kind == ContainerEventType::ContainerDeletedEvent && id == sandbox_id;
        let pod_sandbox_status = pod.map(|p| {
            let ready = !deleted && pod_ready(p);
            crate::sandbox::status::status_message(p, ready)
        });
        self.events().publish(ContainerEventResponse {
            container_id: id.to_owned(),
            container_event_type: kind as i32,
            created_at,
            pod_sandbox_status,
            containers_statuses,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> ContainerEventResponse {
        ContainerEventResponse {
            container_id: id.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_dropped_others_are_not() {
        let hub = EventHub::new(4);
        assert!(!hub.has_subscribers());
        let mut fast = hub.subscribe().unwrap();
        let mut slow = hub.subscribe().unwrap();
        assert!(hub.has_subscribers());
        for n in 0..10 {
            hub.publish(event(&n.to_string()));
            assert_eq!(fast.next().await.unwrap().container_id, n.to_string());
        }
        // The slow one lost 6 of 10 events: it is told so instead of getting a gap.
        assert_eq!(slow.next().await.unwrap_err(), Ended::Lagged(6));

        hub.publish(event("last"));
        hub.close();
        assert_eq!(fast.next().await.unwrap().container_id, "last");
        assert_eq!(fast.next().await.unwrap_err(), Ended::Closed);
        assert!(hub.subscribe().is_none());
        hub.publish(event("after close"));
    }
}
