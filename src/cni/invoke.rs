//! Running a CNI network configuration list for one pod (what Go's libcni does for containerd).
//!
//! - ADD runs the plugins in order; each gets the previous plugin's result as `prevResult`.
//!   Before the first plugin runs, the attachment (configuration list, arguments, netns) is
//!   recorded in the cache; the final result is added to that record before `add`
//!   returns. A failed ADD is undone at once with a DEL of the whole list.
//! - DEL runs the plugins in reverse order with `prevResult` = the cached ADD result, using the
//!   *cached* configuration list when there is one, so it works after a restart and after the
//!   configuration changed. A netns that is gone is passed as an empty `CNI_NETNS`, as
//!   containerd does: plugins still release IPs and iptables rules. DEL of something never
//!   added (or already deleted) succeeds.
//! - CHECK (spec ≥ 0.4.0) runs the plugins in order with the cached result.
//!
//! Callers serialise operations on one attachment (one pod): two concurrent ADD/DEL of the
//! same attachment are not guarded against here.

mod checks;
mod error;
mod plugin;

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::Instrument;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use checks::{
    validate_attachment, validate_id, validate_network, validate_network_name, version_at_least,
};
pub use error::{CniError, Command};
use plugin::{Binary, bad_result, capability_args, netns_arg, plugin_stdin};

use super::cache;
use super::config::{self, NetworkList};
use super::result::{IpConfig, parse_ips};

/// How long one plugin may run before it is killed.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs CNI plugins.
#[derive(Debug, Clone)]
pub struct Cni {
    /// Where plugin binaries are looked up, first match wins; also passed as `CNI_PATH`.
    pub bin_dirs: Vec<PathBuf>,
    /// Where attachments are recorded, e.g. `<root_dir>/cni/results`.
    pub cache_dir: PathBuf,
    /// A plugin (and anything it started in its process group) is killed after this long.
    pub plugin_timeout: Duration,
}

/// One pod's attachment to one network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attachment {
    /// `CNI_CONTAINERID`: the pod sandbox ID.
    pub container_id: String,
    /// `CNI_NETNS`: the pinned network namespace.
    pub netns: PathBuf,
    /// `CNI_IFNAME`, normally `eth0`.
    pub ifname: String,
    /// `CNI_ARGS` pairs: `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_INFRA_CONTAINER_ID`,
    /// `K8S_POD_UID`. `IgnoreUnknown=1` is added in front.
    pub args: Vec<(String, String)>,
    /// The `portMappings` capability; given only to plugins that declare it.
    pub port_mappings: Vec<PortMapping>,
}

/// A host port mapping as CNI's `portMappings` runtime config spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: i32,
    #[serde(rename = "containerPort")]
    pub container_port: i32,
    /// Lower case: `tcp`, `udp` or `sctp` (portmap compares case-sensitively).
    pub protocol: String,
    /// Empty: all host addresses.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// What ADD produced.
#[derive(Debug, Clone, PartialEq)]
pub struct AddResult {
    pub ips: Vec<IpConfig>,
    /// The final result, as the last plugin printed it.
    pub raw: Value,
}

impl AddResult {
    /// The addresses on the pod interface `ifname` (and those whose interface is not named).
    pub fn pod_ips<'a>(&'a self, ifname: &'a str) -> impl Iterator<Item = IpAddr> + 'a {
        self.ips
            .iter()
            .filter(move |ip| ip.interface.as_deref().is_none_or(|i| i == ifname))
            .map(|ip| ip.address)
    }
}

/// Which network a DEL is for: the current configuration (used when nothing is cached), or
/// only its name (after a restart; without a cache entry there is then nothing to do).
#[derive(Debug, Clone, Copy)]
pub enum NetworkRef<'a> {
    List(&'a NetworkList),
    Name(&'a str),
}

impl NetworkRef<'_> {
    fn name(&self) -> &str {
        match self {
            NetworkRef::List(list) => &list.name,
            NetworkRef::Name(name) => name,
        }
    }
}

impl<'a> From<&'a NetworkList> for NetworkRef<'a> {
    fn from(list: &'a NetworkList) -> Self {
        NetworkRef::List(list)
    }
}

impl<'a> From<&'a str> for NetworkRef<'a> {
    fn from(name: &'a str) -> Self {
        NetworkRef::Name(name)
    }
}

