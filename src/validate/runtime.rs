//! The RuntimeService's requests.

use super::configs::{Use, container_config, pod_config};
use super::resources;
use super::rules::{annotations, id, known, no_nul, optional_id, port, selector, shown};
use super::{Invalid, Validate, invalid};
use crate::cri::v1::*;

/// Requests with no field to check.
macro_rules! nothing_to_check {
    ($($ty:ty),* $(,)?) => {$(
        impl Validate for $ty {
            fn validate(&self) -> Result<(), Invalid> {
                Ok(())
            }
        }
    )*};
}

nothing_to_check!(
    VersionRequest,
    StatusRequest,
    RuntimeConfigRequest,
    GetEventsRequest,
    ListMetricDescriptorsRequest,
    ListPodSandboxMetricsRequest,
    StreamPodSandboxMetricsRequest,
);

/// Requests that name one pod or one container and nothing else worth checking.
macro_rules! one_id {
    ($($ty:ty => $field:ident),* $(,)?) => {$(
        impl Validate for $ty {
            fn validate(&self) -> Result<(), Invalid> {
                id(stringify!($field), &self.$field)
            }
        }
    )*};
}

one_id!(
    StopPodSandboxRequest => pod_sandbox_id,
    RemovePodSandboxRequest => pod_sandbox_id,
    PodSandboxStatusRequest => pod_sandbox_id,
    PodSandboxStatsRequest => pod_sandbox_id,
    StartContainerRequest => container_id,
    RemoveContainerRequest => container_id,
    ContainerStatusRequest => container_id,
    ReopenContainerLogRequest => container_id,
    ContainerStatsRequest => container_id,
    AttachRequest => container_id,
);

impl Validate for RunPodSandboxRequest {
    fn validate(&self) -> Result<(), Invalid> {
        let config = self
            .config
            .as_ref()
            .ok_or_else(|| invalid("config", "is required"))?;
        pod_config("config", config, Use::Create)?;
        if !self.runtime_handler.is_empty() {
            return Err(invalid(
                "runtime_handler",
                format!(
                    "unknown runtime handler {} (ferrocri has only the default, \"\")",
                    shown(&self.runtime_handler)
                ),
            ));
        }
        Ok(())
    }
}

impl Validate for CreateContainerRequest {
    fn validate(&self) -> Result<(), Invalid> {
        id("pod_sandbox_id", &self.pod_sandbox_id)?;
        let config = self
            .config
            .as_ref()
            .ok_or_else(|| invalid("config", "is required"))?;
        container_config("config", config)?;
        if let Some(pod) = &self.sandbox_config {
            pod_config("sandbox_config", pod, Use::Copy)?;
        }
        Ok(())
    }
}

impl Validate for StopContainerRequest {
    fn validate(&self) -> Result<(), Invalid> {
        id("container_id", &self.container_id)?;
        non_negative("timeout", self.timeout)
    }
}

impl Validate for UpdateContainerResourcesRequest {
    fn validate(&self) -> Result<(), Invalid> {
        id("container_id", &self.container_id)?;
        if let Some(linux) = &self.linux {
            resources::linux("linux", linux)?;
        }
        annotations("annotations", &self.annotations)
    }
}

impl Validate for UpdatePodSandboxResourcesRequest {
    fn validate(&self) -> Result<(), Invalid> {
        id("pod_sandbox_id", &self.pod_sandbox_id)?;
        if let Some(overhead) = &self.overhead {
            resources::linux("overhead", overhead)?;
        }
        if let Some(r) = &self.resources {
            resources::linux("resources", r)?;
        }
        Ok(())
    }
}

impl Validate for ExecSyncRequest {
    fn validate(&self) -> Result<(), Invalid> {
        id("container_id", &self.container_id)?;
        command("cmd", &self.cmd)?;
        non_negative("timeout", self.timeout)
    }
}

