//! Usage figures of a cgroup, as kubelet's CRI stats (and cadvisor) define them.

/// Usage of one cgroup, its descendants included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// CPU time consumed, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory charged to the cgroup, page cache included.
    pub memory_usage_bytes: u64,
    /// Usage minus inactive file cache: what kubelet evicts and OOM-ranks on.
    pub memory_working_set_bytes: u64,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub memory_rss_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// Tasks (threads) in the cgroup (`pids.current`), or its processes when the pids
    /// controller is missing.
    pub pids: u64,
    pub swap_usage_bytes: u64,
    /// CPU time in user and kernel mode, in nanoseconds.
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// CFS bandwidth: periods elapsed, periods throttled, time throttled.
    pub cfs_periods: u64,
    pub cfs_throttled_periods: u64,
    pub cfs_throttled_ns: u64,
    /// Page cache (v1 `total_cache`, v2 `file`) and its parts.
    pub memory_cache_bytes: u64,
    pub memory_mapped_file_bytes: u64,
    pub memory_active_file_bytes: u64,
    pub memory_inactive_file_bytes: u64,
    /// Kernel memory (v1 `memory.kmem.usage_in_bytes`, v2 `kernel`).
    pub memory_kernel_bytes: u64,
    /// Highest usage seen (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
    pub memory_max_usage_bytes: u64,
    /// Times usage hit the limit (v1 `memory.failcnt`; v2 has none).
    pub memory_failcnt: u64,
    /// The limits in force; 0 means none, as cAdvisor shows "unlimited".
    pub limits: Limits,
}

/// The settings of a cgroup that cAdvisor reports as `container_spec_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    /// Soft limit (v1 `memory.soft_limit_in_bytes`, v2 `memory.low`).
    pub memory_reservation_bytes: u64,
    /// v1 memory+swap limit, v2 swap limit.
    pub memory_swap_bytes: u64,
    pub cpu_period_us: u64,
    /// v1 `cpu.shares`; on v2 the shares `cpu.weight` came from.
    pub cpu_shares: u64,
    /// `pids.max`.
    pub pids: u64,
}

/// A limit as the kernel prints it: `max` (v2) or a value near 2^63 (v1 rounds i64::MAX down
/// to a page) mean none and give 0.
pub(crate) fn parse_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return Some(0);
    }
    let v: u64 = text.parse().ok()?;
    Some(if v >= 1 << 62 { 0 } else { v })
}

/// `cpu.weight` back to shares the way cAdvisor converts it (lossy: 1024 shares → weight 39
/// → 998).
pub(crate) fn weight_to_shares(weight: u64) -> u64 {
    let weight = weight.clamp(1, 10_000);
    2 + ((weight - 1) * 262_142) / 9999
}

/// CFS figures of v1 `cpu.stat` (throttled_time in ns).
pub(crate) fn fill_cfs_v1(stats: &mut Stats, cpu_stat: &str) {
    let get = |key| flat_keyed(cpu_stat, key).unwrap_or(0);
    stats.cfs_periods = get("nr_periods");
    stats.cfs_throttled_periods = get("nr_throttled");
    stats.cfs_throttled_ns = get("throttled_time");
}

/// CPU figures of v2 `cpu.stat` (times in µs).
pub(crate) fn fill_cpu_v2(stats: &mut Stats, cpu_stat: &str) {
    let get = |key| flat_keyed(cpu_stat, key).unwrap_or(0);
    stats.cpu_user_ns = get("user_usec").saturating_mul(1000);
    stats.cpu_system_ns = get("system_usec").saturating_mul(1000);
    stats.cfs_periods = get("nr_periods");
    stats.cfs_throttled_periods = get("nr_throttled");
    stats.cfs_throttled_ns = get("throttled_usec").saturating_mul(1000);
}

/// The keys of `memory.stat` a version uses for the figures above. v1 lists both the
/// cgroup's own counters and hierarchical `total_*` ones; v2 counters are hierarchical.
pub(crate) struct MemoryStatKeys {
    pub(crate) inactive_file: &'static str,
    pub(crate) rss: &'static str,
    pub(crate) page_faults: &'static str,
    pub(crate) major_page_faults: &'static str,
    pub(crate) cache: &'static str,
    pub(crate) mapped_file: &'static str,
    pub(crate) active_file: &'static str,
}

