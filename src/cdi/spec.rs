//! One CDI spec file, typed: the fields of every version from 0.3.0 to 1.1.0 (CDI's
//! `specs-go/config.go`), read from JSON or YAML, unknown fields refused (as the reference
//! library's strict unmarshal does), then checked the way `cdi validate` checks it: a known
//! version that is new enough for the fields used, vendor/class and device names, non-empty
//! edits, env entries `KEY=VALUE`, known hook names, device types and permissions.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer};

use super::names;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    pub cdi_version: String,
    pub kind: String,
    /// Added in 0.6.0.
    #[serde(default, deserialize_with = "null_default")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub devices: Vec<Device>,
    /// Applied once when any device of this spec is injected.
    #[serde(default, deserialize_with = "null_default")]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Device {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerEdits {
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub device_nodes: Vec<DeviceNode>,
    /// Added in 1.1.0.
    #[serde(default, deserialize_with = "null_default")]
    pub net_devices: Vec<NetDevice>,
    #[serde(default, deserialize_with = "null_default")]
    pub hooks: Vec<Hook>,
    #[serde(default, deserialize_with = "null_default")]
    pub mounts: Vec<Mount>,
    /// Added in 0.7.0 (schemata and enableMonitoring in 1.1.0).
    #[serde(default)]
    pub intel_rdt: Option<IntelRdt>,
    /// Added in 0.7.0.
    #[serde(default, rename = "additionalGids", deserialize_with = "null_default")]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceNode {
    /// Path in the container.
    pub path: String,
    /// Added in 0.5.0; empty means `path` on the host.
    #[serde(default)]
    pub host_path: String,
    /// `b`, `c`, `u` or `p`; empty: the host node's.
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "yaml11_int")]
    pub major: i64,
    #[serde(default, deserialize_with = "yaml11_int")]
    pub minor: i64,
    /// Permission bits of the node; None: the host node's. Often written `0640`.
    #[serde(default, deserialize_with = "yaml11_mode")]
    pub file_mode: Option<u32>,
    /// Device cgroup access (`rwm` or a subset, `none`); empty means `rwm`.
    #[serde(default)]
    pub permissions: String,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default, deserialize_with = "null_default")]
    pub options: Vec<String>,
    /// Added in 0.4.0.
    #[serde(default, rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hook {
    pub hook_name: String,
    pub path: String,
    #[serde(default, deserialize_with = "null_default")]
    pub args: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<String>,
    /// Seconds; None: no limit.
    #[serde(default)]
    pub timeout: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IntelRdt {
    #[serde(default, rename = "closID")]
    pub clos_id: String,
    #[serde(default)]
    pub l3_cache_schema: String,
    #[serde(default)]
    pub mem_bw_schema: String,
    #[serde(default, deserialize_with = "null_default")]
    pub schemata: Vec<String>,
    #[serde(default)]
    pub enable_monitoring: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetDevice {
    pub host_interface_name: String,
    pub name: String,
}

/// The hook names a spec may use (OCI's six, `prestart` deprecated there but allowed).
pub const HOOK_NAMES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Versions this parser knows, oldest first. Any patch release of one is read as it.
const KNOWN_VERSIONS: [(u64, u64); 8] = [
    (0, 3),
    (0, 4),
    (0, 5),
    (0, 6),
    (0, 7),
    (0, 8),
    (1, 0),
    (1, 1),
];

/// The newest version ferrocri reads, for messages.
pub const NEWEST_VERSION: &str = "1.1.0";

/// Null (YAML `~`, JSON `null`) reads as the empty value, as Go's unmarshal leaves it.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An integer as Go's YAML reader (YAML 1.1) reads it: `0640` is octal there, while
/// serde's YAML (1.2) reads such a scalar as a string. Also `0o`, `0x` and `_` separators.
fn yaml11_int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Number(i64),
        Text(String),
    }
    match Scalar::deserialize(d)? {
        Scalar::Number(n) => Ok(n),
        Scalar::Text(text) => parse_yaml11_int(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an integer"))),
    }
}

