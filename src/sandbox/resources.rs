//! UpdatePodSandboxResources: kubelet resized a pod and tells the runtime the pod's new
//! overhead and the new sum of its containers' resources. The sandbox cgroup (monitor and
//! pause) gets `resources` as RunPodSandbox gave it `config.linux.resources`; both values are
//! kept in the sandbox's config so that they survive a daemon restart.

use super::record::SandboxState;
use super::service::{SandboxError, Sandboxes};
use crate::cgroup::CgroupError;
use crate::cri::v1::LinuxContainerResources;

/// Checks the request before anything is looked up or written; errors name the field.
pub fn validate_update(
    pod_sandbox_id: &str,
    overhead: Option<&LinuxContainerResources>,
    resources: Option<&LinuxContainerResources>,
) -> Result<(), SandboxError> {
    if pod_sandbox_id.is_empty() {
        return Err(invalid("pod_sandbox_id", "must not be empty".into()));
    }
    for (fields, value) in [(&OVERHEAD, overhead), (&RESOURCES, resources)] {
        if let Some(value) = value {
            check(fields, value)?;
        }
    }
    Ok(())
}

fn invalid(field: &'static str, message: String) -> SandboxError {
    SandboxError::Invalid { field, message }
}

/// The names of the fields `check` looks at, under one prefix.
struct Fields {
    cpu_period: &'static str,
    cpu_quota: &'static str,
    cpu_shares: &'static str,
    memory_limit_in_bytes: &'static str,
    memory_swap_limit_in_bytes: &'static str,
    oom_score_adj: &'static str,
    cpuset_cpus: &'static str,
    cpuset_mems: &'static str,
    hugepage_limits: &'static str,
}

const OVERHEAD: Fields = Fields {
    cpu_period: "overhead.cpu_period",
    cpu_quota: "overhead.cpu_quota",
    cpu_shares: "overhead.cpu_shares",
    memory_limit_in_bytes: "overhead.memory_limit_in_bytes",
    memory_swap_limit_in_bytes: "overhead.memory_swap_limit_in_bytes",
    oom_score_adj: "overhead.oom_score_adj",
    cpuset_cpus: "overhead.cpuset_cpus",
    cpuset_mems: "overhead.cpuset_mems",
    hugepage_limits: "overhead.hugepage_limits",
};

const RESOURCES: Fields = Fields {
    cpu_period: "resources.cpu_period",
    cpu_quota: "resources.cpu_quota",
    cpu_shares: "resources.cpu_shares",
    memory_limit_in_bytes: "resources.memory_limit_in_bytes",
    memory_swap_limit_in_bytes: "resources.memory_swap_limit_in_bytes",
    oom_score_adj: "resources.oom_score_adj",
    cpuset_cpus: "resources.cpuset_cpus",
    cpuset_mems: "resources.cpuset_mems",
    hugepage_limits: "resources.hugepage_limits",
};

