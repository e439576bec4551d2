//! CRI `LinuxContainerResources` → cgroup limits. The CRI's 0 means "not set".

use super::Resources;
use crate::cri::v1::LinuxContainerResources;

impl Resources {
    /// The limits of a CRI resources message (pod or container); `None` sets none.
    pub fn from_cri(r: Option<&LinuxContainerResources>) -> Resources {
        let Some(r) = r else {
            return Resources::default();
        };
        let positive = |v: i64| (v > 0).then_some(v);
        let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Resources {
            cpu_shares: (r.cpu_shares > 0).then_some(r.cpu_shares as u64),
            cpu_quota: positive(r.cpu_quota),
            cpu_period: (r.cpu_period > 0).then_some(r.cpu_period as u64),
            cpuset_cpus: text(&r.cpuset_cpus),
            cpuset_mems: text(&r.cpuset_mems),
            memory_limit: positive(r.memory_limit_in_bytes),
            memory_swap_limit: positive(r.memory_swap_limit_in_bytes),
            pids_limit: None,
            hugepage_limits: r
                .hugepage_limits
                .iter()
                .map(|h| (h.page_size.clone(), h.limit))
                .collect(),
            unified: r.unified.clone().into_iter().collect(),
        }
    }
}