fn yaml11_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = yaml11_int(d)?;
    u32::try_from(n)
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("file mode {n} is out of range")))
}

fn parse_yaml11_int(text: &str) -> Option<i64> {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let (negative, digits) = match clean.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(octal) = digits.strip_prefix("0o") {
        i64::from_str_radix(octal, 8).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse().ok()?
    };
    Some(if negative { -value } else { value })
}

impl Spec {
    /// Parses `bytes` as JSON (`.json`) or YAML (anything else, as CDI's `.yaml`), then checks
    /// it.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Spec, String> {
        let spec: Spec = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_slice(bytes).map_err(|e| e.to_string())?
        } else {
            serde_yaml_ng::from_slice(bytes).map_err(|e| e.to_string())?
        };
        spec.check()?;
        Ok(spec)
    }

    /// `vendor.com/class` split in two (checked by [`Spec::check`]).
    pub fn vendor_class(&self) -> (&str, &str) {
        self.kind.split_once('/').unwrap_or(("", &self.kind))
    }

    fn check(&self) -> Result<(), String> {
        let declared = parse_version(&self.cdi_version)?;
        let needed = self.minimum_version();
        if declared < needed {
            return Err(format!(
                "cdiVersion {} is too old for the fields this spec uses: they need {}.{}.0",
                self.cdi_version, needed.0, needed.1
            ));
        }
        let (vendor, class) = self.vendor_class();
        if vendor.is_empty() {
            return Err(format!("kind {:?} is not vendor.com/class", self.kind));
        }
        names::check_vendor_or_class(vendor).map_err(|e| format!("kind vendor: {e}"))?;
        names::check_vendor_or_class(class).map_err(|e| format!("kind class: {e}"))?;
        self.container_edits
            .check()
            .map_err(|e| format!("containerEdits: {e}"))?;
        if self.devices.is_empty() {
            return Err("no devices".into());
        }
        for (i, device) in self.devices.iter().enumerate() {
            names::check_device(&device.name).map_err(|e| format!("devices[{i}].name: {e}"))?;
            if self.devices[..i].iter().any(|d| d.name == device.name) {
                return Err(format!("device {:?} is defined twice", device.name));
            }
            if device.container_edits.is_empty() {
                return Err(format!("device {:?} has no containerEdits", device.name));
            }
            device
                .container_edits
                .check()
                .map_err(|e| format!("device {:?}: {e}", device.name))?;
        }
        Ok(())
    }

    /// The oldest version with every field this spec uses (CDI's `MinimumRequiredVersion`).
    fn minimum_version(&self) -> (u64, u64) {
        let all_edits = || {
            std::iter::once(&self.container_edits)
                .chain(self.devices.iter().map(|d| &d.container_edits))
        };
        let rdt_1_1 = |e: &ContainerEdits| {
            e.intel_rdt
                .as_ref()
                .is_some_and(|r| !r.schemata.is_empty() || r.enable_monitoring)
        };
        if all_edits().any(|e| !e.net_devices.is_empty() || rdt_1_1(e)) {
            return (1, 1);
        }
        if all_edits().any(|e| e.intel_rdt.is_some() || !e.additional_gids.is_empty()) {
            return (0, 7);
        }
        let class_has_dot =
            self.vendor_class().1.contains('.') && !self.vendor_class().0.is_empty();
        if !self.annotations.is_empty()
            || self.devices.iter().any(|d| !d.annotations.is_empty())
            || class_has_dot
        {
            return (0, 6);
        }
        if self
            .devices
            .iter()
            .any(|d| !d.name.starts_with(|c: char| c.is_ascii_alphabetic()))
            || all_edits().any(|e| e.device_nodes.iter().any(|n| !n.host_path.is_empty()))
        {
            return (0, 5);
        }
        if all_edits().any(|e| e.mounts.iter().any(|m| !m.kind.is_empty())) {
            return (0, 4);
        }
        (0, 3)
    }
}

