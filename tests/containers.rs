//! Container RPCs against the real daemon, as root, with busybox from the local test registry
//! (127.0.0.1:5000 through hack/certs.d). Each test has its own CNI network (tests/common/pods.rs)
//! and a guard that removes whatever a failing test left. The tests run one at a time (they
//! compare host-wide state such as veths before and after).

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pods::*;
use ctr::*;
use ferrocri::cri::v1::*;
use futures::StreamExt;
use tonic::Code;

/// One test at a time: host-wide probes (veths, processes) stay exact.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn assert_nothing(found: Vec<String>, env: &PodEnv) {
    assert!(
        found.is_empty(),
        "left behind:\n  {}\ndaemon log tail:\n{}",
        found.join("\n  "),
        log_tail(&env.daemon.log(), 60)
    );
}

/// What container processes and folders could leave once their pods are gone.
fn container_leftovers(env: &PodEnv, ids: &[String], pids: &[i32]) -> Vec<String> {
    let mut found = Vec::new();
    for pid in pids {
        if *pid > 0 && !process_gone(*pid) {
            found.push(format!(
                "container process {pid} still runs ({})",
                comm(*pid)
            ));
        }
    }
    for id in ids {
        for dir in cgroup_dirs(&format!("/ferrocri/{id}")) {
            found.push(format!("cgroup left: {}", dir.display()));
        }
    }
    let containers = env.daemon.root().join("containers");
    if let Ok(entries) = std::fs::read_dir(&containers) {
        for e in entries.flatten() {
            found.push(format!("container folder left: {}", e.path().display()));
        }
    }
    found
}

/// Containers ListContainers still shows (none should be after their pods are gone).
async fn still_listed(rt: &mut RuntimeServiceClient) -> Vec<String> {
    rt.list_containers(ListContainersRequest { filter: None })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
        .into_iter()
        .map(|c| format!("container still listed: {}", c.id))
        .collect()
}

async fn remove_pod(env: &PodEnv, rt: &mut RuntimeServiceClient, id: &str) {
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "StopPodSandbox {id}: {e}\n{}",
            log_tail(&env.daemon.log(), 40)
        )
    });
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.to_owned(),
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "RemovePodSandbox {id}: {e}\n{}",
            log_tail(&env.daemon.log(), 40)
        )
    });
}

type RuntimeServiceClient =
    ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

/// The N of every `line N` record of a CRI log, checking each is a full stdout line.
fn line_numbers(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_cri_log(&text)
        .into_iter()
        .map(|r| {
            assert_eq!(r.stream, "stdout", "{r:?}");
            assert_eq!(r.tag, "F", "{r:?}");
            r.message
                .strip_prefix("line ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected log message {r:?}"))
        })
        .collect()
}