impl<'a> From<&'a String> for NetworkRef<'a> {
    fn from(name: &'a String) -> Self {
        NetworkRef::Name(name)
    }
}

/// An attachment found in the cache: enough to DEL it with `cni.del(&c.network, &c.attachment)`.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAttachment {
    pub network: String,
    pub attachment: Attachment,
    /// The configuration file the attachment was made from.
    pub config_file: PathBuf,
    /// The final ADD result; `None` when ADD did not finish (a crash, or a failed clean-up).
    pub result: Option<Value>,
}

impl CachedAttachment {
    /// The addresses of the cached result (empty when there is none or it does not parse).
    pub fn ips(&self) -> Vec<IpConfig> {
        self.result
            .as_ref()
            .and_then(|r| parse_ips(r).ok())
            .unwrap_or_default()
    }
}

impl Cni {
    pub fn new(bin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Self {
        Cni {
            bin_dirs,
            cache_dir,
            plugin_timeout: DEFAULT_PLUGIN_TIMEOUT,
        }
    }

    /// Attaches the pod to `net`. See the module documentation.
    pub async fn add(&self, net: &NetworkList, att: &Attachment) -> Result<AddResult, CniError> {
        validate_attachment(att)?;
        validate_network(net)?;
        let binaries = self.resolve_all(net)?;
        let path = self.cache_path(&net.name, att);
        let mut entry = cache::Entry {
            kind: cache::KIND.into(),
            network_name: net.name.clone(),
            container_id: att.container_id.clone(),
            if_name: att.ifname.clone(),
            netns: att.netns.clone(),
            cni_args: att.args.clone(),
            port_mappings: att.port_mappings.clone(),
            config_file: net.file.clone(),
            config: net.to_value(),
            result: None,
        };
        // Recorded before anything is created: a crash during ADD leaves an entry that DEL
        // (e.g. the restarted daemon's clean-up) can undo.
        store_entry(&path, &entry)
            .instrument(tracing::debug_span!("cni.cache_write"))
            .await?;

        // ADD gets the path as given: a plugin names it when it is not a namespace.
        let env = self.env(att, &att.netns.to_string_lossy());
        let caps = capability_args(att);
        let started = std::time::Instant::now();
        let outcome = async {
            let mut prev: Option<Value> = None;
            for (plugin, binary) in net.plugins.iter().zip(&binaries) {
                let stdin = plugin_stdin(net, plugin, prev.as_ref(), &caps);
                let out = self
                    .exec(&net.name, binary, Command::Add, &env, stdin)
                    .instrument(tracing::debug_span!("cni.plugin", plugin = %binary.plugin))
                    .await?;
                let result: Value = serde_json::from_slice(&out)
                    .map_err(|e| bad_result(net, binary, Command::Add, format!("not JSON: {e}")))?;
                prev = Some(result);
            }
            let result = prev.expect("a network list has at least one plugin");
            let last = binaries.last().expect("at least one plugin");
            let ips = parse_ips(&result).map_err(|e| bad_result(net, last, Command::Add, e))?;
            Ok(AddResult { ips, raw: result })
        }
        .await;
        crate::prometheus::metrics().record_cni("ADD", &net.name, started.elapsed());

        let added = match outcome {
            Ok(added) => added,
            Err(e) => {
                self.undo_failed_add(net, att, &env, &path).await;
                return Err(e);
            }
        };
        entry.result = Some(added.raw.clone());
        if let Err(e) = store_entry(&path, &entry)
            .instrument(tracing::debug_span!("cni.cache_write"))
            .await
        {
            self.undo_failed_add(net, att, &env, &path).await;
            return Err(e);
        }
        Ok(added)
    }

    /// Detaches the pod from a network. See the module documentation. With a cache entry,
    /// the arguments and port mappings recorded at ADD are used (they are what plugins need
    /// to find what they created: portmap's DEL does nothing without `portMappings`), and the
    /// netns is `att.netns`, or the recorded one when `att.netns` is empty.
    pub async fn del<'a>(
        &self,
        net: impl Into<NetworkRef<'a>>,
        att: &Attachment,
    ) -> Result<(), CniError> {
        let net = net.into();
        validate_attachment(att)?;
        validate_network_name(net.name())?;
        let path = self.cache_path(net.name(), att);
        let cached = match load_entry(&path).await {
            Ok(entry) => entry,
            Err(CniError::Cache { source, .. }) if source.kind() == io::ErrorKind::InvalidData => {
                tracing::warn!(path = %path.display(), error = %source,
                    "unreadable CNI cache entry; deleting with the current configuration");
                None
            }
            Err(e) => return Err(e),
        };

        let (list, prev, effective) = match (cached, net) {
            (Some(entry), _) => {
                let list =
                    config::parse_value(&entry.config, &entry.config_file).ok_or_else(|| {
                        CniError::InvalidConfig {
                            network: entry.network_name.clone(),
                            file: path.clone(),
                            reason: "the cached configuration list does not parse".into(),
                        }
                    })?;
                // Before 0.4.0 DEL got no prevResult (libcni does the same).
                let prev = entry
                    .result
                    .filter(|_| version_at_least(&list.cni_version, (0, 4, 0)));
                let effective = Attachment {
                    container_id: att.container_id.clone(),
                    ifname: att.ifname.clone(),
                    netns: if att.netns.as_os_str().is_empty() {
                        entry.netns
                    } else {
                        att.netns.clone()
                    },
                    args: entry.cni_args,
                    port_mappings: entry.port_mappings,
                };
                (list, prev, effective)
            }
            (None, NetworkRef::List(list)) => (list.clone(), None, att.clone()),
            (None, NetworkRef::Name(name)) => {
                tracing::debug!(network = name, container_id = %att.container_id,
                    ifname = %att.ifname, "CNI DEL: nothing cached, nothing to do");
                return Ok(());
            }
        };
        validate_network(&list)?;
        let env = self.env(&effective, &netns_arg(&effective.netns));
        let started = std::time::Instant::now();
        let deleted = self.del_list(&list, &effective, &env, prev.as_ref()).await;
        crate::prometheus::metrics().record_cni("DEL", &list.name, started.elapsed());
        deleted?;
        remove_entry(&path).await
    }

