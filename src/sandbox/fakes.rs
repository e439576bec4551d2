//! Fakes of the pod service's edges, for unit tests without root: each call is recorded by
//! name in order, any one call can be made to fail, and what exists on the fake host
//! (namespace pins, CNI attachments, cgroups, /dev/shm mounts, monitors) is kept as a set,
//! so a test sees what was left behind.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;

use super::edges::{CgroupDriver, Edges, Host, MonitorClient, Monitors, Network, Session};
use super::record::SandboxRecord;
use crate::cgroup::{CgroupError, DeviceRule, Resources, Stats};
use crate::cni::config::{NetworkList, NotReady};
use crate::cni::invoke::{AddResult, Attachment, CniError, Command};
use crate::cni::result::IpConfig;
use crate::monitor::client::{MonitorError, Started};
use crate::monitor::layout;
use crate::monitor::protocol::{
    AttachRequest, CreateRequest, ExecRequest, ExecResult, ExecStreamRequest, PodSpec, PodStatus,
};

/// The address the fake network gives every pod.
pub const POD_IP: &str = "10.88.0.7";
pub const MONITOR_PID: i32 = 4242;
pub const PAUSE_PID: i32 = 4243;

/// The shared state of all fakes of one test.
#[derive(Default)]
pub struct Fakes {
    calls: Mutex<Vec<&'static str>>,
    fail_at: Mutex<Option<&'static str>>,
    live: Mutex<BTreeSet<String>>,
    /// When set, a monitor start waits for a permit (to hold a creation half-way).
    monitor_gate: Mutex<Option<Arc<Semaphore>>>,
}

impl Fakes {
    pub fn new() -> Arc<Fakes> {
        Arc::default()
    }

    /// Edges made of these fakes (with a cgroup driver).
    pub fn edges(self: &Arc<Self>) -> Edges {
        Edges {
            network: Arc::new(FakeNetwork(self.clone())),
            cgroups: Some(Arc::new(FakeCgroups(self.clone()))),
            host: Arc::new(FakeHost(self.clone())),
            monitors: Arc::new(FakeMonitors(self.clone())),
            shared_cgroups: None,
        }
    }

    /// The next call named `call` (e.g. "cni.add") fails, and every later one too.
    pub fn fail_at(&self, call: &'static str) {
        *lock(&self.fail_at) = Some(call);
    }

    pub fn calls(&self) -> Vec<&'static str> {
        lock(&self.calls).clone()
    }

    /// The calls so far, forgetting them.
    pub fn take_calls(&self) -> Vec<&'static str> {
        std::mem::take(&mut *lock(&self.calls))
    }

    /// What exists on the fake host.
    pub fn live(&self) -> BTreeSet<String> {
        lock(&self.live).clone()
    }

    /// The monitor of the pod in `dir` dies (its pod's other resources stay).
    pub fn kill_monitor(&self, dir: &Path) {
        lock(&self.live).remove(&key("monitor", dir));
    }

    /// From now on monitor starts wait for a permit of the returned semaphore.
    pub fn hold_monitor_starts(&self) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        *lock(&self.monitor_gate) = Some(gate.clone());
        gate
    }

    /// Records `call`; false when it is the one to fail.
    fn call(&self, call: &'static str) -> bool {
        lock(&self.calls).push(call);
        *lock(&self.fail_at) != Some(call)
    }

    fn add(&self, what: String) {
        lock(&self.live).insert(what);
    }

    fn remove(&self, what: &str) {
        lock(&self.live).remove(what);
    }

    fn has(&self, what: &str) -> bool {
        lock(&self.live).contains(what)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn key(kind: &str, path: &Path) -> String {
    format!("{kind} {}", path.display())
}

fn injected() -> io::Error {
    io::Error::other("injected failure")
}

struct FakeNetwork(Arc<Fakes>);

impl Network for FakeNetwork {
    fn ready(&self) -> Result<NetworkList, NotReady> {
        if !self.0.call("network.ready") {
            return Err(NotReady::NoConfig(PathBuf::from("/fake/net.d")));
        }
        Ok(NetworkList {
            file: PathBuf::from("/fake/net.d/10-fake.conflist"),
            name: "fake".into(),
            cni_version: "1.0.0".into(),
            plugins: Vec::new(),
        })
    }

    fn add<'a>(
        &'a self,
        network: &'a NetworkList,
        attachment: &'a Attachment,
    ) -> BoxFuture<'a, Result<AddResult, CniError>> {
        let ok = self.0.call("cni.add");
        Box::pin(async move {
            if !ok {
                return Err(CniError::Timeout {
                    network: network.name.clone(),
                    plugin: "fake".into(),
                    command: Command::Add,
                    timeout: Duration::from_secs(60),
                });
            }
            self.0.add(format!("cni {}", attachment.container_id));
            Ok(AddResult {
                ips: vec![IpConfig {
                    address: POD_IP.parse().expect("an address"),
                    prefix: 16,
                    gateway: None,
                    interface: Some(attachment.ifname.clone()),
                }],
                raw: serde_json::Value::Null,
            })
        })
    }

    fn del<'a>(
        &'a self,
        network: &'a str,
        attachment: &'a Attachment,
    ) -> BoxFuture<'a, Result<(), CniError>> {
        let ok = self.0.call("cni.del");
        Box::pin(async move {
            if !ok {
                return Err(CniError::Timeout {
                    network: network.to_owned(),
                    plugin: "fake".into(),
                    command: Command::Del,
                    timeout: Duration::from_secs(60),
                });
            }
            self.0.remove(&format!("cni {}", attachment.container_id));
            Ok(())
        })
    }

    fn check<'a>(
        &'a self,
        _network: &'a NetworkList,
        attachment: &'a Attachment,
    ) -> BoxFuture<'a, Result<(), CniError>> {
        self.0.call("cni.check");
        let attached = self.0.has(&format!("cni {}", attachment.container_id));
        Box::pin(async move {
            match attached {
                true => Ok(()),
                false => Err(CniError::NotAdded {
                    network: "fake".into(),
                    container_id: attachment.container_id.clone(),
                    ifname: attachment.ifname.clone(),
                }),
            }
        })
    }
}

