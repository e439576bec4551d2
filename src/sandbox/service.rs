//! Pod sandbox lifecycle: RunPodSandbox builds a pod step by step, recording intent first, and
//! undoes every step when one fails; Stop and Remove tear down with the same idempotent
//! steps, which also clean up after a crash at start-up.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::Instrument;

use super::edges::Edges;
use super::error::{StepError, step};
use super::files;
use super::record::{SandboxRecord, SandboxState, name_key};
use crate::cgroup::Cgroups;
use crate::cni::config::{NetworkList, NotReady};
use crate::cni::invoke::{Attachment, PortMapping};
use crate::config::Config;
use crate::cri::stored::Stored;
use crate::cri::v1::{NamespaceMode, PodSandboxConfig, Protocol};
use crate::ids::{new_id, now_nanos};
use crate::inflight::Inflight;
use crate::monitor::{client as monitor_client, protocol::PodSpec};
use crate::store::{Store, StoreError, Table};

pub use super::error::SandboxError;

/// The cgroup parent of pods whose config names none (critest's cgroupfs case).
const DEFAULT_CGROUP_PARENT: &str = "/ferrocri";
const POD_IFNAME: &str = "eth0";

pub struct Sandboxes {
    store: Store,
    /// Every record, decoded once per write: lists are frequent, writes rare.
    all: crate::store::Snapshot<SandboxRecord>,
    state_dir: PathBuf,
    edges: Edges,
    creating: Inflight<String, String, SandboxError>,
}

impl Sandboxes {
    /// The pod service over `store`, reaching the host through `edges` ([`Edges::real`] in
    /// the daemon, fakes in unit tests).
    pub fn new(config: &Config, store: Store, edges: Edges) -> Sandboxes {
        Sandboxes {
            all: crate::store::Snapshot::new(store.clone(), Table::Sandboxes),
            store,
            state_dir: config.state_dir.clone(),
            edges,
            creating: Inflight::default(),
        }
    }

