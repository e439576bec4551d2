//! cgroup v1: one hierarchy per controller (or group of comounted controllers), each with its
//! own directory for the same cgroup path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::detect::V1Hierarchy;
use super::error::CgroupError;
use super::fs;
use super::path::CgroupPath;
use super::resources::{Resources, max_limit, v1_limit};
use super::stats::{self, Stats};
use super::v2;

/// mkdir -p of `cg` in every hierarchy. In the cpuset hierarchy each new level gets
/// `cpuset.cpus`/`cpuset.mems` copied from its parent: they start empty, and a cpuset cgroup
/// with an empty set refuses tasks.
pub(crate) fn create(cg: &CgroupPath, hierarchies: &[V1Hierarchy]) -> Result<(), CgroupError> {
    for h in hierarchies {
        let cpuset = h.has("cpuset");
        let mut dir = h.mount_point.clone();
        for part in cg.parts() {
            let parent = dir.clone();
            dir.push(part);
            fs::mkdir(cg, &dir)?;
            if cpuset {
                inherit_cpuset(cg, &parent, &dir)?;
            }
        }
    }
    Ok(())
}

fn inherit_cpuset(cg: &CgroupPath, parent: &Path, dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = fs::read(cg, &dir.join(file))?;
        if own.trim().is_empty() {
            let inherited = fs::read(cg, &parent.join(file))?;
            fs::write(cg, &dir.join(file), inherited.trim())?;
        }
    }
    Ok(())
}

/// The cgroup's directory in the hierarchy of `controller`, if that controller is mounted.
fn dir_of(cg: &CgroupPath, hierarchies: &[V1Hierarchy], controller: &str) -> Option<PathBuf> {
    hierarchies
        .iter()
        .find(|h| h.has(controller))
        .map(|h| cg.dir_in(&h.mount_point))
}

/// Like `dir_of`, for a setting that cannot be honoured without the controller.
fn required_dir(
    cg: &CgroupPath,
    hierarchies: &[V1Hierarchy],
    controller: &'static str,
    setting: &str,
) -> Result<PathBuf, CgroupError> {
    let dir =
        dir_of(cg, hierarchies, controller).ok_or_else(|| CgroupError::ControllerMissing {
            path: cg.to_string(),
            controller,
            setting: setting.to_owned(),
        })?;
    if !dir.is_dir() {
        return Err(CgroupError::NotFound {
            path: cg.to_string(),
        });
    }
    Ok(dir)
}

/// Writes `res`. `unified` is the cgroup's directory in a hybrid host's cgroup2 tree, used for
/// hugetlb when that controller is not bound to a v1 hierarchy.
pub(crate) fn apply(
    cg: &CgroupPath,
    hierarchies: &[V1Hierarchy],
    unified: Option<&Path>,
    res: &Resources,
) -> Result<(), CgroupError> {
    if let Some(shares) = res.cpu_shares {
        let dir = required_dir(cg, hierarchies, "cpu", "cpu_shares")?;
        fs::write(cg, &dir.join("cpu.shares"), &shares.to_string())?;
    }
    apply_cfs(cg, hierarchies, res)?;
    if let Some(cpus) = &res.cpuset_cpus {
        let dir = required_dir(cg, hierarchies, "cpuset", "cpuset_cpus")?;
        fs::write(cg, &dir.join("cpuset.cpus"), cpus)?;
    }
    if let Some(mems) = &res.cpuset_mems {
        let dir = required_dir(cg, hierarchies, "cpuset", "cpuset_mems")?;
        fs::write(cg, &dir.join("cpuset.mems"), mems)?;
    }
    apply_memory(cg, hierarchies, res)?;
    if let Some(pids) = res.pids_limit {
        let dir = required_dir(cg, hierarchies, "pids", "pids_limit")?;
        fs::write(cg, &dir.join("pids.max"), &max_limit(pids))?;
    }
    if !res.hugepage_limits.is_empty() {
        apply_hugetlb(cg, hierarchies, unified, &res.hugepage_limits)?;
    }
    Ok(())
}

