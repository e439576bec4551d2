//! The streaming server against the real daemon: Exec, Attach and PortForward URLs, sessions
//! over WebSocket (our own client below) and SPDY (the real crictl), many at once, and
//! nothing left behind afterwards. Runs as root with the local test registry.

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::path::PathBuf;
use std::time::Duration;

use common::pods::PodEnv;
use ctr::*;
use ferrocri::cri::v1::*;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tonic::Code;

const SESSIONS: usize = 50;
const ECHO_IMAGE: &str = "docker.io/ferrocri/echo:1";

/// What one WebSocket exec session brought back.
#[derive(Default)]
struct Received {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    error: Vec<u8>,
    pongs: Vec<Vec<u8>>,
}

/// Runs one remotecommand session over WebSocket (`v5.channel.k8s.io`): sends `stdin`, closes
/// it, and collects every channel until the server closes.
async fn websocket_session(url: &str, stdin: &[u8]) -> Received {
    let mut request = ws_url(url).into_client_request().expect("url");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let host = request.uri().authority().expect("host").to_string();
    let socket = tokio::net::TcpStream::connect(host).await.expect("connect");
    let (mut ws, response) = tokio_tungstenite::client_async(request, socket)
        .await
        .expect("websocket handshake");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "v5.channel.k8s.io"
    );
    // Clients ping while a session runs; the server must answer.
    ws.send(Message::Ping(b"still there?".to_vec().into()))
        .await
        .expect("ping");
    for chunk in stdin.chunks(10_000) {
        let mut message = vec![0u8];
        message.extend_from_slice(chunk);
        ws.send(Message::Binary(message.into()))
            .await
            .expect("send");
    }
    ws.send(Message::Binary(vec![255u8, 0].into()))
        .await
        .expect("close stdin");
    let mut got = Received::default();
    while let Some(message) = ws.next().await {
        match message.expect("read") {
            Message::Binary(data) if !data.is_empty() => match data[0] {
                1 => got.stdout.extend_from_slice(&data[1..]),
                2 => got.stderr.extend_from_slice(&data[1..]),
                3 => got.error.extend_from_slice(&data[1..]),
                other => panic!("message on channel {other}"),
            },
            Message::Pong(data) => got.pongs.push(data.to_vec()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(
        got.pongs,
        vec![b"still there?".to_vec()],
        "the ping was answered"
    );
    got
}

/// The same URL for a WebSocket client (which wants the ws scheme).
fn ws_url(url: &str) -> String {
    url.replacen("http://", "ws://", 1)
}

type Runtime =
    ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

/// A pod `name` with a created (not started) busybox container that sleeps: the client, the
/// pod ID and the container ID.
async fn idle_container(env: &PodEnv, name: &str) -> (Runtime, String, String) {
    pull_busybox(env).await;
    let mut rt = env.runtime().await;
    let pod_config = pod_with_logs(env, name, &format!("{name}-uid"));
    let pod = run_pod(env, &mut rt, pod_config.clone()).await;
    let config = busybox_config("idle", &["sleep", "1000"], false);
    let id = create(env, &mut rt, &pod, &pod_config, config).await;
    (rt, pod, id)
}

fn exec_request(id: &str, cmd: &[&str]) -> ExecRequest {
    ExecRequest {
        container_id: id.to_owned(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        tty: false,
        stdin: true,
        stdout: true,
        stderr: true,
    }
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Lines of `ps` inside the container that run `name`.
async fn processes_in(rt: &mut Runtime, id: &str, name: &str) -> Vec<String> {
    let out = exec(rt, id, &["ps", "-o", "pid,args"], 10)
        .await
        .expect("ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(name))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_exec_sessions_and_port_forward_connections_at_once() {
    let env = start_env(6);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let pod_config = pod_with_logs(&env, "streams", "streams-uid");
    let pod = run_pod(&env, &mut rt, pod_config.clone()).await;
    // An echo server on port 9000 (hack/images/src/echo.c).
    env.daemon
        .image()
        .await
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: ECHO_IMAGE.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("pull the echo image");
    let mut config = busybox_config("echo", &[], true);
    config.image = Some(ImageSpec {
        image: ECHO_IMAGE.into(),
        ..Default::default()
    });
    let id = create(&env, &mut rt, &pod, &pod_config, config).await;
    start(&env, &mut rt, &id).await;
    let daemon_fds = open_fds(env.daemon.pid());

    // 50 exec sessions at once, each piping its own bytes through `cat`.
    let mut sessions = tokio::task::JoinSet::new();
    for n in 0..SESSIONS {
        let url = rt
            .exec(exec_request(&id, &["cat"]))
            .await
            .expect("Exec")
            .into_inner()
            .url;
        sessions.spawn(async move {
            let sent: Vec<u8> = (0..100_000u32)
                .map(|i| (i as usize * 7 + n) as u8)
                .collect();
            let got = websocket_session(&url, &sent).await;
            (n, sent, got)
        });
    }
    while let Some(done) = sessions.join_next().await {
        let (n, sent, got) = done.expect("session task");
        assert!(
            got.stdout == sent,
            "session {n}: stdout differs ({} of {} bytes)",
            got.stdout.len(),
            sent.len()
        );
        assert!(
            got.stderr.is_empty(),
            "session {n}: stderr {:?}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&got.error),
            r#"{"metadata":{},"status":"Success"}"#,
            "session {n}"
        );
    }

    // 50 connections at once through one `crictl port-forward` (SPDY).
    let port = 20000 + (std::process::id() % 10000) as u16;
    let crictl_config = env.daemon.dir.path().join("crictl.yaml");
    std::fs::write(
        &crictl_config,
        format!(
            "runtime-endpoint: unix://{0}\nimage-endpoint: unix://{0}\ntimeout: 20\n",
            env.daemon.socket.display()
        ),
    )
    .unwrap();
    let mut forward = tokio::process::Command::new("crictl")
        .arg("-c")
        .arg(&crictl_config)
        .args(["port-forward", &pod, &format!("{port}:9000")])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("crictl port-forward (hack/install-deps.sh installs crictl)");
    let mut ready = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "crictl port-forward did not listen on {port}");
    let mut connections = tokio::task::JoinSet::new();
    for n in 0..SESSIONS {
        connections.spawn(async move {
            let sent: Vec<u8> = (0..200_000u32)
                .map(|i| (i as usize * 13 + n) as u8)
                .collect();
            let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect to the forwarded port");
            let (mut read, mut write) = socket.into_split();
            let to_send = sent.clone();
            let writer = tokio::spawn(async move {
                write.write_all(&to_send).await.expect("write");
                // Half-close: the pod's `cat` sees EOF and ends the connection.
                write.shutdown().await.expect("shutdown");
            });
            let mut got = Vec::new();
            tokio::time::timeout(Duration::from_secs(60), read.read_to_end(&mut got))
                .await
                .expect("echo within 60 s")
                .expect("read");
            writer.await.unwrap();
            (n, sent, got)
        });
    }
    while let Some(done) = connections.join_next().await {
        let (n, sent, got) = done.expect("connection task");
        assert!(
            got == sent,
            "connection {n}: {} of {} bytes came back intact",
            got.len(),
            sent.len()
        );
    }
    let _ = forward.kill().await;

    // Nothing of the sessions is left: no exec'd `cat`, no echo child, no daemon socket.
    let mut left = Vec::new();
    for _ in 0..50 {
        left = processes_in(&mut rt, &id, "cat").await;
        left.extend(
            processes_in(&mut rt, &id, "echo-server")
                .await
                .into_iter()
                .skip(1),
        );
        if left.is_empty() && open_fds(env.daemon.pid()) <= daemon_fds {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "processes left in the container: {left:?}");
    let fds = open_fds(env.daemon.pid());
    assert!(
        fds <= daemon_fds,
        "daemon has {fds} fds open, {daemon_fds} before the sessions"
    );
}

#[tokio::test]
async fn streaming_requests_are_checked_before_a_url_is_handed_out() {
    let env = start_env(7);
    let (mut rt, pod, id) = idle_container(&env, "checks").await;

    let code = |r: Result<tonic::Response<ExecResponse>, tonic::Status>| r.unwrap_err().code();
    // Created but not running.
    assert_eq!(
        code(rt.exec(exec_request(&id, &["true"])).await),
        Code::FailedPrecondition
    );
    start(&env, &mut rt, &id).await;
    assert_eq!(
        code(rt.exec(exec_request("no-such-container", &["true"])).await),
        Code::NotFound
    );
    assert_eq!(
        code(rt.exec(exec_request(&id, &[])).await),
        Code::InvalidArgument
    );
    let mut tty_and_stderr = exec_request(&id, &["true"]);
    tty_and_stderr.tty = true;
    let status = rt.exec(tty_and_stderr).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("stderr"), "{}", status.message());
    let nothing = ExecRequest {
        stdin: false,
        stdout: false,
        stderr: false,
        ..exec_request(&id, &["true"])
    };
    assert_eq!(code(rt.exec(nothing).await), Code::InvalidArgument);
    let attach = rt
        .attach(AttachRequest {
            container_id: "no-such-container".into(),
            stdin: false,
            tty: false,
            stdout: true,
            stderr: true,
        })
        .await
        .unwrap_err();
    assert_eq!(attach.code(), Code::NotFound);
    let forward = rt
        .port_forward(PortForwardRequest {
            pod_sandbox_id: "no-such-pod".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(forward.code(), Code::NotFound);

    // A URL works once; a made-up one never.
    let url = rt
        .exec(exec_request(&id, &["echo", "-n", "once"]))
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let got = websocket_session(&url, b"").await;
    assert_eq!(got.stdout, b"once");
    let again = ws_url(&url).into_client_request().unwrap();
    let host = again.uri().authority().unwrap().to_string();
    let socket = tokio::net::TcpStream::connect(host).await.unwrap();
    let refused = tokio_tungstenite::client_async(again, socket).await;
    assert!(refused.is_err(), "a used URL must not work twice");

    // A failing command reports its exit code the way kubectl reads it.
    let url = rt
        .exec(exec_request(&id, &["sh", "-c", "echo oops >&2; exit 3"]))
        .await
        .unwrap()
        .into_inner()
        .url;
    let got = websocket_session(&url, b"").await;
    assert_eq!(got.stderr, b"oops\n");
    let status: serde_json::Value = serde_json::from_slice(&got.error).expect("status JSON");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    // Stopping the pod makes its port-forward and exec requests fail up front.
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    let forward = rt
        .port_forward(PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(forward.code(), Code::FailedPrecondition);
    assert_eq!(
        code(rt.exec(exec_request(&id, &["true"])).await),
        Code::FailedPrecondition
    );
}

/// ExecSync's errors keep their codes through the typed monitor errors: an unknown container
/// is NotFound, one not running (created, or stopped) FailedPrecondition, an empty command
/// InvalidArgument; a running one answers.
#[tokio::test]
async fn exec_sync_errors_have_the_code_of_their_kind() {
    let env = start_env(5);
    let (mut rt, pod, id) = idle_container(&env, "execsync-codes").await;
    let exec_sync = |id: &str, cmd: &[&str]| ExecSyncRequest {
        container_id: id.to_owned(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        timeout: 10,
    };
    let code = |r: Result<tonic::Response<ExecSyncResponse>, tonic::Status>| r.unwrap_err().code();
    assert_eq!(
        code(
            rt.exec_sync(exec_sync("no-such-container", &["true"]))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(rt.exec_sync(exec_sync(&id, &["true"])).await),
        Code::FailedPrecondition,
        "created, not started"
    );
    start(&env, &mut rt, &id).await;
    assert_eq!(
        code(rt.exec_sync(exec_sync(&id, &[])).await),
        Code::InvalidArgument
    );
    let answered = rt
        .exec_sync(exec_sync(&id, &["sh", "-c", "echo -n hi; exit 4"]))
        .await
        .expect("ExecSync in a running container")
        .into_inner();
    assert_eq!(
        (answered.stdout.as_slice(), answered.exit_code),
        (&b"hi"[..], 4)
    );
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .expect("StopContainer");
    assert_eq!(
        code(rt.exec_sync(exec_sync(&id, &["true"])).await),
        Code::FailedPrecondition,
        "stopped"
    );
    let reopen = rt
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: "no-such-container".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reopen.code(), Code::NotFound);
    common::pods::stop_and_remove_pod(&mut rt, &pod).await;
}

/// A test CA and a server certificate it signed for 127.0.0.1, as PEM files in `dir`:
/// (server key, server certificate, CA certificate).
fn certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |line: &str| {
        let status = std::process::Command::new("openssl")
            .args(line.split(' '))
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (hack/install-deps.sh installs it)");
        assert!(status.success(), "openssl {line} failed");
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(&format!(
        "req -x509 {key} -days 1 -subj /CN=ferrocri-test-CA -keyout ca-key.pem -out ca.pem"
    ));
    openssl(&format!(
        "req {key} -subj /CN=127.0.0.1 -keyout key.pem -out req.pem"
    ));
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        "x509 -req -in req.pem -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 \
         -extfile ext.cnf -out cert.pem",
    );
    (
        dir.join("key.pem"),
        dir.join("cert.pem"),
        dir.join("ca.pem"),
    )
}

#[tokio::test]
async fn streaming_over_tls() {
    let mut env = start_env(8);
    let (key, cert, ca) = certificates(env.daemon.dir.path());
    env.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    env.daemon.wait(Duration::from_secs(30));
    let mut text = std::fs::read_to_string(&env.daemon.config_path).unwrap();
    text.push_str(&format!(
        "\n[streaming]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    std::fs::write(&env.daemon.config_path, text).unwrap();
    env.daemon.restart();
    let (mut rt, _pod, id) = idle_container(&env, "tls").await;
    start(&env, &mut rt, &id).await;
    let url = rt
        .exec(exec_request(&id, &["echo", "-n", "secret"]))
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // A client that trusts only our certificate.
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let mut request = url
        .replacen("https://", "wss://", 1)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let host = request.uri().authority().unwrap().to_string();
    let tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = connector.connect(name, tcp).await.expect("TLS handshake");
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("websocket over TLS");
    let mut stdout = Vec::new();
    while let Some(message) = ws.next().await {
        match message.expect("read") {
            Message::Binary(data) if data.first() == Some(&1) => {
                stdout.extend_from_slice(&data[1..])
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(stdout, b"secret");

    // Plain HTTP on the TLS port gets nowhere.
    let plain = url.replacen("https://", "ws://", 1);
    let plain_request = plain.as_str().into_client_request().unwrap();
    let host = plain_request.uri().authority().unwrap().to_string();
    let tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    assert!(
        tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::client_async(plain_request, tcp)
        )
        .await
        .map(|r| r.is_err())
        .unwrap_or(true)
    );
}
