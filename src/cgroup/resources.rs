//! The resource limits a cgroup can be given, and the checks made before anything is written,
//! so that a bad request never leaves a cgroup half-updated.

use std::collections::HashMap;

use super::error::CgroupError;
use super::path::CgroupPath;

/// Limits for one cgroup. `None` leaves a setting as it is. For `cpu_quota`, `memory_limit`,
/// `memory_swap_limit` and `pids_limit`, `Some(n)` with `n <= 0` means "no limit".
/// (CRI's "0 = not set" is the caller's to turn into `None`.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// v1 `cpu.shares` (2..=262144); v2 `cpu.weight` converted as runc does.
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period.
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds; `Some(0)` counts as unset.
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// Bytes of memory.
    pub memory_limit: Option<i64>,
    /// Bytes of memory + swap (v1 `memsw` semantics; v2 gets the difference).
    pub memory_swap_limit: Option<i64>,
    pub pids_limit: Option<i64>,
    /// (page size such as "2MB" or "1GB", bytes).
    pub hugepage_limits: Vec<(String, u64)>,
    /// cgroup v2 files written verbatim, after everything else (so they win).
    pub unified: HashMap<String, String>,
}

/// Unified keys that would move or kill processes rather than limit them.
const FORBIDDEN_UNIFIED: &[&str] = &[
    "cgroup.procs",
    "cgroup.threads",
    "cgroup.kill",
    "cgroup.subtree_control",
];

impl Resources {
    /// Checks everything that can be checked without the kernel.
    pub(crate) fn validate(&self, cg: &CgroupPath, v2: bool) -> Result<(), CgroupError> {
        let invalid = |setting: &str, value: String, reason| CgroupError::InvalidValue {
            path: cg.to_string(),
            setting: setting.to_owned(),
            value,
            reason,
        };
        for (size, _) in &self.hugepage_limits {
            if !valid_page_size(size) {
                return Err(invalid(
                    "hugepage page size",
                    size.clone(),
                    "expected a number and a unit such as 2MB or 1GB",
                ));
            }
        }
        if let (Some(memory), Some(swap)) = (self.memory_limit, self.memory_swap_limit)
            && memory > 0
            && swap > 0
            && swap < memory
        {
            return Err(invalid(
                "memory_swap_limit",
                swap.to_string(),
                "memory + swap must not be below the memory limit",
            ));
        }
        let mut keys: Vec<&String> = self.unified.keys().collect();
        keys.sort();
        if let Some(key) = keys.first()
            && !v2
        {
            return Err(CgroupError::UnifiedOnV1 {
                path: cg.to_string(),
                key: key.to_string(),
            });
        }
        for key in keys {
            let plain = !key.is_empty()
                && key.contains('.')
                && !key.contains('/')
                && !key.contains('\0')
                && key != "."
                && key != "..";
            if !plain {
                return Err(invalid(
                    "unified key",
                    key.clone(),
                    "expected the name of a file in the cgroup such as memory.high",
                ));
            }
            if FORBIDDEN_UNIFIED.contains(&key.as_str()) {
                return Err(invalid(
                    "unified key",
                    key.clone(),
                    "this file moves or kills processes; it is not a resource setting",
                ));
            }
        }
        Ok(())
    }

    /// The unified entries in a stable order.
    pub(crate) fn unified_sorted(&self) -> Vec<(&str, &str)> {
        let mut entries: Vec<(&str, &str)> = self
            .unified
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        entries.sort();
        entries
    }
}

/// `2MB`, `1GB`, `64KB`: the names the kernel gives hugetlb files.
fn valid_page_size(size: &str) -> bool {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(unit, "KB" | "MB" | "GB" | "TB")
}

/// A limit where `n <= 0` means none, in v1 notation.
pub(crate) fn v1_limit(n: i64) -> String {
    if n > 0 {
        n.to_string()
    } else {
        "-1".to_owned()
    }
}

/// A limit where `n <= 0` means none, as `pids.max` and the v2 `*.max` files write it.
pub(crate) fn max_limit(n: i64) -> String {
    if n > 0 {
        n.to_string()
    } else {
        "max".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cg() -> CgroupPath {
        CgroupPath::parse("/t").unwrap()
    }

    #[test]
    fn limits() {
        assert_eq!(v1_limit(0), "-1");
        assert_eq!(v1_limit(-5), "-1");
        assert_eq!(v1_limit(4096), "4096");
        assert_eq!(max_limit(0), "max");
        assert_eq!(max_limit(-1), "max");
        assert_eq!(max_limit(100), "100");
    }

    #[test]
    fn page_sizes() {
        for ok in ["2MB", "1GB", "64KB", "16GB"] {
            assert!(valid_page_size(ok), "{ok}");
        }
        for bad in ["", "MB", "2", "2mb", "2MB/../x", "../2MB", "2 MB", "2XB"] {
            assert!(!valid_page_size(bad), "{bad}");
        }
    }

    #[test]
    fn unified_only_on_v2_and_names_the_key() {
        let mut r = Resources::default();
        r.unified.insert("memory.high".into(), "100M".into());
        assert!(r.validate(&cg(), true).is_ok());
        let err = r.validate(&cg(), false).unwrap_err();
        assert!(matches!(&err, CgroupError::UnifiedOnV1 { key, .. } if key == "memory.high"));
        assert!(err.to_string().contains("memory.high"));
    }

    #[test]
    fn unified_keys_must_be_plain_file_names() {
        for bad in [
            "../memory.max",
            "a/b.c",
            "",
            "memory",
            "cgroup.procs",
            "cgroup.kill",
        ] {
            let mut r = Resources::default();
            r.unified.insert(bad.into(), "1".into());
            assert!(r.validate(&cg(), true).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn swap_below_memory_is_refused() {
        let r = Resources {
            memory_limit: Some(200),
            memory_swap_limit: Some(100),
            ..Default::default()
        };
        assert!(matches!(
            r.validate(&cg(), true),
            Err(CgroupError::InvalidValue { .. })
        ));
        let r = Resources {
            memory_limit: Some(200),
            memory_swap_limit: Some(-1),
            ..Default::default()
        };
        assert!(r.validate(&cg(), false).is_ok());
    }
}
