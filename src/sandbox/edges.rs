//! The pod service's edges: what `Sandboxes` asks of the network (CNI), the cgroup driver, the
//! host (namespace pins, /dev/shm, stray processes) and the pod monitors, each behind a small
//! trait. The daemon builds [`Edges::real`], which forwards to the drivers unchanged; unit
//! tests build `Sandboxes` from fakes (`sandbox/fakes.rs`) and run without root.
//!
//! Async methods return boxed futures, so the traits stay object-safe without a macro crate.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;

use super::record::SandboxRecord;
use super::shm;
use crate::cgroup::{CgroupError, Cgroups, DeviceRule, Resources, Stats};
use crate::cni::config::{self as cni_config, NetworkList, NotReady};
use crate::cni::invoke::{AddResult, Attachment, Cni, CniError};
use crate::config::Config;
use crate::monitor::client::{self as monitor_client, MonitorError, PodMonitor, Started};
use crate::monitor::layout;
use crate::monitor::protocol::{
    AttachRequest, CreateRequest, ExecRequest, ExecResult, ExecStreamRequest, PodSpec, PodStatus,
};
use crate::monitor::session::{SessionReader, SessionWriter};
use crate::netns;

/// Everything outside the store that the pod service touches.
#[derive(Clone)]
pub struct Edges {
    pub network: Arc<dyn Network>,
    /// None without a usable cgroup filesystem: pods then run without cgroups.
    pub cgroups: Option<Arc<dyn CgroupDriver>>,
    pub host: Arc<dyn Host>,
    pub monitors: Arc<dyn Monitors>,
    /// The same cgroup driver as `cgroups`, concrete, for the pod and metrics readers that
    /// have no seam yet. None in unit tests.
    pub shared_cgroups: Option<Arc<Cgroups>>,
}

impl Edges {
    /// The real drivers, as the daemon runs them.
    pub fn real(config: &Config) -> Edges {
        let cgroups = match Cgroups::detect() {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                tracing::warn!(error = %e, "no usable cgroup filesystem: pods run without cgroups");
                None
            }
        };
        Edges {
            network: Arc::new(CniNetwork {
                conf_dir: config.cni.conf_dir.clone(),
                cni: Cni::new(
                    config.cni.bin_dirs.clone(),
                    config.root_dir.join("cni").join("results"),
                ),
            }),
            cgroups: cgroups.clone().map(|c| c as Arc<dyn CgroupDriver>),
            host: Arc::new(RealHost),
            monitors: Arc::new(RealMonitors),
            shared_cgroups: cgroups,
        }
    }
}

/// The pod network: CNI ADD, DEL and CHECK against the configured network list.
pub trait Network: Send + Sync {
    /// The network pods join, once its configuration and plugins are in place.
    fn ready(&self) -> Result<NetworkList, NotReady>;
    fn add<'a>(
        &'a self,
        network: &'a NetworkList,
        attachment: &'a Attachment,
    ) -> BoxFuture<'a, Result<AddResult, CniError>>;
    /// DEL by network name (the cached configuration is used when there is one).
    fn del<'a>(
        &'a self,
        network: &'a str,
        attachment: &'a Attachment,
    ) -> BoxFuture<'a, Result<(), CniError>>;
    fn check<'a>(
        &'a self,
        network: &'a NetworkList,
        attachment: &'a Attachment,
    ) -> BoxFuture<'a, Result<(), CniError>>;
}

/// The CNI plugins on this host, with the configuration folder they are found through.
pub struct CniNetwork {
    conf_dir: PathBuf,
    cni: Cni,
}

impl Network for CniNetwork {
    fn ready(&self) -> Result<NetworkList, NotReady> {
        cni_config::check_ready(&self.conf_dir, &self.cni.bin_dirs)
    }

    fn add<'a>(
        &'a self,
        network: &'a NetworkList,
        attachment: &'a Attachment,
    ) -> BoxFuture<'a, Result<AddResult, CniError>> {
        Box::pin(self.cni.add(network, attachment))
    }

    fn del<'a>(
        &'a self,
        network: &'a str,
        attachment: &'a Attachment,
    ) -> BoxFuture<'a, Result<(), CniError>> {
        Box::pin(self.cni.del(network, attachment))
    }

    fn check<'a>(
        &'a self,
        network: &'a NetworkList,
        attachment: &'a Attachment,
    ) -> BoxFuture<'a, Result<(), CniError>> {
        Box::pin(self.cni.check(network, attachment))
    }
}

