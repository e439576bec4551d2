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
}

/// The keys of `memory.stat` a version uses for the figures above. v1 lists both the
/// cgroup's own counters and hierarchical `total_*` ones; v2 counters are hierarchical.
pub(crate) struct MemoryStatKeys {
    pub(crate) inactive_file: &'static str,
    pub(crate) rss: &'static str,
    pub(crate) page_faults: &'static str,
    pub(crate) major_page_faults: &'static str,
}

pub(crate) const V1_MEMORY_KEYS: MemoryStatKeys = MemoryStatKeys {
    inactive_file: "total_inactive_file",
    rss: "total_rss",
    page_faults: "total_pgfault",
    major_page_faults: "total_pgmajfault",
};

pub(crate) const V2_MEMORY_KEYS: MemoryStatKeys = MemoryStatKeys {
    inactive_file: "inactive_file",
    rss: "anon",
    page_faults: "pgfault",
    major_page_faults: "pgmajfault",
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
pub(crate) fn fill_memory(stats: &mut Stats, usage: u64, memory_stat: &str, keys: &MemoryStatKeys) {
    let get = |key| flat_keyed(memory_stat, key).unwrap_or(0);
    stats.memory_usage_bytes = usage;
    stats.memory_working_set_bytes = usage.saturating_sub(get(keys.inactive_file));
    stats.memory_rss_bytes = get(keys.rss);
    stats.page_faults = get(keys.page_faults);
    stats.major_page_faults = get(keys.major_page_faults);
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
}
