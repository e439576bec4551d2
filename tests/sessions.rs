//! Exec and attach sessions through the pod's monitor, driven with the daemon-side library
//! API (`ferrocri::monitor::session`) against pods and containers made over the daemon's CRI
//! socket, as root, with busybox from the local test registry (hack/registry.sh).

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pods::*;
use ctr::*;
use ferrocri::cri::v1::*;
use ferrocri::monitor::protocol::{AttachRequest, ExecStreamRequest};
use ferrocri::monitor::session::{self, Output, SessionReader, SessionWriter};

/// One test at a time: the process probes look at the whole host.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LIMIT: Duration = Duration::from_secs(20);

/// Everything a session sends until the monitor closes it.
#[derive(Debug, Default)]
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit: Option<i32>,
    /// Frames after the exit (there must be none).
    after_exit: usize,
}

async fn collect(mut reader: SessionReader) -> Collected {
    let mut got = Collected::default();
    let read_all = async {
        while let Some(output) = reader.next().await.expect("session read") {
            if got.exit.is_some() {
                got.after_exit += 1;
            }
            match output {
                Output::Stdout(d) => got.stdout.extend(d),
                Output::Stderr(d) => got.stderr.extend(d),
                Output::Exit(code) => got.exit = Some(code),
            }
        }
    };
    tokio::time::timeout(LIMIT, read_all)
        .await
        .expect("the session did not end");
    got
}

