//! A sandbox record as the CRI shows it (PodSandboxStatus and the container events).

use super::record::SandboxRecord;
use crate::cri::v1::*;

/// The status message; `ready` says whether the pod's pause still runs.
pub fn status_message(record: &SandboxRecord, ready: bool) -> PodSandboxStatus {
    let config = &record.config.0;
    let state = if ready {
        PodSandboxState::SandboxReady
    } else {
        PodSandboxState::SandboxNotready
    };
    let options = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    PodSandboxStatus {
        id: record.id.clone(),
        metadata: Some(record.metadata()),
        state: state as i32,
        created_at: record.created_at,
        network: Some(PodSandboxNetworkStatus {
            ip: record.ip.clone(),
            additional_ips: record
                .additional_ips
                .iter()
                .map(|ip| PodIp { ip: ip.clone() })
                .collect(),
        }),
        linux: Some(LinuxPodSandboxStatus {
            namespaces: Some(Namespace {
                options: Some(options),
            }),
        }),
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        runtime_handler: record.runtime_handler.clone(),
    }
}
