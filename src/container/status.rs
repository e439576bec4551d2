//! A container record as the CRI shows it: its state, image and status message (ContainerStatus,
//! the container events, and the statuses PodSandboxStatus carries).

use super::record::{ContainerRecord, State};
use crate::cri::v1::*;

pub fn cri_state(record: &ContainerRecord) -> ContainerState {
    match record.state {
        State::Creating | State::Created => ContainerState::ContainerCreated,
        State::Running => ContainerState::ContainerRunning,
        State::Exited => ContainerState::ContainerExited,
    }
}

pub fn image_spec(record: &ContainerRecord) -> ImageSpec {
    let mut spec = record.config.0.image.clone().unwrap_or_default();
    if spec.image.is_empty() {
        spec.image = record.image_name.clone();
    }
    spec
}

pub fn status_message(record: &ContainerRecord) -> ContainerStatus {
    let config = &record.config.0;
    ContainerStatus {
        id: record.id.clone(),
        metadata: config.metadata.clone(),
        state: cri_state(record) as i32,
        created_at: record.created_at,
        started_at: record.started_at,
        finished_at: record.finished_at,
        exit_code: record.exit_code,
        image: Some(image_spec(record)),
        image_ref: record.image_id.clone(),
        reason: record.reason.clone(),
        message: record.message.clone(),
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        // Exactly as requested: kubelet and critest compare them.
        mounts: config.mounts.clone(),
        log_path: record.log_path.display().to_string(),
        resources: config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| ContainerResources {
                linux: Some(r),
                windows: None,
            }),
        image_id: record.image_id.clone(),
        user: Some(ContainerUser {
            linux: Some(LinuxContainerUser {
                uid: record.uid as i64,
                gid: record.gid as i64,
                supplemental_groups: std::iter::once(record.gid as i64)
                    .chain(record.groups.iter().map(|g| *g as i64))
                    .collect(),
            }),
        }),
        // The signal StopContainer will send (config, image or SIGTERM), as KEP-4960 asks.
        stop_signal: super::signals::to_cri(record.stop_signal) as i32,
    }
}