impl Validate for ExecRequest {
    fn validate(&self) -> Result<(), Invalid> {
        id("container_id", &self.container_id)?;
        command("cmd", &self.cmd)
    }
}

impl Validate for PortForwardRequest {
    fn validate(&self) -> Result<(), Invalid> {
        id("pod_sandbox_id", &self.pod_sandbox_id)?;
        for (i, p) in self.port.iter().enumerate() {
            port(&format!("port[{i}]"), *p, 1)?;
        }
        Ok(())
    }
}

impl Validate for UpdateRuntimeConfigRequest {
    fn validate(&self) -> Result<(), Invalid> {
        let field = "runtime_config.network_config.pod_cidr";
        let cidr = self
            .runtime_config
            .as_ref()
            .and_then(|c| c.network_config.as_ref())
            .map(|n| n.pod_cidr.as_str())
            .unwrap_or_default();
        if cidr.is_empty() {
            return Ok(());
        }
        for part in cidr.split(',') {
            crate::config::parse_cidr(part.trim()).map_err(|m| invalid(field, m))?;
        }
        Ok(())
    }
}

fn pod_filter(id: &str, state: Option<i32>, label_selector: &HashMap) -> Result<(), Invalid> {
    optional_id("filter.id", id)?;
    if let Some(state) = state {
        known::<PodSandboxState>("filter.state.state", state)?;
    }
    selector("filter.label_selector", label_selector)
}

type HashMap = std::collections::HashMap<String, String>;

fn container_filter(
    id: &str,
    pod_sandbox_id: &str,
    state: Option<i32>,
    label_selector: &HashMap,
) -> Result<(), Invalid> {
    optional_id("filter.id", id)?;
    optional_id("filter.pod_sandbox_id", pod_sandbox_id)?;
    if let Some(state) = state {
        known::<ContainerState>("filter.state.state", state)?;
    }
    selector("filter.label_selector", label_selector)
}

/// The list requests (unary and streamed): an absent filter is fine, a present one is checked.
macro_rules! filtered {
    ($($ty:ty => $check:expr),* $(,)?) => {$(
        impl Validate for $ty {
            fn validate(&self) -> Result<(), Invalid> {
                self.filter.as_ref().map_or(Ok(()), $check)
            }
        }
    )*};
}

filtered!(
    ListPodSandboxRequest => |f| pod_filter(&f.id, f.state.as_ref().map(|s| s.state), &f.label_selector),
    StreamPodSandboxesRequest => |f| pod_filter(&f.id, f.state.as_ref().map(|s| s.state), &f.label_selector),
    ListPodSandboxStatsRequest => |f| pod_filter(&f.id, None, &f.label_selector),
    StreamPodSandboxStatsRequest => |f| pod_filter(&f.id, None, &f.label_selector),
    ListContainersRequest => |f| container_filter(
        &f.id,
        &f.pod_sandbox_id,
        f.state.as_ref().map(|s| s.state),
        &f.label_selector,
    ),
    StreamContainersRequest => |f| container_filter(
        &f.id,
        &f.pod_sandbox_id,
        f.state.as_ref().map(|s| s.state),
        &f.label_selector,
    ),
    ListContainerStatsRequest => |f| container_filter(&f.id, &f.pod_sandbox_id, None, &f.label_selector),
    StreamContainerStatsRequest => |f| container_filter(&f.id, &f.pod_sandbox_id, None, &f.label_selector),
);

fn non_negative(field: &str, value: i64) -> Result<(), Invalid> {
    if value < 0 {
        return Err(invalid(field, format!("{value} is negative")));
    }
    Ok(())
}

/// A command line: at least one word, none with a NUL (execve takes C strings).
fn command(field: &str, words: &[String]) -> Result<(), Invalid> {
    if words.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    for (i, w) in words.iter().enumerate() {
        no_nul(&format!("{field}[{i}]"), w)?;
    }
    Ok(())
}
