//! User namespace pods (`userns_options` mode POD, KEP-127) through the real daemon: the
//! pod's processes run as the mapped, unprivileged host uid; the container sees itself as
//! root; its rootfs and volumes are idmapped (image files and host files owned by 0 look
//! owned by 0 inside, and what it writes as 0 lands on disk as 0, no chown); the network
//! namespace belongs to the pod's user namespace, so CAP_NET_ADMIN and net sysctls work
//! inside; /dev/shm, /etc/hosts, resolv.conf, hostname and the CRI log work. Also the
//! refusals critest expects and the Status feature.

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::pods::*;
use ctr::*;
use ferrocri::cri::v1::*;
use tonic::Code;

/// The host range of the test pod: container ids 0..65536 are host ids 300000..365536.
const HOST_BASE: u32 = 300_000;
const LENGTH: u32 = 65_536;

fn mapping(container_id: u32, host_id: u32, length: u32) -> IdMapping {
    IdMapping {
        container_id,
        host_id,
        length,
    }
}

fn with_userns(mut pod: PodSandboxConfig, userns: UserNamespace) -> PodSandboxConfig {
    let linux = pod.linux.get_or_insert_with(Default::default);
    let security = linux.security_context.get_or_insert_with(Default::default);
    security
        .namespace_options
        .get_or_insert_with(Default::default)
        .userns_options = Some(userns);
    pod
}

fn pod_mode(uids: Vec<IdMapping>, gids: Vec<IdMapping>) -> UserNamespace {
    UserNamespace {
        mode: NamespaceMode::Pod as i32,
        uids,
        gids,
    }
}