    /// Checks the attachment is still as ADD left it (spec 0.4.0 and later). The port
    /// mappings and arguments are `att`'s, or the recorded ones when `att` has none.
    pub async fn check(&self, net: &NetworkList, att: &Attachment) -> Result<(), CniError> {
        validate_attachment(att)?;
        validate_network(net)?;
        if !version_at_least(&net.cni_version, (0, 4, 0)) {
            return Err(CniError::CheckUnsupported {
                network: net.name.clone(),
                version: net.cni_version.clone(),
            });
        }
        let path = self.cache_path(&net.name, att);
        let not_added = || CniError::NotAdded {
            network: net.name.clone(),
            container_id: att.container_id.clone(),
            ifname: att.ifname.clone(),
        };
        let entry = load_entry(&path).await?.ok_or_else(not_added)?;
        let prev = entry.result.clone().ok_or_else(not_added)?;
        let effective = Attachment {
            container_id: att.container_id.clone(),
            ifname: att.ifname.clone(),
            netns: if att.netns.as_os_str().is_empty() {
                entry.netns
            } else {
                att.netns.clone()
            },
            args: if att.args.is_empty() {
                entry.cni_args
            } else {
                att.args.clone()
            },
            port_mappings: if att.port_mappings.is_empty() {
                entry.port_mappings
            } else {
                att.port_mappings.clone()
            },
        };
        let binaries = self.resolve_all(net)?;
        let env = self.env(&effective, &effective.netns.to_string_lossy());
        let caps = capability_args(&effective);
        for (plugin, binary) in net.plugins.iter().zip(&binaries) {
            let stdin = plugin_stdin(net, plugin, Some(&prev), &caps);
            self.exec(&net.name, binary, Command::Check, &env, stdin)
                .await?;
        }
        Ok(())
    }

    /// Every attachment of `container_id` in the cache (e.g. to DEL them after a restart).
    pub async fn cached_attachments(
        &self,
        container_id: &str,
    ) -> Result<Vec<CachedAttachment>, CniError> {
        validate_id(container_id)?;
        let dir = self.cache_dir.clone();
        let id = container_id.to_owned();
        let entries = tokio::task::spawn_blocking(move || cache::list(&dir, &id))
            .await
            .expect("cache listing does not panic")
            .map_err(|source| CniError::Cache {
                path: self.cache_dir.clone(),
                source,
            })?;
        Ok(entries
            .into_iter()
            .map(|(_, e)| CachedAttachment {
                network: e.network_name,
                attachment: Attachment {
                    container_id: e.container_id,
                    netns: e.netns,
                    ifname: e.if_name,
                    args: e.cni_args,
                    port_mappings: e.port_mappings,
                },
                config_file: e.config_file,
                result: e.result,
            })
            .collect())
    }