/// Period first; if the kernel refuses it against the current quota, quota then period
/// (as runc does).
fn apply_cfs(
    cg: &CgroupPath,
    hierarchies: &[V1Hierarchy],
    res: &Resources,
) -> Result<(), CgroupError> {
    let quota = res.cpu_quota.map(v1_limit);
    let period = res.cpu_period.filter(|p| *p > 0).map(|p| p.to_string());
    if quota.is_none() && period.is_none() {
        return Ok(());
    }
    let dir = required_dir(cg, hierarchies, "cpu", "cpu_quota/cpu_period")?;
    let quota_file = dir.join("cpu.cfs_quota_us");
    let period_file = dir.join("cpu.cfs_period_us");
    if let Some(period) = &period {
        match fs::write(cg, &period_file, period) {
            Ok(()) => {}
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
            {
                fs::write(cg, &quota_file, quota.as_deref().unwrap_or("-1"))?;
                return fs::write(cg, &period_file, period);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(quota) = &quota {
        fs::write(cg, &quota_file, quota)?;
    }
    Ok(())
}

/// The kernel keeps memory <= memory+swap at every write, so the order depends on where the
/// new memsw limit lies relative to the current memory limit.
fn apply_memory(
    cg: &CgroupPath,
    hierarchies: &[V1Hierarchy],
    res: &Resources,
) -> Result<(), CgroupError> {
    if res.memory_limit.is_none() && res.memory_swap_limit.is_none() {
        return Ok(());
    }
    let dir = required_dir(cg, hierarchies, "memory", "memory_limit")?;
    let memory_file = dir.join("memory.limit_in_bytes");
    let memsw_file = dir.join("memory.memsw.limit_in_bytes");
    let memory = res.memory_limit.map(|m| if m > 0 { m } else { -1 });
    let mut memsw = res.memory_swap_limit.map(|s| if s > 0 { s } else { -1 });
    let swap_accounting = memsw_file.exists();
    if !swap_accounting {
        if memsw.is_some() {
            tracing::debug!(cgroup = %cg, "no swap accounting; swap limit not applied");
        }
        memsw = None;
    } else if memory == Some(-1) && memsw.is_none() {
        // Lifting the memory limit must lift memory+swap too, or the write is refused.
        memsw = Some(-1);
    }
    match (memory, memsw) {
        (Some(memory), Some(memsw)) => {
            let current = fs::read(cg, &memory_file)?;
            let current = fs::parse_u64(cg, &memory_file, &current)?;
            if memsw_first(memsw, current) {
                fs::write(cg, &memsw_file, &memsw.to_string())?;
                fs::write(cg, &memory_file, &memory.to_string())?;
            } else {
                fs::write(cg, &memory_file, &memory.to_string())?;
                fs::write(cg, &memsw_file, &memsw.to_string())?;
            }
        }
        (Some(memory), None) => fs::write(cg, &memory_file, &memory.to_string())?,
        (None, Some(memsw)) => fs::write(cg, &memsw_file, &memsw.to_string())?,
        (None, None) => {}
    }
    Ok(())
}

/// Whether the new memory+swap limit can be written before the memory limit: it must not go
/// below the memory limit in force (`-1` is unlimited).
pub(crate) fn memsw_first(new_memsw: i64, current_memory: u64) -> bool {
    new_memsw < 0 || new_memsw as u64 >= current_memory
}

fn apply_hugetlb(
    cg: &CgroupPath,
    hierarchies: &[V1Hierarchy],
    unified: Option<&Path>,
    limits: &[(String, u64)],
) -> Result<(), CgroupError> {
    if let Some(dir) = dir_of(cg, hierarchies, "hugetlb") {
        for (size, limit) in limits {
            let value = limit.to_string();
            fs::write(
                cg,
                &dir.join(format!("hugetlb.{size}.limit_in_bytes")),
                &value,
            )?;
            let rsvd = dir.join(format!("hugetlb.{size}.rsvd.limit_in_bytes"));
            if rsvd.exists() {
                fs::write(cg, &rsvd, &value)?;
            }
        }
        return Ok(());
    }
    if let Some(dir) = unified
        && v2::has_controller(cg, dir, "hugetlb")?
    {
        return v2::apply_hugetlb(cg, dir, limits);
    }
    tracing::debug!(cgroup = %cg, "no hugetlb controller; hugepage limits not applied");
    Ok(())
}

/// The part of [`stats`] a ContainerStats reports: CPU time, memory usage, working set, RSS,
/// faults, swap and the memory limit (5 files where `stats` reads ~18).
pub(crate) fn usage(
    cg: &CgroupPath,
    hierarchies: &[V1Hierarchy],
    unified: Option<&Path>,
) -> Result<Stats, CgroupError> {
    let mut stats = Stats::default();
    fill_usage(cg, hierarchies, unified, &mut stats)?;
    Ok(stats)
}

/// Fills what [`usage`] reports; returns the memory directory when it has a usage (the rest of
/// the memory figures are read only then).
fn fill_usage(
    cg: &CgroupPath,
    hierarchies: &[V1Hierarchy],
    unified: Option<&Path>,
    stats: &mut Stats,
) -> Result<Option<PathBuf>, CgroupError> {
    if let Some(dir) = dir_of(cg, hierarchies, "cpuacct") {
        stats.cpu_usage_ns = fs::read_u64_optional(cg, &dir.join("cpuacct.usage"))?.unwrap_or(0);
    } else if let Some(dir) = unified {
        stats.cpu_usage_ns = v2::cpu_usage_ns(cg, dir)?.unwrap_or(0);
    }
    let Some(dir) = dir_of(cg, hierarchies, "memory") else {
        return Ok(None);
    };
    let Some(usage) = fs::read_u64_optional(cg, &dir.join("memory.usage_in_bytes"))? else {
        return Ok(None);
    };
    let memory_stat = fs::read_optional(cg, &dir.join("memory.stat"))?.unwrap_or_default();
    stats::fill_memory(stats, usage, &memory_stat, &stats::V1_MEMORY_KEYS);
    if let Some(memsw) = fs::read_u64_optional(cg, &dir.join("memory.memsw.usage_in_bytes"))? {
        stats.swap_usage_bytes = memsw.saturating_sub(usage);
    }
    stats.limits.memory_bytes = fs::read_limit(cg, &dir.join("memory.limit_in_bytes"))?;
    Ok(Some(dir))
}

pub(crate) fn stats(
    cg: &CgroupPath,
    hierarchies: &[V1Hierarchy],
    unified: Option<&Path>,
) -> Result<Stats, CgroupError> {
    let mut stats = Stats::default();
    let memory = fill_usage(cg, hierarchies, unified, &mut stats)?;
    if let Some(dir) = dir_of(cg, hierarchies, "cpuacct") {
        let read = |name: &str| fs::read_u64_optional(cg, &dir.join(name));
        stats.cpu_user_ns = read("cpuacct.usage_user")?.unwrap_or(0);
        stats.cpu_system_ns = read("cpuacct.usage_sys")?.unwrap_or(0);
    } else if let Some(dir) = unified {
        // Hybrid hosts keep CPU time for every cgroup2 cgroup.
        let cpu_stat = fs::read_optional(cg, &dir.join("cpu.stat"))?.unwrap_or_default();
        stats::fill_cpu_v2(&mut stats, &cpu_stat);
    }
    if let Some(dir) = dir_of(cg, hierarchies, "cpu") {
        let cpu_stat = fs::read_optional(cg, &dir.join("cpu.stat"))?.unwrap_or_default();
        stats::fill_cfs_v1(&mut stats, &cpu_stat);
        stats.limits.cpu_period_us = fs::read_limit(cg, &dir.join("cpu.cfs_period_us"))?;
        stats.limits.cpu_shares = fs::read_limit(cg, &dir.join("cpu.shares"))?;
    }
    if let Some(dir) = memory {
        let read = |name: &str| fs::read_u64_optional(cg, &dir.join(name));
        stats.memory_kernel_bytes = read("memory.kmem.usage_in_bytes")?.unwrap_or(0);
        stats.memory_max_usage_bytes = read("memory.max_usage_in_bytes")?.unwrap_or(0);
        stats.memory_failcnt = read("memory.failcnt")?.unwrap_or(0);
        let limits = &mut stats.limits;
        limits.memory_reservation_bytes =
            fs::read_limit(cg, &dir.join("memory.soft_limit_in_bytes"))?;
        limits.memory_swap_bytes = fs::read_limit(cg, &dir.join("memory.memsw.limit_in_bytes"))?;
    }
    if let Some(dir) = dir_of(cg, hierarchies, "pids") {
        stats.limits.pids = fs::read_limit(cg, &dir.join("pids.max"))?;
    }
    stats.pids = process_count(cg, hierarchies)?;
    Ok(stats)
}

/// `pids.current`, or without the pids controller the processes counted in every hierarchy.
pub(crate) fn process_count(
    cg: &CgroupPath,
    hierarchies: &[V1Hierarchy],
) -> Result<u64, CgroupError> {
    if let Some(dir) = dir_of(cg, hierarchies, "pids")
        && let Some(pids) = fs::read_u64_optional(cg, &dir.join("pids.current"))?
    {
        return Ok(pids);
    }
    let mut pids = BTreeSet::new();
    for h in hierarchies {
        fs::collect_procs(cg, &cg.dir_in(&h.mount_point), true, &mut pids)?;
    }
    Ok(pids.len() as u64)
}

/// `oom_kill` of `memory.oom_control` (Linux >= 4.13; 0 before).
pub(crate) fn oom_kills(cg: &CgroupPath, hierarchies: &[V1Hierarchy]) -> Result<u64, CgroupError> {
    let Some(dir) = dir_of(cg, hierarchies, "memory") else {
        return Ok(0);
    };
    let text = fs::read_optional(cg, &dir.join("memory.oom_control"))?;
    Ok(text
        .and_then(|t| stats::flat_keyed(&t, "oom_kill"))
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memsw_order() {
        // Raising memory+swap above the memory limit in force: memsw first.
        assert!(memsw_first(2000, 1000));
        assert!(memsw_first(-1, 1000));
        assert!(memsw_first(1000, 1000));
        // Lowering below it: memory first.
        assert!(!memsw_first(500, 1000));
        // The kernel reports "unlimited" as a huge number.
        assert!(!memsw_first(1 << 30, 9_223_372_036_854_771_712));
    }
}