/// The cgroup operations on pod cgroups. Blocking: callers run them where blocking is fine.
pub trait CgroupDriver: Send + Sync {
    fn create(&self, path: &str) -> Result<(), CgroupError>;
    fn apply(&self, path: &str, resources: &Resources) -> Result<(), CgroupError>;
    fn set_devices(&self, path: &str, rules: &[DeviceRule]) -> Result<(), CgroupError>;
    fn kill_all(&self, path: &str) -> Result<(), CgroupError>;
    fn remove(&self, path: &str) -> Result<(), CgroupError>;
    fn remove_if_empty(&self, path: &str) -> Result<bool, CgroupError>;
    fn stats(&self, path: &str) -> Result<Stats, CgroupError>;
    /// The part of `stats` that ContainerStats reports, read from fewer files.
    fn usage(&self, path: &str) -> Result<Stats, CgroupError> {
        self.stats(path)
    }
}

impl CgroupDriver for Cgroups {
    fn create(&self, path: &str) -> Result<(), CgroupError> {
        Cgroups::create(self, path)
    }
    fn apply(&self, path: &str, resources: &Resources) -> Result<(), CgroupError> {
        Cgroups::apply(self, path, resources)
    }
    fn set_devices(&self, path: &str, rules: &[DeviceRule]) -> Result<(), CgroupError> {
        Cgroups::set_devices(self, path, rules)
    }
    fn kill_all(&self, path: &str) -> Result<(), CgroupError> {
        Cgroups::kill_all(self, path)
    }
    fn remove(&self, path: &str) -> Result<(), CgroupError> {
        Cgroups::remove(self, path)
    }
    fn remove_if_empty(&self, path: &str) -> Result<bool, CgroupError> {
        Cgroups::remove_if_empty(self, path)
    }
    fn stats(&self, path: &str) -> Result<Stats, CgroupError> {
        Cgroups::stats(self, path)
    }
    fn usage(&self, path: &str) -> Result<Stats, CgroupError> {
        Cgroups::usage(self, path)
    }
}

/// Host operations that need root: namespaces and their pins, the pod's /dev/shm, and
/// killing a pause that outlived its monitor. Blocking.
pub trait Host: Send + Sync {
    /// A new network namespace with `lo` up, pinned at `pin`.
    fn create_netns(&self, pin: &Path) -> io::Result<()>;
    /// The pod's user namespace and a network namespace it owns, both pinned, `lo` up.
    fn create_userns(
        &self,
        mappings: &crate::userns::Mappings,
        user_pin: &Path,
        net_pin: &Path,
    ) -> io::Result<()>;
    /// Unpins (and removes) a namespace pin; a pin that is gone is fine.
    fn remove_pin(&self, pin: &Path) -> io::Result<()>;
    /// Removes the pins the monitor made in the pod dir (IPC, UTS); idempotent.
    fn unpin_monitor_namespaces(&self, pod_dir: &Path);
    fn mount_shm(&self, target: &Path) -> io::Result<()>;
    /// Unmounts the pod's /dev/shm; one that is not mounted is fine.
    fn unmount_shm(&self, target: &Path) -> io::Result<()>;
    /// Kills the pod's pause if it still runs as this pod's (not a reused pid).
    fn kill_stray_pause(&self, record: &SandboxRecord);
    /// The host's name (a host-network pod's hostname).
    fn hostname(&self) -> String;
}

/// This machine.
pub struct RealHost;

impl Host for RealHost {
    fn create_netns(&self, pin: &Path) -> io::Result<()> {
        netns::create(pin)
    }

    fn create_userns(
        &self,
        mappings: &crate::userns::Mappings,
        user_pin: &Path,
        net_pin: &Path,
    ) -> io::Result<()> {
        let helper = crate::userns::Helper::start(&monitor_client::program()?, mappings)?;
        crate::userns::pin(&helper.ns_path("user"), user_pin)?;
        crate::userns::pin(&helper.ns_path("net"), net_pin)?;
        drop(helper);
        netns::run_in(net_pin, || netns::set_link_up("lo"))?
    }

    fn remove_pin(&self, pin: &Path) -> io::Result<()> {
        netns::remove(pin)
    }

    fn unpin_monitor_namespaces(&self, pod_dir: &Path) {
        layout::unpin_namespaces(pod_dir);
    }

    fn mount_shm(&self, target: &Path) -> io::Result<()> {
        shm::mount_shm(target)
    }

    fn unmount_shm(&self, target: &Path) -> io::Result<()> {
        shm::unmount_shm(target)
    }