/// The ranges the kernel accepts (and kubelet sends); 0 means "not set" throughout the CRI.
fn check(field: &Fields, r: &LinuxContainerResources) -> Result<(), SandboxError> {
    if r.cpu_period != 0 && !(1_000..=1_000_000).contains(&r.cpu_period) {
        return Err(invalid(
            field.cpu_period,
            format!("{} is outside 1000..=1000000 microseconds", r.cpu_period),
        ));
    }
    if r.cpu_quota != 0 && r.cpu_quota != -1 && r.cpu_quota < 1_000 {
        return Err(invalid(
            field.cpu_quota,
            format!(
                "{} is neither -1 (no limit) nor at least 1000 microseconds",
                r.cpu_quota
            ),
        ));
    }
    if r.cpu_shares != 0 && !(2..=262_144).contains(&r.cpu_shares) {
        return Err(invalid(
            field.cpu_shares,
            format!("{} is outside 2..=262144", r.cpu_shares),
        ));
    }
    if r.memory_limit_in_bytes < 0 {
        return Err(invalid(
            field.memory_limit_in_bytes,
            format!("{} is negative", r.memory_limit_in_bytes),
        ));
    }
    if r.memory_swap_limit_in_bytes < -1 {
        return Err(invalid(
            field.memory_swap_limit_in_bytes,
            format!("{} is below -1 (no limit)", r.memory_swap_limit_in_bytes),
        ));
    }
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(invalid(
            field.oom_score_adj,
            format!("{} is outside -1000..=1000", r.oom_score_adj),
        ));
    }
    for (name, list) in [
        (field.cpuset_cpus, &r.cpuset_cpus),
        (field.cpuset_mems, &r.cpuset_mems),
    ] {
        if !list.is_empty() && !valid_cpu_list(list) {
            return Err(invalid(
                name,
                format!("{list:?} is not a list such as 0-3,5"),
            ));
        }
    }
    if let Some(h) = r
        .hugepage_limits
        .iter()
        .find(|h| !valid_page_size(&h.page_size))
    {
        return Err(invalid(
            field.hugepage_limits,
            format!("page size {:?} is not like 2MB or 1GB", h.page_size),
        ));
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

impl Sandboxes {
    /// UpdatePodSandboxResources (call with the pod's lock held: this rewrites its record).
    pub async fn update_resources(
        &self,
        id: &str,
        overhead: Option<LinuxContainerResources>,
        resources: Option<LinuxContainerResources>,
    ) -> Result<(), SandboxError> {
        validate_update(id, overhead.as_ref(), resources.as_ref())?;
        let mut record = self
            .find(id)
            .await?
            .ok_or_else(|| SandboxError::NotFound(id.to_owned()))?;
        if record.state != SandboxState::Ready {
            return Err(SandboxError::NotReady(record.id));
        }
        if let (Some(cgroups), Some(limits)) = (self.cgroups(), &resources)
            && !record.cgroup.is_empty()
        {
            let limits = crate::container::resources::from_cri(Some(limits));
            let path = record.cgroup.clone();
            let applied = tokio::task::spawn_blocking(move || cgroups.apply(&path, &limits))
                .await
                .map_err(|e| SandboxError::Failed {
                    step: "updating the pod cgroup",
                    message: e.to_string(),
                })?;
            match applied {
                Ok(()) => {}
                Err(e @ CgroupError::UnifiedOnV1 { .. }) => {
                    return Err(invalid("resources.unified", e.to_string()));
                }
                Err(e @ CgroupError::InvalidValue { .. }) => {
                    return Err(invalid("resources", e.to_string()));
                }
                // The kubelet sends this notice before it raises its pod cgroup (our cgroup's
                // parent), and cgroup v1 refuses a CFS quota above the parent's: the call is
                // a best-effort notice, so the pod keeps its current limits until the next
                // notice (a lowering, which v1 needs first in the child, always goes through).
                Err(CgroupError::Write { source, file, .. })
                    if source.raw_os_error() == Some(libc::EINVAL) =>
                {
                    tracing::info!(
                        pod = %record.id,
                        file = %file.display(),
                        "pod cgroup limit above its parent's for now; left as it was"
                    );
                }
                Err(other) => {
                    return Err(SandboxError::Failed {
                        step: "updating the pod cgroup",
                        message: other.to_string(),
                    });
                }
            }
        }
        let linux = record.config.0.linux.get_or_insert_with(Default::default);
        if overhead.is_some() {
            linux.overhead = overhead;
        }
        if resources.is_some() {
            linux.resources = resources;
        }
        self.save(&record).await?;
        tracing::info!(pod = %record.id, "pod sandbox resources updated");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_one(r: LinuxContainerResources) -> Result<(), String> {
        validate_update("pod", None, Some(&r)).map_err(|e| e.to_string())
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases: Vec<(LinuxContainerResources, &str)> = vec![
            (
                LinuxContainerResources {
                    cpu_period: 10,
                    ..Default::default()
                },
                "resources.cpu_period",
            ),
            (
                LinuxContainerResources {
                    cpu_quota: -5,
                    ..Default::default()
                },
                "resources.cpu_quota",
            ),
            (
                LinuxContainerResources {
                    cpu_shares: 1,
                    ..Default::default()
                },
                "resources.cpu_shares",
            ),
            (
                LinuxContainerResources {
                    memory_limit_in_bytes: -1,
                    ..Default::default()
                },
                "resources.memory_limit_in_bytes",
            ),
            (
                LinuxContainerResources {
                    memory_swap_limit_in_bytes: -2,
                    ..Default::default()
                },
                "resources.memory_swap_limit_in_bytes",
            ),
            (
                LinuxContainerResources {
                    oom_score_adj: 1001,
                    ..Default::default()
                },
                "resources.oom_score_adj",
            ),
            (
                LinuxContainerResources {
                    cpuset_cpus: "3-1".into(),
                    ..Default::default()
                },
                "resources.cpuset_cpus",
            ),
            (
                LinuxContainerResources {
                    cpuset_mems: "0,,1".into(),
                    ..Default::default()
                },
                "resources.cpuset_mems",
            ),
        ];
        for (r, field) in cases {
            let err = check_one(r).unwrap_err();
            assert!(err.starts_with(field), "{err}");
        }
        let err = validate_update("", None, None).unwrap_err().to_string();
        assert!(err.starts_with("pod_sandbox_id"), "{err}");
        let bad_overhead = LinuxContainerResources {
            cpu_shares: -3,
            ..Default::default()
        };
        let err = validate_update("pod", Some(&bad_overhead), None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("overhead.cpu_shares"), "{err}");
    }

    #[test]
    fn what_kubelet_sends_is_valid() {
        let r = LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 256 << 20,
            memory_swap_limit_in_bytes: -1,
            oom_score_adj: -997,
            cpuset_cpus: "0-1,3".into(),
            cpuset_mems: "0".into(),
            ..Default::default()
        };
        assert_eq!(check_one(r), Ok(()));
        assert_eq!(check_one(LinuxContainerResources::default()), Ok(()));
    }
}
