//! The daemon as kubelet and operators meet it: its socket, its runtime-info RPCs, its answers
//! to bad input, crashes and a second daemon. Needs root (it runs the real binary).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{Daemon, call_raw, run_cli};
use ferrocri::cri::v1::*;
use nix::sys::signal::Signal;
use tonic::Code;

/// A CNI conf dir with a bridge+portmap list and a bin dir with stand-in plugin executables.
fn cni_dirs(base: &Path, plugins: &[&str]) -> String {
    let conf = base.join("net.d");
    let bin = base.join("cni-bin");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        conf.join("10-test.conflist"),
        r#"{"cniVersion":"1.0.0","name":"test","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
    )
    .unwrap();
    for plugin in plugins {
        let path = bin.join(plugin);
        std::fs::write(&path, "#!/bin/sh\nexit 1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!(
        "[cni]\nconf_dir = \"{}\"\nbin_dirs = [\"{}\"]\n",
        conf.display(),
        bin.display()
    )
}

fn cni_base() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test]
async fn version_names_ferrocri_and_the_kubelet_api() {
    let daemon = Daemon::start("");
    let v = daemon
        .runtime()
        .await
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.version, "0.1.0", "kubelet refuses any other value");
    assert_eq!(v.runtime_name, "ferrocri");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.runtime_api_version, "v1");
}

