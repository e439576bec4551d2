//! The pod lifecycle of `Sandboxes` on fakes of its edges (`fakes.rs`) and a real store in a
//! temporary folder: creation and its undo at each failing step, stop and remove, recovery
//! at start-up, and one creation shared by concurrent callers. No root needed.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::error::{ErrorKind, SandboxError, StepError};
use super::fakes::{self, Fakes};
use super::record::{SandboxRecord, SandboxState};
use super::service::Sandboxes;
use crate::config::Config;
use crate::cri::stored::Stored;
use crate::cri::v1::{PodSandboxConfig, PodSandboxMetadata};
use crate::store::{Store, Table};

/// What a pod creation calls, in order (CNI ADD runs beside the cgroup, shm and monitor
/// steps; with immediate fakes it is polled first).
const CREATE_CALLS: [&str; 8] = [
    "netns.create",
    "network.ready",
    "cni.add",
    "cgroup.create",
    "cgroup.apply",
    "cgroup.set_devices",
    "shm.mount",
    "monitor.start",
];

/// What a teardown calls (the processes and the network side by side, so in no fixed order).
const TEARDOWN_CALLS: [&str; 10] = [
    "monitor.shutdown",
    "cgroup.kill_all",
    "cgroup.remove",
    "cgroup.remove_if_empty",
    "pause.kill_stray",
    "cni.del",
    "pin.remove",
    "pins.unpin_monitor",
    "pin.remove",
    "shm.unmount",
];

struct Harness {
    dir: tempfile::TempDir,
    fakes: Arc<Fakes>,
    store: Store,
    sandboxes: Arc<Sandboxes>,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open(&dir.path().join("ferrocri.db")).expect("a store");
        let fakes = Fakes::new();
        let sandboxes = Arc::new(Sandboxes::new(&config(&dir), store.clone(), fakes.edges()));
        Harness {
            dir,
            fakes,
            store,
            sandboxes,
        }
    }

    /// A second service over the same store and fakes: the daemon after a restart.
    fn restarted(&self) -> Arc<Sandboxes> {
        Arc::new(Sandboxes::new(
            &config(&self.dir),
            self.store.clone(),
            self.fakes.edges(),
        ))
    }

    async fn run(&self, name: &str) -> Result<String, SandboxError> {
        self.sandboxes.run(pod(name), String::new()).await
    }

    async fn record(&self, id: &str) -> Option<SandboxRecord> {
        self.sandboxes.find(id).await.expect("the store answers")
    }

    async fn count(&self) -> usize {
        self.sandboxes
            .list()
            .await
            .expect("the store answers")
            .len()
    }

    /// The pod folders under the state dir.
    fn pod_dirs(&self) -> Vec<std::path::PathBuf> {
        match std::fs::read_dir(self.dir.path().join("state").join("pods")) {
            Ok(entries) => entries.map(|e| e.expect("an entry").path()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn config(dir: &tempfile::TempDir) -> Config {
    Config {
        state_dir: dir.path().join("state"),
        ..Config::default()
    }
}

fn pod(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        }),
        hostname: name.into(),
        ..Default::default()
    }
}

