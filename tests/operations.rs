//! Running ferrocri as a node component: the Prometheus endpoint (scraped over loopback and
//! read with prometheus_client's OpenMetrics parser, not ours), systemd readiness on a fake
//! `$NOTIFY_SOCKET`, and `ferrocri check`. Runs as root with the local test registry.

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pods::{Chain, PodEnv, eventually, free_port, log_tail, stop_and_remove_pod};
use common::{BIN, Daemon, run_cli};
use ctr::*;
use ferrocri::cri::v1::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// One sample as the parser read it.
#[derive(Debug, Clone, serde::Deserialize)]
struct Sample {
    family: String,
    kind: String,
    unit: String,
    name: String,
    labels: std::collections::HashMap<String, String>,
    value: f64,
}

/// Reads an exposition with the Python prometheus_client OpenMetrics parser (Debian's
/// python3-prometheus-client); panics with its complaint when it refuses the text.
fn parse_exposition(text: &str) -> Vec<Sample> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "kind": family.type, "unit": family.unit,
                    "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    // Debian's interpreter, where the Debian package installs the module.
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (apt install python3-prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

/// GET /metrics over plain HTTP; the content type and the parsed samples.
fn scrape(address: SocketAddr) -> (String, Vec<Sample>) {
    let (status, headers, body) = http_get(address, "/metrics");
    assert_eq!(status, 200, "{headers}\n{body}");
    let content_type = headers
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        })
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    (content_type, parse_exposition(&body))
}