#[tokio::test]
async fn failed_rpcs_are_logged_in_plain_text() {
    let daemon = Daemon::start("");
    let err = daemon
        .runtime()
        .await
        .pod_sandbox_status(PodSandboxStatusRequest {
            // Well-formed but unknown: the answer has spaces and quotes to encode.
            pod_sandbox_id: "0".repeat(64),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("rpc failed"))
        .unwrap_or_else(|| panic!("no \"rpc failed\" line in:\n{log}"));
    assert!(
        line.contains(err.message()),
        "message not in plain text: {line}"
    );
    assert!(line.contains("NotFound"), "code not named: {line}");
    assert!(!line.contains("%20"), "percent-encoded: {line}");
}

#[tokio::test]
async fn status_reports_ready_runtime_and_network_with_cni_present() {
    let cni = cni_base();
    let daemon = Daemon::start(&cni_dirs(cni.path(), &["bridge", "portmap"]));
    let status = daemon
        .runtime()
        .await
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let conditions = status.status.unwrap().conditions;
    let by_type = |t: &str| conditions.iter().find(|c| c.r#type == t).cloned().unwrap();
    assert!(by_type("RuntimeReady").status);
    let network = by_type("NetworkReady");
    assert!(network.status, "{network:?}");
    // critest looks the default handler up by the name "".
    assert_eq!(status.runtime_handlers.len(), 1);
    assert_eq!(status.runtime_handlers[0].name, "");
    let config: serde_json::Value = serde_json::from_str(&status.info["config"]).unwrap();
    assert_eq!(config["root_dir"], daemon.root().display().to_string());
}

#[tokio::test]
async fn status_tells_why_the_network_is_not_ready() {
    let cni = cni_base();
    // portmap is missing from the bin dir.
    let daemon = Daemon::start(&cni_dirs(cni.path(), &["bridge"]));
    let mut client = daemon.runtime().await;
    let status = client
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(status.info.is_empty(), "info is only for verbose");
    let network = status
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    assert!(!network.status);
    assert_eq!(network.reason, "NetworkPluginNotReady");
    assert!(
        network.message.contains("\"portmap\""),
        "{}",
        network.message
    );

    // No configuration at all: the message names the folder.
    std::fs::remove_file(cni.path().join("net.d/10-test.conflist")).unwrap();
    let status = client
        .status(StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let network = &status.status.unwrap().conditions[1];
    assert!(!network.status);
    assert!(network.message.contains("net.d"), "{}", network.message);
}

#[tokio::test]
async fn runtime_config_says_cgroupfs() {
    let daemon = Daemon::start("");
    let resp = daemon
        .runtime()
        .await
        .runtime_config(RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.linux.unwrap().cgroup_driver,
        CgroupDriver::Cgroupfs as i32
    );
}

fn pod_cidr_request(cidr: &str) -> UpdateRuntimeConfigRequest {
    UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig {
            network_config: Some(NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    }
}

async fn stored_pod_cidr(daemon: &Daemon) -> String {
    let status = daemon
        .runtime()
        .await
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let config: serde_json::Value = serde_json::from_str(&status.info["config"]).unwrap();
    config["pod_cidr"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn update_runtime_config_keeps_the_pod_cidr_and_refuses_garbage() {
    let mut daemon = Daemon::start("");
    let mut client = daemon.runtime().await;
    client
        .update_runtime_config(pod_cidr_request("10.244.1.0/24"))
        .await
        .unwrap();
    // An empty request is accepted and changes nothing.
    client
        .update_runtime_config(UpdateRuntimeConfigRequest::default())
        .await
        .unwrap();
    let err = client
        .update_runtime_config(pod_cidr_request("10.244.1.0/99"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("runtime_config.network_config.pod_cidr"),
        "{}",
        err.message()
    );
    assert_eq!(stored_pod_cidr(&daemon).await, "10.244.1.0/24");

    // It survives a restart.
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.wait(Duration::from_secs(15)).success());
    daemon.restart();
    assert_eq!(stored_pod_cidr(&daemon).await, "10.244.1.0/24");
}

#[tokio::test]
async fn checkpoint_rpcs_answer_unimplemented_and_the_rest_serve() {
    let daemon = Daemon::start("");
    let mut runtime = daemon.runtime().await;
    let err = runtime
        .checkpoint_container(CheckpointContainerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(
        err.message().contains("CheckpointContainer"),
        "{}",
        err.message()
    );
    let err = runtime
        .checkpoint_pod(CheckpointPodRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(err.message().contains("CheckpointPod"), "{}", err.message());
    let err = runtime
        .restore_pod(RestorePodRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(err.message().contains("RestorePod"), "{}", err.message());
    // Served now: the metrics RPCs (no pods: no pod metrics, descriptors all the same).
    let descriptors = runtime
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await
        .expect("ListMetricDescriptors")
        .into_inner()
        .descriptors;
    assert!(
        descriptors
            .iter()
            .any(|d| d.name == "container_cpu_usage_seconds_total"),
        "{descriptors:?}"
    );
    let metrics = runtime
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await
        .expect("ListPodSandboxMetrics")
        .into_inner();
    assert!(metrics.pod_metrics.is_empty());
    let page = runtime
        .stream_pod_sandbox_metrics(StreamPodSandboxMetricsRequest {})
        .await
        .expect("StreamPodSandboxMetrics")
        .into_inner()
        .message()
        .await
        .expect("StreamPodSandboxMetrics ends without an error");
    assert_eq!(page, None);
    // Served now: an event stream opens, a list stream of nothing ends at once.
    runtime
        .get_container_events(GetEventsRequest {})
        .await
        .expect("GetContainerEvents");
    let pages = runtime
        .stream_containers(StreamContainersRequest::default())
        .await
        .expect("StreamContainers")
        .into_inner()
        .message()
        .await
        .expect("StreamContainers ends without an error");
    assert_eq!(pages, None);
    daemon
        .image()
        .await
        .stream_images(StreamImagesRequest::default())
        .await
        .expect("StreamImages");
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_invalid_arguments() {
    let daemon = Daemon::start("");
    let channel = daemon.channel().await;
    let cases: Vec<(&str, &'static str, Vec<u8>)> = vec![
        // Field 1, length-delimited, claims 5 bytes but carries 1.
        (
            "truncated",
            "/runtime.v1.RuntimeService/UpdateRuntimeConfig",
            vec![0x0a, 0x05, 0x01],
        ),
        // Wire type 7 does not exist.
        (
            "bad wire type",
            "/runtime.v1.RuntimeService/Version",
            vec![0x0f, 0x00],
        ),
        // A string field (VersionRequest.version) holding bytes that are not UTF-8.
        (
            "non-UTF-8 string",
            "/runtime.v1.RuntimeService/Version",
            vec![0x0a, 0x02, 0xff, 0xfe],
        ),
        // A varint that never ends.
        (
            "endless varint",
            "/runtime.v1.ImageService/ImageStatus",
            vec![0x08; 11],
        ),
        // Over the 16 MiB request limit.
        (
            "oversized",
            "/runtime.v1.RuntimeService/Version",
            vec![0u8; ferrocri::server::MAX_REQUEST_BYTES + 1],
        ),
    ];
    for (what, path, body) in cases {
        let err = call_raw(channel.clone(), path, body).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    // The daemon is still serving.
    let v = daemon
        .runtime()
        .await
        .version(VersionRequest::default())
        .await
        .unwrap();
    assert_eq!(v.into_inner().runtime_name, "ferrocri");
}

#[tokio::test]
async fn sigkill_mid_write_leaves_a_database_that_opens_with_its_rows() {
    let mut daemon = Daemon::start("");
    let channel = daemon.channel().await;
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let writer = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut client = RuntimeServiceClient::new(channel);
            for i in 1u32.. {
                let cidr = format!("10.{}.{}.0/24", i / 256, i % 256);
                if client
                    .update_runtime_config(pod_cidr_request(&cidr))
                    .await
                    .is_err()
                {
                    break;
                }
                acked.store(i, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    // Let a good number of writes land, then kill the daemon in the middle of the stream.
    while acked.load(std::sync::atomic::Ordering::SeqCst) < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.kill9();
    writer.await.unwrap();
    let last = acked.load(std::sync::atomic::Ordering::SeqCst);

    daemon.restart();
    let cidr = stored_pod_cidr(&daemon).await;
    // Every acknowledged write is there; the one in flight at the kill may or may not be.
    let expect = |i: u32| format!("10.{}.{}.0/24", i / 256, i % 256);
    assert!(
        cidr == expect(last) || cidr == expect(last + 1),
        "stored {cidr}, last acked {last}"
    );
    let store = ferrocri::store::Store::open(&daemon.root().join("metadata.db")).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

use ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient;

#[tokio::test]
async fn a_second_daemon_refuses_a_socket_or_root_in_use() {
    let daemon = Daemon::start("");
    let other = tempfile::tempdir().unwrap();

    // Same socket, other root: the live daemon answers there, so the second one refuses.
    let (code, _, stderr) = run_cli(&[
        "--config",
        daemon.config_path.to_str().unwrap(),
        "--root",
        other.path().join("root").to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains(daemon.socket.to_str().unwrap()), "{stderr}");

    // Same root, other socket: two daemons must not share state.
    let other_socket = other.path().join("other.sock");
    let (code, _, stderr) = run_cli(&[
        "--config",
        daemon.config_path.to_str().unwrap(),
        "--socket",
        other_socket.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("ferrocri.lock"), "{stderr}");
    assert!(!other_socket.exists());

    // The first daemon never noticed.
    daemon
        .runtime()
        .await
        .version(VersionRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn sigterm_exits_zero_and_removes_the_socket_and_sigkill_leftovers_are_replaced() {
    let mut daemon = Daemon::start("");
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait(Duration::from_secs(15));
    assert!(status.success(), "{status}\n{}", daemon.log());
    assert!(!daemon.socket.exists());

    // After SIGKILL the socket file stays behind; the next start replaces it.
    daemon.restart();
    daemon.kill9();
    assert!(daemon.socket.exists());
    daemon.restart();
    daemon
        .runtime()
        .await
        .version(VersionRequest::default())
        .await
        .unwrap();
}

#[test]
fn bad_configuration_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[cni]\nbin_dir = [\"/x\"]\n").unwrap();
    let (code, _, stderr) = run_cli(&["--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("bin_dir"), "{stderr}");

    std::fs::write(&path, "root_dir = \"relative/dir\"\n").unwrap();
    let (code, _, stderr) = run_cli(&["--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("`root_dir`"), "{stderr}");

    let (code, _, stderr) = run_cli(&[
        "--config",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

#[test]
fn config_default_prints_a_complete_file_that_parses_back() {
    let (code, stdout, _) = run_cli(&["config", "default"]);
    assert_eq!(code, 0);
    assert_eq!(
        ferrocri::config::Config::parse(&stdout).unwrap(),
        ferrocri::config::Config::default()
    );
    for key in [
        "root_dir",
        "state_dir",
        "socket",
        "sandbox_image",
        "[log]",
        "[streaming]",
        "[cni]",
        "[registry]",
    ] {
        assert!(stdout.contains(key), "missing {key}");
    }
}

/// Every pod's monitor runs from `ferrocri-monitor` beside the daemon's executable; a daemon
/// installed without it refuses to start, naming it, instead of failing every pod later.
#[test]
fn without_the_monitor_binary_beside_it_the_daemon_refuses_to_start() {
    // A hard link in cargo's tmp dir (same file system as the binary): a daemon alone there.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let alone = dir.path().join("ferrocri");
    std::fs::hard_link(common::BIN, &alone).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "root_dir = \"{0}/root\"\nstate_dir = \"{0}/state\"\nsocket = \"{0}/s.sock\"\n[cni]\nconf_dir = \"{0}/net.d\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(&alone)
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let wanted = dir.path().join("ferrocri-monitor");
    assert!(
        stderr.contains(&format!("{} is missing", wanted.display())),
        "{stderr}"
    );
    assert!(!dir.path().join("s.sock").exists());
}

/// Both binaries are position-independent with full RELRO: ASLR covers our own code, and the
/// relocated data is read-only before `main` runs. (`readelf` comes with gcc's binutils.)
#[test]
fn both_binaries_are_pie_with_full_relro() {
    for bin in [common::BIN, env!("CARGO_BIN_EXE_ferrocri-monitor")] {
        let out = std::process::Command::new("readelf")
            .args(["--file-header", "--program-headers", "--dynamic", bin])
            .output()
            .expect("run readelf");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("DYN (Position-Independent Executable file)"),
            "{bin}: not PIE"
        );
        assert!(text.contains("GNU_RELRO"), "{bin}: no RELRO segment");
        assert!(
            text.contains("BIND_NOW"),
            "{bin}: lazy binding (partial RELRO)"
        );
    }
}
