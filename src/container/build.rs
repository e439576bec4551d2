//! Turning a CRI container config, its sandbox and its image into the executor's spec: argv,
//! env, user, namespaces, mounts, capabilities, seccomp — the decisions containerd's
//! `containerSpec` makes, in one place.

use std::path::{Path, PathBuf};

use crate::cgroup::devices::{Access, DeviceKind, DeviceRule};
use crate::cri::v1::{ContainerConfig, LinuxContainerSecurityContext, NamespaceMode};
use crate::executor::spec::{ContainerSpec, Device, NamespaceMode as Ns, Rootfs, User};
use crate::image::catalog::ImageRecord;
use crate::monitor::protocol::PidMode;
use crate::sandbox::record::SandboxRecord;

use super::device_nodes;
use super::user::{self, Identity, Requested};

mod mounts;
mod privileges;

use mounts::mounts;
use privileges::{capabilities, hidden_paths, seccomp};

/// A config the runtime cannot carry out; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// Everything the builder needs about the places on disk.
pub struct Paths {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub mount_point: PathBuf,
    pub cgroup: String,
}

/// The layer directories (top-most first) of each CRI mount that is an image volume, by
/// the mount's index in `config.mounts` (see `image_volumes`).
pub type VolumeLayers = std::collections::BTreeMap<usize, Vec<PathBuf>>;

pub struct Built {
    pub spec: ContainerSpec,
    /// The devices cgroup allowlist, written before the process joins the cgroup.
    pub device_rules: Vec<DeviceRule>,
    pub identity: Identity,
}

pub fn build(
    config: &ContainerConfig,
    sandbox: &SandboxRecord,
    image: &ImageRecord,
    layer_dirs: Vec<PathBuf>,
    volume_layers: &VolumeLayers,
    paths: Paths,
) -> Result<Built, Invalid> {
    let security = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    let run = image.config.config.clone().unwrap_or_default();
    let args = command(config, run.entrypoint.as_deref(), run.cmd.as_deref())?;
    let identity = user::resolve(&requested(&security), &run.user, &layer_dirs)
        .map_err(|m| invalid("config.linux.security_context", m))?;
    let privileged = security.privileged;
    if privileged && !sandbox_privileged(sandbox) {
        return Err(invalid(
            "config.linux.security_context.privileged",
            "a privileged container needs a privileged sandbox",
        ));
    }
    let capabilities = capabilities(&security, privileged)?;
    let seccomp = seccomp(&security, privileged, &capabilities)?;
    let (masked_paths, readonly_paths) = hidden_paths(&security, privileged);
    let (requested_devices, requested_rules) = devices(config)?;
    let devices = with_host_devices(requested_devices, privileged)?;
    let spec = ContainerSpec {
        id: String::new(),
        rootfs: Rootfs {
            lower_dirs: layer_dirs,
            upper_dir: paths.upper,
            work_dir: paths.work,
            mount_point: paths.mount_point,
            readonly: security.readonly_rootfs,
        },
        args,
        env: environment(
            config,
            run.env.as_deref().unwrap_or_default(),
            &sandbox.config.0.hostname,
        ),
        cwd: first_non_empty(&[&config.working_dir, &run.working_dir, "/"]),
        user: User {
            uid: identity.uid,
            gid: identity.gid,
            additional_gids: identity.groups.clone(),
        },
        namespaces: namespaces(sandbox, privileged),
        mounts: mounts(
            config,
            sandbox,
            privileged,
            !paths.cgroup.is_empty(),
            volume_layers,
        )?,
        masked_paths,
        readonly_paths,
        devices,
        capabilities,
        no_new_privileges: security.no_new_privs,
        privileged,
        seccomp,
        rlimits: Vec::new(),
        oom_score_adj: oom_score_adj(config),
        tty: config.tty,
        cgroup: paths.cgroup,
        exec_in: None,
        userns: sandbox.userns_pin(),
        hooks: Default::default(),
    };
    Ok(Built {
        spec,
        device_rules: crate::cgroup::devices::container_rules(privileged, &requested_rules),
        identity,
    })
}