/// Reads stdout until it contains `needle`; returns all of it.
async fn read_until(reader: &mut SessionReader, needle: &str) -> String {
    let mut seen = Vec::new();
    let wait = async {
        loop {
            match reader.next().await.expect("session read") {
                Some(Output::Stdout(d)) => seen.extend(d),
                Some(other) => panic!("{other:?} before {needle:?}"),
                None => panic!("session ended before {needle:?}"),
            }
            if String::from_utf8_lossy(&seen).contains(needle) {
                return;
            }
        }
    };
    if tokio::time::timeout(LIMIT, wait).await.is_err() {
        panic!(
            "no {needle:?} in time; got {:?}",
            String::from_utf8_lossy(&seen)
        );
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn exec_request(id: &str, args: &[&str], tty: bool, stdin: bool) -> ExecStreamRequest {
    ExecStreamRequest {
        id: id.to_owned(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
        // A terminal starts at the client's first size, as the streaming server passes it.
        size: tty.then_some((100, 30)),
    }
}

async fn exec(pod_dir: &Path, request: ExecStreamRequest) -> (SessionWriter, SessionReader) {
    session::exec(pod_dir, request.clone())
        .await
        .unwrap_or_else(|e| panic!("exec {:?}: {e}", request.args))
}

fn attach_request(id: &str, stdin: bool) -> AttachRequest {
    AttachRequest {
        id: id.to_owned(),
        stdin,
        stdout: true,
        stderr: true,
    }
}

/// Live processes whose command line is exactly `cmd` (arguments joined by spaces).
fn running(cmd: &str) -> Vec<i32> {
    processes_mentioning(cmd, None)
        .into_iter()
        .filter(|(_, c)| c == cmd)
        .map(|(pid, _)| pid)
        .collect()
}

async fn remove_pod(rt: &mut RuntimeServiceClient, id: &str) {
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    })
    .await
    .expect("RemovePodSandbox");
}

type RuntimeServiceClient =
    ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

/// A pod with one running container built from `config`; returns (pod ID, pod dir,
/// container ID).
async fn pod_with(
    env: &PodEnv,
    rt: &mut RuntimeServiceClient,
    name: &str,
    configs: Vec<ContainerConfig>,
) -> (String, PathBuf, Vec<String>) {
    let pod = pod_with_logs(env, name, &format!("uid-{name}"));
    let pod_id = run_pod(env, rt, pod.clone()).await;
    let mut ids = Vec::new();
    for config in configs {
        let id = create(env, rt, &pod_id, &pod, config).await;
        start(env, rt, &id).await;
        ids.push(id);
    }
    (pod_id.clone(), env.pods_dir().join(&pod_id), ids)
}

#[tokio::test]
async fn exec_sessions_carry_output_stdin_terminal_and_exit_and_die_with_their_client() {
    let _serial = SERIAL.lock().await;
    let env = start_env(6);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let sleeper = busybox_config("sleeper", &["sleep", "3600"], false);
    let (pod_id, pod_dir, ids) = pod_with(&env, &mut rt, "sessions-exec", vec![sleeper]).await;
    let id = &ids[0];

    // Output, then the exit, then the end.
    let (_w, r) = exec(
        &pod_dir,
        exec_request(id, &["echo", "-n", "hello"], false, false),
    )
    .await;
    let got = collect(r).await;
    assert_eq!(
        (
            got.stdout.as_slice(),
            got.stderr.as_slice(),
            got.exit,
            got.after_exit
        ),
        (&b"hello"[..], &b""[..], Some(0), 0),
        "{got:?}"
    );

    // Exit codes and stderr.
    let args = ["sh", "-c", "echo err >&2; exit 3"];
    let (_w, r) = exec(&pod_dir, exec_request(id, &args, false, false)).await;
    let got = collect(r).await;
    assert_eq!((got.stderr.as_slice(), got.exit), (&b"err\n"[..], Some(3)));
    let args = ["sh", "-c", "kill -9 $$"];
    let (_w, r) = exec(&pod_dir, exec_request(id, &args, false, false)).await;
    assert_eq!(collect(r).await.exit, Some(128 + 9));

    // stdin through cat and back, more than pipe buffers hold, then end of file. The writer
    // is dropped once done: that must not end the session.
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let (mut w, r) = exec(&pod_dir, exec_request(id, &["cat"], false, true)).await;
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.stdin(&sent).await.expect("stdin");
        w.close_stdin().await.expect("close stdin");
    });
    let got = collect(r).await;
    writer.await.unwrap();
    assert_eq!(
        got.exit,
        Some(0),
        "{:?}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout.len(), data.len());
    assert!(got.stdout == data, "cat returned other bytes");

    // A terminal starts at the size the request carried, before any resize frame.
    let (w, r) = exec(&pod_dir, exec_request(id, &["stty", "size"], true, false)).await;
    let first = collect(r).await;
    assert_eq!(first.exit, Some(0), "{first:?}");
    assert_eq!(String::from_utf8_lossy(&first.stdout).trim(), "30 100");
    drop(w);

    // A terminal: the size set by a resize, input echoed, one output stream; the terminal is
    // the first pty of the container's own devpts, which holds nothing else.
    let args = ["sh", "-c", "read line; stty size; tty; ls /dev/pts"];
    let (mut w, mut r) = exec(&pod_dir, exec_request(id, &args, true, true)).await;
    w.resize(80, 24).await.expect("resize");
    w.stdin(b"go\n").await.expect("stdin");
    let out = read_until(&mut r, "24 80").await;
    assert!(out.contains("go"), "no echo: {out:?}");
    let rest = collect(r).await;
    assert_eq!(rest.exit, Some(0), "{rest:?}");
    let all = format!("{out}{}", String::from_utf8_lossy(&rest.stdout)).replace('\r', "");
    let after_size = all.split("24 80").nth(1).unwrap_or_default();
    assert_eq!(
        after_size.split_whitespace().collect::<Vec<_>>(),
        ["/dev/pts/0", "0", "ptmx"],
        "{all:?}"
    );
    drop(w);

    // A client that leaves takes the exec's whole process group with it, also when the
    // process does not read the stdin the client was sending.
    let args = ["sh", "-c", "sleep 1001 & sleep 1002"];
    let (w, r) = exec(&pod_dir, exec_request(id, &args, false, false)).await;
    assert!(
        eventually(LIMIT, || !running("sleep 1001").is_empty()
            && !running("sleep 1002").is_empty())
        .await,
        "the exec did not start"
    );
    drop((w, r));
    assert!(
        eventually(Duration::from_secs(5), || running("sleep 1001").is_empty()
            && running("sleep 1002").is_empty())
        .await,
        "processes left: {:?} {:?}",
        running("sleep 1001"),
        running("sleep 1002")
    );
    let (mut w, r) = exec(&pod_dir, exec_request(id, &["sleep", "1003"], false, true)).await;
    assert!(eventually(LIMIT, || !running("sleep 1003").is_empty()).await);
    let stuck = tokio::spawn(async move {
        let _ = w.stdin(&vec![b'x'; 4 * 1024 * 1024]).await;
        std::future::pending::<()>().await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !stuck.is_finished(),
        "4 MiB went into a process that does not read"
    );
    stuck.abort();
    let _ = stuck.await;
    drop(r);
    assert!(
        eventually(Duration::from_secs(5), || running("sleep 1003").is_empty()).await,
        "sleep 1003 outlived its client"
    );

    // Errors come back as errors.
    let err = session::exec(&pod_dir, exec_request("nope", &["true"], false, false))
        .await
        .err()
        .expect("exec in an unknown container");
    assert!(err.to_string().contains("not known"), "{err}");
    let err = session::exec(&pod_dir, exec_request(id, &["/no/such"], false, false))
        .await
        .err()
        .expect("exec of a missing program");
    assert!(err.to_string().contains("/no/such"), "{err}");

    remove_pod(&mut rt, &pod_id).await;
    let found = env.leftovers(&[pod_id.clone(), id.clone()]).await;
    assert!(found.is_empty(), "{found:?}");
}

#[tokio::test]
async fn attach_sessions_share_output_with_the_log_and_honour_stdin_once_and_resizes() {
    let _serial = SERIAL.lock().await;
    let env = start_env(7);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let mut shell = busybox_config("shell", &["sh"], true);
    shell.stdin = true;
    shell.stdin_once = true;
    let counter_cmd = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.02; done";
    let counter = busybox_config("counter", &["sh", "-c", counter_cmd], true);
    let mut terminal = busybox_config("terminal", &["sh"], false);
    terminal.stdin = true;
    terminal.tty = true;
    // 3 MiB in 64 KiB pieces, paced so that a client that reads keeps up on a busy machine.
    let burst_cmd = "read go; for i in $(seq 48); do head -c 65536 /dev/zero | tr '\\0' x; \
                     sleep 0.01; done; sleep 1000";
    let mut burst = busybox_config("burst", &["sh", "-c", burst_cmd], true);
    burst.stdin = true;
    const BURST: usize = 48 * 65536;
    let configs = vec![shell, counter, terminal, burst];
    let (pod_id, pod_dir, ids) = pod_with(&env, &mut rt, "sessions-attach", configs).await;
    let (shell, counter, terminal, burst) = (&ids[0], &ids[1], &ids[2], &ids[3]);

    // stdin_once: the shell runs what the session sends, and ends when it closes stdin.
    let (mut w, mut r) = session::attach(&pod_dir, attach_request(shell, true))
        .await
        .expect("attach to the shell");
    w.stdin(b"echo hello\n").await.expect("stdin");
    read_until(&mut r, "hello\n").await;
    w.close_stdin().await.expect("close stdin");
    let rest = collect(r).await;
    assert_eq!((rest.exit, rest.after_exit), (Some(0), 0), "{rest:?}");
    let (st, _) = container_status(&mut rt, shell).await;
    assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
    assert_eq!(st.exit_code, 0);
    let log = std::fs::read_to_string(&st.log_path).unwrap_or_default();
    assert!(
        parse_cri_log(&log).iter().any(|r| r.message == "hello"),
        "{log}"
    );
    assert!(
        session::attach(&pod_dir, attach_request(shell, true))
            .await
            .is_err(),
        "attach to an exited container"
    );

    // Two sessions at once both get the counter's lines, in order, while the log grows.
    let (st, _) = container_status(&mut rt, counter).await;
    let log_path = PathBuf::from(&st.log_path);
    let (_w1, mut r1) = session::attach(&pod_dir, attach_request(counter, false))
        .await
        .expect("first attach");
    let (_w2, mut r2) = session::attach(&pod_dir, attach_request(counter, false))
        .await
        .expect("second attach");
    let log_before = file_size(&log_path);
    let first = read_until(&mut r1, "\n").await;
    let start: u64 = first
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("line "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{first:?}"));
    let want = format!("line {}\n", start + 20);
    let seen1 = read_until(&mut r1, &want).await;
    let seen2 = read_until(&mut r2, &want).await;
    for seen in [&format!("{first}{seen1}"), &seen2] {
        let numbers: Vec<u64> = seen
            .lines()
            .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
            .collect();
        assert!(
            numbers.windows(2).all(|p| p[1] == p[0] + 1),
            "gap or duplicate: {numbers:?}"
        );
    }
    assert!(file_size(&log_path) > log_before, "the log stopped growing");
    rt.stop_container(StopContainerRequest {
        container_id: counter.clone(),
        timeout: 0,
    })
    .await
    .expect("StopContainer");
    for r in [r1, r2] {
        let rest = collect(r).await;
        assert_eq!(rest.exit, Some(128 + 9), "{rest:?}");
    }

    // A terminal container: the session's resize reaches it; detaching leaves it running.
    let (mut w, mut r) = session::attach(&pod_dir, attach_request(terminal, true))
        .await
        .expect("attach to the terminal");
    w.resize(100, 30).await.expect("resize");
    w.stdin(b"stty size; tty\n").await.expect("stdin");
    let out = read_until(&mut r, "/dev/pts/").await;
    assert!(out.contains("30 100\r\n/dev/pts/0"), "{out:?}");
    drop((w, r));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (st, _) = container_status(&mut rt, terminal).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
    let (mut w, mut r) = session::attach(&pod_dir, attach_request(terminal, true))
        .await
        .expect("attach again");
    w.stdin(b"echo again\n").await.expect("stdin");
    read_until(&mut r, "again").await;

    // A session that does not read loses what does not fit its queue, but stays attached;
    // one that reads gets every byte.
    let (_slow_w, mut slow) = session::attach(&pod_dir, attach_request(burst, false))
        .await
        .expect("attach the slow session");
    let (mut w, mut fast) = session::attach(&pod_dir, attach_request(burst, true))
        .await
        .expect("attach the fast session");
    w.stdin(b"go\n").await.expect("stdin");
    let mut received = 0;
    while received < BURST {
        match tokio::time::timeout(LIMIT, fast.next()).await {
            Ok(Ok(Some(Output::Stdout(d)))) => received += d.len(),
            other => panic!("fast session after {received} bytes: {other:?}"),
        }
    }
    assert_eq!(received, BURST);
    let mut slow_got = 0;
    while let Ok(next) = tokio::time::timeout(Duration::from_millis(500), slow.next()).await {
        match next {
            Ok(Some(Output::Stdout(d))) => slow_got += d.len(),
            other => panic!("slow session after {slow_got} bytes: {other:?}"),
        }
    }
    assert!(
        slow_got > 0 && slow_got < BURST,
        "slow session got {slow_got} bytes"
    );
    rt.stop_container(StopContainerRequest {
        container_id: burst.clone(),
        timeout: 0,
    })
    .await
    .expect("StopContainer");
    let rest = collect(slow).await;
    assert_eq!(
        rest.exit,
        Some(128 + 9),
        "the slow session is still attached"
    );
    drop((w, fast));

    remove_pod(&mut rt, &pod_id).await;
    let rest = collect(r).await;
    assert!(rest.exit.is_some(), "{rest:?}");
    let mut all = vec![pod_id.clone()];
    all.extend(ids.iter().cloned());
    let found = env.leftovers(&all).await;
    assert!(found.is_empty(), "{found:?}");
}