    /// RunPodSandbox. A second call for a pod still being created waits for the first and
    /// gets its answer.
    pub async fn run(
        self: &Arc<Self>,
        config: PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String, SandboxError> {
        // The request was checked at the door (`validate`); metadata is there.
        let meta = config.metadata.as_ref().ok_or(SandboxError::Invalid {
            field: "config.metadata",
            message: "is required".into(),
        })?;
        let key = name_key(meta);
        let this = self.clone();
        let work_key = key.clone();
        // A task of its own: a caller that gives up must not stop a half-built pod.
        self.creating
            .run_detached(
                key,
                move || async move { this.create(config, runtime_handler, work_key).await },
                |message| SandboxError::Step {
                    step: "running",
                    source: StepError::Task(message),
                },
            )
            .await
            .map_err(SandboxError::from)
    }

    async fn create(
        &self,
        config: PodSandboxConfig,
        runtime_handler: String,
        key: String,
    ) -> Result<String, SandboxError> {
        let id = new_id();
        let mut record = SandboxRecord {
            id: id.clone(),
            state: SandboxState::Creating,
            created_at: now_nanos(),
            runtime_handler,
            config: Stored(config),
            dir: self.state_dir.join("pods").join(&id),
            netns: None,
            network: String::new(),
            ip: String::new(),
            additional_ips: Vec::new(),
            cgroup: String::new(),
            monitor_pid: 0,
            pause_pid: 0,
        };
        let (rid, rkey, rrec) = (id.clone(), key.clone(), record.clone());
        self.store
            .run(move |c| c.insert(Table::Sandboxes, &rid, &rkey, "", &rrec))
            .instrument(tracing::debug_span!("runp.store_insert"))
            .await
            .map_err(|e| match e {
                StoreError::NameInUse { existing_id, .. } => SandboxError::NameInUse {
                    name: key.clone(),
                    existing: existing_id,
                },
                other => other.into(),
            })?;
        let built = match self.build(&mut record).await {
            Ok(()) => {
                record.state = SandboxState::Ready;
                // A pod whose Ready state cannot be saved is undone like any failed step.
                self.save(&record)
                    .instrument(tracing::debug_span!("runp.store_ready"))
                    .await
            }
            Err(e) => Err(e),
        };
        match built {
            Ok(()) => {
                tracing::info!(pod = %id, name = %key, ip = %record.ip, "pod sandbox ready");
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(pod = %id, error = %e, "RunPodSandbox failed; undoing");
                self.teardown(&record).await;
                let _ = std::fs::remove_dir_all(&record.dir);
                let rid = id.clone();
                self.store
                    .run(move |c| c.delete(Table::Sandboxes, &rid))
                    .await?;
                Err(e)
            }
        }
    }

    /// The creation steps; each one's undo is in `teardown`. The network (CNI ADD, the
    /// slow part) is attached while the cgroup, /dev/shm and the monitor and pause are set up.
    async fn build(&self, record: &mut SandboxRecord) -> Result<(), SandboxError> {
        let config = record.config.0.clone();
        std::fs::create_dir_all(&record.dir).map_err(step("creating the pod folder"))?;
        let network = if record.host_network() {
            None
        } else {
            Some(self.join_network(record).await?)
        };
        let parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_CGROUP_PARENT.to_owned());
        record.cgroup = format!("{}/{}", parent.trim_end_matches('/'), record.id);
        // Everything teardown must undo is named in the store before any of it exists.
        self.save(record)
            .instrument(tracing::debug_span!("runp.store_names"))
            .await?;
        let attach = async {
            match &network {
                Some(network) => self
                    .edges
                    .network
                    .add(network, &self.attachment(record, &config))
                    .instrument(tracing::debug_span!("runp.cni_add"))
                    .await
                    .map(Some)
                    .map_err(step("attaching the pod network (CNI ADD)")),
                None => Ok(None),
            }
        };
        let (attached, started) = tokio::join!(
            attach,
            self.start_processes(record, &config)
                .instrument(tracing::debug_span!("runp.processes"))
        );
        let started = started?;
        record.monitor_pid = started.monitor_pid;
        record.pause_pid = started.pause_pid;
        if let Some(result) = attached? {
            let mut ips = result.pod_ips(POD_IFNAME).map(|ip| ip.to_string());
            record.ip = ips.next().unwrap_or_default();
            record.additional_ips = ips.collect();
        }
        let hostname = if record.host_network() {
            self.edges.host.hostname()
        } else {
            config.hostname.clone()
        };
        files::write_all(
            &record.dir,
            &hostname,
            &record.ip,
            config.dns_config.as_ref(),
        )
        .map_err(step("writing resolv.conf, hosts and hostname"))
        // The caller saves the addresses with the Ready state: one commit (and fsync) less; a
        // crash before it leaves a Creating record, which recovery undoes.
    }

    /// The pod's network namespace (owned by its user namespace when it has one), and the
    /// CNI network it will join.
    async fn join_network(&self, record: &mut SandboxRecord) -> Result<NetworkList, SandboxError> {
        let pin = record.dir.join("ns").join("net");
        std::fs::create_dir_all(record.dir.join("ns"))
            .map_err(step("creating the network namespace"))?;
        match (record.userns_mappings(), record.userns_pin()) {
            (Some(mappings), Some(user_pin)) => {
                record.netns = Some(pin.clone());
                let started = std::time::Instant::now();
                let host = self.edges.host.clone();
                tokio::task::spawn_blocking(move || host.create_userns(&mappings, &user_pin, &pin))
                    .await
                    .map_err(StepError::from)
                    .and_then(|r| r.map_err(StepError::from))
                    .map_err(step("creating the user and network namespaces"))?;
                tracing::debug!(pod = %record.id, ms = started.elapsed().as_secs_f64() * 1000.0, "user namespace made");
            }
            _ => {
                let _span = tracing::debug_span!("runp.netns").entered();
                self.edges
                    .host
                    .create_netns(&pin)
                    .map_err(step("creating the network namespace"))?;
                record.netns = Some(pin);
            }
        }
        let network = self
            .edges
            .network
            .ready()
            .map_err(step("finding the CNI network"))?;
        record.network = network.name.clone();
        Ok(network)
    }

