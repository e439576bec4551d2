//! The container lifecycle of `Containers` on the pod service's fakes (`sandbox/fakes.rs`)
//! and a real store in a temporary folder: start, stop, remove, exit bookkeeping and
//! recovery, with the monitor calls they make. No root needed. Records are put in the store
//! as CreateContainer leaves them, or creates them from an image record put in the store.

use std::sync::Arc;
use std::time::Duration;

use super::record::{ContainerRecord, State};
use super::service::{ContainerError, Containers};
use crate::config::Config;
use crate::cri::v1::{
    ContainerConfig, ContainerEventType, ContainerMetadata, ImageSpec, PodSandboxConfig,
    PodSandboxMetadata,
};
use crate::digest::Digest;
use crate::image::catalog::{self, ImageRecord};
use crate::image::service::Images;
use crate::monitor::layout;
use crate::sandbox::fakes::Fakes;
use crate::sandbox::service::Sandboxes;
use crate::store::Store;

/// The pid the fake monitor gives every container it makes.
const CONTAINER_PID: i32 = 4300;

struct Harness {
    dir: tempfile::TempDir,
    fakes: Arc<Fakes>,
    containers: Arc<Containers>,
    pod: String,
    pod_dir: std::path::PathBuf,
    store: Store,
}

impl Harness {
    /// A ready pod (made through the fakes) and the container service over the same store.
    async fn new() -> Harness {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let config = Config {
            state_dir: dir.path().join("state"),
            root_dir: dir.path().join("root"),
            ..Config::default()
        };
        let store = Store::open(&dir.path().join("ferrocri.db")).expect("a store");
        let fakes = Fakes::new();
        let sandboxes = Arc::new(Sandboxes::new(&config, store.clone(), fakes.edges()));
        let images = Images::open(&config, store.clone()).expect("an image service");
        let containers = Arc::new(Containers::new(
            &config.root_dir,
            store.clone(),
            images,
            sandboxes.clone(),
            64,
            Vec::new(),
        ));
        let pod = sandboxes
            .run(pod_config(), String::new())
            .await
            .expect("the pod is created");
        let pod_dir = sandboxes.find(&pod).await.unwrap().unwrap().dir;
        fakes.take_calls();
        Harness {
            dir,
            fakes,
            containers,
            pod,
            pod_dir,
            store,
        }
    }

    /// A container of the pod in `state`, stored as CreateContainer leaves it.
    async fn insert(&self, id: &str, state: State) -> ContainerRecord {
        let mut record = ContainerRecord::for_test(id, state);
        record.sandbox_id = self.pod.clone();
        record.dir = self.dir.path().join("root/containers").join(id);
        std::fs::create_dir_all(record.dir.join("rootfs")).unwrap();
        self.containers
            .records
            .insert(format!("name-{id}"), record.clone())
            .await
            .expect("the record is stored");
        record
    }

    /// An image record as a pull leaves it (no layers: nothing here unpacks them).
    async fn image(&self, name: &'static str) {
        let digest = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        let image = ImageRecord {
            id: digest.to_string(),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            manifest_digest: digest,
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            platform: Default::default(),
            config: Default::default(),
            layers: Vec::new(),
            blobs: Vec::new(),
            size: 0,
            artifact_type: String::new(),
        };
        let digest_ref = format!("example.test/app@{}", image.id);
        self.store
            .run(move |c| catalog::record_pull(c, image, Some(name), &digest_ref))
            .await
            .expect("the image is recorded");
    }

    async fn running(&self, id: &str) -> ContainerRecord {
        self.insert(id, State::Created).await;
        self.containers
            .start(id)
            .await
            .expect("the container starts");
        self.fakes.take_calls();
        self.record(id).await.expect("the record")
    }

    async fn record(&self, id: &str) -> Option<ContainerRecord> {
        let found = self
            .containers
            .records
            .find(id)
            .await
            .expect("the store answers");
        found.map(Arc::unwrap_or_clone)
    }

    /// Records the container's exit as the monitor does.
    fn exit(&self, id: &str, code: i32) {
        let dir = layout::container_dir(&self.pod_dir, id);
        std::fs::create_dir_all(&dir).unwrap();
        let exit = layout::Exit {
            code,
            finished_at: 7,
            oom_killed: false,
        };
        layout::write_exit(&dir, &exit).unwrap();
    }
}

fn container_config(name: &str, image: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["/bin/true".into()],
        ..Default::default()
    }
}

fn pod_config() -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            namespace: "default".into(),
            uid: "uid-web".into(),
            attempt: 0,
        }),
        hostname: "web".into(),
        ..Default::default()
    }
}

