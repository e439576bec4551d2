//! UpdatePodSandboxResources: kubelet resized a pod and tells the runtime the pod's new
//! overhead and the new sum of its containers' resources. The sandbox cgroup (monitor and
//! pause) gets `resources` as RunPodSandbox gave it `config.linux.resources`; both values are
//! kept in the sandbox's config so that they survive a daemon restart. The values were
//! checked by `validate::resources`.

use super::error::StepError;
use super::record::SandboxState;
use super::service::{SandboxError, Sandboxes};
use crate::cgroup::CgroupError;
use crate::cri::v1::LinuxContainerResources;

fn invalid(field: &'static str, message: String) -> SandboxError {
    SandboxError::Invalid { field, message }
}

impl Sandboxes {
    /// UpdatePodSandboxResources (call with the pod's lock held: this rewrites its record).
    pub async fn update_resources(
        &self,
        id: &str,
        overhead: Option<LinuxContainerResources>,
        resources: Option<LinuxContainerResources>,
    ) -> Result<(), SandboxError> {
        // The request was checked at the door (`validate`).
        let mut record = self
            .find(id)
            .await?
            .ok_or_else(|| SandboxError::NotFound(id.to_owned()))?;
        if record.state != SandboxState::Ready {
            return Err(SandboxError::NotReady(record.id));
        }
        if let (Some(cgroups), Some(limits)) = (self.cgroup_driver(), &resources)
            && !record.cgroup.is_empty()
        {
            let limits = crate::cgroup::Resources::from_cri(Some(limits));
            let path = record.cgroup.clone();
            let applied = tokio::task::spawn_blocking(move || cgroups.apply(&path, &limits))
                .await
                .map_err(|e| SandboxError::Failed {
                    step: "updating the pod cgroup",
                    source: StepError::from(e),
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
                        source: other.into(),
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
