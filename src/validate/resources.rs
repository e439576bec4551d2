//! Linux resources (a container's, a pod's overhead and total): the ranges the kernel
//! accepts and kubelet sends. 0 means "not set" throughout the CRI.

use super::rules::{plain, shown};
use super::{Invalid, invalid};
use std::collections::HashMap;

use crate::cri::v1::LinuxContainerResources;

/// Checks `r`, naming fields under `prefix` (e.g. `config.linux.resources`).
pub fn linux(prefix: &str, r: &LinuxContainerResources) -> Result<(), Invalid> {
    let field = |name: &str| format!("{prefix}.{name}");
    cpu(&field, r)?;
    if r.memory_limit_in_bytes < 0 {
        return Err(invalid(
            field("memory_limit_in_bytes"),
            format!("{} is negative", r.memory_limit_in_bytes),
        ));
    }
    if r.memory_swap_limit_in_bytes < -1 {
        return Err(invalid(
            field("memory_swap_limit_in_bytes"),
            format!("{} is below -1 (no limit)", r.memory_swap_limit_in_bytes),
        ));
    }
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(invalid(
            field("oom_score_adj"),
            format!("{} is outside -1000..=1000", r.oom_score_adj),
        ));
    }
    for (name, list) in [
        ("cpuset_cpus", &r.cpuset_cpus),
        ("cpuset_mems", &r.cpuset_mems),
    ] {
        if !list.is_empty() && !valid_cpu_list(list) {
            return Err(invalid(
                field(name),
                format!("{} is not a list such as 0-3,5", shown(list)),
            ));
        }
    }
    if let Some(h) = r
        .hugepage_limits
        .iter()
        .find(|h| !valid_page_size(&h.page_size))
    {
        return Err(invalid(
            field("hugepage_limits"),
            format!("page size {} is not like 2MB or 1GB", shown(&h.page_size)),
        ));
    }
    unified(&field("unified"), &r.unified)?;
    Ok(())
}

/// CPU period, quota and shares.
fn cpu(field: &impl Fn(&str) -> String, r: &LinuxContainerResources) -> Result<(), Invalid> {
    if r.cpu_period != 0 && !(1_000..=1_000_000).contains(&r.cpu_period) {
        return Err(invalid(
            field("cpu_period"),
            format!("{} is outside 1000..=1000000 microseconds", r.cpu_period),
        ));
    }
    if r.cpu_quota != 0 && r.cpu_quota != -1 && r.cpu_quota < 1_000 {
        return Err(invalid(
            field("cpu_quota"),
            format!(
                "{} is neither -1 (no limit) nor at least 1000 microseconds",
                r.cpu_quota
            ),
        ));
    }
    if r.cpu_shares != 0 && !(2..=262_144).contains(&r.cpu_shares) {
        return Err(invalid(
            field("cpu_shares"),
            format!("{} is outside 2..=262144", r.cpu_shares),
        ));
    }
    Ok(())
}

/// `unified`: cgroup v2 file names and the one line each gets.
fn unified(field: &str, unified: &HashMap<String, String>) -> Result<(), Invalid> {
    for (key, value) in unified {
        // A file name in the cgroup directory, and one line for it.
        let ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && key.contains('.');
        if !ok {
            return Err(invalid(
                field,
                format!(
                    "{} is not a cgroup v2 file name such as memory.high",
                    shown(key)
                ),
            ));
        }
        plain(&format!("{field}[{}]", shown(key)), value)?;
    }
    Ok(())
}

/// The kernel's list format: `0-3,5,7-8`, each range ascending.
fn valid_cpu_list(list: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() < 10;
    list.split(',').all(|part| match part.split_once('-') {
        Some((a, b)) => number(a) && number(b) && a.parse::<u32>().ok() <= b.parse::<u32>().ok(),
        None => number(part),
    })
}

fn valid_page_size(size: &str) -> bool {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(&size[digits.len()..], "KB" | "MB" | "GB" | "TB")
}
