//! Container Device Interface (CDI): device specs that vendors' tools write to `/etc/cdi` and
//! `/var/run/cdi`, and the container edits a requested device brings (env, device nodes,
//! mounts, hooks, extra groups).
//!
//! `spec` reads one file, `names` checks `vendor.com/class=name`, this module finds the
//! requested devices in the configured folders and merges their edits in the order the
//! reference library (`pkg/cdi` `Cache.InjectDevices`) does: for each device, its spec's
//! own edits the first time that spec is used, then the device's. `container::cdi` carries
//! the merged edits into the executor's spec.
//!
//! The folders are read again at every CreateContainer that asks for a device (a handful of
//! small files; none is read for a container without CDI devices), so a spec a driver
//! installer just wrote is used at once without a watch.

pub mod names;
pub mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use spec::{ContainerEdits, DeviceNode, Hook, Mount, Spec};

/// Annotations whose key starts with this carry comma-separated device names (the older way
/// kubelet's device plugins asked for CDI devices; containerd reads them from the container
/// config's annotations).
pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// The folders specs are read from, in rising priority: a device defined in a later folder
/// replaces one of the same name in an earlier one.
pub const DEFAULT_SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];

/// Why requested devices cannot be injected; the message names them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdiError {
    #[error("unresolvable CDI devices {}: not defined in {}{}", .devices.join(", "), .dirs, problem_list(.problems))]
    Unresolvable {
        devices: Vec<String>,
        dirs: String,
        /// Spec files that could not be used (path: reason), and name conflicts.
        problems: Vec<String>,
    },
    #[error("CDI device {device}: {message}")]
    Unsupported { device: String, message: String },
}

fn problem_list(list: &[String]) -> String {
    if list.is_empty() {
        String::new()
    } else {
        format!(" (specs not used: {})", list.join("; "))
    }
}

/// The specs found in the folders at one moment.
#[derive(Debug, Default)]
pub struct Registry {
    dirs: Vec<PathBuf>,
    specs: Vec<Loaded>,
    /// Qualified device name → (index in `specs`, index in its devices).
    devices: HashMap<String, (usize, usize)>,
    problems: Vec<String>,
}

#[derive(Debug)]
struct Loaded {
    path: PathBuf,
    priority: usize,
    spec: Spec,
}

/// What the requested devices bring, merged; `devices` in request order and `specs` (file
/// paths) for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Injection {
    pub devices: Vec<String>,
    pub specs: Vec<PathBuf>,
    pub edits: ContainerEdits,
}

impl Registry {
    /// Reads every `.json` and `.yaml` file directly in `dirs` (missing folders are fine).
    /// A file that does not parse or check is left out and noted, as are device names that
    /// two files of the same folder both define.
    pub fn load(dirs: &[PathBuf]) -> Registry {
        let mut registry = Registry {
            dirs: dirs.to_vec(),
            ..Registry::default()
        };
        let mut conflicts = Vec::new();
        for (priority, dir) in dirs.iter().enumerate() {
            let mut files = match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| is_spec_file(p) && p.is_file())
                    .collect::<Vec<_>>(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    registry.problems.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            files.sort();
            for path in files {
                let parsed = std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| Spec::parse(&path, &bytes));
                match parsed {
                    Ok(spec) => registry.add(path, priority, spec, &mut conflicts),
                    Err(e) => registry.problems.push(format!("{}: {e}", path.display())),
                }
            }
        }
        for name in conflicts {
            registry.devices.remove(&name);
        }
        registry
    }

    fn add(&mut self, path: PathBuf, priority: usize, spec: Spec, conflicts: &mut Vec<String>) {
        let index = self.specs.len();
        for (i, device) in spec.devices.iter().enumerate() {
            let name = format!("{}={}", spec.kind, device.name);
            if let Some(&(other, _)) = self.devices.get(&name) {
                let other = &self.specs[other];
                if other.priority == priority {
                    self.problems.push(format!(
                        "device {name} is defined in both {} and {}",
                        other.path.display(),
                        path.display()
                    ));
                    conflicts.push(name);
                    continue;
                }
            }
            // A later folder wins.
            self.devices.insert(name, (index, i));
        }
        self.specs.push(Loaded {
            path,
            priority,
            spec,
        });
    }

    /// Spec files left out and why (for the log).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Every device name this registry resolves, sorted.
    pub fn device_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.devices.keys().cloned().collect();
        names.sort();
        names
    }

    /// The edits of `requested` (qualified names, duplicates already dropped), or the
    /// names no spec defines.
    pub fn inject(&self, requested: &[String]) -> Result<Injection, CdiError> {
        let unknown: Vec<String> = requested
            .iter()
            .filter(|name| !self.devices.contains_key(*name))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
            return Err(CdiError::Unresolvable {
                devices: unknown,
                dirs: dirs.join(", "),
                problems: self.problems.clone(),
            });
        }
        let mut injection = Injection::default();
        let mut used = Vec::new();
        for name in requested {
            let (spec_index, device_index) = self.devices[name];
            let loaded = &self.specs[spec_index];
            if !used.contains(&spec_index) {
                used.push(spec_index);
                injection.specs.push(loaded.path.clone());
                injection.edits.append(&loaded.spec.container_edits);
            }
            let device = &loaded.spec.devices[device_index];
            if !device.container_edits.net_devices.is_empty() {
                return Err(CdiError::Unsupported {
                    device: name.clone(),
                    message: "netDevices (moving a host interface into the pod) are not supported"
                        .into(),
                });
            }
            injection.edits.append(&device.container_edits);
            injection.devices.push(name.clone());
        }
        if !injection.edits.net_devices.is_empty() {
            return Err(CdiError::Unsupported {
                device: injection.devices.join(", "),
                message: "netDevices (moving a host interface into the pod) are not supported"
                    .into(),
            });
        }
        Ok(injection)
    }
}

impl ContainerEdits {
    /// `other`'s edits after these (a later intelRdt replaces an earlier one).
    pub fn append(&mut self, other: &ContainerEdits) {
        self.env.extend(other.env.iter().cloned());
        self.device_nodes.extend(other.device_nodes.iter().cloned());
        self.net_devices.extend(other.net_devices.iter().cloned());
        self.hooks.extend(other.hooks.iter().cloned());
        self.mounts.extend(other.mounts.iter().cloned());
        if other.intel_rdt.is_some() {
            self.intel_rdt = other.intel_rdt.clone();
        }
        self.additional_gids
            .extend(other.additional_gids.iter().copied());
    }
}

/// The devices a container asks for: `CDI_devices` first, then the names in its
/// `cdi.k8s.io/*` annotations (keys in sorted order), each once. The names were checked at
/// the door (`validate`).
pub fn requested(config: &crate::cri::v1::ContainerConfig) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    };
    for device in &config.cdi_devices {
        add(&device.name);
    }
    let mut keys: Vec<&String> = config
        .annotations
        .keys()
        .filter(|k| k.starts_with(ANNOTATION_PREFIX))
        .collect();
    keys.sort();
    for key in keys {
        for name in config.annotations[key].split(',') {
            add(name);
        }
    }
    names
}

/// CDI reads `.json` and `.yaml` files only.
fn is_spec_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json" || e == "yaml")
}

#[cfg(test)]
mod tests;