#[tokio::test]
async fn sigkill_of_the_daemon_stops_no_container_and_loses_no_log_line_or_exit_code() {
    let _serial = SERIAL.lock().await;
    let mut env = start_env(3);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let pod = pod_with_logs(&env, "kill9", "uid-kill9");
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;

    let loop_cmd = "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done";
    let mut loopers = Vec::new();
    for n in 0..10 {
        let config = busybox_config(&format!("loop-{n}"), &["sh", "-c", loop_cmd], true);
        loopers.push(create(&env, &mut rt, &pod_id, &pod, config).await);
    }
    let short = create(
        &env,
        &mut rt,
        &pod_id,
        &pod,
        busybox_config("short", &["sh", "-c", "sleep 1; exit 7"], true),
    )
    .await;
    let mut all: Vec<String> = loopers.clone();
    all.push(short.clone());
    let mut pids = Vec::new();
    for id in &all {
        start(&env, &mut rt, id).await;
    }
    let mut logs = Vec::new();
    for id in &all {
        let (st, info) = container_status(&mut rt, id).await;
        pids.push(info["pid"].as_i64().unwrap_or_default() as i32);
        logs.push(PathBuf::from(st.log_path));
    }

    env.daemon.kill9();
    let down = Instant::now();

    // While the daemon is down, the containers keep writing and the monitor records the exit.
    let before: Vec<u64> = logs[..10].iter().map(|p| file_size(p)).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, path) in logs[..10].iter().enumerate() {
        let after = file_size(path);
        assert!(
            after > before[i],
            "{} did not grow while the daemon was down ({} -> {after})",
            path.display(),
            before[i]
        );
    }
    let exit_file = env
        .pods_dir()
        .join(&pod_id)
        .join("containers")
        .join(&short)
        .join("exit.json");
    assert!(
        eventually(Duration::from_secs(5), || exit_file.exists()).await,
        "{} never appeared while the daemon was down",
        exit_file.display()
    );
    let exit: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&exit_file).unwrap()).expect("exit.json is JSON");
    assert_eq!(exit["code"], 7, "{exit}");
    eprintln!("daemon down for {:?}", down.elapsed());

    env.daemon.restart();
    let mut rt = env.runtime().await;
    let listed = rt
        .list_containers(ListContainersRequest { filter: None })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 11, "{listed:?}");
    for c in &listed {
        let want = if c.id == short {
            ContainerState::ContainerExited
        } else {
            ContainerState::ContainerRunning
        };
        assert_eq!(c.state, want as i32, "{c:?}");
        assert!(all.contains(&c.id), "{c:?}");
    }
    let (st, _) = container_status(&mut rt, &short).await;
    assert_eq!(st.state, ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 7, "{st:?}");
    assert_eq!(st.reason, "Error", "{st:?}");
    assert!(
        st.started_at > 0 && st.finished_at > st.started_at,
        "{st:?}"
    );

    // Every line of every looping container, in order, none missing.
    for path in &logs[..10] {
        let numbers = line_numbers(path);
        // 2 s down alone are about 40 lines at one per 50 ms; fork and load stretch that.
        assert!(numbers.len() > 30, "{}: {numbers:?}", path.display());
        for (i, n) in numbers.iter().enumerate() {
            assert_eq!(
                *n,
                i as u64,
                "{}: line {i} says {n} (gap or duplicate)",
                path.display()
            );
        }
    }
    let short_log = std::fs::read_to_string(&logs[10]).unwrap_or_default();
    assert!(parse_cri_log(&short_log).is_empty(), "{short_log:?}");

    remove_pod(&env, &mut rt, &pod_id).await;
    let ids: Vec<String> = std::iter::once(pod_id.clone()).chain(all.clone()).collect();
    let mut found = env.leftovers(&ids).await;
    found.extend(container_leftovers(&env, &all, &pids));
    found.extend(still_listed(&mut rt).await);
    assert_nothing(found, &env);
}

