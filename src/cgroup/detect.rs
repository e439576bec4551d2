//! Which cgroup layout this host has, read from `/proc/self/mountinfo`.
//!
//! - **Unified**: only cgroup2 (pure v2, the default on current distributions).
//! - **Hybrid**: v1 controller hierarchies plus a controller-less cgroup2, usually at
//!   `/sys/fs/cgroup/unified` (systemd's hybrid mode). Resource control happens in v1.
//! - **Legacy**: v1 hierarchies only.
//!
//! A v1 hierarchy may carry several controllers (`cpu,cpuacct`) or none but a name
//! (`name=systemd`). When a hierarchy is mounted more than once the mount of its root under
//! `/sys/fs/cgroup` wins.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// The cgroup layout of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Unified,
    Hybrid,
    Legacy,
}

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Hierarchy {
    pub(crate) mount_point: PathBuf,
    /// Controllers bound to it, plus `name=<name>` for a named hierarchy; sorted.
    pub(crate) controllers: Vec<String>,
    /// Its flags among the superblock options (`xattr`, `noprefix`, …): another mount of
    /// the hierarchy repeats them (the kernel warns about a mount that differs).
    pub(crate) flags: Vec<String>,
}

impl V1Hierarchy {
    pub(crate) fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Detected {
    pub(crate) layout: Layout,
    /// Every mounted v1 hierarchy (empty on Unified), in mountinfo order.
    pub(crate) v1: Vec<V1Hierarchy>,
    /// The cgroup2 mount: the whole tree on Unified, the controller-less tree on Hybrid.
    pub(crate) unified: Option<PathBuf>,
}

/// Mount options of a v1 cgroup superblock that are flags, not controllers.
const V1_FLAGS: &[&str] = &[
    "rw",
    "ro",
    "none",
    "all",
    "noprefix",
    "clone_children",
    "xattr",
    "cpuset_v2_mode",
    "favordynmods",
];

struct Mount {
    root: String,
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
}

pub(crate) fn parse_mountinfo(text: &str) -> io::Result<Detected> {
    // Best mount per v1 hierarchy (keyed by its controller set) and of cgroup2.
    let mut v1: BTreeMap<Vec<String>, (usize, u8, PathBuf, Vec<String>)> = BTreeMap::new();
    let mut unified: Option<(u8, PathBuf)> = None;
    for (index, mount) in text.lines().filter_map(parse_line).enumerate() {
        let rank = rank(&mount);
        match mount.fstype.as_str() {
            "cgroup2" if unified.as_ref().is_none_or(|(best, _)| rank < *best) => {
                unified = Some((rank, mount.mount_point));
            }
            "cgroup" => {
                let controllers = v1_controllers(&mount.super_options);
                if controllers.is_empty() {
                    continue;
                }
                match v1.get_mut(&controllers) {
                    Some(best) if rank < best.1 => {
                        best.1 = rank;
                        best.2 = mount.mount_point;
                    }
                    Some(_) => {}
                    None => {
                        let flags = v1_flags(&mount.super_options);
                        v1.insert(controllers, (index, rank, mount.mount_point, flags));
                    }
                }
            }
            _ => {}
        }
    }
    let mut v1: Vec<(usize, V1Hierarchy)> = v1
        .into_iter()
        .map(|(controllers, (index, _, mount_point, flags))| {
            (
                index,
                V1Hierarchy {
                    mount_point,
                    controllers,
                    flags,
                },
            )
        })
        .collect();
    v1.sort_by_key(|(index, _)| *index);
    let v1: Vec<V1Hierarchy> = v1.into_iter().map(|(_, h)| h).collect();
    let unified = unified.map(|(_, path)| path);

    let has_v1_controllers = v1
        .iter()
        .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")));
    let layout = match (has_v1_controllers, &unified) {
        (true, Some(_)) => Layout::Hybrid,
        (true, None) => Layout::Legacy,
        (false, Some(_)) => Layout::Unified,
        (false, None) => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup filesystem with controllers is mounted (looked in /proc/self/mountinfo)",
            ));
        }
    };
    // On a pure v2 host a leftover named v1 hierarchy (kept for old containers) is not ours.
    let v1 = if layout == Layout::Unified {
        Vec::new()
    } else {
        v1
    };
    Ok(Detected {
        layout,
        v1,
        unified,
    })
}

