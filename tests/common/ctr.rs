//! Container test helpers: a [`PodEnv`] whose daemon also pulls from the local test registry
//! (through `hack/certs.d`), busybox pulls, container configurations and CRI log parsing.
//! Included by `tests/containers.rs` with `#[path]`, next to `mod common`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient;
use ferrocri::cri::v1::*;
use tonic::transport::Channel;

use crate::common::pods::{Chain, PodEnv, log_tail, pod_config, run_request};

pub const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

/// A [`PodEnv`] (its own CNI network) whose daemon also has
/// `[registry] config_dir = "<repo>/hack/certs.d"`. The daemon is started once by
/// [`PodEnv::start`], stopped, given the registry table and started again.
pub fn start_env(slot: u8) -> PodEnv {
    let mut env = PodEnv::start(slot, Chain::Standard);
    env.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    env.daemon.wait(Duration::from_secs(30));
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/certs.d");
    let mut text = std::fs::read_to_string(&env.daemon.config_path).expect("read config");
    text.push_str(&format!(
        "\n[registry]\nconfig_dir = \"{}\"\n",
        certs.display()
    ));
    std::fs::write(&env.daemon.config_path, text).expect("write config");
    env.daemon.restart();
    env
}

/// Pulls busybox through the daemon; returns PullImage's image_ref.
pub async fn pull_busybox(env: &PodEnv) -> String {
    env.daemon
        .image()
        .await
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PullImage {BUSYBOX}: {e} (is the local registry up? hack/registry.sh start && \
                 hack/build-test-images.sh)\n{}",
                log_tail(&env.daemon.log(), 40)
            )
        })
        .into_inner()
        .image_ref
}

/// A pod configuration whose log directory is `<test dir>/logs/<name>` (created here).
pub fn pod_with_logs(env: &PodEnv, name: &str, uid: &str) -> PodSandboxConfig {
    let mut config = pod_config(name, "fcct-ns", uid, 0);
    let dir = log_dir(env, name);
    std::fs::create_dir_all(&dir).expect("log dir");
    config.log_directory = dir.display().to_string();
    config
}

pub fn log_dir(env: &PodEnv, pod_name: &str) -> PathBuf {
    env.daemon.dir.path().join("logs").join(pod_name)
}

/// Runs a pod, remembering its ID for the clean-up guard.
pub async fn run_pod(
    env: &PodEnv,
    rt: &mut RuntimeServiceClient<Channel>,
    config: PodSandboxConfig,
) -> String {
    let id = rt
        .run_pod_sandbox(run_request(config))
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", log_tail(&env.daemon.log(), 40)))
        .into_inner()
        .pod_sandbox_id;
    env.note(&id);
    id
}

/// A busybox container running `args` (as the command), logging to `<name>.log` when
/// `log` is set.
pub fn busybox_config(name: &str, args: &[&str], log: bool) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: args.iter().map(|s| (*s).to_owned()).collect(),
        log_path: if log {
            format!("{name}.log")
        } else {
            String::new()
        },
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// CreateContainer, remembering the ID for the clean-up guard.
pub async fn create(
    env: &PodEnv,
    rt: &mut RuntimeServiceClient<Channel>,
    pod_id: &str,
    pod: &PodSandboxConfig,
    config: ContainerConfig,
) -> String {
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(pod.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", log_tail(&env.daemon.log(), 40)))
        .into_inner()
        .container_id;
    env.note(&id);
    id
}

pub async fn start(env: &PodEnv, rt: &mut RuntimeServiceClient<Channel>, id: &str) {
    rt.start_container(StartContainerRequest {
        container_id: id.to_owned(),
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "StartContainer {id}: {e}\n{}",
            log_tail(&env.daemon.log(), 40)
        )
    });
}

/// ContainerStatus with verbose info (the `info` JSON parsed).
pub async fn container_status(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> (ContainerStatus, serde_json::Value) {
    let resp = rt
        .container_status(ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: true,
        })
        .await
        .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
        .into_inner();
    let info = resp
        .info
        .get("info")
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(serde_json::Value::Null);
    (resp.status.expect("status"), info)
}

pub async fn exec(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<ExecSyncResponse, tonic::Status> {
    rt.exec_sync(ExecSyncRequest {
        container_id: id.to_owned(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        timeout,
    })
    .await
    .map(|r| r.into_inner())
}

/// `sh -c script` in the container (ExecSync, 20 s): (exit code, stdout + stderr).
pub async fn sh(rt: &mut RuntimeServiceClient<Channel>, id: &str, script: &str) -> (i32, String) {
    let out = exec(rt, id, &["sh", "-c", script], 20)
        .await
        .unwrap_or_else(|e| panic!("ExecSync {script:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.exit_code, text)
}

/// One record of a CRI log file: `<RFC 3339 time> <stream> <F|P> <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub time: String,
    pub stream: String,
    pub tag: String,
    pub message: String,
}

/// Parses every complete line of a CRI log; panics on a malformed one.
pub fn parse_cri_log(text: &str) -> Vec<LogRecord> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => return Vec::new(),
    };
    complete
        .split('\n')
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let mut next = || parts.next().unwrap_or_default().to_owned();
            let record = LogRecord {
                time: next(),
                stream: next(),
                tag: next(),
                message: next(),
            };
            assert!(
                record.time.contains('T')
                    && (record.stream == "stdout" || record.stream == "stderr")
                    && (record.tag == "F" || record.tag == "P"),
                "not a CRI log line: {line:?}"
            );
            record
        })
        .collect()
}

pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