pub(crate) const V1_MEMORY_KEYS: MemoryStatKeys = MemoryStatKeys {
    inactive_file: "total_inactive_file",
    rss: "total_rss",
    page_faults: "total_pgfault",
    major_page_faults: "total_pgmajfault",
    cache: "total_cache",
    mapped_file: "total_mapped_file",
    active_file: "total_active_file",
};

pub(crate) const V2_MEMORY_KEYS: MemoryStatKeys = MemoryStatKeys {
    inactive_file: "inactive_file",
    rss: "anon",
    page_faults: "pgfault",
    major_page_faults: "pgmajfault",
    cache: "file",
    mapped_file: "file_mapped",
    active_file: "active_file",
};

/// The value of `key` in a flat-keyed file (`key value` lines: memory.stat, cpu.stat,
/// memory.events, memory.oom_control).
pub(crate) fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Fills the memory figures from the usage counter and the text of `memory.stat`.
/// One pass over the lines (v1's `memory.stat` has about 70; stats read it per container).
pub(crate) fn fill_memory(stats: &mut Stats, usage: u64, memory_stat: &str, keys: &MemoryStatKeys) {
    let mut found = [0u64; 7];
    let wanted = [
        keys.inactive_file,
        keys.rss,
        keys.page_faults,
        keys.major_page_faults,
        keys.cache,
        keys.mapped_file,
        keys.active_file,
    ];
    for line in memory_stat.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        if let Some(i) = wanted.iter().position(|w| *w == key) {
            found[i] = value.trim().parse().unwrap_or(0);
        }
    }
    let [
        inactive_file,
        rss,
        page_faults,
        major_page_faults,
        cache,
        mapped_file,
        active_file,
    ] = found;
    stats.memory_usage_bytes = usage;
    stats.memory_working_set_bytes = usage.saturating_sub(inactive_file);
    stats.memory_rss_bytes = rss;
    stats.page_faults = page_faults;
    stats.major_page_faults = major_page_faults;
    stats.memory_cache_bytes = cache;
    stats.memory_mapped_file_bytes = mapped_file;
    stats.memory_active_file_bytes = active_file;
    stats.memory_inactive_file_bytes = inactive_file;
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_STAT: &str = "\
cache 8192
rss 4096
inactive_file 1000
pgfault 7
pgmajfault 1
total_cache 81920
total_rss 40960
total_inactive_file 10000
total_pgfault 70
total_pgmajfault 10
";

    const V2_STAT: &str = "\
anon 1052672
file 0
kernel 135168
inactive_anon 1048576
active_anon 4096
inactive_file 4096
active_file 0
pgfault 396
pgmajfault 2
";

    #[test]
    fn flat_keyed_finds_exact_keys() {
        assert_eq!(flat_keyed(V1_STAT, "rss"), Some(4096));
        assert_eq!(flat_keyed(V1_STAT, "total_rss"), Some(40960));
        assert_eq!(flat_keyed(V1_STAT, "rs"), None);
        assert_eq!(
            flat_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
        assert_eq!(flat_keyed("usage_usec 12\n", "usage_usec"), Some(12));
    }

    /// The one pass reads what a lookup per key reads, on this host's own `memory.stat`
    /// (the kernel's text, whichever layout it has).
    #[test]
    fn one_pass_agrees_with_lookups_on_this_hosts_memory_stat() {
        let files = [
            ("/sys/fs/cgroup/memory/memory.stat", &V1_MEMORY_KEYS),
            ("/sys/fs/cgroup/memory.stat", &V2_MEMORY_KEYS),
        ];
        let mut read = 0;
        for (path, keys) in files {
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            read += 1;
            let mut s = Stats::default();
            fill_memory(&mut s, u64::MAX, &text, keys);
            let get = |key| flat_keyed(&text, key).unwrap_or(0);
            assert_eq!(s.memory_rss_bytes, get(keys.rss), "{path}");
            assert_eq!(s.page_faults, get(keys.page_faults), "{path}");
            assert_eq!(s.major_page_faults, get(keys.major_page_faults), "{path}");
            assert_eq!(s.memory_cache_bytes, get(keys.cache), "{path}");
            assert_eq!(s.memory_mapped_file_bytes, get(keys.mapped_file), "{path}");
            assert_eq!(s.memory_active_file_bytes, get(keys.active_file), "{path}");
            let inactive = get(keys.inactive_file);
            assert_eq!(s.memory_inactive_file_bytes, inactive, "{path}");
            assert_eq!(s.memory_working_set_bytes, u64::MAX - inactive, "{path}");
            assert_ne!(s.page_faults, 0, "{path}: {text}");
        }
        assert_ne!(read, 0, "no memory.stat on this host");
    }

    #[test]
    fn v1_memory_uses_hierarchical_counters() {
        let mut s = Stats::default();
        fill_memory(&mut s, 100_000, V1_STAT, &V1_MEMORY_KEYS);
        assert_eq!(s.memory_usage_bytes, 100_000);
        assert_eq!(s.memory_working_set_bytes, 90_000);
        assert_eq!(s.memory_rss_bytes, 40960);
        assert_eq!((s.page_faults, s.major_page_faults), (70, 10));
    }

    #[test]
    fn v2_memory_and_working_set_never_underflows() {
        let mut s = Stats::default();
        fill_memory(&mut s, 2_000_000, V2_STAT, &V2_MEMORY_KEYS);
        assert_eq!(s.memory_working_set_bytes, 2_000_000 - 4096);
        assert_eq!(s.memory_rss_bytes, 1_052_672);
        assert_eq!((s.page_faults, s.major_page_faults), (396, 2));
        fill_memory(&mut s, 10, V2_STAT, &V2_MEMORY_KEYS);
        assert_eq!(s.memory_working_set_bytes, 0);
    }

    #[test]
    fn limits_unlimited_is_zero() {
        // v1 prints i64::MAX rounded down to a page; v2 prints "max".
        assert_eq!(parse_limit("9223372036854771712\n"), Some(0));
        assert_eq!(parse_limit("max\n"), Some(0));
        assert_eq!(parse_limit("67108864\n"), Some(67_108_864));
        assert_eq!(parse_limit("garbage"), None);
    }

    #[test]
    fn weight_back_to_shares_as_cadvisor() {
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(39), 998);
        assert_eq!(weight_to_shares(10_000), 262_144);
        assert_eq!(weight_to_shares(0), 2);
    }

    #[test]
    fn cpu_stat_of_both_versions() {
        // As this host's kernel (6.18) prints them.
        let v2 = "usage_usec 12133183116\nuser_usec 9824185045\nsystem_usec 2308998071\n\
                  nice_usec 1580772604\nnr_periods 7\nnr_throttled 3\nthrottled_usec 1500\n";
        let mut s = Stats::default();
        fill_cpu_v2(&mut s, v2);
        assert_eq!(s.cpu_user_ns, 9_824_185_045_000);
        assert_eq!(s.cpu_system_ns, 2_308_998_071_000);
        assert_eq!((s.cfs_periods, s.cfs_throttled_periods), (7, 3));
        assert_eq!(s.cfs_throttled_ns, 1_500_000);
        let v1 =
            "nr_periods 12\nnr_throttled 4\nthrottled_time 987654321\nnr_bursts 0\nburst_time 0\n";
        fill_cfs_v1(&mut s, v1);
        assert_eq!((s.cfs_periods, s.cfs_throttled_periods), (12, 4));
        assert_eq!(s.cfs_throttled_ns, 987_654_321);
    }

    #[test]
    fn memory_cache_figures() {
        let mut s = Stats::default();
        fill_memory(&mut s, 100_000, V1_STAT, &V1_MEMORY_KEYS);
        assert_eq!(s.memory_cache_bytes, 81920);
        assert_eq!(s.memory_inactive_file_bytes, 10000);
        fill_memory(&mut s, 2_000_000, V2_STAT, &V2_MEMORY_KEYS);
        assert_eq!(s.memory_cache_bytes, 0);
        assert_eq!(s.memory_inactive_file_bytes, 4096);
    }

    #[test]
    fn this_hosts_files_parse() {
        // Files the running kernel wrote, where this host has them.
        for (file, key) in [
            ("/sys/fs/cgroup/cpu/cpu.stat", "nr_periods"),
            ("/sys/fs/cgroup/unified/cpu.stat", "usage_usec"),
            ("/sys/fs/cgroup/cpu.stat", "usage_usec"),
            ("/sys/fs/cgroup/memory/memory.stat", "total_rss"),
        ] {
            if let Ok(text) = std::fs::read_to_string(file) {
                assert!(flat_keyed(&text, key).is_some(), "{file}: {key}");
            }
        }
        if let Ok(text) = std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes") {
            assert_eq!(parse_limit(&text), Some(0), "the root cgroup has no limit");
        }
    }
}
