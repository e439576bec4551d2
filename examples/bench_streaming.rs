//! Streaming benchmark client (run by hack/bench-streaming.sh against a release daemon): the
//! round trip of ExecSync, of a streaming exec over WebSocket (Exec RPC, upgrade, output,
//! exit status), of `crictl exec` over SPDY and WebSocket (a whole client process), and the
//! throughput of port-forward through `crictl port-forward` over both transports to an echo
//! server in the pod. Prints figures; asserts nothing.
//!
//!   bench_streaming <socket> <crictl config> [round trips] [MiB forwarded]

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use ferrocri::cri::v1::*;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const ECHO_IMAGE: &str = "docker.io/ferrocri/echo:1";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bench_streaming <socket> <crictl config> [round trips] [MiB]";
    let socket = PathBuf::from(args.get(1).ok_or(usage)?);
    let crictl_config = args.get(2).ok_or(usage)?.clone();
    let rounds: usize = args.get(3).map(|n| n.parse()).transpose()?.unwrap_or(200);
    let mib: usize = args.get(4).map(|n| n.parse()).transpose()?.unwrap_or(256);

    let mut client = connect(socket).await?;
    let (pod, config) = run_pod(&mut client, 0).await?;
    let shell = create_container(
        &mut client,
        &pod,
        config.clone(),
        "shell",
        BUSYBOX,
        &["sleep", "3600"],
    )
    .await?;
    start(&mut client, shell.clone()).await?;
    let echo = create_container(&mut client, &pod, config, "echo", ECHO_IMAGE, &[]).await?;
    start(&mut client, echo).await?;

    let mut exec_sync = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        client
            .exec_sync(ExecSyncRequest {
                container_id: shell.clone(),
                cmd: vec!["true".into()],
                timeout: 10,
            })
            .await?;
        exec_sync.push(started.elapsed());
    }
    let mut websocket_exec = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let url = client
            .exec(ExecRequest {
                container_id: shell.clone(),
                cmd: vec!["echo".into(), "-n".into(), "x".into()],
                stdout: true,
                stderr: true,
                ..Default::default()
            })
            .await?
            .into_inner()
            .url;
        let output = websocket_exec_output(&url).await?;
        websocket_exec.push(started.elapsed());
        assert_eq!(output, b"x", "exec output");
    }
    let crictl_rounds = rounds.min(50);
    let mut crictl_exec = Vec::new();
    for transport in ["spdy", "websocket"] {
        let mut samples = Vec::new();
        for _ in 0..crictl_rounds {
            let started = Instant::now();
            let status = tokio::process::Command::new("crictl")
                .args([
                    "-c",
                    &crictl_config,
                    "exec",
                    "-r",
                    transport,
                    &shell,
                    "true",
                ])
                .status()
                .await?;
            samples.push(started.elapsed());
            if !status.success() {
                return Err(format!("crictl exec over {transport} failed").into());
            }
        }
        crictl_exec.push((transport, samples));
    }

    println!("round trips: {rounds} (crictl: {crictl_rounds})");
    report("ExecSync `true`", &mut exec_sync);
    report(
        "streaming exec over WebSocket (Exec RPC + upgrade + `echo -n x` + exit status)",
        &mut websocket_exec,
    );
    for (transport, samples) in &mut crictl_exec {
        report(
            &format!("`crictl exec -r {transport} true` (whole client process)"),
            samples,
        );
    }
    for transport in ["spdy", "websocket"] {
        let rate = forward_throughput(&crictl_config, &pod, transport, mib).await?;
        println!(
            "port-forward over {transport} (crictl, one connection, {mib} MiB echoed): {rate:.0} MiB/s each way"
        );
    }
    stop_remove(&mut client, &pod).await?;
    Ok(())
}

/// One exec over WebSocket (`v5.channel.k8s.io`); returns its stdout.
async fn websocket_exec_output(url: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut request = url.replacen("http://", "ws://", 1).into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse()?);
    let host = request.uri().authority().ok_or("no host")?.to_string();
    let socket = tokio::net::TcpStream::connect(host).await?;
    socket.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async(request, socket).await?;
    let mut stdout = Vec::new();
    while let Some(message) = ws.next().await {
        match message? {
            Message::Binary(data) if data.first() == Some(&1) => {
                stdout.extend_from_slice(&data[1..])
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(stdout)
}

/// Sends `mib` MiB through `crictl port-forward` to the pod's echo server while reading them
/// back; returns MiB/s.
async fn forward_throughput(
    crictl_config: &str,
    pod: &str,
    transport: &str,
    mib: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let port = 30000 + (std::process::id() % 10000) as u16 + u16::from(transport == "websocket");
    let mut forward = tokio::process::Command::new("crictl")
        .args([
            "-c",
            crictl_config,
            "port-forward",
            "-r",
            transport,
            pod,
            &format!("{port}:9000"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut socket = None;
    for _ in 0..100 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            socket = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let socket = socket.ok_or("crictl port-forward did not listen")?;
    let (mut read, mut write) = socket.into_split();
    let total = mib * 1024 * 1024;
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; 256 * 1024];
        for _ in 0..total / chunk.len() {
            write.write_all(&chunk).await?;
        }
        write.shutdown().await
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0;
    while received < total {
        let n = read.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        received += n;
    }
    let elapsed = started.elapsed();
    writer.await??;
    let _ = forward.kill().await;
    if received != total {
        return Err(format!(
            "port-forward over {transport}: {received} of {total} bytes came back"
        )
        .into());
    }
    Ok(mib as f64 / elapsed.as_secs_f64())
}