    /// The pod cgroup, its /dev/shm, and the monitor with the pause.
    async fn start_processes(
        &self,
        record: &SandboxRecord,
        config: &PodSandboxConfig,
    ) -> Result<monitor_client::Started, SandboxError> {
        if let Some(cgroups) = &self.edges.cgroups {
            // The sandbox's own resources (kubelet sends them as for a container) limit the
            // pause and monitor, as containerd applies them to its sandbox container.
            let resources = crate::cgroup::Resources::from_cri(
                config.linux.as_ref().and_then(|l| l.resources.as_ref()),
            );
            // The monitor and pause need no device beyond the default list (the monitor opens
            // /dev/null, /dev/ptmx and ptys; the containers have cgroups of their own).
            let _span = tracing::debug_span!("runp.cgroup").entered();
            cgroups
                .create(&record.cgroup)
                .and_then(|()| cgroups.apply(&record.cgroup, &resources))
                .and_then(|()| cgroups.set_devices(&record.cgroup, &crate::cgroup::DEFAULT_DEVICES))
                .map_err(step("creating the pod cgroup"))?;
        }
        if record.ipc_mode() != NamespaceMode::Node {
            self.edges
                .host
                .mount_shm(&record.dir.join("shm"))
                .map_err(step("mounting the pod's /dev/shm"))?;
        }
        let spec = PodSpec {
            sandbox_id: record.id.clone(),
            pod_namespace: record.metadata().namespace,
            pod_name: record.metadata().name,
            netns: record.netns.clone(),
            hostname: config.hostname.clone(),
            private_ipc: record.ipc_mode() != NamespaceMode::Node,
            private_uts: !record.host_network(),
            private_pid: record.pid_mode() != NamespaceMode::Node,
            sysctls: config
                .linux
                .as_ref()
                .map(|l| {
                    l.sysctls
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            // Without a cgroup filesystem the monitor stays where it starts.
            cgroup: if self.edges.cgroups.is_some() {
                record.cgroup.clone()
            } else {
                String::new()
            },
            userns: record.userns_pin(),
        };
        self.edges
            .monitors
            .start(&record.dir, &spec)
            .instrument(tracing::debug_span!("runp.monitor"))
            .await
            .map_err(step("starting the pod monitor"))
    }

    fn attachment(&self, record: &SandboxRecord, config: &PodSandboxConfig) -> Attachment {
        let meta = record.metadata();
        Attachment {
            container_id: record.id.clone(),
            netns: record.netns.clone().unwrap_or_default(),
            ifname: POD_IFNAME.into(),
            args: vec![
                ("K8S_POD_NAMESPACE".into(), meta.namespace.clone()),
                ("K8S_POD_NAME".into(), meta.name.clone()),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), record.id.clone()),
                ("K8S_POD_UID".into(), meta.uid.clone()),
            ],
            port_mappings: config
                .port_mappings
                .iter()
                .filter(|p| p.host_port > 0)
                .map(|p| PortMapping {
                    host_port: p.host_port,
                    container_port: p.container_port,
                    protocol: match Protocol::try_from(p.protocol) {
                        Ok(Protocol::Udp) => "udp",
                        Ok(Protocol::Sctp) => "sctp",
                        _ => "tcp",
                    }
                    .into(),
                    host_ip: p.host_ip.clone(),
                })
                .collect(),
        }
    }

    pub(super) async fn save(&self, record: &SandboxRecord) -> Result<(), SandboxError> {
        let r = record.clone();
        self.store
            .run(move |c| c.update(Table::Sandboxes, &r.id, &r).map(|_| ()))
            .await?;
        Ok(())
    }

