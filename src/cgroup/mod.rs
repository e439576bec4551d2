//! A thin cgroupfs driver for cgroup v1 (legacy and hybrid hosts) and v2.
//!
//! `Cgroups::detect` reads the layout once; every operation then takes an absolute cgroup
//! path such as `/ferrocri/<id>` or kubelet's `/kubepods/burstable/pod<uid>/<id>` and applies
//! it to every hierarchy: on v1 each mounted hierarchy (controllers and named ones like
//! `name=systemd`, plus the controller-less cgroup2 tree of a hybrid host), on v2 the one tree.
//! Paths with `..` or `.` components, or relative ones, are refused; destroying or limiting
//! the root is refused.
//!
//! On a hybrid host, controllers that no v1 hierarchy holds but the kernel offers in cgroup2
//! (hugetlb, typically) are enabled and used there.
//!
//! Every call does blocking file I/O, and `kill_all`/`remove` may sleep while they wait for
//! the kernel: from async code, call them in `spawn_blocking`.

mod bpf;
mod detect;
mod device_filter;
pub mod devices;
mod error;
mod from_cri;
mod fs;
mod kill;
mod path;
mod resources;
mod stats;
mod v1;
mod v2;
mod view;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use detect::Layout;
pub use devices::{DEFAULT_ALLOWED as DEFAULT_DEVICES, DeviceRule};
pub use error::CgroupError;
pub use resources::Resources;
pub use stats::{Limits, Stats};
pub use view::ContainerMount;

use detect::V1Hierarchy;
use path::CgroupPath;

/// The v1 name of a v2 controller.
fn v1_name(controller: &str) -> &str {
    match controller {
        "io" => "blkio",
        other => other,
    }
}

/// The cgroup version resources are controlled with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Legacy or hybrid hosts.
    V1,
    /// Pure cgroup v2 (unified) hosts.
    V2,
}

/// The cgroup hierarchies of this host, as mounted in the daemon's mount namespace.
#[derive(Debug, Clone)]
pub struct Cgroups {
    layout: Layout,
    v1: Vec<V1Hierarchy>,
    /// The cgroup2 mount (the whole tree on Unified, controller-less on Hybrid).
    unified: Option<PathBuf>,
    /// Controllers to enable in the cgroup2 tree: all of `v2::CONTROLLERS` on Unified; on
    /// Hybrid the ones no v1 hierarchy has (a kernel offers those in cgroup2, e.g. hugetlb).
    unified_controllers: Vec<&'static str>,
}

impl Cgroups {
    /// Detects the layout from `/proc/self/mountinfo`.
    pub fn detect() -> io::Result<Cgroups> {
        Ok(Cgroups::from_detected(detect::detect()?))
    }