struct FakeCgroups(Arc<Fakes>);

impl FakeCgroups {
    fn step(&self, call: &'static str, path: &str) -> Result<(), CgroupError> {
        match self.0.call(call) {
            true => Ok(()),
            false => Err(CgroupError::Create {
                path: path.to_owned(),
                dir: PathBuf::from("/sys/fs/cgroup/fake").join(path.trim_start_matches('/')),
                source: injected(),
            }),
        }
    }
}

impl CgroupDriver for FakeCgroups {
    fn create(&self, path: &str) -> Result<(), CgroupError> {
        self.step("cgroup.create", path)?;
        self.0.add(format!("cgroup {path}"));
        Ok(())
    }
    fn apply(&self, path: &str, _resources: &Resources) -> Result<(), CgroupError> {
        self.step("cgroup.apply", path)
    }
    fn set_devices(&self, path: &str, _rules: &[DeviceRule]) -> Result<(), CgroupError> {
        self.step("cgroup.set_devices", path)
    }
    fn kill_all(&self, path: &str) -> Result<(), CgroupError> {
        self.step("cgroup.kill_all", path)
    }
    fn remove(&self, path: &str) -> Result<(), CgroupError> {
        self.step("cgroup.remove", path)?;
        self.0.remove(&format!("cgroup {path}"));
        Ok(())
    }
    fn remove_if_empty(&self, path: &str) -> Result<bool, CgroupError> {
        self.step("cgroup.remove_if_empty", path)?;
        let prefix = format!("cgroup {path}/");
        Ok(!self.0.live().iter().any(|l| l.starts_with(&prefix)))
    }
    fn stats(&self, path: &str) -> Result<Stats, CgroupError> {
        self.step("cgroup.stats", path)?;
        Ok(Stats::default())
    }
}

struct FakeHost(Arc<Fakes>);

impl FakeHost {
    fn step(&self, call: &'static str) -> io::Result<()> {
        match self.0.call(call) {
            true => Ok(()),
            false => Err(injected()),
        }
    }
}

impl Host for FakeHost {
    fn create_netns(&self, pin: &Path) -> io::Result<()> {
        self.step("netns.create")?;
        self.0.add(key("netns", pin));
        Ok(())
    }
    fn create_userns(
        &self,
        _mappings: &crate::userns::Mappings,
        user_pin: &Path,
        net_pin: &Path,
    ) -> io::Result<()> {
        self.step("userns.create")?;
        self.0.add(key("netns", user_pin));
        self.0.add(key("netns", net_pin));
        Ok(())
    }
    fn remove_pin(&self, pin: &Path) -> io::Result<()> {
        self.step("pin.remove")?;
        self.0.remove(&key("netns", pin));
        Ok(())
    }
    fn unpin_monitor_namespaces(&self, _pod_dir: &Path) {
        self.0.call("pins.unpin_monitor");
    }
    fn mount_shm(&self, target: &Path) -> io::Result<()> {
        self.step("shm.mount")?;
        self.0.add(key("shm", target));
        Ok(())
    }
    fn unmount_shm(&self, target: &Path) -> io::Result<()> {
        self.step("shm.unmount")?;
        self.0.remove(&key("shm", target));
        Ok(())
    }
    fn kill_stray_pause(&self, _record: &SandboxRecord) {
        self.0.call("pause.kill_stray");
    }
    fn hostname(&self) -> String {
        self.0.call("host.hostname");
        "fake-host".into()
    }
}