    /// Stops the pod's processes and releases its network, shm and cgroup. Every step is
    /// idempotent and runs even when an earlier one failed; failures are logged. Stopping the
    /// processes and detaching the network run side by side: the netns pin keeps the
    /// namespace for CNI DEL whether or not the pause still lives. Returns whether the
    /// network is detached (so a later teardown need not run CNI DEL again).
    async fn teardown(&self, record: &SandboxRecord) -> bool {
        let started = std::time::Instant::now();
        let done = |what: &str| {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            tracing::debug!(pod = %record.id, ms, "{what} done");
        };
        let processes = async {
            self.stop_processes(record).await;
            done("processes");
        };
        let network = async {
            let detached = self.detach_network(record).await;
            done("network");
            detached
        };
        let ((), detached) = tokio::join!(processes, network);
        let id = &record.id;
        let host = &self.edges.host;
        if let Some(Err(e)) = record.netns.as_ref().map(|pin| host.remove_pin(pin)) {
            tracing::warn!(pod = %id, error = %e, "cannot remove the network namespace");
        }
        host.unpin_monitor_namespaces(&record.dir);
        if let Err(e) = host.remove_pin(&record.dir.join("ns").join("user")) {
            tracing::warn!(pod = %id, error = %e, "cannot remove the user namespace pin");
        }
        if let Err(e) = host.unmount_shm(&record.dir.join("shm")) {
            tracing::warn!(pod = %id, error = %e, "cannot unmount the pod's /dev/shm");
        }
        tracing::debug!(pod = %id, ms = started.elapsed().as_secs_f64() * 1000.0, "pod torn down");
        detached
    }

