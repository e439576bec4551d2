//! CDI devices into a container: the requested names resolved in the spec folders
//! (`crate::cdi`), and their merged edits carried into the executor's spec the way the
//! reference library edits an OCI spec (`ContainerEdits.Apply`): env by key, device nodes
//! (missing type and numbers taken from the host node, replacing a node at the same path)
//! with their device cgroup rules, mounts (replacing one at the same path, then all sorted
//! by depth), hooks, extra groups. The poststart and poststop hooks are kept in the
//! container's folder for the daemon (`hooks.json`).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use super::build::Built;
use super::service::ContainerError;
use crate::cdi::{ContainerEdits, DeviceNode, Injection, Registry};
use crate::cgroup::devices::{Access, DeviceKind, DeviceRule};
use crate::executor::spec::{Device, Hook, Hooks, Mount};

/// The poststart and poststop hooks of a container, in its folder.
const HOOKS_FILE: &str = "hooks.json";

/// The devices `config` asks for, resolved; None when it asks for none (no folder is read).
pub fn resolve(
    dirs: &[PathBuf],
    config: &crate::cri::v1::ContainerConfig,
) -> Result<Option<Injection>, ContainerError> {
    let requested = crate::cdi::requested(config);
    if requested.is_empty() {
        return Ok(None);
    }
    let registry = Registry::load(dirs);
    for problem in registry.problems() {
        tracing::warn!(problem = %problem, "CDI spec not used");
    }
    let injection = registry
        .inject(&requested)
        .map_err(|e| ContainerError::Precondition(e.to_string()))?;
    tracing::info!(devices = ?injection.devices, specs = ?injection.specs, "CDI devices resolved");
    Ok(Some(injection))
}

/// Carries `injection`'s edits into `built`. A device node that is not on the host (and
/// not fully described), a relative container path or a hook kind that cannot run is
/// FailedPrecondition naming the devices.
pub fn apply(injection: &Injection, built: &mut Built) -> Result<(), ContainerError> {
    let fail = |message: String| {
        ContainerError::Precondition(format!(
            "CDI devices {}: {message}",
            injection.devices.join(", ")
        ))
    };
    let edits = &injection.edits;
    for entry in &edits.env {
        set_env(&mut built.spec.env, entry);
    }
    let uid = built.spec.user.uid;
    let gid = built.spec.user.gid;
    for node in &edits.device_nodes {
        let (device, rule) = device_node(node, uid, gid).map_err(fail)?;
        built.spec.devices.retain(|d| d.path != device.path);
        built.spec.devices.push(device);
        // A privileged container's rules already allow every device.
        if let Some(rule) = rule.filter(|_| !built.spec.privileged) {
            built.device_rules.push(rule);
        }
    }
    if !edits.mounts.is_empty() {
        for m in &edits.mounts {
            let mount = mount(m).map_err(fail)?;
            built
                .spec
                .mounts
                .retain(|e| e.destination != mount.destination);
            built.spec.mounts.push(mount);
        }
        // Parents before children, otherwise in order (stable), as the reference does.
        built.spec.mounts.sort_by_key(|m| depth(&m.destination));
    }
    hooks(edits, &mut built.spec.hooks);
    if edits.intel_rdt.is_some() {
        tracing::warn!(devices = ?injection.devices, "CDI intelRdt edits ignored: ferrocri does not manage resctrl");
    }
    for &group in edits.additional_gids.iter().filter(|g| **g != 0) {
        if !built.spec.user.additional_gids.contains(&group) {
            built.spec.user.additional_gids.push(group);
        }
        if !built.identity.groups.contains(&group) {
            built.identity.groups.push(group);
        }
    }
    Ok(())
}

/// `KEY=VALUE` replacing an entry with the same key, else appended.
fn set_env(env: &mut Vec<String>, entry: &str) {
    let key = entry.split_once('=').map_or(entry, |(k, _)| k);
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(slot) => *slot = entry.to_owned(),
        None => env.push(entry.to_owned()),
    }
}