/// A privileged container gets a copy of every host device, then the CRI's (which win on
/// the same path).
fn with_host_devices(requested: Vec<Device>, privileged: bool) -> Result<Vec<Device>, Invalid> {
    if !privileged {
        return Ok(requested);
    }
    let mut all = device_nodes::host().map_err(|e| {
        invalid(
            "config.linux.security_context.privileged",
            format!("cannot list the host's devices in /dev: {e}"),
        )
    })?;
    all.extend(requested);
    Ok(all)
}

/// The config's OOM score adjustment; 0 (unset) leaves the process's own.
fn oom_score_adj(config: &ContainerConfig) -> Option<i32> {
    config
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref())
        .map(|r| r.oom_score_adj as i32)
        .filter(|v| *v != 0)
}

fn sandbox_privileged(sandbox: &SandboxRecord) -> bool {
    sandbox
        .config
        .0
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged)
}

fn requested(security: &LinuxContainerSecurityContext) -> Requested {
    Requested {
        run_as_user: security.run_as_user.as_ref().map(|v| v.value),
        run_as_username: security.run_as_username.clone(),
        run_as_group: security.run_as_group.as_ref().map(|v| v.value),
        supplemental_groups: security.supplemental_groups.clone(),
        strict_groups: security.supplemental_groups_policy
            == crate::cri::v1::SupplementalGroupsPolicy::Strict as i32,
    }
}

/// Docker's rule: the CRI command replaces the image entrypoint (and then the image's
/// default args do not apply); CRI args replace the image's cmd.
fn command(
    config: &ContainerConfig,
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
) -> Result<Vec<String>, Invalid> {
    let mut argv: Vec<String> = if !config.command.is_empty() {
        config.command.clone()
    } else {
        entrypoint.unwrap_or_default().to_vec()
    };
    if !config.args.is_empty() {
        argv.extend(config.args.iter().cloned());
    } else if config.command.is_empty() {
        argv.extend(cmd.unwrap_or_default().iter().cloned());
    }
    if argv.is_empty() {
        return Err(invalid(
            "config.command",
            "neither the config nor the image gives a command to run",
        ));
    }
    Ok(argv)
}

