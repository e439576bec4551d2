//! Version, Status, RuntimeConfig and UpdateRuntimeConfig: what the runtime is and how it is.

use std::collections::HashMap;

use tonic::Status;

use super::CriServer;
use crate::cni;
use crate::cri::v1::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeCondition, RuntimeConfigResponse,
    RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus, StatusResponse,
    UpdateRuntimeConfigRequest, VersionResponse,
};

/// The CRI version string kubelet insists on ("0.1.0"; anything else is refused).
const KUBELET_API_VERSION: &str = "0.1.0";
const RUNTIME_NAME: &str = "ferrocri";
const CRI_API_VERSION: &str = "v1";

/// Store key of the pod CIDR kubelet last pushed.
pub const POD_CIDR_SETTING: &str = "pod_cidr";

const RUNTIME_READY: &str = "RuntimeReady";
const NETWORK_READY: &str = "NetworkReady";

impl CriServer {
    pub(super) fn version(&self) -> VersionResponse {
        VersionResponse {
            version: KUBELET_API_VERSION.into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: CRI_API_VERSION.into(),
        }
    }

    pub(super) async fn status(&self, verbose: bool) -> Result<StatusResponse, Status> {
        let runtime = self.runtime_condition().await;
        let config = self.config();
        let network = match cni::config::check_ready(&config.cni.conf_dir, &config.cni.bin_dirs) {
            Ok(_) => condition(NETWORK_READY, Ok(())),
            Err(not_ready) => condition(
                NETWORK_READY,
                Err(("NetworkPluginNotReady", not_ready.to_string())),
            ),
        };
        let mut info = HashMap::new();
        if verbose {
            info.insert("config".into(), self.config_json().await?);
        }
        Ok(StatusResponse {
            status: Some(RuntimeStatus {
                conditions: vec![runtime, network],
            }),
            info,
            // One default handler, named "" as kubelet and critest expect. A feature flag is
            // true only when the feature is really there: critest skips specs on them.
            runtime_handlers: vec![RuntimeHandler {
                name: String::new(),
                features: Some(RuntimeHandlerFeatures {
                    // Recursive read-only bind mounts need mount_setattr (Linux 5.12).
                    recursive_read_only_mounts: crate::probes::mount_setattr_supported(),
                    user_namespaces: crate::preflight::user_namespaces_supported(
                        &self.config().root_dir,
                        &self.config().state_dir,
                    )
                    .await,
                }),
            }],
            features: Some(RuntimeFeatures {
                supplemental_groups_policy: true,
                user_namespaces_host_network: false,
                mount_options: false,
            }),
        })
    }

    /// The runtime is ready while its metadata store answers.
    async fn runtime_condition(&self) -> RuntimeCondition {
        let probe = self.store().run(|c| c.setting(POD_CIDR_SETTING)).await;
        match probe {
            Ok(_) => condition(RUNTIME_READY, Ok(())),
            Err(e) => condition(
                RUNTIME_READY,
                Err(("MetadataStoreUnavailable", e.to_string())),
            ),
        }
    }

    /// The effective configuration as JSON, plus what kubelet pushed at run time.
    async fn config_json(&self) -> Result<String, Status> {
        let pod_cidr = self.store().run(|c| c.setting(POD_CIDR_SETTING)).await?;
        let mut value =
            serde_json::to_value(self.config()).map_err(super::errors::config_unencodable)?;
        value["pod_cidr"] = pod_cidr.unwrap_or_default().into();
        Ok(value.to_string())
    }

    pub(super) fn runtime_config(&self) -> RuntimeConfigResponse {
        RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: CgroupDriver::Cgroupfs as i32,
            }),
        }
    }

    /// Stores the pod CIDR kubelet pushes; an empty one is accepted and changes nothing.
    pub(super) async fn update_runtime_config(
        &self,
        request: UpdateRuntimeConfigRequest,
    ) -> Result<(), Status> {
        let cidr = request
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if cidr.is_empty() {
            return Ok(());
        }
        // `validate` parsed it (kubelet may send a dual-stack pair separated by a comma).
        self.store()
            .run(move |c| c.set_setting(POD_CIDR_SETTING, &cidr))
            .await?;
        Ok(())
    }
}

fn condition(kind: &str, state: Result<(), (&str, String)>) -> RuntimeCondition {
    match state {
        Ok(()) => RuntimeCondition {
            r#type: kind.into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        },
        Err((reason, message)) => RuntimeCondition {
            r#type: kind.into(),
            status: false,
            reason: reason.into(),
            message,
        },
    }
}