/// The node to make and its cgroup rule (None for a fifo or `none` permissions). Type,
/// numbers and mode missing from the spec come from the host node (`hostPath`, else
/// `path`); owner from the spec, else the container's user when not root (as the
/// reference).
fn device_node(
    node: &DeviceNode,
    uid: u32,
    gid: u32,
) -> Result<(Device, Option<DeviceRule>), String> {
    if !node.path.starts_with('/') {
        return Err(format!("device node path {:?} is not absolute", node.path));
    }
    let host_path = if node.host_path.is_empty() {
        &node.path
    } else {
        &node.host_path
    };
    let described = !node.kind.is_empty() && (node.major != 0 || node.kind == "p");
    let host = match std::fs::symlink_metadata(host_path) {
        Ok(meta) => Some(meta),
        Err(_) if described => None,
        Err(e) => return Err(format!("host device {host_path}: {e}")),
    };
    let host_kind = host.as_ref().map(node_kind);
    if host_kind == Some("") && !described {
        return Err(format!("host path {host_path} is not a device node"));
    }
    let mut kind = node.kind.clone();
    let (mut major, mut minor) = (node.major, node.minor);
    if !described && let Some(meta) = &host {
        let found = host_kind.unwrap_or_default();
        if kind.is_empty() {
            kind = found.to_owned();
        }
        if kind != found {
            return Err(format!(
                "device node {} is type {kind} but host node {host_path} is type {found}",
                node.path
            ));
        }
        if kind != "p" && major == 0 {
            major = nix::sys::stat::major(meta.rdev()) as i64;
            minor = nix::sys::stat::minor(meta.rdev()) as i64;
        }
    }
    if major < 0 || minor < 0 || major > u32::MAX as i64 || minor > u32::MAX as i64 {
        return Err(format!(
            "device node {}: numbers {major}:{minor} out of range",
            node.path
        ));
    }
    let mode = node
        .file_mode
        .or_else(|| host.as_ref().map(|m| m.mode()))
        .unwrap_or(0o666)
        & 0o7777;
    let device = Device {
        path: node.path.clone(),
        kind: kind.chars().next().unwrap_or('c'),
        major: major as u64,
        minor: minor as u64,
        mode,
        uid: node.uid.unwrap_or(uid),
        gid: node.gid.unwrap_or(gid),
    };
    let rule = cgroup_rule(&kind, major, minor, &node.permissions);
    Ok((device, rule))
}

/// A node's type as CDI spells it: `b`, `c`, `p`, or empty for anything else.
fn node_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_block_device() {
        "b"
    } else if t.is_char_device() {
        "c"
    } else if t.is_fifo() {
        "p"
    } else {
        ""
    }
}

/// The devices cgroup rule for a node: none for a fifo or `none` permissions; all access
/// when the spec gives no permissions.
fn cgroup_rule(kind: &str, major: i64, minor: i64, permissions: &str) -> Option<DeviceRule> {
    let rule_kind = match kind {
        "b" => DeviceKind::Block,
        "c" | "u" => DeviceKind::Char,
        _ => return None,
    };
    if permissions == "none" {
        return None;
    }
    let access = if permissions.is_empty() {
        Access::ALL
    } else {
        Access {
            read: permissions.contains('r'),
            write: permissions.contains('w'),
            mknod: permissions.contains('m'),
        }
    };
    Some(DeviceRule {
        kind: rule_kind,
        major: Some(major as u32),
        minor: Some(minor as u32),
        access,
    })
}

/// A CDI mount as the executor's: the type given (0.4.0), else a bind; a bind without
/// `bind` or `rbind` in its options gets `bind`.
fn mount(m: &crate::cdi::Mount) -> Result<Mount, String> {
    if !m.container_path.starts_with('/') {
        return Err(format!(
            "mount containerPath {:?} is not absolute",
            m.container_path
        ));
    }
    let fstype = if m.kind.is_empty() { "bind" } else { &m.kind };
    let mut options = m.options.clone();
    if fstype == "bind" && !options.iter().any(|o| o == "bind" || o == "rbind") {
        options.insert(0, "bind".into());
    }
    Ok(Mount {
        source: m.host_path.clone(),
        destination: m.container_path.clone(),
        fstype: fstype.to_owned(),
        options,
        image: None,
    })
}

fn depth(path: &str) -> usize {
    Path::new(path)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

fn hooks(edits: &ContainerEdits, into: &mut Hooks) {
    for h in &edits.hooks {
        let hook = Hook {
            path: h.path.clone(),
            args: h.args.clone(),
            env: h.env.clone(),
            timeout: h.timeout.filter(|t| *t > 0).map(|t| t as u64),
        };
        match h.hook_name.as_str() {
            "prestart" | "createRuntime" => into.create_runtime.push(hook),
            "createContainer" => into.create_container.push(hook),
            "startContainer" => into.start_container.push(hook),
            "poststart" => into.poststart.push(hook),
            // Names were checked when the spec was read: "poststop".
            _ => into.poststop.push(hook),
        }
    }
}

/// The hooks the daemon runs, kept in the container's folder from CreateContainer on.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct DaemonHooks {
    /// The bundle folder the executor's hooks were told about.
    pub bundle: PathBuf,
    pub poststart: Vec<Hook>,
    pub poststop: Vec<Hook>,
}