#[tokio::test]
async fn a_hundred_pods_with_containers_leave_nothing_behind() {
    let _serial = SERIAL.lock().await;
    let env = start_env(4);
    pull_busybox(&env).await;
    let veths_before = all_veths();
    let began = Instant::now();

    let env_ref = &env;
    let results: Vec<(String, String, i32)> = futures::stream::iter(0..100)
        .map(|n| async move {
            let mut rt = env_ref.runtime().await;
            let name = format!("many-{n}");
            let pod = pod_config(&name, "fcct-many", &format!("uid-many-{n}"), 0);
            let pod_id = run_pod(env_ref, &mut rt, pod.clone()).await;
            let id = create(
                env_ref,
                &mut rt,
                &pod_id,
                &pod,
                busybox_config("sleeper", &["sleep", "3600"], false),
            )
            .await;
            start(env_ref, &mut rt, &id).await;
            let (st, info) = container_status(&mut rt, &id).await;
            assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
            (pod_id, id, info["pid"].as_i64().unwrap_or_default() as i32)
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let started = began.elapsed();
    let listed = env
        .runtime()
        .await
        .list_containers(ListContainersRequest { filter: None })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 100);

    futures::stream::iter(results.iter())
        .map(|(pod_id, _, _)| async move {
            let mut rt = env_ref.runtime().await;
            remove_pod(env_ref, &mut rt, pod_id).await;
        })
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    let total = began.elapsed();
    eprintln!(
        "100 pods with a container: created and started in {started:?}, all gone after {total:?}"
    );

    let containers: Vec<String> = results.iter().map(|(_, c, _)| c.clone()).collect();
    let pids: Vec<i32> = results.iter().map(|(_, _, p)| *p).collect();
    let ids: Vec<String> = results
        .iter()
        .flat_map(|(p, c, _)| [p.clone(), c.clone()])
        .collect();
    let mut found = env.leftovers(&ids).await;
    found.extend(container_leftovers(&env, &containers, &pids));
    let added: BTreeSet<String> = all_veths().difference(&veths_before).cloned().collect();
    for veth in added {
        found.push(format!("veth added: {veth}"));
    }
    found.extend(still_listed(&mut env.runtime().await).await);
    assert_nothing(found, &env);
}

#[tokio::test]
async fn container_lifecycle_status_logs_and_exec() {
    let _serial = SERIAL.lock().await;
    let env = start_env(5);
    let image_ref = pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let pod = pod_with_logs(&env, "life", "uid-life");
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;

    let data = env.daemon.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("greeting"), "hi from the host\n").unwrap();
    let mut config = busybox_config(
        "life",
        &[
            "sh",
            "-c",
            "echo hello-log; echo err-log >&2; cat /mnt/data/greeting; exec top -b -d 1",
        ],
        true,
    );
    config.mounts = vec![Mount {
        container_path: "/mnt/data".into(),
        host_path: data.display().to_string(),
        readonly: true,
        ..Default::default()
    }];
    config.labels = labels(&[("app", "life")]);
    config.annotations = labels(&[("fcct.example/a", "b")]);

    let id = create(&env, &mut rt, &pod_id, &pod, config.clone()).await;
    let (st, _) = container_status(&mut rt, &id).await;
    assert_eq!(st.id, id);
    assert_eq!(st.state, ContainerState::ContainerCreated as i32, "{st:?}");
    assert_eq!(st.image_id, image_ref, "{st:?}");
    assert_eq!(st.image_ref, image_ref, "{st:?}");
    assert_eq!(st.mounts, config.mounts);
    assert_eq!(st.metadata, config.metadata);
    assert_eq!(st.labels, config.labels);
    assert_eq!(st.annotations, config.annotations);
    assert!(st.created_at > 0 && st.started_at == 0, "{st:?}");
    let log = PathBuf::from(&st.log_path);
    assert!(log.is_absolute(), "{st:?}");
    assert_eq!(log, log_dir(&env, "life").join("life.log"));

    start(&env, &mut rt, &id).await;
    let (st, info) = container_status(&mut rt, &id).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
    assert!(st.started_at >= st.created_at, "{st:?}");
    let pid = info["pid"].as_i64().unwrap_or_default() as i32;
    assert!(pid > 0, "{info}");

    // ExecSync: output, exit codes, stderr, and a timeout that kills the command.
    let out = exec(&mut rt, &id, &["echo", "-n", "hello"], 0)
        .await
        .expect("ExecSync echo");
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice(), out.exit_code),
        (&b"hello"[..], &b""[..], 0)
    );
    let out = exec(&mut rt, &id, &["sh", "-c", "echo err >&2; exit 3"], 0)
        .await
        .expect("ExecSync exit 3");
    assert_eq!(out.exit_code, 3);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert!(out.stdout.is_empty());
    let began = Instant::now();
    let err = exec(&mut rt, &id, &["sleep", "60"], 1)
        .await
        .expect_err("sleep 60 with a 1 s timeout");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
    let mut last = None;
    let mut gone = false;
    for _ in 0..50 {
        let out = exec(&mut rt, &id, &["pgrep", "sleep"], 5)
            .await
            .expect("ExecSync pgrep");
        if out.exit_code == 1 && out.stdout.is_empty() {
            gone = true;
            break;
        }
        last = Some(out);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "sleep still runs after the timeout: {last:?}");

    // The log holds the container's output in CRI format.
    assert!(
        eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(&log)
                .map(|t| t.contains("hi from the host"))
                .unwrap_or(false)
        })
        .await,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let records = parse_cri_log(&std::fs::read_to_string(&log).unwrap());
    let has = |stream: &str, message: &str| {
        records
            .iter()
            .any(|r| r.stream == stream && r.tag == "F" && r.message == message)
    };
    assert!(has("stdout", "hello-log"), "{records:?}");
    assert!(has("stderr", "err-log"), "{records:?}");
    assert!(has("stdout", "hi from the host"), "{records:?}");
    assert!(
        records
            .iter()
            .all(|r| !r.message.contains("hello") || r.message == "hello-log"),
        "exec output went to the container log: {records:?}"
    );

    // ReopenContainerLog after a rotation: new lines go to a new file at the same path.
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    rt.reopen_container_log(ReopenContainerLogRequest {
        container_id: id.clone(),
    })
    .await
    .expect("ReopenContainerLog");
    assert!(
        eventually(Duration::from_secs(5), || file_size(&log) > 0).await,
        "no new log file at {}",
        log.display()
    );
    let old_size = file_size(&rotated);
    let new_size = file_size(&log);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        file_size(&rotated),
        old_size,
        "the rotated file still grows"
    );
    assert!(file_size(&log) > new_size, "the new file does not grow");
    parse_cri_log(&std::fs::read_to_string(&log).unwrap());

    // StopContainer: top dies of SIGTERM, long before the timeout.
    let began = Instant::now();
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 30,
    })
    .await
    .expect("StopContainer");
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "StopContainer took {took:?}"
    );
    let (st, _) = container_status(&mut rt, &id).await;
    assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
    assert!(st.finished_at >= st.started_at, "{st:?}");
    assert!(process_gone(pid), "pid {pid} still runs");

    for _ in 0..2 {
        rt.remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .expect("RemoveContainer");
    }
    let err = rt
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .expect_err("status of a removed container");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // As with containerd and CRI-O the log file stays (kubelet and crictl delete it, with
    // its rotations); one no client deleted goes with the pod.
    assert!(log.exists(), "{} went with its container", log.display());
    assert!(rotated.exists(), "{} was removed", rotated.display());
    std::fs::remove_file(&rotated).unwrap();

    // A container the caller never removes: its log goes with the pod too.
    let other = create(
        &env,
        &mut rt,
        &pod_id,
        &pod,
        busybox_config("other", &["true"], true),
    )
    .await;
    // Its log file is made when it starts (as with containerd).
    start(&env, &mut rt, &other).await;
    let other_log = PathBuf::from(container_status(&mut rt, &other).await.0.log_path);
    assert!(
        eventually(Duration::from_secs(5), || other_log.exists()).await,
        "{} was never made",
        other_log.display()
    );
    remove_pod(&env, &mut rt, &pod_id).await;
    assert!(!log.exists(), "{} outlived its pod", log.display());
    assert!(
        !other_log.exists(),
        "{} outlived its pod",
        other_log.display()
    );
    let ids = vec![pod_id.clone(), id.clone()];
    let mut found = env.leftovers(&ids).await;
    found.extend(container_leftovers(&env, std::slice::from_ref(&id), &[pid]));
    assert_nothing(found, &env);
}