struct FakeMonitors(Arc<Fakes>);

impl Monitors for FakeMonitors {
    fn start<'a>(
        &'a self,
        pod_dir: &'a Path,
        _spec: &'a PodSpec,
    ) -> BoxFuture<'a, Result<Started, MonitorError>> {
        let ok = self.0.call("monitor.start");
        let gate = lock(&self.0.monitor_gate).clone();
        Box::pin(async move {
            if let Some(gate) = gate {
                let _permit = gate.acquire().await.expect("the gate stays open");
            }
            if !ok {
                return Err(MonitorError::NotReady("injected failure".into()));
            }
            self.0.add(key("monitor", pod_dir));
            Ok(Started {
                monitor_pid: MONITOR_PID,
                pause_pid: PAUSE_PID,
            })
        })
    }

    fn of(&self, pod_dir: &Path) -> Box<dyn MonitorClient> {
        Box::new(FakeMonitor {
            fakes: self.0.clone(),
            dir: pod_dir.to_owned(),
        })
    }
}

/// One pod's fake monitor: it answers while the pod's monitor is live.
struct FakeMonitor {
    fakes: Arc<Fakes>,
    dir: PathBuf,
}

impl FakeMonitor {
    fn answer<T: Send + 'static>(
        &self,
        call: &'static str,
        value: T,
    ) -> BoxFuture<'static, Result<T, MonitorError>> {
        let ok = self.fakes.call(call) && self.fakes.has(&key("monitor", &self.dir));
        Box::pin(async move {
            match ok {
                true => Ok(value),
                false => Err(MonitorError::Failed {
                    kind: crate::error_kind::ErrorKind::Internal,
                    message: "the fake monitor is gone".into(),
                }),
            }
        })
    }
}

impl MonitorClient for FakeMonitor {
    fn status(&self) -> BoxFuture<'_, Result<PodStatus, MonitorError>> {
        self.answer(
            "monitor.status",
            PodStatus {
                monitor_pid: MONITOR_PID,
                pause_pid: PAUSE_PID,
                pause_exit: None,
                containers: Vec::new(),
            },
        )
    }
    fn shutdown(&self) -> BoxFuture<'_, Result<(), MonitorError>> {
        // As the real one: a monitor already gone is fine.
        self.fakes.call("monitor.shutdown");
        self.fakes.remove(&key("monitor", &self.dir));
        Box::pin(async { Ok(()) })
    }
    fn create(&self, _request: CreateRequest) -> BoxFuture<'_, Result<i32, MonitorError>> {
        self.answer("monitor.create", 4300)
    }
    fn start<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<(), MonitorError>> {
        self.answer("monitor.start_container", ())
    }
    /// Every signal ends the container: its exit is recorded where the real monitor
    /// records it, for the daemon's exit reading to find.
    fn signal<'a>(&'a self, id: &'a str, signal: i32) -> BoxFuture<'a, Result<(), MonitorError>> {
        let answer = self.answer("monitor.signal", ());
        Box::pin(async move {
            answer.await?;
            let dir = layout::container_dir(&self.dir, id);
            let exit = layout::Exit {
                code: 128 + signal,
                finished_at: crate::ids::now_nanos(),
                oom_killed: false,
            };
            std::fs::create_dir_all(&dir)
                .and_then(|()| layout::write_exit(&dir, &exit))
                .expect("the fake records the exit");
            Ok(())
        })
    }
    fn remove<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<(), MonitorError>> {
        self.answer("monitor.remove", ())
    }
    fn reopen_log<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<(), MonitorError>> {
        self.answer("monitor.reopen_log", ())
    }
    fn exec_sync(&self, _request: ExecRequest) -> BoxFuture<'_, Result<ExecResult, MonitorError>> {
        let result = ExecResult {
            stdout: Vec::new(),
            stderr: Vec::new(),
            exit_code: 0,
            timed_out: false,
        };
        self.answer("monitor.exec_sync", result)
    }
    fn exec(&self, _request: ExecStreamRequest) -> BoxFuture<'_, Session> {
        self.fakes.call("monitor.exec");
        Box::pin(async {
            Err(MonitorError::Failed {
                kind: crate::error_kind::ErrorKind::Internal,
                message: "no sessions in a fake".into(),
            })
        })
    }
    fn attach(&self, _request: AttachRequest) -> BoxFuture<'_, Session> {
        self.fakes.call("monitor.attach");
        Box::pin(async {
            Err(MonitorError::Failed {
                kind: crate::error_kind::ErrorKind::Internal,
                message: "no sessions in a fake".into(),
            })
        })
    }
}