/// `1.0.0` (a leading `v` allowed, as the reference library allows it) → (1, 0); an
/// unknown version is refused, a newer one with a message saying so.
pub fn parse_version(text: &str) -> Result<(u64, u64), String> {
    let bare = text.strip_prefix('v').unwrap_or(text);
    let parts: Vec<&str> = bare.split('.').collect();
    let numbers: Option<Vec<u64>> = parts.iter().map(|p| p.parse().ok()).collect();
    let (major, minor) = match numbers.as_deref() {
        Some([major, minor, _patch]) => (*major, *minor),
        _ => return Err(format!("cdiVersion {text:?} is not a version like 0.6.0")),
    };
    if KNOWN_VERSIONS.contains(&(major, minor)) {
        return Ok((major, minor));
    }
    if (major, minor) > (1, 1) {
        return Err(format!(
            "cdiVersion {text} is newer than this ferrocri reads (up to {NEWEST_VERSION})"
        ));
    }
    Err(format!(
        "cdiVersion {text} is not supported (ferrocri reads 0.3.0 to {NEWEST_VERSION})"
    ))
}

impl ContainerEdits {
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.device_nodes.is_empty()
            && self.net_devices.is_empty()
            && self.hooks.is_empty()
            && self.mounts.is_empty()
            && self.intel_rdt.is_none()
            && self.additional_gids.is_empty()
    }

    fn check(&self) -> Result<(), String> {
        check_env(&self.env)?;
        for node in &self.device_nodes {
            if node.path.is_empty() {
                return Err("a device node has an empty path".into());
            }
            if !["", "b", "c", "u", "p"].contains(&node.kind.as_str()) {
                return Err(format!(
                    "device node {}: unknown type {:?}",
                    node.path, node.kind
                ));
            }
            if node.permissions != "none" && !node.permissions.chars().all(|c| "rwm".contains(c)) {
                return Err(format!(
                    "device node {}: permissions {:?} are not a subset of rwm",
                    node.path, node.permissions
                ));
            }
        }
        for hook in &self.hooks {
            if !HOOK_NAMES.contains(&hook.hook_name.as_str()) {
                return Err(format!("unknown hook name {:?}", hook.hook_name));
            }
            if hook.path.is_empty() {
                return Err(format!("{} hook with an empty path", hook.hook_name));
            }
            check_env(&hook.env).map_err(|e| format!("{} hook: {e}", hook.hook_name))?;
        }
        for mount in &self.mounts {
            if mount.host_path.is_empty() || mount.container_path.is_empty() {
                return Err("a mount has an empty hostPath or containerPath".into());
            }
        }
        for (i, net) in self.net_devices.iter().enumerate() {
            if net.host_interface_name.is_empty() || net.name.is_empty() {
                return Err("a net device has an empty hostInterfaceName or name".into());
            }
            let earlier = &self.net_devices[..i];
            if earlier
                .iter()
                .any(|n| n.host_interface_name == net.host_interface_name || n.name == net.name)
            {
                return Err(format!("net device {:?} is listed twice", net.name));
            }
        }
        if let Some(rdt) = &self.intel_rdt {
            let c = &rdt.clos_id;
            if c != "/" && (c.len() >= 4096 || c == "." || c == ".." || c.contains(['/', '\n'])) {
                return Err(format!("intelRdt closID {c:?} is not valid"));
            }
        }
        Ok(())
    }
}

fn check_env(env: &[String]) -> Result<(), String> {
    match env.iter().find(|e| e.find('=').is_none_or(|i| i == 0)) {
        Some(bad) => Err(format!("env entry {bad:?} is not KEY=VALUE")),
        None => Ok(()),
    }
}