/// The monitor calls only (the fakes also see cgroup calls).
fn monitor_calls(fakes: &Fakes) -> Vec<&'static str> {
    let calls = fakes.take_calls();
    calls
        .into_iter()
        .filter(|c| c.starts_with("monitor."))
        .collect()
}

/// The kinds of the events published so far (waiting briefly for each).
async fn events(subscription: &mut super::events::Subscription) -> Vec<ContainerEventType> {
    let mut kinds = Vec::new();
    while let Ok(Ok(event)) =
        tokio::time::timeout(Duration::from_millis(50), subscription.next()).await
    {
        kinds.push(event.container_event_type());
    }
    kinds
}

#[tokio::test]
async fn create_stores_a_created_container_and_asks_nothing_of_the_monitor() {
    let h = Harness::new().await;
    h.image("example.test/app:1").await;
    let id = h
        .containers
        .create(&h.pod, container_config("app", "example.test/app:1"), None)
        .await
        .expect("the container is created");
    let record = h.record(&id).await.expect("a record");
    assert_eq!(record.state, State::Created);
    assert_eq!(record.sandbox_id, h.pod);
    assert_eq!(record.pid, 0);
    assert!(
        layout::container_dir(&h.pod_dir, &id)
            .join("spec.json")
            .is_file(),
        "the spec the monitor reads at start is written"
    );
    assert_eq!(monitor_calls(&h.fakes), Vec::<&str>::new());
    // The same name again is refused, naming the container that holds it.
    let again = h
        .containers
        .create(&h.pod, container_config("app", "example.test/app:1"), None)
        .await;
    assert!(
        matches!(
            again.as_ref().map_err(ContainerError::root),
            Err(ContainerError::NameInUse { existing, .. }) if *existing == id
        ),
        "{again:?}"
    );
}