/// Image env, then the config's (a key set twice keeps its last value), plus HOSTNAME.
fn environment(config: &ContainerConfig, image_env: &[String], hostname: &str) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: String| match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => env.push((key.to_owned(), value)),
    };
    if !hostname.is_empty() {
        set("HOSTNAME", hostname.to_owned());
    }
    for entry in image_env {
        let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
        set(k, v.to_owned());
    }
    for kv in &config.envs {
        set(&kv.key, String::from_utf8_lossy(&kv.value).into_owned());
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push((
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn namespaces(sandbox: &SandboxRecord, privileged: bool) -> crate::executor::spec::Namespaces {
    let pin = |kind: &str| Ns::Join(crate::monitor::layout::namespace_pin(&sandbox.dir, kind));
    crate::executor::spec::Namespaces {
        network: match &sandbox.netns {
            Some(netns) => Ns::Join(netns.clone()),
            None => Ns::Host,
        },
        ipc: if sandbox.ipc_mode() == NamespaceMode::Node {
            Ns::Host
        } else {
            pin("ipc")
        },
        uts: if sandbox.host_network() {
            Ns::Host
        } else {
            pin("uts")
        },
        // Arranged by the monitor; recorded here for the executor's information.
        pid: Ns::Host,
        // The container sees its own cgroup as the root. Privileged containers keep the
        // host's, as containerd gives them (for nested runtimes; the cgroup v2 KEP).
        cgroup: if privileged { Ns::Host } else { Ns::New },
    }
}

/// The PID namespace a container's process is made in (StartContainer asks the monitor for
/// it); a TARGET's pid is left 0 for the caller to fill in.
pub fn pid_mode_of(config: &ContainerConfig, sandbox: &SandboxRecord) -> PidMode {
    let security = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    pid_mode(security.unwrap_or(&Default::default()), sandbox)
}

fn pid_mode(security: &LinuxContainerSecurityContext, sandbox: &SandboxRecord) -> PidMode {
    let mode = security
        .namespace_options
        .as_ref()
        .map(|n| NamespaceMode::try_from(n.pid).unwrap_or(NamespaceMode::Pod))
        .unwrap_or(NamespaceMode::Pod);
    match mode {
        NamespaceMode::Node => PidMode::Host,
        NamespaceMode::Container => PidMode::Container,
        // The target's pid is looked up by the caller (it knows the other containers).
        NamespaceMode::Target => PidMode::Target { pid: 0 },
        // POD: the pause's, when the sandbox has one.
        _ if sandbox.pid_mode() == NamespaceMode::Node => PidMode::Host,
        _ => PidMode::Pod,
    }
}

/// The CRI's devices: the nodes to create, and what the cgroup lets the container do with
/// each (its `permissions`, "rwm" or a subset). A `host_path` that is a directory stands for
/// every node under it, each with the same permissions (as containerd expands it).
fn devices(config: &ContainerConfig) -> Result<(Vec<Device>, Vec<DeviceRule>), Invalid> {
    let mut nodes = Vec::new();
    let mut rules = Vec::new();
    for d in &config.devices {
        let field = "config.devices";
        let access = Access::parse(&d.permissions)
            .map_err(|e| invalid(field, format!("device {}: {e}", d.host_path)))?;
        let meta = std::fs::metadata(&d.host_path)
            .map_err(|e| invalid(field, format!("device {}: {e}", d.host_path)))?;
        let found = if meta.is_dir() {
            device_nodes::under(Path::new(&d.host_path), &d.container_path)
                .map_err(|e| invalid(field, format!("device directory {}: {e}", d.host_path)))?
        } else {
            let path = first_non_empty(&[&d.container_path, &d.host_path]);
            let node = device_nodes::node(&meta, &path)
                .ok_or_else(|| invalid(field, format!("{} is not a device", d.host_path)))?;
            vec![node]
        };
        for node in found {
            rules.push(DeviceRule {
                kind: if node.kind == 'c' {
                    DeviceKind::Char
                } else {
                    DeviceKind::Block
                },
                major: Some(node.major as u32),
                minor: Some(node.minor as u32),
                access,
            });
            nodes.push(node);
        }
    }
    Ok((nodes, rules))
}

fn first_non_empty(options: &[&str]) -> String {
    options
        .iter()
        .find(|s| !s.is_empty())
        .copied()
        .unwrap_or("/")
        .to_owned()
}

fn to_strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::mounts::cri_mount;
    use super::*;
    use crate::executor::capabilities::DEFAULT_CAPABILITIES;

    fn config(command: &[&str], args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn command_follows_docker() {
        let ep = vec!["/entry".to_owned()];
        let cmd = vec!["default".to_owned()];
        let run = |c: &ContainerConfig| command(c, Some(&ep), Some(&cmd)).unwrap();
        assert_eq!(run(&config(&[], &[])), ["/entry", "default"]);
        assert_eq!(run(&config(&[], &["x"])), ["/entry", "x"]);
        assert_eq!(run(&config(&["sh"], &[])), ["sh"]);
        assert_eq!(run(&config(&["sh"], &["-c", "true"])), ["sh", "-c", "true"]);
        assert!(command(&config(&[], &[]), None, None).is_err());
    }

    #[test]
    fn environment_merges_by_key() {
        let mut c = ContainerConfig::default();
        c.envs.push(crate::cri::v1::KeyValue {
            key: "A".into(),
            value: b"2".to_vec(),
        });
        let env = environment(&c, &["A=1".into(), "PATH=/bin".into()], "web");
        assert_eq!(env, ["HOSTNAME=web", "A=2", "PATH=/bin"]);
    }

    #[test]
    fn capabilities_add_drop_all() {
        let mut s = LinuxContainerSecurityContext::default();
        assert_eq!(
            capabilities(&s, false).unwrap().len(),
            DEFAULT_CAPABILITIES.len()
        );
        s.capabilities = Some(crate::cri::v1::Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            drop_capabilities: vec!["CAP_NET_RAW".into()],
            ..Default::default()
        });
        let caps = capabilities(&s, false).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_owned()));
        assert!(!caps.contains(&"CAP_NET_RAW".to_owned()));
        s.capabilities = Some(crate::cri::v1::Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
        assert!(capabilities(&s, false).unwrap().is_empty());
        // Whatever the order of the lists, ALL goes first and the named ones after it.
        s.capabilities = Some(crate::cri::v1::Capability {
            add_capabilities: vec!["NET_BIND_SERVICE".into(), "net_raw".into()],
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        });
        assert_eq!(
            capabilities(&s, false).unwrap(),
            ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]
        );
        s.capabilities = Some(crate::cri::v1::Capability {
            add_capabilities: vec!["bogus".into()],
            ..Default::default()
        });
        assert!(capabilities(&s, false).is_err());
    }

    #[test]
    fn cri_devices_become_nodes_and_rules_with_their_permissions() {
        let device = |permissions: &str| ContainerConfig {
            devices: vec![crate::cri::v1::Device {
                container_path: "/dev/mynull".into(),
                host_path: "/dev/null".into(),
                permissions: permissions.into(),
            }],
            ..Default::default()
        };
        let (nodes, rules) = devices(&device("r")).unwrap();
        assert_eq!(
            (
                nodes[0].path.as_str(),
                nodes[0].kind,
                nodes[0].major,
                nodes[0].minor
            ),
            ("/dev/mynull", 'c', 1, 3)
        );
        assert_eq!(rules[0].to_string(), "c 1:3 r");
        assert_eq!(devices(&device("")).unwrap().1[0].to_string(), "c 1:3 rwm");
        let err = devices(&device("rx")).unwrap_err();
        assert_eq!(err.field, "config.devices");
        assert!(err.message.contains("/dev/null"), "{}", err.message);
        let mut not_a_device = device("rw");
        not_a_device.devices[0].host_path = "/etc/hostname".into();
        assert!(devices(&not_a_device).is_err());
    }

    #[test]
    fn image_volumes_are_read_only_noexec_overlays_of_their_layers() {
        let config = ContainerConfig {
            mounts: vec![
                crate::cri::v1::Mount {
                    container_path: "/data".into(),
                    host_path: "/tmp".into(),
                    ..Default::default()
                },
                crate::cri::v1::Mount {
                    container_path: "/plugins".into(),
                    image: Some(crate::cri::v1::ImageSpec {
                        image: "sha256:abc".into(),
                        ..Default::default()
                    }),
                    image_sub_path: "bin".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let layers = VolumeLayers::from([(1, vec![PathBuf::from("/l/top"), "/l/bottom".into()])]);
        let sandbox = SandboxRecord {
            id: "p1".into(),
            state: crate::sandbox::record::SandboxState::Ready,
            created_at: 0,
            runtime_handler: String::new(),
            config: Default::default(),
            dir: "/pods/p1".into(),
            netns: None,
            network: String::new(),
            ip: String::new(),
            additional_ips: Vec::new(),
            cgroup: String::new(),
            monitor_pid: 0,
            pause_pid: 0,
        };
        let list = mounts(&config, &sandbox, false, false, &layers).unwrap();
        let data = list.iter().find(|m| m.destination == "/data").unwrap();
        assert_eq!((data.fstype.as_str(), data.image.is_none()), ("bind", true));
        let volume = list.iter().find(|m| m.destination == "/plugins").unwrap();
        assert_eq!(volume.fstype, "image");
        // Read-only whatever the request said (readonly is false here).
        for flag in ["ro", "nosuid", "nodev", "noexec"] {
            assert!(volume.options.contains(&flag.to_owned()), "{flag}");
        }
        let image = volume.image.as_ref().unwrap();
        assert_eq!(image.lower_dirs, layers[&1]);
        assert_eq!(image.sub_path, "bin");
    }

    #[test]
    fn recursive_read_only_options() {
        let m = |readonly, propagation| crate::cri::v1::Mount {
            container_path: "/data".into(),
            host_path: "/tmp".into(),
            readonly,
            recursive_read_only: true,
            propagation,
            ..Default::default()
        };
        // The rules for the flags are `validate`'s; here only the options they become.
        assert!(cri_mount(&m(true, 0)).options.contains(&"rro".to_owned()));
        assert!(
            cri_mount(&m(false, 0))
                .options
                .contains(&"rprivate".to_owned())
        );
    }
}