/// Lower is better: the hierarchy's root mounted under /sys/fs/cgroup, then its root elsewhere,
/// then a bind mount of a subtree.
fn rank(mount: &Mount) -> u8 {
    let whole = mount.root == "/";
    let standard = mount.mount_point.starts_with("/sys/fs/cgroup");
    match (whole, standard) {
        (true, true) => 0,
        (true, false) => 1,
        (false, true) => 2,
        (false, false) => 3,
    }
}

fn v1_controllers(super_options: &str) -> Vec<String> {
    let mut controllers: Vec<String> = super_options
        .split(',')
        .filter(|o| !o.is_empty() && !V1_FLAGS.contains(o))
        .filter(|o| !o.contains('=') || o.starts_with("name="))
        .map(str::to_owned)
        .collect();
    controllers.sort();
    controllers.dedup();
    controllers
}

/// The hierarchy-wide flags a new mount of the hierarchy may repeat (not `rw`/`ro`, which
/// are per mount, nor `release_agent=`, which a cgroup namespace may not set).
fn v1_flags(super_options: &str) -> Vec<String> {
    super_options
        .split(',')
        .filter(|o| V1_FLAGS.contains(o) && !matches!(*o, "rw" | "ro" | "none" | "all"))
        .map(str::to_owned)
        .collect()
}