fn sorted(calls: &[&'static str]) -> Vec<&'static str> {
    let mut calls = calls.to_vec();
    calls.sort_unstable();
    calls
}

#[tokio::test]
async fn create_runs_each_step_in_order_and_saves_a_ready_pod() {
    let h = Harness::new();
    let id = h.run("web").await.expect("the pod is created");
    assert_eq!(h.fakes.calls(), CREATE_CALLS);
    let record = h.record(&id).await.expect("a record");
    assert_eq!(record.state, SandboxState::Ready);
    assert_eq!(record.ip, fakes::POD_IP);
    assert_eq!(record.network, "fake");
    assert_eq!(record.cgroup, format!("/ferrocri/{id}"));
    assert_eq!(
        (record.monitor_pid, record.pause_pid),
        (fakes::MONITOR_PID, fakes::PAUSE_PID)
    );
    let netns = record.netns.clone().expect("a network namespace");
    assert_eq!(netns, record.dir.join("ns").join("net"));
    let hosts = std::fs::read_to_string(record.dir.join("hosts")).expect("a hosts file");
    assert!(
        hosts.contains(&format!("{}\tweb\n", fakes::POD_IP)),
        "{hosts}"
    );
    let live = h.fakes.live();
    let expected: BTreeSet<String> = [
        format!("netns {}", netns.display()),
        format!("cni {id}"),
        format!("cgroup /ferrocri/{id}"),
        format!("shm {}", record.dir.join("shm").display()),
        format!("monitor {}", record.dir.display()),
    ]
    .into();
    assert_eq!(live, expected);
}

#[tokio::test]
async fn host_network_pod_has_no_netns_and_no_cni() {
    let h = Harness::new();
    let mut config = pod("host");
    let linux = config.linux.get_or_insert_with(Default::default);
    let security = linux.security_context.get_or_insert_with(Default::default);
    security.namespace_options = Some(crate::cri::v1::NamespaceOption {
        network: crate::cri::v1::NamespaceMode::Node as i32,
        ..Default::default()
    });
    let id = h
        .sandboxes
        .run(config, String::new())
        .await
        .expect("created");
    let record = h.record(&id).await.expect("a record");
    assert_eq!(record.netns, None);
    assert!(record.network.is_empty());
    assert!(!h.fakes.calls().contains(&"cni.add"));
    assert!(h.fakes.calls().contains(&"host.hostname"));
    let hostname = std::fs::read_to_string(record.dir.join("hostname")).expect("hostname");
    assert_eq!(hostname, "fake-host\n");
}

#[tokio::test]
async fn user_namespace_pod_pins_both_namespaces_and_remove_unpins_them() {
    use crate::cri::v1::{IdMapping, NamespaceMode, NamespaceOption, UserNamespace};
    let h = Harness::new();
    let mut config = pod("userns");
    let mapping = vec![IdMapping {
        host_id: 100_000,
        container_id: 0,
        length: 65_536,
    }];
    let linux = config.linux.get_or_insert_with(Default::default);
    let security = linux.security_context.get_or_insert_with(Default::default);
    security.namespace_options = Some(NamespaceOption {
        userns_options: Some(UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: mapping.clone(),
            gids: mapping,
        }),
        ..Default::default()
    });
    let id = h
        .sandboxes
        .run(config, String::new())
        .await
        .expect("created");
    let mut expected = CREATE_CALLS.to_vec();
    expected[0] = "userns.create";
    assert_eq!(h.fakes.take_calls(), expected);
    let dir = h.record(&id).await.expect("a record").dir;
    let live = h.fakes.live();
    assert!(
        live.contains(&format!("netns {}", dir.join("ns/user").display())),
        "{live:?}"
    );
    assert!(
        live.contains(&format!("netns {}", dir.join("ns/net").display())),
        "{live:?}"
    );
    h.sandboxes.remove(&id).await.expect("removed");
    assert_eq!(h.fakes.live(), BTreeSet::new());
}

/// Fails creation at `step` and checks that nothing is left: no record, no pod folder,
/// nothing on the fake host; returns the error and the calls after the failing one.
async fn fail_creation_at(step: &'static str) -> (SandboxError, Vec<&'static str>) {
    let h = Harness::new();
    h.fakes.fail_at(step);
    let err = h.run("web").await.expect_err("creation fails");
    assert!(
        err.to_string().contains("RunPodSandbox failed while"),
        "{err}"
    );
    assert_eq!(h.count().await, 0, "no record is left after {step}");
    assert_eq!(h.pod_dirs(), Vec::<std::path::PathBuf>::new());
    assert_eq!(h.fakes.live(), BTreeSet::new(), "leftovers after {step}");
    let calls = h.fakes.calls();
    let at = calls.iter().position(|c| *c == step).expect("the step ran");
    (err, calls[at + 1..].to_vec())
}

#[tokio::test]
async fn create_failing_at_each_step_undoes_every_earlier_one() {
    for step in CREATE_CALLS {
        let (err, after) = fail_creation_at(step).await;
        let mut undo: Vec<&str> = TEARDOWN_CALLS.to_vec();
        // Before the network is found, neither it nor the cgroup is named yet: there is no
        // CNI DEL, no cgroup to remove, and one pin less (the network namespace's).
        if matches!(step, "netns.create" | "network.ready") {
            undo.retain(|c| !c.starts_with("cgroup.") && *c != "cni.del");
            if step == "netns.create" {
                undo.remove(undo.iter().position(|c| *c == "pin.remove").unwrap());
            }
        }
        if step == "netns.create" {
            assert_eq!(sorted(&after), sorted(&undo), "after {step}");
        } else {
            // Creation steps that run beside the failing one may come first.
            let undo_only: Vec<_> = after
                .iter()
                .copied()
                .filter(|c| !CREATE_CALLS.contains(c))
                .collect();
            assert_eq!(sorted(&undo_only), sorted(&undo), "after {step}");
        }
        assert!(
            matches!(err.root(), SandboxError::Step { .. }),
            "{step}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_failed_step_keeps_its_source_and_kind() {
    let (err, _) = fail_creation_at("cni.add").await;
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    let source = std::error::Error::source(err.root()).expect("a source");
    assert!(source.downcast_ref::<StepError>().is_some(), "{source:?}");
    assert!(matches!(
        err.root(),
        SandboxError::Step {
            step: "attaching the pod network (CNI ADD)",
            source: StepError::Cni(crate::cni::invoke::CniError::Timeout { .. })
        }
    ));
    let (err, _) = fail_creation_at("network.ready").await;
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    let (err, _) = fail_creation_at("monitor.start").await;
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(matches!(
        err.root(),
        SandboxError::Step {
            source: StepError::Monitor(_),
            ..
        }
    ));
    let (err, _) = fail_creation_at("netns.create").await;
    assert!(matches!(
        err.root(),
        SandboxError::Step {
            source: StepError::Io(_),
            ..
        }
    ));
}

/// Makes the store refuse updates of sandbox records matching `like` (SQL LIKE on the JSON).
fn refuse_updates(h: &Harness, like: &str) {
    let db = rusqlite::Connection::open(h.dir.path().join("ferrocri.db")).expect("the database");
    db.execute_batch(&format!(
        "CREATE TRIGGER refuse BEFORE UPDATE ON sandboxes WHEN NEW.record LIKE '{like}'
         BEGIN SELECT RAISE(ABORT, 'injected store failure'); END;"
    ))
    .expect("a trigger");
}

#[tokio::test]
async fn create_failing_to_save_undoes_everything() {
    // The first update names what teardown must undo; the last one saves Ready.
    for like in ["%\"state\":\"creating\"%", "%\"state\":\"ready\"%"] {
        let h = Harness::new();
        refuse_updates(&h, like);
        let err = h.run("web").await.expect_err("creation fails");
        assert!(matches!(err.root(), SandboxError::Store(_)), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(h.count().await, 0, "{like}");
        assert_eq!(h.pod_dirs(), Vec::<std::path::PathBuf>::new(), "{like}");
        assert_eq!(h.fakes.live(), BTreeSet::new(), "{like}");
        assert!(h.fakes.calls().contains(&"monitor.shutdown"), "{like}");
    }
}

#[tokio::test]
async fn a_used_name_is_refused_before_any_step() {
    let h = Harness::new();
    let first = h.run("web").await.expect("created");
    h.fakes.take_calls();
    // A new service: the first creation is over, so the name is looked up in the store.
    let err = h
        .restarted()
        .run(pod("web"), String::new())
        .await
        .expect_err("the name is used");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(matches!(err.root(), SandboxError::NameInUse { existing, .. } if *existing == first));
    assert_eq!(h.fakes.calls(), Vec::<&str>::new());
    assert_eq!(h.count().await, 1);
}

#[tokio::test]
async fn stop_tears_down_and_a_second_stop_does_not_detach_again() {
    let h = Harness::new();
    let id = h.run("web").await.expect("created");
    let dir = h.record(&id).await.expect("a record").dir;
    h.fakes.take_calls();
    h.sandboxes.stop(&id).await.expect("stopped");
    assert_eq!(sorted(&h.fakes.take_calls()), sorted(&TEARDOWN_CALLS));
    let record = h.record(&id).await.expect("still recorded");
    assert_eq!(record.state, SandboxState::NotReady);
    assert!(record.network.is_empty(), "CNI DEL is done once");
    assert_eq!(h.fakes.live(), BTreeSet::new());
    assert!(dir.exists(), "Stop keeps the pod folder");
    assert!(!h.sandboxes.is_running(&record).await);

    h.sandboxes.stop(&id).await.expect("stopped again");
    let again = h.fakes.take_calls();
    assert!(!again.contains(&"cni.del"), "{again:?}");
    assert_eq!(
        h.record(&id).await.expect("a record").state,
        SandboxState::NotReady
    );
}

#[tokio::test]
async fn stop_keeps_the_network_name_when_cni_del_fails() {
    let h = Harness::new();
    let id = h.run("web").await.expect("created");
    h.fakes.fail_at("cni.del");
    h.sandboxes.stop(&id).await.expect("Stop succeeds anyway");
    let record = h.record(&id).await.expect("a record");
    assert_eq!(record.state, SandboxState::NotReady);
    assert_eq!(record.network, "fake", "RemovePodSandbox will DEL again");
}

#[tokio::test]
async fn remove_deletes_record_and_folder_and_a_second_remove_is_a_no_op() {
    let h = Harness::new();
    let id = h.run("web").await.expect("created");
    let dir = h.record(&id).await.expect("a record").dir;
    h.sandboxes.stop(&id).await.expect("stopped");
    h.fakes.take_calls();
    h.sandboxes.remove(&id).await.expect("removed");
    let calls = h.fakes.take_calls();
    assert!(!calls.contains(&"cni.del"), "stopped already: {calls:?}");
    assert!(calls.contains(&"monitor.shutdown"), "{calls:?}");
    assert_eq!(h.record(&id).await, None);
    assert!(!dir.exists());
    h.sandboxes.remove(&id).await.expect("removed again");
    h.sandboxes.stop(&id).await.expect("an unknown pod stops");
    assert_eq!(h.fakes.calls(), Vec::<&str>::new());
}

#[tokio::test]
async fn remove_of_a_ready_pod_tears_it_down() {
    let h = Harness::new();
    let id = h.run("web").await.expect("created");
    h.fakes.take_calls();
    h.sandboxes.remove(&id).await.expect("removed");
    assert_eq!(sorted(&h.fakes.calls()), sorted(&TEARDOWN_CALLS));
    assert_eq!(h.fakes.live(), BTreeSet::new());
    assert_eq!(h.count().await, 0);
}

#[tokio::test]
async fn recovery_undoes_a_pod_left_creating() {
    let h = Harness::new();
    let id = "0123456789abcdef".to_owned();
    let dir = h.dir.path().join("state").join("pods").join(&id);
    std::fs::create_dir_all(&dir).expect("a pod folder");
    let record = SandboxRecord {
        id: id.clone(),
        state: SandboxState::Creating,
        created_at: 1,
        runtime_handler: String::new(),
        config: Stored(pod("crashed")),
        dir: dir.clone(),
        netns: Some(dir.join("ns").join("net")),
        network: "fake".into(),
        ip: String::new(),
        additional_ips: Vec::new(),
        cgroup: format!("/ferrocri/{id}"),
        monitor_pid: 0,
        pause_pid: 0,
    };
    let rid = id.clone();
    h.store
        .run(move |c| c.insert(Table::Sandboxes, &rid, "crashed", "", &record))
        .await
        .expect("inserted");
    h.restarted().recover().await.expect("recovered");
    assert_eq!(sorted(&h.fakes.calls()), sorted(&TEARDOWN_CALLS));
    assert_eq!(h.count().await, 0);
    assert!(!dir.exists());
}

#[tokio::test]
async fn recovery_stops_a_ready_pod_whose_monitor_died() {
    let h = Harness::new();
    let alive = h.run("alive").await.expect("created");
    let dead = h.run("dead").await.expect("created");
    let dead_dir = h.record(&dead).await.expect("a record").dir;
    h.fakes.kill_monitor(&dead_dir);
    h.fakes.take_calls();
    h.restarted().recover().await.expect("recovered");
    let calls = h.fakes.calls();
    assert_eq!(calls.iter().filter(|c| **c == "monitor.status").count(), 2);
    assert_eq!(calls.iter().filter(|c| **c == "cni.del").count(), 1);
    assert_eq!(
        h.record(&dead).await.expect("kept").state,
        SandboxState::NotReady
    );
    let record = h.record(&alive).await.expect("kept");
    assert_eq!(record.state, SandboxState::Ready);
    assert!(h.sandboxes.is_running(&record).await);
    assert!(h.fakes.live().contains(&format!("cni {alive}")));
    assert!(!h.fakes.live().contains(&format!("cni {dead}")));
}

#[tokio::test]
async fn concurrent_creations_of_one_pod_share_one_run() {
    let h = Harness::new();
    let gate = h.fakes.hold_monitor_starts();
    let first = tokio::spawn({
        let sandboxes = h.sandboxes.clone();
        async move { sandboxes.run(pod("web"), String::new()).await }
    });
    // Wait until the first creation is held at its monitor start.
    while !h.fakes.calls().contains(&"monitor.start") {
        tokio::task::yield_now().await;
    }
    let second = tokio::spawn({
        let sandboxes = h.sandboxes.clone();
        async move { sandboxes.run(pod("web"), String::new()).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(2);
    let first = first.await.expect("joined").expect("created");
    let second = second.await.expect("joined").expect("the same answer");
    assert_eq!(first, second);
    assert_eq!(h.fakes.calls(), CREATE_CALLS, "one creation");
    assert_eq!(h.count().await, 1);
}

#[tokio::test]
async fn a_caller_that_gives_up_does_not_stop_the_creation() {
    let h = Harness::new();
    let gate = h.fakes.hold_monitor_starts();
    let caller = tokio::spawn({
        let sandboxes = h.sandboxes.clone();
        async move { sandboxes.run(pod("web"), String::new()).await }
    });
    while !h.fakes.calls().contains(&"monitor.start") {
        tokio::task::yield_now().await;
    }
    caller.abort();
    gate.add_permits(1);
    // The creation finishes on its own task; the next caller finds the pod ready.
    let mut ready = false;
    for _ in 0..1000 {
        let pods = h.sandboxes.list().await.expect("the store answers");
        if pods.iter().any(|p| p.state == SandboxState::Ready) {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert!(ready, "the pod was finished");
}