    fn kill_stray_pause(&self, record: &SandboxRecord) {
        if record.pause_pid > 0 && process_belongs_to(record.pause_pid, record) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(record.pause_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    fn hostname(&self) -> String {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Whether `pid` still is the pause of this pod and not a reused pid: it is named "pause"
/// and sits in one of the pod's pinned namespaces (checked before the pins go).
fn process_belongs_to(pid: i32, record: &SandboxRecord) -> bool {
    use std::os::unix::fs::MetadataExt;
    let named_pause =
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "pause");
    let pins = [
        ("ipc", layout::namespace_pin(&record.dir, "ipc")),
        ("uts", layout::namespace_pin(&record.dir, "uts")),
    ];
    let net = record.netns.clone().map(|p| ("net", p));
    named_pause
        && pins.into_iter().chain(net).any(|(kind, pin)| {
            let ours = std::fs::metadata(&pin).map(|m| m.ino());
            let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{kind}")).map(|m| m.ino());
            matches!((ours, theirs), (Ok(a), Ok(b)) if a == b)
        })
}

/// Pod monitors: starting one for a pod, and a client for the one of a pod dir.
pub trait Monitors: Send + Sync {
    /// Starts the monitor (and its pause) for the pod in `pod_dir`; returns once both are up.
    fn start<'a>(
        &'a self,
        pod_dir: &'a Path,
        spec: &'a PodSpec,
    ) -> BoxFuture<'a, Result<Started, MonitorError>>;
    /// The monitor of the pod whose state dir is `pod_dir`.
    fn of(&self, pod_dir: &Path) -> Box<dyn MonitorClient>;
}

/// Every request one pod's monitor answers (see [`PodMonitor`]).
pub trait MonitorClient: Send + Sync {
    /// The monitor's view of the pod; an error when the monitor is gone.
    fn status(&self) -> BoxFuture<'_, Result<PodStatus, MonitorError>>;
    /// Stops the pod's processes and the monitor; a monitor already gone is fine.
    fn shutdown(&self) -> BoxFuture<'_, Result<(), MonitorError>>;
    fn create(&self, request: CreateRequest) -> BoxFuture<'_, Result<i32, MonitorError>>;
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), MonitorError>>;
    fn signal<'a>(&'a self, id: &'a str, signal: i32) -> BoxFuture<'a, Result<(), MonitorError>>;
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), MonitorError>>;
    fn reopen_log<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), MonitorError>>;
    fn exec_sync(&self, request: ExecRequest) -> BoxFuture<'_, Result<ExecResult, MonitorError>>;
    fn exec(&self, request: ExecStreamRequest) -> BoxFuture<'_, Session>;
    fn attach(&self, request: AttachRequest) -> BoxFuture<'_, Session>;
}

/// An exec or attach session: its two halves.
pub type Session = Result<(SessionWriter, SessionReader), MonitorError>;

/// `ferrocri-monitor` processes, over their sockets.
pub struct RealMonitors;

impl Monitors for RealMonitors {
    fn start<'a>(
        &'a self,
        pod_dir: &'a Path,
        spec: &'a PodSpec,
    ) -> BoxFuture<'a, Result<Started, MonitorError>> {
        Box::pin(monitor_client::start(pod_dir, spec))
    }

    fn of(&self, pod_dir: &Path) -> Box<dyn MonitorClient> {
        Box::new(PodMonitor::of(pod_dir))
    }
}

impl MonitorClient for PodMonitor {
    fn status(&self) -> BoxFuture<'_, Result<PodStatus, MonitorError>> {
        Box::pin(PodMonitor::status(self))
    }
    fn shutdown(&self) -> BoxFuture<'_, Result<(), MonitorError>> {
        Box::pin(PodMonitor::shutdown(self))
    }
    fn create(&self, request: CreateRequest) -> BoxFuture<'_, Result<i32, MonitorError>> {
        Box::pin(PodMonitor::create(self, request))
    }
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), MonitorError>> {
        Box::pin(PodMonitor::start(self, id))
    }
    fn signal<'a>(&'a self, id: &'a str, signal: i32) -> BoxFuture<'a, Result<(), MonitorError>> {
        Box::pin(PodMonitor::signal(self, id, signal))
    }
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), MonitorError>> {
        Box::pin(PodMonitor::remove(self, id))
    }
    fn reopen_log<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), MonitorError>> {
        Box::pin(PodMonitor::reopen_log(self, id))
    }
    fn exec_sync(&self, request: ExecRequest) -> BoxFuture<'_, Result<ExecResult, MonitorError>> {
        Box::pin(PodMonitor::exec_sync(self, request))
    }
    fn exec(&self, request: ExecStreamRequest) -> BoxFuture<'_, Session> {
        Box::pin(PodMonitor::exec(self, request))
    }
    fn attach(&self, request: AttachRequest) -> BoxFuture<'_, Session> {
        Box::pin(PodMonitor::attach(self, request))
    }
}