fn http_get(address: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(address).expect("connect to metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a full response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// The value of sample `name` with (at least) these labels; 0 when absent.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// A pod environment whose daemon also pulls from the test registry and serves metrics on
/// a free loopback port.
fn start_with_metrics(slot: u8) -> (PodEnv, SocketAddr) {
    let mut env = PodEnv::start(slot, Chain::Standard);
    env.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    env.daemon.wait(Duration::from_secs(30));
    let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/certs.d");
    let mut text = std::fs::read_to_string(&env.daemon.config_path).unwrap();
    text.push_str(&format!(
        "\n[registry]\nconfig_dir = \"{}\"\n\n[metrics]\naddress = \"{address}\"\n",
        certs.display()
    ));
    std::fs::write(&env.daemon.config_path, text).unwrap();
    env.daemon.restart();
    (env, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_the_work_done() {
    let (env, address) = start_with_metrics(0);
    let (content_type, before) = scrape(address);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    // Every family is ours, named by the conventions, with the type its suffix says.
    for s in &before {
        assert!(s.family.starts_with("ferrocri_"), "{s:?}");
        match s.kind.as_str() {
            "counter" => assert!(
                s.name.ends_with("_total") || s.name.ends_with("_created"),
                "{s:?}"
            ),
            "histogram" => assert!(
                s.family.ends_with("_seconds") && s.unit == "seconds",
                "{s:?}"
            ),
            "gauge" => {}
            other => panic!("unexpected type {other}: {s:?}"),
        }
    }
    assert_eq!(http_get(address, "/other").0, 404);

    let mut rt = env.runtime().await;
    let mut images = env.daemon.image().await;
    for _ in 0..3 {
        rt.version(VersionRequest::default()).await.unwrap();
    }
    let missing = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: "0".repeat(64),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    pull_busybox(&env).await;
    images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: "registry.k8s.io/e2e-test-images/no-such-image:1".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();

    let pod_config = pod_with_logs(&env, "metrics", "metrics-uid");
    let pod = run_pod(&env, &mut rt, pod_config.clone()).await;
    let config = busybox_config("idle", &["sleep", "1000"], false);
    let ctr = create(&env, &mut rt, &pod, &pod_config, config).await;
    start(&env, &mut rt, &ctr).await;

    // An exec session stays open while we scrape.
    let url = rt
        .exec(ExecRequest {
            container_id: ctr.clone(),
            cmd: vec!["cat".into()],
            stdin: true,
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    let mut request = url
        .replacen("http://", "ws://", 1)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let host = request.uri().authority().unwrap().to_string();
    let socket = tokio::net::TcpStream::connect(host).await.unwrap();
    let (session, _) = tokio_tungstenite::client_async(request, socket)
        .await
        .expect("websocket exec");

    let (_, during) = scrape(address);
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&during, name, labels) - value(&before, name, labels)
    };
    assert_eq!(
        delta(
            "ferrocri_grpc_requests_total",
            &[("rpc", "Version"), ("code", "OK")]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "ferrocri_grpc_requests_total",
            &[("rpc", "PodSandboxStatus"), ("code", "NotFound")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "ferrocri_grpc_request_duration_seconds_count",
            &[("rpc", "Version")]
        ),
        3.0
    );
    assert!(
        delta(
            "ferrocri_grpc_request_duration_seconds_sum",
            &[("rpc", "RunPodSandbox")]
        ) > 0.0
    );
    assert_eq!(delta("ferrocri_image_pulls_total", &[]), 2.0);
    // The reason depends on how the mirror and the (unreachable) upstream fail together.
    assert_eq!(delta("ferrocri_image_pull_failures_total", &[]), 1.0);
    assert_eq!(
        delta("ferrocri_image_pull_duration_seconds_count", &[]),
        2.0
    );
    // busybox is one layer of ~750 KB compressed (unless an earlier test pulled it: the
    // daemon is new, so its content store is empty).
    assert!(delta("ferrocri_image_pull_bytes_total", &[]) > 500_000.0);
    assert!(delta("ferrocri_layer_unpack_duration_seconds_count", &[]) >= 1.0);
    let network: &str = &env.bridge;
    assert_eq!(
        delta(
            "ferrocri_cni_operation_duration_seconds_count",
            &[("operation", "ADD"), ("network", network)]
        ),
        1.0
    );
    assert!(delta("ferrocri_store_transaction_duration_seconds_count", &[]) >= 5.0);
    assert_eq!(value(&during, "ferrocri_pods", &[("state", "ready")]), 1.0);
    assert_eq!(
        value(&during, "ferrocri_containers", &[("state", "running")]),
        1.0
    );
    assert_eq!(value(&during, "ferrocri_monitors", &[]), 1.0);
    let rss = value(&during, "ferrocri_monitor_resident_memory_bytes", &[]);
    assert!(
        rss > 512.0 * 1024.0 && rss < 256.0 * 1024.0 * 1024.0,
        "{rss}"
    );
    assert_eq!(value(&during, "ferrocri_streaming_sessions", &[]), 1.0);

    drop(session);
    stop_and_remove_pod(&mut rt, &pod).await;
    let mut after = Vec::new();
    let settled = eventually(Duration::from_secs(10), || {
        after = scrape(address).1;
        value(&after, "ferrocri_streaming_sessions", &[]) == 0.0
    })
    .await;
    assert!(settled, "the exec session is still counted");
    assert_eq!(value(&after, "ferrocri_pods", &[("state", "ready")]), 0.0);
    assert_eq!(
        value(&after, "ferrocri_containers", &[("state", "running")]),
        0.0
    );
    assert_eq!(value(&after, "ferrocri_monitors", &[]), 0.0);
    assert_eq!(
        value(
            &after,
            "ferrocri_cni_operation_duration_seconds_count",
            &[("operation", "DEL"), ("network", network)]
        ),
        1.0,
        "{}",
        log_tail(&env.daemon.log(), 20)
    );
    env.assert_clean(&[pod]).await;
}

#[test]
fn metrics_are_off_by_default_and_a_bad_address_is_refused() {
    let daemon = Daemon::start("");
    assert!(
        !daemon.log().contains("Prometheus"),
        "{}",
        log_tail(&daemon.log(), 20)
    );
    let (code, _, err) = run_cli(&[
        "--config",
        &write_config(&daemon, "[metrics]\naddress = \"localhost:9090\"\n"),
        "config",
        "show",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("metrics.address"), "{err}");
}

fn write_config(daemon: &Daemon, extra: &str) -> String {
    let path = daemon.dir.path().join("other.toml");
    std::fs::write(&path, extra).unwrap();
    path.display().to_string()
}

/// Waits for one datagram on the fake notify socket.
fn next_notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn systemd_hears_ready_once_the_socket_answers_and_stopping_at_sigterm() {
    let daemon = Daemon::prepare(tempfile::tempdir().unwrap(), "");
    let notify_path = daemon.dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let log = std::fs::File::create(daemon.dir.path().join("daemon.log")).unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&daemon.config_path)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();

    let ready = next_notification(&notify);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains(&format!("MAINPID={pid}")), "{ready:?}");
    // Ready means served: a client connecting now is answered at once.
    let version = tokio::time::timeout(Duration::from_secs(5), async {
        let mut rt = daemon.runtime().await;
        rt.version(VersionRequest::default()).await
    })
    .await
    .expect("Version in time")
    .expect("Version right after READY=1");
    assert_eq!(version.into_inner().runtime_name, "ferrocri");

    // The watchdog is fed every half period.
    let started = Instant::now();
    let mut feeds = 0;
    while feeds < 3 {
        let message = next_notification(&notify);
        if message == "WATCHDOG=1\n" {
            feeds += 1;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopping = loop {
        let message = next_notification(&notify);
        if message != "WATCHDOG=1\n" {
            break message;
        }
    };
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    // Nobody reads the notify socket any more: a full queue must not hold the exit up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not exit after SIGTERM\n{}", daemon.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}\n{}", daemon.log());
}

/// A config for `ferrocri check` with this test's folders and `cni` as the CNI table.
fn check_config(dir: &Path, cni: &str) -> String {
    let path = dir.join("check.toml");
    std::fs::write(
        &path,
        format!(
            "root_dir = \"{root}\"\nstate_dir = \"{state}\"\nsocket = \"{state}/ferrocri.sock\"\n\
             [registry]\nconfig_dir = \"{certs}\"\n{cni}",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            certs = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("hack/certs.d")
                .display(),
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn check_passes_on_this_host_and_fails_naming_a_broken_cni_dir() {
    let dir = tempfile::tempdir().unwrap();
    let conf_dir = dir.path().join("net.d");
    std::fs::create_dir(&conf_dir).unwrap();
    let cni = format!(
        "[cni]\nconf_dir = \"{}\"\nbin_dirs = [\"{}\"]\n",
        conf_dir.display(),
        common::pods::CNI_BIN
    );
    let conflist = |plugin: &str| {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "checknet",
            "plugins": [
                {"type": "bridge", "bridge": "fcchk0", "ipam": {"type": "host-local",
                    "ranges": [[{"subnet": "10.249.0.0/24"}]]}},
                {"type": plugin},
            ],
        })
        .to_string()
    };
    std::fs::write(conf_dir.join("10-check.conflist"), conflist("portmap")).unwrap();
    let config = check_config(dir.path(), &cni);

    let (code, out, err) = run_cli(&["--config", &config, "check"]);
    assert_eq!(code, 0, "{out}{err}");
    for requirement in [
        "kernel version",
        "overlayfs",
        "cgroup mode",
        "cgroup controllers",
        "seccomp",
        "user namespaces",
        "idmapped mounts",
        "mount_setattr",
        "CNI",
        "registry config",
        "root_dir",
        "state_dir",
        "socket",
    ] {
        let line = out
            .lines()
            .find(|l| {
                l.split_once(": ")
                    .is_some_and(|(head, _)| head.ends_with(requirement))
            })
            .unwrap_or_else(|| panic!("no line for {requirement}:\n{out}"));
        assert!(
            line.starts_with("ok ") || line.starts_with("warn "),
            "{line}"
        );
    }
    assert!(out.contains("checknet"), "{out}");

    // A plugin nobody installed: the check fails and names it, the file and the folders.
    std::fs::write(
        conf_dir.join("10-check.conflist"),
        conflist("no-such-plugin"),
    )
    .unwrap();
    let (code, out, _) = run_cli(&["--config", &config, "check"]);
    assert_eq!(code, 1, "{out}");
    let line = out.lines().find(|l| l.starts_with("fail CNI")).expect(&out);
    for word in [
        "no-such-plugin",
        &conf_dir.join("10-check.conflist").display().to_string(),
        common::pods::CNI_BIN,
    ] {
        assert!(line.contains(word), "{word} not in {line}");
    }
    assert!(line.contains("(fix: "), "{line}");

    // A folder of unreadable configurations fails naming the file.
    std::fs::write(conf_dir.join("10-check.conflist"), "{ not json").unwrap();
    let (code, out, _) = run_cli(&["--config", &config, "check"]);
    assert_eq!(code, 1, "{out}");
    let line = out.lines().find(|l| l.starts_with("fail CNI")).expect(&out);
    assert!(line.contains("10-check.conflist"), "{line}");

    // The daemon says the same when it starts.
    std::fs::write(
        conf_dir.join("10-check.conflist"),
        conflist("no-such-plugin"),
    )
    .unwrap();
    let daemon = Daemon::start(&cni);
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("preflight failure") && l.contains("no-such-plugin")),
        "{}",
        log_tail(&log, 30)
    );
}

#[test]
fn check_fails_on_a_socket_another_daemon_serves() {
    let daemon = Daemon::start("");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "root_dir = \"{}\"\nsocket = \"{}\"\n[cni]\nconf_dir = \"{}\"\n",
            dir.path().join("root").display(),
            daemon.socket.display(),
            daemon.dir.path().join("net.d").display()
        ),
    )
    .unwrap();
    let (code, out, _) = run_cli(&["--config", &path.display().to_string(), "check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("fail socket") && l.contains("another daemon")),
        "{out}"
    );
}