impl DaemonHooks {
    /// Writes them into `dir` (the container's folder); nothing when there are none.
    pub fn save(dir: &Path, bundle: &Path, hooks: &Hooks) -> std::io::Result<()> {
        if hooks.poststart.is_empty() && hooks.poststop.is_empty() {
            return Ok(());
        }
        let kept = DaemonHooks {
            bundle: bundle.to_owned(),
            poststart: hooks.poststart.clone(),
            poststop: hooks.poststop.clone(),
        };
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(HOOKS_FILE), serde_json::to_vec(&kept)?)
    }

    /// Those of the container whose folder is `dir`; None when it has none.
    pub fn load(dir: &Path) -> Option<DaemonHooks> {
        let bytes = std::fs::read(dir.join(HOOKS_FILE)).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(hooks) => Some(hooks),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "unreadable CDI hooks file");
                None
            }
        }
    }

    /// Runs `poststart` or `poststop` hooks in the daemon's namespaces (blocking); a
    /// failure is logged, as the OCI runtime spec asks.
    pub fn run(&self, kind: &str, id: &str, pid: i32) {
        let (hooks, status) = match kind {
            "poststart" => (&self.poststart, "running"),
            _ => (&self.poststop, "stopped"),
        };
        if hooks.is_empty() {
            return;
        }
        let bundle = self.bundle.to_string_lossy();
        let state = crate::hooks::State {
            oci_version: crate::hooks::OCI_VERSION,
            id,
            status,
            pid,
            bundle: &bundle,
        };
        match crate::hooks::run_all(kind, hooks, &state) {
            Ok(()) => tracing::info!(container = %id, "{kind} hooks done"),
            Err(e) => tracing::warn!(container = %id, error = %e, "{kind} hook failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &str, host_path: &str) -> DeviceNode {
        DeviceNode {
            path: path.into(),
            host_path: host_path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn device_nodes_take_what_is_missing_from_the_host() {
        let (device, rule) = device_node(&node("/dev/fake0", "/dev/null"), 0, 0).unwrap();
        assert_eq!(
            (
                device.path.as_str(),
                device.kind,
                device.major,
                device.minor,
                device.mode
            ),
            ("/dev/fake0", 'c', 1, 3, 0o666)
        );
        assert_eq!(rule.unwrap().to_string(), "c 1:3 rwm");
        // Given numbers and type win; the container's non-root user owns it by default.
        let mut given = node("/dev/fake1", "/dev/null");
        given.kind = "c".into();
        given.major = 1;
        given.minor = 5;
        given.permissions = "rw".into();
        given.file_mode = Some(0o640);
        given.gid = Some(44);
        let (device, rule) = device_node(&given, 1000, 1000).unwrap();
        assert_eq!((device.major, device.minor, device.mode), (1, 5, 0o640));
        assert_eq!((device.uid, device.gid), (1000, 44));
        assert_eq!(rule.unwrap().to_string(), "c 1:5 rw");
        // Fully described and absent from the host: fine.
        let mut absent = node("/dev/vendor9", "/dev/does-not-exist");
        absent.kind = "b".into();
        absent.major = 259;
        assert_eq!(device_node(&absent, 0, 0).unwrap().0.kind, 'b');
        // Not described and absent, or of another type: refused, naming the path.
        let err = device_node(&node("/dev/x", "/dev/does-not-exist"), 0, 0).unwrap_err();
        assert!(err.contains("/dev/does-not-exist"), "{err}");
        let mut wrong = node("/dev/x", "/dev/null");
        wrong.kind = "b".into();
        assert!(device_node(&wrong, 0, 0).unwrap_err().contains("type"));
        assert!(device_node(&node("/dev/x", "/etc/hostname"), 0, 0).is_err());
        assert!(device_node(&node("dev/x", "/dev/null"), 0, 0).is_err());
        let mut none = node("/dev/y", "/dev/null");
        none.permissions = "none".into();
        assert!(device_node(&none, 0, 0).unwrap().1.is_none());
    }

    #[test]
    fn env_replaces_by_key() {
        let mut env = vec!["A=1".to_owned(), "PATH=/bin".to_owned()];
        set_env(&mut env, "A=2");
        set_env(&mut env, "B=");
        assert_eq!(env, ["A=2", "PATH=/bin", "B="]);
    }

    #[test]
    fn mounts_default_to_binds_and_sort_by_depth() {
        let m = mount(&crate::cdi::Mount {
            host_path: "/usr/lib/x".into(),
            container_path: "/usr/lib/x".into(),
            options: vec!["ro".into(), "nosuid".into()],
            kind: String::new(),
        })
        .unwrap();
        assert_eq!((m.fstype.as_str(), m.options[0].as_str()), ("bind", "bind"));
        assert_eq!(depth("/a/b/"), 2);
        assert_eq!(depth("/"), 0);
    }
}