/// An exit is listed as exited as soon as the monitor counts it (a list first handles what the
/// exit watch has queued, or, for a pod the watch does not cover, reads the pod's exit files
/// when the count changed), and a container that exits as it starts, right after a list, is
/// not missed either.
#[tokio::test]
async fn list_containers_shows_each_exit_once_counted() {
    let _serial = SERIAL.lock().await;
    let env = start_env(8);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let pod = pod_config("exits", "fcct-exits", "uid-exits", 0);
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    let count_file = env.pods_dir().join(&pod_id).join("exits");
    let count = || std::fs::read_to_string(&count_file).unwrap_or_default();
    let mut list = async || {
        rt.list_containers(ListContainersRequest { filter: None })
            .await
            .expect("ListContainers")
            .into_inner()
            .containers
            .into_iter()
            .map(|c| (c.id, c.state))
            .collect::<std::collections::HashMap<_, _>>()
    };
    let mut rt2 = env.runtime().await;
    let mut run = async |name: &str, cmd: &str| {
        let config = busybox_config(name, &["sh", "-c", cmd], false);
        let id = create(&env, &mut rt2, &pod_id, &pod, config).await;
        start(&env, &mut rt2, &id).await;
        id
    };
    let running = ContainerState::ContainerRunning as i32;
    let exited = ContainerState::ContainerExited as i32;

    let sleeper = run("sleeper", "sleep 3600").await;
    let later = run("later", "sleep 2; exit 5").await;
    assert_eq!(count(), "0");
    let listed = list().await;
    assert_eq!((listed[&sleeper], listed[&later]), (running, running));
    assert!(eventually(Duration::from_secs(10), || count() == "1").await);
    let listed = list().await;
    assert_eq!((listed[&sleeper], listed[&later]), (running, exited));

    for n in 0..5 {
        let quick = run(&format!("quick-{n}"), "exit 3").await;
        list().await;
        let want = (2 + n).to_string();
        assert!(eventually(Duration::from_secs(10), || count() == want).await);
        assert_eq!(list().await[&quick], exited, "quick-{n}");
    }
    let listed = list().await;
    assert_eq!(listed[&sleeper], running);
    assert_eq!(listed.values().filter(|s| **s == exited).count(), 6);
    for id in [&later, &sleeper] {
        let (st, _) = container_status(&mut rt2, id).await;
        let want = if id == &later {
            (exited, 5)
        } else {
            (running, 0)
        };
        assert_eq!((st.state, st.exit_code), want, "{st:?}");
    }
    remove_pod(&env, &mut rt2, &pod_id).await;
}

