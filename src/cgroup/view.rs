//! The cgroup filesystems a container mounts at `/sys/fs/cgroup` to see its own cgroup: the
//! host's hierarchies under the host's names. Mounted from inside the container's cgroup
//! namespace, each one's root is the container's cgroup.

use std::path::{Path, PathBuf};

use super::detect::V1Hierarchy;
use super::{Cgroups, Layout};

/// One mount under the container's `/sys/fs/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMount {
    /// Directory under `/sys/fs/cgroup`; empty for `/sys/fs/cgroup` itself (v2).
    pub dir: String,
    /// `cgroup` or `cgroup2`.
    pub fstype: &'static str,
    /// Mount data: the hierarchy's controllers and flags (`cpu,cpuacct`, `xattr,name=systemd`).
    pub data: String,
    /// Links to `dir`, one per comounted controller (`cpu` and `cpuacct` → `cpu,cpuacct`).
    pub aliases: Vec<String>,
    /// Where the host mounts this hierarchy (for a bind of the container's cgroup from it,
    /// when the container shares the host's cgroup namespace).
    pub host_mount_point: PathBuf,
}

impl Cgroups {
    /// What the container's `/sys/fs/cgroup` holds on this host: one `cgroup2` mount on v2;
    /// on v1 one `cgroup` mount per hierarchy (and the `cgroup2` one of a hybrid host),
    /// to go on a tmpfs.
    pub fn container_mounts(&self) -> Vec<ContainerMount> {
        if self.layout == Layout::Unified {
            return vec![ContainerMount {
                dir: String::new(),
                fstype: "cgroup2",
                data: String::new(),
                aliases: Vec::new(),
                host_mount_point: self.unified.clone().unwrap_or_default(),
            }];
        }
        let mut mounts: Vec<ContainerMount> = self.v1.iter().map(v1_mount).collect();
        if let Some(unified) = &self.unified {
            mounts.push(ContainerMount {
                dir: host_name(unified).unwrap_or_else(|| "unified".to_owned()),
                fstype: "cgroup2",
                data: String::new(),
                aliases: Vec::new(),
                host_mount_point: unified.clone(),
            });
        }
        mounts
    }
}

fn v1_mount(h: &V1Hierarchy) -> ContainerMount {
    let controllers: Vec<&str> = h
        .controllers
        .iter()
        .map(String::as_str)
        .filter(|c| !c.starts_with("name="))
        .collect();
    let fallback = || match controllers.is_empty() {
        true => h
            .controllers
            .iter()
            .find_map(|c| c.strip_prefix("name="))
            .unwrap_or("none")
            .to_owned(),
        false => controllers.join(","),
    };
    let dir = host_name(&h.mount_point).unwrap_or_else(fallback);
    let aliases = if controllers.len() > 1 {
        controllers
            .iter()
            .filter(|c| **c != dir)
            .map(|c| c.to_string())
            .collect()
    } else {
        Vec::new()
    };
    ContainerMount {
        dir,
        fstype: "cgroup",
        data: h
            .flags
            .iter()
            .chain(&h.controllers)
            .cloned()
            .collect::<Vec<_>>()
            .join(","),
        aliases,
        host_mount_point: h.mount_point.clone(),
    }
}

/// The hierarchy's directory name when the host mounts it in the standard place.
fn host_name(mount_point: &Path) -> Option<String> {
    (mount_point.parent() == Some(Path::new("/sys/fs/cgroup")))
        .then(|| mount_point.file_name())
        .flatten()
        .map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts(mountinfo: &str) -> Vec<(String, &'static str, String, Vec<String>)> {
        Cgroups::from_mountinfo(mountinfo)
            .unwrap()
            .container_mounts()
            .into_iter()
            .map(|m| (m.dir, m.fstype, m.data, m.aliases))
            .collect()
    }

    fn m(
        dir: &str,
        fstype: &'static str,
        data: &str,
        aliases: &[&str],
    ) -> (String, &'static str, String, Vec<String>) {
        (
            dir.to_owned(),
            fstype,
            data.to_owned(),
            aliases.iter().map(|a| a.to_string()).collect(),
        )
    }

    #[test]
    fn hybrid_systemd_host() {
        let text = "\
32 31 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
37 31 0:34 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset,clone_children
";
        assert_eq!(
            mounts(text),
            [
                m("systemd", "cgroup", "xattr,name=systemd", &[]),
                m("cpu,cpuacct", "cgroup", "cpu,cpuacct", &["cpu", "cpuacct"]),
                m("memory", "cgroup", "memory", &[]),
                m("cpuset", "cgroup", "clone_children,cpuset", &[]),
                m("unified", "cgroup2", "", &[]),
            ]
        );
    }

    #[test]
    fn legacy_host_drops_the_release_agent_and_names_odd_mount_points_by_controller() {
        let text = "\
25 24 0:21 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
27 24 0:23 / /mnt/cg/a rw - cgroup cgroup rw,cpu,cpuacct
28 24 0:24 / /mnt/cg/b rw - cgroup cgroup rw,name=other
";
        assert_eq!(
            mounts(text),
            [
                m("systemd", "cgroup", "xattr,name=systemd", &[]),
                m("cpu,cpuacct", "cgroup", "cpu,cpuacct", &["cpu", "cpuacct"]),
                m("other", "cgroup", "name=other", &[]),
            ]
        );
    }

    #[test]
    fn unified_host_is_one_cgroup2_mount() {
        let text = "28 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(mounts(text), [m("", "cgroup2", "", &[])]);
    }
}