    /// A driver for the layout that `mountinfo` (text of /proc/<pid>/mountinfo) describes.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn from_mountinfo(mountinfo: &str) -> io::Result<Cgroups> {
        Ok(Cgroups::from_detected(detect::parse_mountinfo(mountinfo)?))
    }

    fn from_detected(d: detect::Detected) -> Cgroups {
        let unified_controllers = match d.layout {
            Layout::Unified => v2::CONTROLLERS.to_vec(),
            Layout::Hybrid => v2::CONTROLLERS
                .iter()
                .copied()
                .filter(|c| !d.v1.iter().any(|h| h.has(v1_name(c))))
                .collect(),
            Layout::Legacy => Vec::new(),
        };
        Cgroups {
            layout: d.layout,
            v1: d.v1,
            unified: d.unified,
            unified_controllers,
        }
    }

    pub fn version(&self) -> Version {
        match self.layout {
            Layout::Unified => Version::V2,
            Layout::Hybrid | Layout::Legacy => Version::V1,
        }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Controllers pods can use: those of the v1 hierarchies, and those the cgroup2 root
    /// offers. Sorted, without duplicates.
    pub fn available_controllers(&self) -> Vec<String> {
        let mut found: Vec<String> = self
            .v1
            .iter()
            .flat_map(|h| h.controllers.iter())
            .filter(|c| !c.starts_with("name="))
            .cloned()
            .collect();
        if let Some(root) = &self.unified
            && let Ok(text) = std::fs::read_to_string(root.join("cgroup.controllers"))
        {
            found.extend(text.split_whitespace().map(str::to_owned));
        }
        found.sort();
        found.dedup();
        found
    }

    /// Creates the cgroup (and missing ancestors) in every hierarchy. On v2, `cpu`, `cpuset`,
    /// `io`, `memory`, `pids` and `hugetlb` are enabled, where the kernel offers them, in every
    /// ancestor's `cgroup.subtree_control`. On v1 a new cpuset cgroup inherits its parent's
    /// `cpuset.cpus`/`cpuset.mems`. Existing directories are fine. On failure, what was
    /// created stays; `remove` undoes it.
    pub fn create(&self, path: &str) -> Result<(), CgroupError> {
        let cg = CgroupPath::parse(path)?;
        // A shared parent (such as /ferrocri) can be removed as empty by another pod's
        // teardown between our mkdir of it and of its child: create again when that happens.
        let mut attempts = 0;
        loop {
            let result = v1::create(&cg, &self.v1).and_then(|()| match &self.unified {
                Some(mount) => v2::create(&cg, mount, &self.unified_controllers),
                None => Ok(()),
            });
            match result {
                Err(e) if attempts < 5 && e.is_not_found() => attempts += 1,
                other => return other,
            }
        }
    }

    /// Moves process `pid` (with all its threads) into the cgroup in every hierarchy.
    pub fn add_process(&self, path: &str, pid: i32) -> Result<(), CgroupError> {
        let cg = CgroupPath::parse(path)?;
        if pid <= 0 {
            // Writing 0 would move the daemon itself.
            return Err(CgroupError::InvalidValue {
                path: cg.to_string(),
                setting: "pid".to_owned(),
                value: pid.to_string(),
                reason: "a process ID is positive",
            });
        }
        self.must_exist(&cg)?;
        // A process made by clone3(CLONE_INTO_CGROUP) is in its cgroup2 directory already;
        // writing cgroup.procs anyway would cost the RCU grace period that clone avoided.
        let placed = self.unified.is_some() && in_unified_cgroup(pid, &cg);
        for mount in self.mounts() {
            if placed && Some(mount) == self.unified.as_deref() {
                continue;
            }
            fs::write(
                &cg,
                &cg.dir_in(mount).join("cgroup.procs"),
                &pid.to_string(),
            )?;
        }
        Ok(())
    }

    /// The cgroup's directory in the cgroup2 tree (v2, or hybrid hosts' controller-less one):
    /// where clone3(CLONE_INTO_CGROUP) can start a process.
    pub fn unified_dir(&self, path: &str) -> Result<Option<PathBuf>, CgroupError> {
        let cg = CgroupPath::parse(path)?;
        Ok(self.unified.as_deref().map(|m| cg.dir_in(m)))
    }

    /// The processes in the cgroup and its descendants, in any hierarchy; sorted. A cgroup
    /// that does not exist has none.
    pub fn processes(&self, path: &str) -> Result<Vec<i32>, CgroupError> {
        let cg = CgroupPath::parse(path)?;
        let mut pids = BTreeSet::new();
        for dir in self.dirs(&cg) {
            fs::collect_procs(&cg, &dir, true, &mut pids)?;
        }
        Ok(pids.into_iter().collect())
    }

    /// SIGKILLs every process in the cgroup and its descendants and waits (up to 10 s) until
    /// none is left. A missing cgroup is fine.
    pub fn kill_all(&self, path: &str) -> Result<(), CgroupError> {
        let cg = CgroupPath::parse_non_root(path)?;
        let unified = self.unified.as_ref().map(|m| cg.dir_in(m));
        let freezer = match self.v1.iter().find(|h| h.has("freezer")) {
            Some(h) => Some(kill::Freezer::V1(cg.dir_in(&h.mount_point))),
            None => unified.clone().map(kill::Freezer::V2),
        };
        let target = kill::Target {
            cg: &cg,
            dirs: self.dirs(&cg),
            unified,
            freezer,
        };
        kill::kill_all(&target, kill::KILL_TIMEOUT)
    }

    /// Removes the cgroup and every cgroup below it (children first) from every hierarchy.
    /// Missing directories are fine; EBUSY is retried for up to 0.6 s in all (a cgroup with
    /// live processes stays busy: `kill_all` first). Every hierarchy is tried even after one
    /// fails; the first error is returned. Ancestors are never touched.
    pub fn remove(&self, path: &str) -> Result<(), CgroupError> {
        let cg = CgroupPath::parse_non_root(path)?;
        let busy_deadline = Instant::now() + fs::RMDIR_BUSY_RETRY;
        let mut first_error = None;
        for dir in self.dirs(&cg) {
            if let Err(e) = fs::remove_tree(&cg, &dir, busy_deadline) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes the cgroup if it has neither child cgroups nor processes in any hierarchy (for
    /// a shared parent such as `/ferrocri`). Returns whether it is gone.
    pub fn remove_if_empty(&self, path: &str) -> Result<bool, CgroupError> {
        let cg = CgroupPath::parse_non_root(path)?;
        let dirs = self.dirs(&cg);
        for dir in &dirs {
            let mut pids = BTreeSet::new();
            fs::collect_procs(&cg, dir, false, &mut pids)?;
            if !pids.is_empty() || !fs::child_dirs(&cg, dir)?.is_empty() {
                return Ok(false);
            }
        }
        for dir in &dirs {
            // Busy now means someone created a child or joined since we looked.
            if !fs::rmdir(&cg, dir, None)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes the limits in `resources`; see `Resources` for the meaning of each field. Every
    /// value is checked before the first write.
    pub fn apply(&self, path: &str, resources: &Resources) -> Result<(), CgroupError> {
        let cg = CgroupPath::parse_non_root(path)?;
        resources.validate(&cg, self.version() == Version::V2)?;
        self.must_exist(&cg)?;
        let unified = self.unified.as_ref().map(|m| cg.dir_in(m));
        match (self.version(), unified) {
            (Version::V2, Some(dir)) => v2::apply(&cg, &dir, resources),
            (_, unified) => v1::apply(&cg, &self.v1, unified.as_deref(), resources),
        }
    }

    /// Limits the devices the cgroup's processes may create, read and write to `rules`
    /// (everything else is denied). v1 (and hybrid hosts, whose devices controller is in v1):
    /// `devices.deny a`, then one `devices.allow` line per rule; v2: a device program
    /// attached to the cgroup. Call it before any process joins: on v1 the kernel refuses a
    /// deny-all on a cgroup with children. `apply` never touches these rules.
    pub fn set_devices(&self, path: &str, rules: &[DeviceRule]) -> Result<(), CgroupError> {
        let cg = CgroupPath::parse_non_root(path)?;
        self.must_exist(&cg)?;
        let v1_devices = self.v1.iter().find(|h| h.has("devices"));
        match (self.version(), v1_devices, &self.unified) {
            (Version::V1, Some(h), _) => {
                let dir = cg.dir_in(&h.mount_point);
                fs::write(&cg, &dir.join("devices.deny"), "a")?;
                for rule in rules {
                    fs::write(&cg, &dir.join("devices.allow"), &rule.to_string())?;
                }
                Ok(())
            }
            // v2, or a v1 host without the devices controller but with a cgroup2 tree (the
            // kernel runs device programs of the cgroup2 tree on any layout).
            (_, _, Some(mount)) => {
                let dir = cg.dir_in(mount);
                let error = |action| {
                    let path = cg.to_string();
                    move |source| CgroupError::DeviceProgram {
                        path,
                        action,
                        source,
                    }
                };
                let program = bpf::load_device_program(&device_filter::program(rules))
                    .map_err(error("load"))?;
                let dir_fd = std::fs::File::open(&dir).map_err(error("open the cgroup for"))?;
                bpf::attach_device_program(&dir_fd, &program).map_err(error("attach"))
            }
            _ => Err(CgroupError::ControllerMissing {
                path: cg.to_string(),
                controller: "devices",
                setting: "the device allowlist".to_owned(),
            }),
        }
    }

    pub fn stats(&self, path: &str) -> Result<Stats, CgroupError> {
        let cg = CgroupPath::parse(path)?;
        self.must_exist(&cg)?;
        let unified = self.unified.as_ref().map(|m| cg.dir_in(m));
        match (self.version(), unified) {
            (Version::V2, Some(dir)) => v2::stats(&cg, &dir),
            (_, unified) => v1::stats(&cg, &self.v1, unified.as_deref()),
        }
    }

    /// What ContainerStats reports of [`Cgroups::stats`] (CPU time, memory usage, working
    /// set, RSS, faults, swap, memory limit; the other fields stay 0), from a third of the
    /// files: ListContainerStats reads it for every running container.
    pub fn usage(&self, path: &str) -> Result<Stats, CgroupError> {
        let cg = CgroupPath::parse(path)?;
        self.must_exist(&cg)?;
        let unified = self.unified.as_ref().map(|m| cg.dir_in(m));
        match (self.version(), unified) {
            (Version::V2, Some(dir)) => v2::usage(&cg, &dir),
            (_, unified) => v1::usage(&cg, &self.v1, unified.as_deref()),
        }
    }

    /// [`Cgroups::usage`] with the process count (`pids`) too: what PodSandboxStats reports.
    pub fn usage_and_pids(&self, path: &str) -> Result<Stats, CgroupError> {
        let cg = CgroupPath::parse(path)?;
        self.must_exist(&cg)?;
        let unified = self.unified.as_ref().map(|m| cg.dir_in(m));
        match (self.version(), unified) {
            (Version::V2, Some(dir)) => {
                let mut stats = v2::usage(&cg, &dir)?;
                stats.pids = v2::process_count(&cg, &dir)?;
                Ok(stats)
            }
            (_, unified) => {
                let mut stats = v1::usage(&cg, &self.v1, unified.as_deref())?;
                stats.pids = v1::process_count(&cg, &self.v1)?;
                Ok(stats)
            }
        }
    }

    /// How many times the kernel's OOM killer killed a process in the cgroup (v2
    /// `memory.events`, v1 `memory.oom_control`, Linux >= 4.13; 0 where not reported).
    pub fn oom_kills(&self, path: &str) -> Result<u64, CgroupError> {
        let cg = CgroupPath::parse(path)?;
        self.must_exist(&cg)?;
        match (self.version(), &self.unified) {
            (Version::V2, Some(mount)) => v2::oom_kills(&cg, &cg.dir_in(mount)),
            _ => v1::oom_kills(&cg, &self.v1),
        }
    }

    /// The cgroup's directory in every hierarchy this driver manages.
    fn dirs(&self, cg: &CgroupPath) -> Vec<PathBuf> {
        self.mounts().map(|m| cg.dir_in(m)).collect()
    }

    fn mounts(&self) -> impl Iterator<Item = &Path> {
        self.v1
            .iter()
            .map(|h| h.mount_point.as_path())
            .chain(self.unified.as_deref())
    }

    /// NotFound unless the cgroup exists in the hierarchy that matters most: the cgroup2 tree
    /// on v2, else the memory hierarchy (or the first one).
    fn must_exist(&self, cg: &CgroupPath) -> Result<(), CgroupError> {
        let mount = match self.version() {
            Version::V2 => self.unified.as_deref(),
            Version::V1 => self
                .v1
                .iter()
                .find(|h| h.has("memory"))
                .or(self.v1.first())
                .map(|h| h.mount_point.as_path()),
        };
        match mount {
            Some(mount) if !cg.dir_in(mount).is_dir() => Err(CgroupError::NotFound {
                path: cg.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// Whether `pid` is in `cg` in the cgroup2 tree (its `0::` line in /proc/<pid>/cgroup).
fn in_unified_cgroup(pid: i32, cg: &CgroupPath) -> bool {
    // A process that moves itself may know its pid only in its own PID namespace (the
    // executor), which /proc, mounted for the host's, would read as another process.
    let file = if u32::try_from(pid) == Ok(std::process::id()) {
        "/proc/self/cgroup".to_owned()
    } else {
        format!("/proc/{pid}/cgroup")
    };
    std::fs::read_to_string(file).is_ok_and(|text| {
        text.lines()
            .filter_map(|l| l.strip_prefix("0::"))
            .any(|path| path == cg.to_string())
    })
}