    fn cache_path(&self, network: &str, att: &Attachment) -> PathBuf {
        cache::path(&self.cache_dir, network, &att.container_id, &att.ifname)
    }

    /// Finds every plugin binary before anything runs.
    fn resolve_all(&self, net: &NetworkList) -> Result<Vec<Binary>, CniError> {
        net.plugin_types().map(|t| self.resolve(net, t)).collect()
    }

    fn resolve(&self, net: &NetworkList, plugin: &str) -> Result<Binary, CniError> {
        let path = config::find_plugin(plugin, &self.bin_dirs).ok_or_else(|| {
            CniError::PluginNotFound {
                network: net.name.clone(),
                plugin: plugin.to_owned(),
                dirs: self.dirs_display(),
            }
        })?;
        Ok(Binary {
            plugin: plugin.to_owned(),
            path,
        })
    }

    fn env(&self, att: &Attachment, netns: &str) -> Vec<(&'static str, String)> {
        plugin::env(&self.bin_dirs, att, netns)
    }

    /// Runs one plugin; its stdout when it succeeds.
    async fn exec(
        &self,
        network: &str,
        binary: &Binary,
        command: Command,
        env: &[(&'static str, String)],
        stdin: Vec<u8>,
    ) -> Result<Vec<u8>, CniError> {
        plugin::run(network, binary, command, env, stdin, self.plugin_timeout).await
    }

    fn dirs_display(&self) -> String {
        if self.bin_dirs.is_empty() {
            return "(no bin dirs configured)".into();
        }
        self.bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// DEL of every plugin in reverse order. A failing plugin does not stop the others (each
    /// releases what it can); the first error is returned.
    async fn del_list(
        &self,
        list: &NetworkList,
        att: &Attachment,
        env: &[(&'static str, String)],
        prev: Option<&Value>,
    ) -> Result<(), CniError> {
        let caps = capability_args(att);
        let mut first_error = None;
        for plugin in list.plugins.iter().rev() {
            let plugin_type = plugin.get("type").and_then(Value::as_str).unwrap_or("");
            let outcome = match self.resolve(list, plugin_type) {
                Ok(binary) => {
                    let stdin = plugin_stdin(list, plugin, prev, &caps);
                    self.exec(&list.name, &binary, Command::Del, env, stdin)
                        .await
                        .map(drop)
                }
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                tracing::warn!(network = %list.name, plugin = plugin_type,
                    container_id = %att.container_id, error = %e, "CNI DEL failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn undo_failed_add(
        &self,
        net: &NetworkList,
        att: &Attachment,
        env: &[(&'static str, String)],
        path: &Path,
    ) {
        let mut env = env.to_vec();
        for (key, value) in &mut env {
            if *key == "CNI_NETNS" {
                *value = netns_arg(&att.netns);
            }
        }
        match self.del_list(net, att, &env, None).await {
            Ok(()) => {
                if let Err(e) = remove_entry(path).await {
                    tracing::warn!(error = %e, "CNI cache entry of a failed ADD not removed");
                }
            }
            // The entry stays, so a later DEL (by the caller or after a restart) retries.
            Err(e) => tracing::warn!(network = %net.name, container_id = %att.container_id,
                error = %e, "clean-up DEL after a failed CNI ADD failed"),
        }
    }
}

async fn load_entry(path: &Path) -> Result<Option<cache::Entry>, CniError> {
    let p = path.to_owned();
    tokio::task::spawn_blocking(move || cache::load(&p))
        .await
        .expect("cache read does not panic")
        .map_err(|source| CniError::Cache {
            path: path.to_owned(),
            source,
        })
}

async fn store_entry(path: &Path, entry: &cache::Entry) -> Result<(), CniError> {
    let p = path.to_owned();
    let e = entry.clone();
    tokio::task::spawn_blocking(move || cache::store(&p, &e))
        .await
        .expect("cache write does not panic")
        .map_err(|source| CniError::Cache {
            path: path.to_owned(),
            source,
        })
}

async fn remove_entry(path: &Path) -> Result<(), CniError> {
    let p = path.to_owned();
    tokio::task::spawn_blocking(move || cache::remove(&p))
        .await
        .expect("cache removal does not panic")
        .map_err(|source| CniError::Cache {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests;