/// `36 35 98:0 /root /mount/point rw,noatime master:1 - fstype source super,options`
fn parse_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mut before = before.split(' ');
    let root = unescape(before.nth(3)?);
    let mount_point = PathBuf::from(unescape(before.next()?));
    let mut after = after.split(' ');
    let fstype = after.next()?.to_owned();
    let super_options = after.nth(1).unwrap_or("").to_owned();
    Some(Mount {
        root,
        mount_point,
        fstype,
        super_options,
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads the layout of the calling process's mount namespace.
pub(crate) fn detect() -> io::Result<Detected> {
    let text = std::fs::read_to_string(Path::new("/proc/self/mountinfo"))?;
    parse_mountinfo(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIFIED: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
37 31 0:34 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,net_cls,net_prio
39 31 0:36 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,cpuset,clone_children
40 31 0:37 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:20 - cgroup cgroup rw,hugetlb
42 31 0:39 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:21 - cgroup cgroup rw,freezer
43 31 0:40 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:22 - cgroup cgroup rw,blkio
";

    /// The machine this was written on: a tmpfs, separate cpu and cpuacct hierarchies and an
    /// empty cgroup2 under `unified`.
    const HYBRID_SEPARATE_CPU: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const LEGACY: &str = "\
20 1 8:1 / / rw - ext4 /dev/sda1 rw
24 20 0:20 / /sys/fs/cgroup rw,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:5 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
27 24 0:23 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,cpu,cpuacct
28 24 0:24 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,memory
29 24 0:25 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,pids
300 20 0:24 /docker/abc /var/lib/docker/x/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";

    fn h(mount: &str, controllers: &[&str]) -> V1Hierarchy {
        let (flags, controllers): (Vec<&str>, Vec<&str>) =
            controllers.iter().partition(|c| V1_FLAGS.contains(c));
        V1Hierarchy {
            mount_point: PathBuf::from(mount),
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            flags: flags.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn unified() {
        let d = parse_mountinfo(UNIFIED).unwrap();
        assert_eq!(d.layout, Layout::Unified);
        assert_eq!(d.unified.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        assert!(d.v1.is_empty());
    }

    #[test]
    fn unified_ignores_a_leftover_named_v1_hierarchy() {
        let text = format!(
            "{UNIFIED}40 28 0:50 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
        );
        let d = parse_mountinfo(&text).unwrap();
        assert_eq!(d.layout, Layout::Unified);
        assert!(d.v1.is_empty());
    }

    #[test]
    fn hybrid_with_comounted_controllers() {
        let d = parse_mountinfo(HYBRID).unwrap();
        assert_eq!(d.layout, Layout::Hybrid);
        assert_eq!(
            d.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            d.v1,
            vec![
                h("/sys/fs/cgroup/systemd", &["xattr", "name=systemd"]),
                h("/sys/fs/cgroup/cpu,cpuacct", &["cpu", "cpuacct"]),
                h("/sys/fs/cgroup/memory", &["memory"]),
                h("/sys/fs/cgroup/net_cls,net_prio", &["net_cls", "net_prio"]),
                h("/sys/fs/cgroup/cpuset", &["clone_children", "cpuset"]),
                h("/sys/fs/cgroup/pids", &["pids"]),
                h("/sys/fs/cgroup/hugetlb", &["hugetlb"]),
                h("/sys/fs/cgroup/freezer", &["freezer"]),
                h("/sys/fs/cgroup/blkio", &["blkio"]),
            ]
        );
        assert!(d.v1[1].has("cpuacct") && d.v1[1].has("cpu"));
    }

    #[test]
    fn hybrid_with_separate_cpu_and_cpuacct() {
        let d = parse_mountinfo(HYBRID_SEPARATE_CPU).unwrap();
        assert_eq!(d.layout, Layout::Hybrid);
        let mounts: Vec<_> = d.v1.iter().map(|h| h.mount_point.clone()).collect();
        assert_eq!(
            mounts,
            ["cpu", "cpuacct", "cpuset", "memory", "systemd"]
                .map(|c| PathBuf::from(format!("/sys/fs/cgroup/{c}")))
        );
        assert_eq!(d.v1[0].controllers, ["cpu"]);
    }

    #[test]
    fn legacy_prefers_the_root_mount_over_a_bind_mount() {
        let d = parse_mountinfo(LEGACY).unwrap();
        assert_eq!(d.layout, Layout::Legacy);
        assert_eq!(d.unified, None);
        assert_eq!(
            d.v1,
            vec![
                h("/sys/fs/cgroup/systemd", &["xattr", "name=systemd"]),
                h("/sys/fs/cgroup/cpu,cpuacct", &["cpu", "cpuacct"]),
                h("/sys/fs/cgroup/memory", &["memory"]),
                h("/sys/fs/cgroup/pids", &["pids"]),
            ]
        );
    }

    #[test]
    fn a_bind_mount_listed_first_loses_to_the_root_mount() {
        let text = "\
1 0 0:24 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
2 0 0:24 / /host/cgroup/memory rw - cgroup cgroup rw,memory
";
        let d = parse_mountinfo(text).unwrap();
        assert_eq!(d.v1, vec![h("/host/cgroup/memory", &["memory"])]);
    }

    #[test]
    fn no_cgroups_is_an_error() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n";
        assert_eq!(
            parse_mountinfo(text).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let named_only = "1 0 0:1 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n";
        assert!(parse_mountinfo(named_only).is_err());
    }

    #[test]
    fn escaped_mount_points() {
        let text = "1 0 0:1 / /mnt/cgroup\\040v2 rw - cgroup2 cgroup2 rw\n";
        let d = parse_mountinfo(text).unwrap();
        assert_eq!(d.unified.as_deref(), Some(Path::new("/mnt/cgroup v2")));
        assert_eq!(unescape("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn optional_fields_and_garbage_lines() {
        let text = "\
garbage
5 1 0:9 / /sys/fs/cgroup rw shared:1 master:2 propagate_from:3 - cgroup2 cgroup2 rw
";
        let d = parse_mountinfo(text).unwrap();
        assert_eq!(d.layout, Layout::Unified);
    }
}
