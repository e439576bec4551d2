//! cgroup v2: one tree, controllers enabled top-down through `cgroup.subtree_control`.

use std::collections::BTreeSet;
use std::path::Path;

use super::error::CgroupError;
use super::fs;
use super::path::CgroupPath;
use super::resources::{Resources, max_limit};
use super::stats::{self, Stats};

/// The controllers a container cgroup needs, in the order they are enabled.
pub(crate) const CONTROLLERS: [&str; 6] = ["cpu", "cpuset", "io", "memory", "pids", "hugetlb"];

/// mkdir -p of `cg` under `mount`, enabling `controllers` (where the kernel offers them) in
/// each ancestor on the way down so that the new cgroup gets their files.
pub(crate) fn create(
    cg: &CgroupPath,
    mount: &Path,
    controllers: &[&str],
) -> Result<(), CgroupError> {
    let mut dir = mount.to_path_buf();
    for part in cg.parts() {
        if !controllers.is_empty() {
            enable_controllers(cg, &dir, controllers)?;
        }
        dir.push(part);
        fs::mkdir(cg, &dir)?;
    }
    Ok(())
}

/// Enables in `dir`'s `cgroup.subtree_control` those of `wanted` that `dir` has and has not
/// enabled yet. A controller the kernel refuses (EBUSY when `dir` holds processes, for
/// instance) is logged and skipped: its files are then missing below, and a limit that needs
/// them fails in `apply` with the file's name.
fn enable_controllers(cg: &CgroupPath, dir: &Path, wanted: &[&str]) -> Result<(), CgroupError> {
    let available = words(fs::read_optional(cg, &dir.join("cgroup.controllers"))?);
    let enabled = words(fs::read_optional(cg, &dir.join("cgroup.subtree_control"))?);
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|c| available.contains(*c) && !enabled.contains(*c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let file = dir.join("cgroup.subtree_control");
    let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    if fs::write(cg, &file, &all.join(" ")).is_ok() {
        return Ok(());
    }
    for controller in missing {
        if let Err(error) = fs::write(cg, &file, &format!("+{controller}")) {
            tracing::warn!(cgroup = %cg, %error, "cannot enable the {controller} controller");
        }
    }
    Ok(())
}

fn words(text: Option<String>) -> BTreeSet<String> {
    text.unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Whether the cgroup at `dir` has `controller` (its parent enabled it for its children).
pub(crate) fn has_controller(
    cg: &CgroupPath,
    dir: &Path,
    controller: &str,
) -> Result<bool, CgroupError> {
    Ok(words(fs::read_optional(cg, &dir.join("cgroup.controllers"))?).contains(controller))
}

/// runc's conversion of v1 shares (2..=262144) to v2 weight (1..=10000).
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// The `cpu.max` line. A missing quota keeps the current one (`current` is `cpu.max` as read),
/// a missing period keeps the kernel's (the kernel accepts the quota alone).
pub(crate) fn cpu_max(quota: Option<i64>, period: Option<u64>, current: Option<&str>) -> String {
    let quota = match quota {
        Some(q) if q > 0 => q.to_string(),
        Some(_) => "max".to_owned(),
        None => current
            .and_then(|c| c.split_whitespace().next())
            .unwrap_or("max")
            .to_owned(),
    };
    match period.filter(|p| *p > 0) {
        Some(period) => format!("{quota} {period}"),
        None => quota,
    }
}

/// `memory.swap.max` from v1-style memory+swap, as runc converts it: the swap on top of the
/// memory limit. Validation has already refused swap below memory.
pub(crate) fn swap_max(
    cg: &CgroupPath,
    memory: Option<i64>,
    memory_swap: Option<i64>,
) -> Result<Option<String>, CgroupError> {
    match (memory_swap, memory) {
        (None, _) => Ok(None),
        (Some(swap), _) if swap <= 0 => Ok(Some("max".to_owned())),
        (Some(swap), Some(memory)) if memory > 0 => Ok(Some((swap - memory).max(0).to_string())),
        (Some(swap), _) => Err(CgroupError::InvalidValue {
            path: cg.to_string(),
            setting: "memory_swap_limit".to_owned(),
            value: swap.to_string(),
            reason: "on cgroup v2 a swap limit needs a memory limit to be converted",
        }),
    }
}

/// Writes `res` into the cgroup directory `dir`.
pub(crate) fn apply(cg: &CgroupPath, dir: &Path, res: &Resources) -> Result<(), CgroupError> {
    let mut writes: Vec<(String, String)> = Vec::new();
    if let Some(shares) = res.cpu_shares {
        writes.push(("cpu.weight".into(), shares_to_weight(shares).to_string()));
    }
    if res.cpu_quota.is_some() || res.cpu_period.is_some_and(|p| p > 0) {
        let current = match res.cpu_quota {
            None => fs::read_optional(cg, &dir.join("cpu.max"))?,
            Some(_) => None,
        };
        let line = cpu_max(res.cpu_quota, res.cpu_period, current.as_deref());
        writes.push(("cpu.max".into(), line));
    }
    if let Some(cpus) = &res.cpuset_cpus {
        writes.push(("cpuset.cpus".into(), cpus.clone()));
    }
    if let Some(mems) = &res.cpuset_mems {
        writes.push(("cpuset.mems".into(), mems.clone()));
    }
    if let Some(swap) = swap_max(cg, res.memory_limit, res.memory_swap_limit)? {
        if dir.join("memory.swap.max").exists() {
            writes.push(("memory.swap.max".into(), swap));
        } else {
            tracing::debug!(cgroup = %cg, "no swap accounting; swap limit not applied");
        }
    }
    if let Some(memory) = res.memory_limit {
        writes.push(("memory.max".into(), max_limit(memory)));
    }
    if let Some(pids) = res.pids_limit {
        writes.push(("pids.max".into(), max_limit(pids)));
    }
    for (file, value) in &writes {
        fs::write(cg, &dir.join(file), value)?;
    }
    if !res.hugepage_limits.is_empty() {
        if has_controller(cg, dir, "hugetlb")? {
            apply_hugetlb(cg, dir, &res.hugepage_limits)?;
        } else {
            tracing::debug!(cgroup = %cg, "no hugetlb controller; hugepage limits not applied");
        }
    }
    for (file, value) in res.unified_sorted() {
        fs::write(cg, &dir.join(file), value)?;
    }
    Ok(())
}

/// `hugetlb.<size>.max`, and the reservation limit where the kernel has one.
pub(crate) fn apply_hugetlb(
    cg: &CgroupPath,
    dir: &Path,
    limits: &[(String, u64)],
) -> Result<(), CgroupError> {
    for (size, limit) in limits {
        let value = limit.to_string();
        fs::write(cg, &dir.join(format!("hugetlb.{size}.max")), &value)?;
        let rsvd = dir.join(format!("hugetlb.{size}.rsvd.max"));
        if rsvd.exists() {
            fs::write(cg, &rsvd, &value)?;
        }
    }
    Ok(())
}

/// CPU time from `cpu.stat`, which v2 keeps for every cgroup, controller or not.
pub(crate) fn cpu_usage_ns(cg: &CgroupPath, dir: &Path) -> Result<Option<u64>, CgroupError> {
    let text = fs::read_optional(cg, &dir.join("cpu.stat"))?;
    Ok(text
        .and_then(|t| stats::flat_keyed(&t, "usage_usec"))
        .map(|us| us.saturating_mul(1000)))
}

/// The part of [`stats`] a ContainerStats reports (see `v1::usage`).
pub(crate) fn usage(cg: &CgroupPath, dir: &Path) -> Result<Stats, CgroupError> {
    let mut stats = Stats::default();
    fill_usage(cg, dir, &mut stats)?;
    stats.limits.memory_bytes = fs::read_limit(cg, &dir.join("memory.max"))?;
    Ok(stats)
}

/// Fills what [`usage`] reports but the limit; returns `memory.stat` when the cgroup has a
/// memory usage (the rest of the memory figures are read only then).
fn fill_usage(
    cg: &CgroupPath,
    dir: &Path,
    stats: &mut Stats,
) -> Result<Option<String>, CgroupError> {
    stats.cpu_usage_ns = cpu_usage_ns(cg, dir)?.unwrap_or(0);
    let memory_stat = match fs::read_u64_optional(cg, &dir.join("memory.current"))? {
        Some(usage) => {
            let memory_stat = fs::read_optional(cg, &dir.join("memory.stat"))?.unwrap_or_default();
            stats::fill_memory(stats, usage, &memory_stat, &stats::V2_MEMORY_KEYS);
            Some(memory_stat)
        }
        None => None,
    };
    stats.swap_usage_bytes =
        fs::read_u64_optional(cg, &dir.join("memory.swap.current"))?.unwrap_or(0);
    Ok(memory_stat)
}

pub(crate) fn stats(cg: &CgroupPath, dir: &Path) -> Result<Stats, CgroupError> {
    let mut stats = Stats::default();
    let memory_stat = fill_usage(cg, dir, &mut stats)?;
    let cpu_stat = fs::read_optional(cg, &dir.join("cpu.stat"))?.unwrap_or_default();
    stats::fill_cpu_v2(&mut stats, &cpu_stat);
    if let Some(memory_stat) = memory_stat {
        stats.memory_kernel_bytes = stats::flat_keyed(&memory_stat, "kernel").unwrap_or(0);
        stats.memory_max_usage_bytes =
            fs::read_u64_optional(cg, &dir.join("memory.peak"))?.unwrap_or(0);
    }
    let limit = |name: &str| fs::read_limit(cg, &dir.join(name));
    stats.limits = stats::Limits {
        memory_bytes: limit("memory.max")?,
        memory_reservation_bytes: limit("memory.low")?,
        memory_swap_bytes: limit("memory.swap.max")?,
        cpu_period_us: fs::read_optional(cg, &dir.join("cpu.max"))?
            .and_then(|t| t.split_whitespace().nth(1).and_then(|p| p.parse().ok()))
            .unwrap_or(0),
        cpu_shares: fs::read_u64_optional(cg, &dir.join("cpu.weight"))?
            .map(stats::weight_to_shares)
            .unwrap_or(0),
        pids: limit("pids.max")?,
    };
    stats.pids = process_count(cg, dir)?;
    Ok(stats)
}

/// `pids.current`, or without the pids controller the processes counted.
pub(crate) fn process_count(cg: &CgroupPath, dir: &Path) -> Result<u64, CgroupError> {
    if let Some(pids) = fs::read_u64_optional(cg, &dir.join("pids.current"))? {
        return Ok(pids);
    }
    let mut pids = BTreeSet::new();
    fs::collect_procs(cg, dir, true, &mut pids)?;
    Ok(pids.len() as u64)
}

/// `oom_kill` of `memory.events` (hierarchical unless mounted with memory_localevents).
pub(crate) fn oom_kills(cg: &CgroupPath, dir: &Path) -> Result<u64, CgroupError> {
    let text = fs::read_optional(cg, &dir.join("memory.events"))?;
    Ok(text
        .and_then(|t| stats::flat_keyed(&t, "oom_kill"))
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_matches_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(0), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(102), 4);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
    }

    #[test]
    fn cpu_max_lines() {
        assert_eq!(cpu_max(Some(50_000), Some(100_000), None), "50000 100000");
        assert_eq!(cpu_max(Some(-1), Some(100_000), None), "max 100000");
        assert_eq!(cpu_max(Some(0), None, None), "max");
        assert_eq!(cpu_max(Some(20_000), None, None), "20000");
        // Period alone keeps the quota that is there.
        assert_eq!(
            cpu_max(None, Some(50_000), Some("30000 100000\n")),
            "30000 50000"
        );
        assert_eq!(
            cpu_max(None, Some(50_000), Some("max 100000\n")),
            "max 50000"
        );
        assert_eq!(cpu_max(None, Some(50_000), None), "max 50000");
    }

    #[test]
    fn swap_conversion() {
        let cg = CgroupPath::parse("/t").unwrap();
        assert_eq!(swap_max(&cg, Some(100), None).unwrap(), None);
        assert_eq!(
            swap_max(&cg, Some(100), Some(-1)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(
            swap_max(&cg, None, Some(0)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(
            swap_max(&cg, Some(100), Some(100)).unwrap().as_deref(),
            Some("0")
        );
        assert_eq!(
            swap_max(&cg, Some(100), Some(300)).unwrap().as_deref(),
            Some("200")
        );
        assert!(swap_max(&cg, None, Some(300)).is_err());
        assert!(swap_max(&cg, Some(-1), Some(300)).is_err());
    }
}