#[tokio::test]
async fn racing_stops_and_removes_of_one_pod_all_succeed_and_leave_nothing() {
    let _serial = SERIAL.lock().await;
    let env = start_env(9);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let (mut ids, mut containers, mut pids) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..5 {
        let name = format!("race-{round}");
        let pod = pod_config(&name, "fcct-race", &format!("uid-race-{round}"), 0);
        let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
        let id = create(
            &env,
            &mut rt,
            &pod_id,
            &pod,
            busybox_config("sleeper", &["sleep", "3600"], false),
        )
        .await;
        start(&env, &mut rt, &id).await;
        let (_, info) = container_status(&mut rt, &id).await;
        pids.push(info["pid"].as_i64().unwrap_or_default() as i32);
        // kubelet's pod worker and its garbage collector may both go for a dying pod.
        let calls = (0..3).map(|_| {
            let (mut a, mut b) = (rt.clone(), rt.clone());
            let (stop_id, remove_id) = (pod_id.clone(), pod_id.clone());
            async move {
                let stop = a.stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: stop_id,
                });
                let remove = b.remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: remove_id,
                });
                let (stopped, removed) = tokio::join!(stop, remove);
                stopped.map(drop).and(removed.map(drop))
            }
        });
        for outcome in futures::future::join_all(calls).await {
            outcome.unwrap_or_else(|e| {
                panic!("round {round}: {e}\n{}", log_tail(&env.daemon.log(), 40))
            });
        }
        ids.extend([pod_id, id.clone()]);
        containers.push(id);
    }
    let mut found = env.leftovers(&ids).await;
    found.extend(container_leftovers(&env, &containers, &pids));
    assert_nothing(found, &env);
}

/// A container the daemon was still creating when it died (its CreateContainer never
/// answered): the next start undoes it, so its name is free for the retry and its folder and
/// cgroup are gone.
#[tokio::test]
async fn a_container_left_creating_by_a_crash_is_undone_at_start() {
    let _serial = SERIAL.lock().await;
    let mut env = start_env(6);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let pod = pod_with_logs(&env, "halfmade", "uid-halfmade");
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    let config = busybox_config("half", &["sleep", "3600"], false);
    let id = create(&env, &mut rt, &pod_id, &pod, config.clone()).await;
    drop(rt);
    env.daemon.signal(nix::sys::signal::Signal::SIGKILL);
    env.daemon.wait(Duration::from_secs(10));

    // What a kill between the record's insert and its CREATED write leaves.
    let store = ferrocri::store::Store::open(&env.daemon.root().join("metadata.db")).unwrap();
    let table = ferrocri::store::Table::Containers;
    let record = store
        .blocking(|conn| {
            let mut record: serde_json::Value = conn.get(table, &id)?.expect("the record");
            assert_eq!(record["state"], "created", "{record}");
            record["state"] = "creating".into();
            assert!(conn.update(table, &id, &record)?);
            Ok(record)
        })
        .unwrap();
    drop(store);
    let folder = PathBuf::from(record["dir"].as_str().unwrap());
    assert!(folder.exists());

    env.daemon.restart();
    let mut rt = env.runtime().await;
    assert!(
        !folder.exists(),
        "{} outlived the recovery",
        folder.display()
    );
    let err = rt
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .expect_err("the half-made container is gone");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // The name is free: the retry succeeds.
    let again = create(&env, &mut rt, &pod_id, &pod, config).await;
    assert_ne!(again, id);
    start(&env, &mut rt, &again).await;
    remove_pod(&env, &mut rt, &pod_id).await;
}