    async fn stop_processes(&self, record: &SandboxRecord) {
        let id = record.id.clone();
        if let Err(e) = self.edges.monitors.of(&record.dir).shutdown().await {
            tracing::warn!(pod = %id, error = %e, "pod monitor did not shut down cleanly");
        }
        // Whatever the monitor could not stop (or a monitor that died) goes now. Cgroup work
        // blocks (it waits for processes to die), so it runs on the blocking pool.
        let cgroups = self
            .edges
            .cgroups
            .clone()
            .filter(|_| !record.cgroup.is_empty());
        let host = self.edges.host.clone();
        let record = record.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(cgroups) = cgroups {
                if let Err(e) = cgroups.kill_all(&record.cgroup) {
                    tracing::warn!(pod = %id, error = %e, "cannot kill the pod's processes");
                }
                if let Err(e) = cgroups.remove(&record.cgroup) {
                    tracing::warn!(pod = %id, error = %e, "cannot remove the pod cgroup");
                }
                if record.cgroup.starts_with(DEFAULT_CGROUP_PARENT) {
                    let _ = cgroups.remove_if_empty(DEFAULT_CGROUP_PARENT);
                }
            }
            // A pause that outlived its monitor and has no cgroup to be found by.
            host.kill_stray_pause(&record);
        })
        .await;
    }

    async fn detach_network(&self, record: &SandboxRecord) -> bool {
        if record.network.is_empty() {
            return true;
        }
        let attachment = self.attachment(record, &record.config.0);
        match self.edges.network.del(&record.network, &attachment).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(pod = %record.id, error = %e, "CNI DEL failed");
                false
            }
        }
    }

    /// StopPodSandbox: idempotent; an unknown ID is fine.
    pub async fn stop(&self, id: &str) -> Result<(), SandboxError> {
        let Some(mut record) = self.find(id).await? else {
            return Ok(());
        };
        let detached = self.teardown(&record).await;
        // Once CNI DEL succeeded, RemovePodSandbox (which tears down again, in case this
        // failed halfway) need not run it a second time.
        let forget_network = detached && !record.network.is_empty();
        if forget_network {
            record.network.clear();
        }
        if record.state != SandboxState::NotReady || forget_network {
            let stopping = record.state != SandboxState::NotReady;
            record.state = SandboxState::NotReady;
            self.save(&record).await?;
            if stopping {
                tracing::info!(pod = %record.id, "pod sandbox stopped");
            }
        }
        Ok(())
    }

    /// RemovePodSandbox: stops if needed, then deletes everything; unknown ID is fine.
    pub async fn remove(&self, id: &str) -> Result<(), SandboxError> {
        let Some(record) = self.find(id).await? else {
            return Ok(());
        };
        self.teardown(&record).await;
        super::container_logs::remove_all(&record.dir);
        match std::fs::remove_dir_all(&record.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(pod = %record.id, error = %e, "cannot remove the pod folder");
            }
            _ => {}
        }
        let rid = record.id.clone();
        self.store
            .run(move |c| c.delete(Table::Sandboxes, &rid))
            .await?;
        tracing::info!(pod = %record.id, "pod sandbox removed");
        Ok(())
    }

    /// The sandbox with this ID, or with an ID starting with it when exactly one does.
    pub async fn find(&self, id: &str) -> Result<Option<SandboxRecord>, SandboxError> {
        let id = id.to_owned();
        Ok(self
            .store
            .run(move |c| c.find_by_id_or_prefix(Table::Sandboxes, &id))
            .await?)
    }

    /// Every sandbox, oldest first (those still being created included).
    pub async fn list(&self) -> Result<Vec<SandboxRecord>, SandboxError> {
        Ok(self.all().await?.as_ref().clone())
    }

    /// `list` without a copy of each record, for the frequent lists.
    pub async fn all(&self) -> Result<Arc<Vec<SandboxRecord>>, SandboxError> {
        Ok(self.all.get().await?)
    }

    /// At start-up: finish what a crash interrupted. A pod that was being created is undone;
    /// a ready pod whose monitor is gone is stopped (kubelet then recreates it).
    pub async fn recover(&self) -> Result<(), SandboxError> {
        for record in self.list().await? {
            match record.state {
                SandboxState::Creating => {
                    tracing::info!(pod = %record.id, "undoing a pod sandbox whose creation was interrupted");
                    self.teardown(&record).await;
                    let _ = std::fs::remove_dir_all(&record.dir);
                    let rid = record.id.clone();
                    self.store
                        .run(move |c| c.delete(Table::Sandboxes, &rid))
                        .await?;
                }
                SandboxState::Ready => {
                    if self.edges.monitors.of(&record.dir).status().await.is_err() {
                        tracing::warn!(pod = %record.id, "pod monitor is gone; stopping the pod");
                        self.stop(&record.id).await?;
                    }
                }
                SandboxState::NotReady => {
                    self.teardown(&record).await;
                }
            }
        }
        Ok(())
    }

    /// Whether the pod's pause still runs (for PodSandboxStatus).
    pub async fn is_running(&self, record: &SandboxRecord) -> bool {
        record.state == SandboxState::Ready
            && matches!(self.edges.monitors.of(&record.dir).status().await, Ok(s) if s.pause_exit.is_none())
    }

    /// The cgroup driver, shared with the containers of the pods.
    pub fn cgroups(&self) -> Option<Arc<Cgroups>> {
        self.edges.shared_cgroups.clone()
    }

    /// Counters of a pod cgroup; None without cgroups or when it cannot be read.
    pub fn cgroup_stats(&self, path: &str) -> Option<crate::cgroup::Stats> {
        self.edges.cgroups.as_ref()?.stats(path).ok()
    }

    pub fn network_ready(&self) -> Result<NetworkList, NotReady> {
        self.edges.network.ready()
    }

    /// The pod monitors, for the containers of the pods.
    pub fn monitors(&self) -> Arc<dyn super::edges::Monitors> {
        self.edges.monitors.clone()
    }

    /// The cgroup driver (None without cgroups), shared with the containers of the pods.
    pub fn cgroup_driver(&self) -> Option<Arc<dyn super::edges::CgroupDriver>> {
        self.edges.cgroups.clone()
    }
}
