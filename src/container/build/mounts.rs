//! The container's mounts: the system ones (/proc, /dev, /sys, cgroup), the pod's shared
//! files and /dev/shm, then the CRI's volumes and image volumes.

use std::path::{Path, PathBuf};

use super::{Invalid, VolumeLayers, to_strings};
use crate::cri::v1::{ContainerConfig, MountPropagation, NamespaceMode};
use crate::executor::spec::{ImageLayers, Mount};
use crate::sandbox::record::SandboxRecord;

fn mount(source: &str, destination: &str, fstype: &str, options: &[&str]) -> Mount {
    Mount {
        source: source.into(),
        destination: destination.into(),
        fstype: fstype.into(),
        options: options.iter().map(|o| o.to_string()).collect(),
        image: None,
    }
}

pub(super) fn mounts(
    config: &ContainerConfig,
    sandbox: &SandboxRecord,
    privileged: bool,
    with_cgroup: bool,
    volume_layers: &VolumeLayers,
) -> Result<Vec<Mount>, Invalid> {
    let requested: Vec<&str> = config
        .mounts
        .iter()
        .map(|m| m.container_path.as_str())
        .collect();
    // A CRI mount at one of our places replaces ours.
    let wanted = |dest: &str| !requested.contains(&dest);
    let mut list = system_mounts(privileged);
    if with_cgroup && wanted("/sys/fs/cgroup") {
        // The container's own cgroups; the executor expands this into the host's layout.
        list.push(mount(
            "cgroup",
            "/sys/fs/cgroup",
            "cgroup",
            if privileged {
                &["nosuid", "noexec", "nodev", "relatime"]
            } else {
                &["nosuid", "noexec", "nodev", "relatime", "ro"]
            },
        ));
    }
    list.extend(pod_mounts(sandbox, wanted));
    for (i, m) in config.mounts.iter().enumerate() {
        list.push(match volume_layers.get(&i) {
            Some(layers) => image_mount(m, layers),
            None => cri_mount(m),
        });
    }
    Ok(list)
}

/// /proc, /dev, /dev/pts, /dev/mqueue and /sys: every container has them.
fn system_mounts(privileged: bool) -> Vec<Mount> {
    vec![
        mount("proc", "/proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "tmpfs",
            "/dev",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "devpts",
            "/dev/pts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "mqueue",
            "/dev/mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "sysfs",
            "/sys",
            "sysfs",
            if privileged {
                &["nosuid", "noexec", "nodev"]
            } else {
                &["nosuid", "noexec", "nodev", "ro"]
            },
        ),
    ]
}

/// What the pod's containers share: /dev/shm (the pod's, or the host's for a host-IPC pod)
/// and the pod's /etc/hosts, /etc/resolv.conf and /etc/hostname; those `wanted` says.
fn pod_mounts(sandbox: &SandboxRecord, wanted: impl Fn(&str) -> bool) -> Vec<Mount> {
    let mut list = Vec::new();
    let shm = if sandbox.ipc_mode() == NamespaceMode::Node {
        PathBuf::from("/dev/shm")
    } else {
        sandbox.dir.join("shm")
    };
    if wanted("/dev/shm") {
        list.push(bind(
            &shm,
            "/dev/shm",
            &["rbind", "nosuid", "nodev", "noexec"],
        ));
    }
    for (file, dest) in [
        (crate::sandbox::files::HOSTS, "/etc/hosts"),
        (crate::sandbox::files::RESOLV_CONF, "/etc/resolv.conf"),
        (crate::sandbox::files::HOSTNAME, "/etc/hostname"),
    ] {
        if wanted(dest) {
            list.push(bind(&sandbox.dir.join(file), dest, &["rbind", "rprivate"]));
        }
    }
    list
}

fn bind(source: &Path, destination: &str, options: &[&str]) -> Mount {
    mount(&source.display().to_string(), destination, "bind", options)
}

/// A CRI volume: a recursive bind with its read-only flag and propagation.
pub(super) fn cri_mount(m: &crate::cri::v1::Mount) -> Mount {
    // Paths and flag combinations were checked at the door (`validate`).
    let propagation =
        MountPropagation::try_from(m.propagation).unwrap_or(MountPropagation::PropagationPrivate);
    let mut options = vec!["rbind".to_owned()];
    if m.recursive_read_only {
        options.push("rro".into());
    } else if m.readonly {
        options.push("ro".into());
    }
    options.push(
        match propagation {
            MountPropagation::PropagationHostToContainer => "rslave",
            MountPropagation::PropagationBidirectional => "rshared",
            _ => "rprivate",
        }
        .into(),
    );
    options.extend(m.mount_options.iter().cloned());
    Mount {
        source: m.host_path.clone(),
        destination: m.container_path.clone(),
        fstype: "bind".into(),
        options,
        image: None,
    }
}

/// A CRI image volume: the image's layers merged, read-only whatever the request says, and
/// nosuid, nodev, noexec (KEP-4639 asks for `ro` and `noexec`; files of an image made for
/// someone else's process are data here). Its propagation is private: nothing mounts below it.
fn image_mount(m: &crate::cri::v1::Mount, layers: &[PathBuf]) -> Mount {
    Mount {
        source: m
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default(),
        destination: m.container_path.clone(),
        fstype: "image".into(),
        options: to_strings(&["ro", "nosuid", "nodev", "noexec", "rprivate"]),
        image: Some(ImageLayers {
            lower_dirs: layers.to_vec(),
            sub_path: m.image_sub_path.clone(),
        }),
    }
}