#[tokio::test]
async fn create_of_a_missing_image_leaves_nothing() {
    let h = Harness::new().await;
    let e = h
        .containers
        .create(&h.pod, container_config("app", "example.test/none:1"), None)
        .await
        .expect_err("no such image");
    assert!(matches!(e.root(), ContainerError::NotFound(_)), "{e}");
    assert!(h.containers.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn start_has_the_monitor_create_then_start_the_process() {
    let h = Harness::new().await;
    h.insert("c1", State::Created).await;
    h.containers
        .start("c1")
        .await
        .expect("the container starts");
    assert_eq!(
        monitor_calls(&h.fakes),
        ["monitor.create", "monitor.start_container"]
    );
    let record = h.record("c1").await.unwrap();
    assert_eq!(record.state, State::Running);
    assert_eq!(record.pid, CONTAINER_PID);
    assert!(record.started_at > 0);
}

#[tokio::test]
async fn a_start_failing_at_the_monitor_leaves_the_container_exited_with_start_error() {
    for failing in ["monitor.create", "monitor.start_container"] {
        let h = Harness::new().await;
        h.insert("c1", State::Created).await;
        h.fakes.fail_at(failing);
        let e = h.containers.start("c1").await.expect_err("the start fails");
        assert!(matches!(e, ContainerError::Failed { .. }), "{failing}: {e}");
        let record = h.record("c1").await.unwrap();
        assert_eq!(record.state, State::Exited, "{failing}");
        assert_eq!(record.exit_code, 128, "{failing}");
        assert_eq!(record.reason, "StartError", "{failing}");
        assert!(!record.message.is_empty(), "{failing}: the reason is kept");
    }
}

#[tokio::test]
async fn a_second_start_is_a_failed_precondition() {
    let h = Harness::new().await;
    h.running("c1").await;
    let e = h.containers.start("c1").await.expect_err("started already");
    assert!(matches!(e, ContainerError::Precondition(_)), "{e}");
    assert_eq!(monitor_calls(&h.fakes), Vec::<&str>::new());
}

#[tokio::test]
async fn stopping_a_created_container_exits_it_without_a_signal() {
    let h = Harness::new().await;
    h.insert("c1", State::Created).await;
    h.containers.stop("c1", 10).await.expect("stopped");
    let calls = monitor_calls(&h.fakes);
    assert!(!calls.contains(&"monitor.signal"), "{calls:?}");
    let record = h.record("c1").await.unwrap();
    assert_eq!(record.state, State::Exited);
    assert_eq!(record.reason, "Completed");
}

#[tokio::test]
async fn stopping_a_running_container_signals_it_and_reads_its_exit() {
    let h = Harness::new().await;
    h.running("c1").await;
    h.containers.stop("c1", 5).await.expect("stopped");
    assert_eq!(monitor_calls(&h.fakes), ["monitor.signal"]);
    let record = h.record("c1").await.unwrap();
    assert_eq!(record.state, State::Exited);
    assert_eq!(record.exit_code, 128 + libc::SIGTERM);
    assert_eq!(record.reason, "Error");
    // Stopping again changes nothing and signals nothing.
    h.containers.stop("c1", 5).await.expect("stopped again");
    assert_eq!(monitor_calls(&h.fakes), Vec::<&str>::new());
}

#[tokio::test]
async fn remove_deletes_the_record_and_the_monitor_side_and_is_idempotent() {
    let h = Harness::new().await;
    let record = h.insert("c1", State::Created).await;
    h.containers.remove("c1").await.expect("removed");
    assert_eq!(h.record("c1").await, None);
    assert!(!record.dir.exists(), "the container folder is gone");
    assert!(monitor_calls(&h.fakes).contains(&"monitor.remove"));
    h.containers.remove("c1").await.expect("removed again");
    assert!(matches!(
        h.containers.status("c1").await,
        Err(ContainerError::NotFound(_))
    ));
}

#[tokio::test]
async fn an_exit_recorded_by_the_monitor_marks_the_container_exited_once() {
    let h = Harness::new().await;
    h.running("c1").await;
    let mut subscription = h.containers.subscribe_events().expect("a subscription");
    assert_eq!(
        h.containers.status("c1").await.unwrap().state,
        State::Running
    );
    h.exit("c1", 3);
    let status = h.containers.status("c1").await.unwrap();
    assert_eq!((status.state, status.exit_code), (State::Exited, 3));
    assert_eq!(status.reason, "Error");
    assert_eq!(status.finished_at, 7);
    // Later reads find it recorded and publish nothing more.
    let listed = h.containers.list().await.unwrap();
    assert_eq!(listed[0].state, State::Exited);
    h.containers.status("c1").await.unwrap();
    assert_eq!(
        events(&mut subscription).await,
        [ContainerEventType::ContainerStoppedEvent]
    );
}

#[tokio::test]
async fn a_list_reads_exits_of_a_pod_it_was_not_watching() {
    let h = Harness::new().await;
    h.running("c1").await;
    h.running("c2").await;
    h.exit("c2", 0);
    let listed = h.containers.list().await.unwrap();
    let state = |id: &str| listed.iter().find(|r| r.id == id).unwrap().state;
    assert_eq!((state("c1"), state("c2")), (State::Running, State::Exited));
    assert_eq!(h.record("c2").await.unwrap().reason, "Completed");
}

#[tokio::test]
async fn recovery_undoes_a_container_left_creating() {
    let h = Harness::new().await;
    let half = h.insert("c1", State::Creating).await;
    h.insert("c2", State::Created).await;
    h.containers.recover().await.expect("recovered");
    assert_eq!(
        h.record("c1").await,
        None,
        "the half-made container is gone"
    );
    assert!(!half.dir.exists());
    assert_eq!(monitor_calls(&h.fakes), ["monitor.remove"]);
    assert_eq!(h.record("c2").await.unwrap().state, State::Created);
}

#[tokio::test]
async fn exec_sync_runs_only_in_a_running_container() {
    let h = Harness::new().await;
    h.insert("c1", State::Created).await;
    let e = h
        .containers
        .exec_sync("c1", vec!["true".into()], 0)
        .await
        .expect_err("not running");
    assert!(matches!(e, ContainerError::Precondition(_)), "{e}");
    h.running("c2").await;
    let result = h.containers.exec_sync("c2", vec!["true".into()], 0).await;
    assert_eq!(result.expect("the command ran").exit_code, 0);
    assert_eq!(monitor_calls(&h.fakes), ["monitor.exec_sync"]);
}

#[tokio::test]
async fn new_resources_reach_the_cgroup_and_the_record() {
    let h = Harness::new().await;
    let mut record = h.insert("c1", State::Created).await;
    record.cgroup = "/kubepods/c1".into();
    h.containers.records.update(record).await.unwrap();
    let linux = crate::cri::v1::LinuxContainerResources {
        cpu_shares: 512,
        ..Default::default()
    };
    h.containers
        .update_resources("c1", Some(linux))
        .await
        .expect("updated");
    assert_eq!(h.fakes.take_calls(), ["cgroup.apply"]);
    let stored = h.record("c1").await.unwrap().config.0.linux.unwrap();
    assert_eq!(stored.resources.unwrap().cpu_shares, 512);
}