/// `Uid:` (real, effective, saved, fs) of a host process, as the host sees it.
fn host_uids(pid: i32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid line")
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn a_userns_pod_runs_unprivileged_on_the_host_with_idmapped_root_and_volumes() {
    let env = start_env(7);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;

    let status = rt
        .status(StatusRequest { verbose: false })
        .await
        .expect("Status")
        .into_inner();
    let handler = status
        .runtime_handlers
        .iter()
        .find(|h| h.name.is_empty())
        .expect("default handler");
    assert!(
        handler.features.as_ref().is_some_and(|f| f.user_namespaces),
        "user_namespaces not advertised on a 6.x host:\n{}",
        log_tail(&env.daemon.log(), 20)
    );

    // The refusals critest checks, each naming the field.
    let refusals = [
        (
            pod_mode(
                vec![mapping(0, 1000, 100), mapping(0, 2000, 100)],
                vec![mapping(0, 1000, 100)],
            ),
            "userns_options.uids",
        ),
        (
            pod_mode(vec![mapping(1, 1000, 100)], vec![mapping(1, 1000, 100)]),
            "userns_options.uids",
        ),
        (
            UserNamespace {
                mode: NamespaceMode::Container as i32,
                ..Default::default()
            },
            "userns_options.mode",
        ),
        (
            UserNamespace {
                mode: NamespaceMode::Target as i32,
                ..Default::default()
            },
            "userns_options.mode",
        ),
    ];
    for (n, (userns, field)) in refusals.into_iter().enumerate() {
        let pod = with_userns(
            pod_config("refused", "fcus-ns", &format!("uid-r{n}"), 0),
            userns,
        );
        let err = rt
            .run_pod_sandbox(run_request(pod))
            .await
            .expect_err("a bad userns_options was accepted");
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains(field), "{err}");
    }

    let volume = env.daemon.dir.path().join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("from-host"), "host").unwrap(); // owned by 0 on the host
    let mut pod = with_userns(
        pod_with_logs(&env, "userns", "uid-userns"),
        pod_mode(
            vec![mapping(0, HOST_BASE, LENGTH)],
            vec![mapping(0, HOST_BASE, LENGTH)],
        ),
    );
    pod.hostname = "userns-pod".into();
    pod.linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("net.ipv4.ip_unprivileged_port_start".into(), "123".into());
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;

    let script = "cat /proc/self/uid_map; id -u; id -g; \
        stat -c 'passwd %u:%g' /etc/passwd; stat -c 'volume %u:%g' /data/from-host; \
        echo c > /data/from-container; touch /rootfs-file; \
        echo shm > /dev/shm/x && cat /dev/shm/x; hostname; grep -c userns-pod /etc/hosts; \
        test -r /etc/resolv.conf && echo resolv-ok; \
        cat /proc/sys/net/ipv4/ip_unprivileged_port_start; \
        ip link set lo mtu 1300 && echo netadmin-ok; \
        echo done; sleep 1000";
    let mut config = busybox_config("main", &["sh", "-c", script], true);
    config.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: volume.display().to_string(),
        ..Default::default()
    }];
    config.linux.as_mut().unwrap().security_context = Some(LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            ..Default::default()
        }),
        namespace_options: pod
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone()),
        ..Default::default()
    });
    let id = create(&env, &mut rt, &pod_id, &pod, config).await;
    start(&env, &mut rt, &id).await;
    let log = log_dir(&env, "userns").join("main.log");
    let done = eventually(Duration::from_secs(20), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains(" done\n"))
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let lines: Vec<String> = parse_cri_log(&text)
        .into_iter()
        .map(|r| format!("{} {}", r.stream, r.message))
        .collect();
    assert!(
        done,
        "the container did not finish its checks:\n{}\n{}",
        lines.join("\n"),
        log_tail(&env.daemon.log(), 30)
    );
    let expected = [
        format!("stdout {:>10} {:>10} {:>10}", 0, HOST_BASE, LENGTH),
        "stdout 0".into(),
        "stdout 0".into(),
        "stdout passwd 0:0".into(),
        "stdout volume 0:0".into(),
        "stdout shm".into(),
        "stdout userns-pod".into(),
        "stdout 1".into(),
        "stdout resolv-ok".into(),
        "stdout 123".into(),
        "stdout netadmin-ok".into(),
        "stdout done".into(),
    ];
    assert_eq!(lines, expected, "container output");

    // From the host: the process is the mapped uid, in a user namespace with the pod's map.
    let (_, info) = container_status(&mut rt, &id).await;
    let pid = info["pid"].as_i64().unwrap_or_default() as i32;
    assert!(pid > 0, "no pid in {info}");
    assert_eq!(
        host_uids(pid),
        vec![HOST_BASE; 4],
        "host uids of the container process"
    );
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        vec!["0", &HOST_BASE.to_string(), &LENGTH.to_string()]
    );
    assert_ne!(
        ns_id(format!("/proc/{pid}/ns/user")),
        ns_id("/proc/self/ns/user"),
        "the container is in the host's user namespace"
    );
    // Idmapped volume: written as container root, owned by 0 on disk (no chown, no shift).
    let written = std::fs::metadata(volume.join("from-container")).expect("written file");
    assert_eq!((written.uid(), written.gid()), (0, 0), "owner on the host");
    // An exec sees the same.
    let out = exec(
        &mut rt,
        &id,
        &["sh", "-c", "id -u; cat /proc/self/uid_map"],
        10,
    )
    .await
    .expect("ExecSync");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("0\n") && stdout.contains(&HOST_BASE.to_string()),
        "exec output {stdout:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The pause too runs as the mapped uid, in the same user namespace.
    let (_, pod_info) = common::pods::status(&mut rt, &pod_id).await;
    assert!(pod_info.pid > 0, "no pause pid in {}", pod_info.raw);
    assert_eq!(
        host_uids(pod_info.pid),
        vec![HOST_BASE; 4],
        "host uids of the pause"
    );
    assert_eq!(
        ns_id(format!("/proc/{}/ns/user", pod_info.pid)),
        ns_id(format!("/proc/{pid}/ns/user"))
    );
    // A container with a PID namespace of its own (kubelet's default) is PID 1 there, in the
    // pod's user namespace.
    let mut own_pid = busybox_config("own-pid", &["sh", "-c", "echo pid $$; id -u"], true);
    own_pid.linux.as_mut().unwrap().security_context = Some(LinuxContainerSecurityContext {
        namespace_options: Some(NamespaceOption {
            pid: NamespaceMode::Container as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let own_id = create(&env, &mut rt, &pod_id, &pod, own_pid).await;
    start(&env, &mut rt, &own_id).await;
    let own_log = log_dir(&env, "userns").join("own-pid.log");
    assert!(
        eventually(Duration::from_secs(10), || {
            std::fs::read_to_string(&own_log).is_ok_and(|t| t.lines().count() >= 2)
        })
        .await,
        "own-pid container output: {:?}",
        std::fs::read_to_string(&own_log)
    );
    let own: Vec<String> = parse_cri_log(&std::fs::read_to_string(&own_log).unwrap())
        .into_iter()
        .map(|r| r.message)
        .collect();
    assert_eq!(own, vec!["pid 1", "0"]);
    // A volume on a file system that cannot be idmapped (sysfs) is refused up front, naming
    // the mount, instead of being chowned or shared unmapped.
    let mut sysfs = busybox_config("sysfs-volume", &["true"], false);
    sysfs.mounts = vec![Mount {
        container_path: "/host-sys".into(),
        host_path: "/sys/kernel".into(),
        readonly: true,
        ..Default::default()
    }];
    let err = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(sysfs),
            sandbox_config: Some(pod.clone()),
        })
        .await
        .expect_err("a sysfs volume in a userns pod was accepted");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("/host-sys"), "{err}");

    stop_and_remove_pod(&mut rt, &pod_id).await;
    assert!(
        mounts_under(env.daemon.dir.path())
            .iter()
            .all(|m| !m.contains("/ns/user")),
        "the user namespace pin is left mounted"
    );
}
