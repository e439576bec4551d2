//! Device allowlist and the container's own cgroup view, through the real daemon, as root,
//! with busybox from the local test registry: what a process inside a default, a
//! privileged and a device-granted container can open, what it sees at /sys/fs/cgroup and in
//! /proc/self/cgroup, and the rules as the host's cgroupfs holds them.

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::path::{Path, PathBuf};

use common::pods::*;
use ctr::*;
use ferrocri::cri::v1::*;

type RuntimeServiceClient =
    ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

/// One test at a time (they share the slot's network and compare host state).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: i64 = 1 << 20;

/// runc's default allowlist in the kernel's `devices.list` syntax (sorted as strings).
const DEFAULT_LIST: [&str; 11] = [
    "b *:* m",
    "c *:* m",
    "c 10:200 rwm",
    "c 136:* rwm",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
];

/// The container's directory in the v1 devices hierarchy (None on other hosts).
fn devices_dir(container_id: &str) -> Option<PathBuf> {
    let dir = Path::new("/sys/fs/cgroup/devices");
    dir.join("devices.list")
        .exists()
        .then(|| dir.join("ferrocri").join(container_id))
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

fn v1_host() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

/// The character devices under `dir` (the kernel's /dev/cpu: `<n>/cpuid`), as
/// (relative path, major, minor), sorted.
fn char_nodes_under(dir: &Path) -> Vec<(String, u64, u64)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.file_type().is_char_device() {
                let rel = entry
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .display()
                    .to_string();
                let rdev = meta.rdev();
                found.push((rel, libc::major(rdev) as u64, libc::minor(rdev) as u64));
            }
        }
    }
    found.sort();
    found
}

async fn new_container(
    env: &PodEnv,
    rt: &mut RuntimeServiceClient,
    pod_id: &str,
    pod: &PodSandboxConfig,
    config: ContainerConfig,
) -> String {
    let id = create(env, rt, pod_id, pod, config).await;
    start(env, rt, &id).await;
    id
}

#[tokio::test]
async fn a_default_container_gets_runcs_device_list_and_its_own_read_only_cgroups() {
    let _serial = SERIAL.lock().await;
    let env = start_env(1);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let pod = pod_with_logs(&env, "iso", "uid-iso");
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;

    let mut config = busybox_config("plain", &["sleep", "3600"], false);
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 96 * MIB,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = new_container(&env, &mut rt, &pod_id, &pod, config).await;

    // Devices: mknod is allowed, opening what the list does not name is not.
    let (code, out) = sh(&mut rt, &id, "mknod /tmp/mem c 1 1 && head -c1 /tmp/mem").await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    let (code, out) = sh(&mut rt, &id, "mknod /tmp/disk b 7 0 && head -c1 /tmp/disk").await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    let (code, out) = sh(
        &mut rt,
        &id,
        "echo x >/dev/null && head -c4 /dev/zero | wc -c && head -c4 /dev/urandom | wc -c \
         && head -c4 /dev/random | wc -c && (echo x >/dev/full; true)",
    )
    .await;
    assert_eq!(
        (code, out.split_whitespace().take(3).collect::<Vec<_>>()),
        (0, vec!["4"; 3]),
        "{out}"
    );

    // The host's view of the same rules.
    if let Some(dir) = devices_dir(&id) {
        assert_eq!(sorted_lines(&dir.join("devices.list")), DEFAULT_LIST);
        let pod_dir = dir.parent().unwrap().join(&pod_id);
        assert_eq!(
            sorted_lines(&pod_dir.join("devices.list")),
            DEFAULT_LIST,
            "the pod cgroup"
        );
    }

    // Its own cgroup namespace: every line of /proc/self/cgroup is the root.
    let (code, out) = sh(&mut rt, &id, "cat /proc/self/cgroup").await;
    assert_eq!(code, 0, "{out}");
    assert!(!out.trim().is_empty());
    for line in out.lines() {
        assert!(line.ends_with(":/"), "{line}\n{out}");
    }

    // /sys/fs/cgroup: read-only, the container's own limits where the JVM reads them.
    let (code, out) = sh(&mut rt, &id, "grep ' /sys/fs/cgroup' /proc/self/mounts").await;
    assert_eq!(code, 0, "{out}");
    for line in out.lines() {
        let options = line.split(' ').nth(3).unwrap_or_default();
        let flags: Vec<&str> = options.split(',').collect();
        for flag in ["ro", "nosuid", "nodev", "noexec"] {
            assert!(flags.contains(&flag), "{flag} missing: {line}");
        }
    }
    let (code, out) = sh(
        &mut rt,
        &id,
        "mkdir /sys/fs/cgroup/x || touch /sys/fs/cgroup/x",
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    if v1_host() {
        let (code, out) = sh(
            &mut rt,
            &id,
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us \
             /sys/fs/cgroup/cpu/cpu.cfs_period_us",
        )
        .await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            [(96 * MIB).to_string().as_str(), "50000", "100000"],
        );
        let (code, out) = sh(
            &mut rt,
            &id,
            "echo 1 > /sys/fs/cgroup/memory/memory.limit_in_bytes; mkdir /sys/fs/cgroup/memory/x",
        )
        .await;
        assert_ne!(code, 0, "{out}");
        assert_eq!(out.matches("Read-only file system").count(), 2, "{out}");
        // Every host hierarchy under its host name, and nothing of the host's tree.
        let (_, listing) = sh(&mut rt, &id, "ls /sys/fs/cgroup").await;
        let host: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let mut inside: Vec<&str> = listing.split_whitespace().collect();
        inside.sort();
        let mut host: Vec<&str> = host.iter().map(String::as_str).collect();
        host.sort();
        assert_eq!(inside, host);
        let (code, out) = sh(&mut rt, &id, "ls /sys/fs/cgroup/memory | grep -c ferrocri").await;
        assert_eq!((code, out.trim()), (1, "0"), "the host's tree shows: {out}");
    } else {
        let (code, out) = sh(&mut rt, &id, "cat /sys/fs/cgroup/memory.max").await;
        assert_eq!((code, out.trim()), (0, (96 * MIB).to_string().as_str()));
    }

    // An update changes the limits the container sees, never its device rules.
    rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: 128 * MIB,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("UpdateContainerResources");
    if v1_host() {
        let (_, out) = sh(
            &mut rt,
            &id,
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        )
        .await;
        assert_eq!(out.trim(), (128 * MIB).to_string());
    }
    if let Some(dir) = devices_dir(&id) {
        assert_eq!(sorted_lines(&dir.join("devices.list")), DEFAULT_LIST);
    }
    let (code, out) = sh(&mut rt, &id, "mknod /tmp/mem2 c 1 1 && head -c1 /tmp/mem2").await;
    assert!(
        code != 0 && out.contains("Operation not permitted"),
        "{out}"
    );

    // A CRI device with "r": it can be read, not written.
    let mut config = busybox_config("granted", &["sleep", "3600"], false);
    config.devices = vec![Device {
        container_path: "/dev/xloop".into(),
        host_path: "/dev/loop0".into(),
        permissions: "r".into(),
    }];
    let granted = new_container(&env, &mut rt, &pod_id, &pod, config).await;
    let (code, out) = sh(&mut rt, &granted, "head -c1 /dev/xloop | wc -c").await;
    assert_eq!((code, out.trim()), (0, "0"), "{out}");
    let (code, out) = sh(&mut rt, &granted, "echo x > /dev/xloop").await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    if let Some(dir) = devices_dir(&granted) {
        let list = sorted_lines(&dir.join("devices.list"));
        assert!(list.contains(&"b 7:0 r".to_owned()), "{list:?}");
        assert_eq!(list.len(), DEFAULT_LIST.len() + 1, "{list:?}");
    }

    // A CRI device that is a directory stands for every node under it (containerd expands
    // it so): the kernel's per-CPU cpuid nodes, each at its place below container_path, each
    // with the permissions asked for; /dev/net without a container path keeps its own.
    let cpu_nodes = char_nodes_under(Path::new("/dev/cpu"));
    let mut config = busybox_config("dir-granted", &["sleep", "3600"], false);
    config.devices = vec![Device {
        container_path: String::new(),
        host_path: "/dev/net".into(),
        permissions: "rwm".into(),
    }];
    // (A host without the cpuid driver has no /dev/cpu.)
    if !cpu_nodes.is_empty() {
        config.devices.push(Device {
            container_path: "/dev/mycpu".into(),
            host_path: "/dev/cpu".into(),
            permissions: "r".into(),
        });
    }
    let dir_granted = new_container(&env, &mut rt, &pod_id, &pod, config).await;
    let (code, out) = sh(
        &mut rt,
        &dir_granted,
        "find /dev/mycpu /dev/net -type c 2>/dev/null | sort | while read f; do \
         echo \"$f $(stat -c %t:%T $f)\"; done",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let mut want: Vec<String> = cpu_nodes
        .iter()
        .map(|(rel, major, minor)| format!("/dev/mycpu/{rel} {major:x}:{minor:x}"))
        .collect();
    want.push("/dev/net/tun a:c8".into());
    want.sort();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    if let Some(dir) = devices_dir(&dir_granted) {
        let list = sorted_lines(&dir.join("devices.list"));
        for (_, major, minor) in &cpu_nodes {
            let rule = format!("c {major}:{minor} r");
            assert!(list.contains(&rule), "no {rule} in {list:?}");
        }
    }
    if let Some((rel, _, _)) = cpu_nodes.first() {
        // Read is allowed (the driver may still refuse a read at offset 0), write is not.
        let (_, out) = sh(
            &mut rt,
            &dir_granted,
            &format!(
                "( exec 3</dev/mycpu/{rel} ) 2>&1 && echo opened; ( exec 3>/dev/mycpu/{rel} ) 2>&1"
            ),
        )
        .await;
        assert!(out.starts_with("opened\n"), "{out}");
        assert!(out.contains("Operation not permitted"), "{out}");
    }

    // A permission string that is not rwm is refused, naming the field.
    let mut config = busybox_config("bad", &["true"], false);
    config.devices = vec![Device {
        container_path: "/dev/xloop".into(),
        host_path: "/dev/loop0".into(),
        permissions: "rx".into(),
    }];
    let err = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.clone()),
        })
        .await
        .expect_err("permissions rx");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("config.devices"), "{err:?}");

    // Exec sessions are in the same cgroup namespace.
    let (code, out) = sh(&mut rt, &granted, "cat /proc/self/cgroup | grep -vc ':/$'").await;
    assert_eq!((code, out.trim()), (1, "0"), "{out}");

    stop_and_remove_pod(&mut rt, &pod_id).await;
}

#[tokio::test]
async fn a_privileged_container_gets_every_device_and_writable_cgroups() {
    let _serial = SERIAL.lock().await;
    let env = start_env(2);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let mut pod = pod_with_logs(&env, "iso-priv", "uid-iso-priv");
    pod.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .privileged = true;
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    let mut config = busybox_config("priv", &["sleep", "3600"], false);
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 80 * MIB,
            ..Default::default()
        }),
    });
    let id = new_container(&env, &mut rt, &pod_id, &pod, config).await;

    // The open reaches the driver (this host may have no /dev/mem driver: ENXIO, not EPERM).
    let (_, out) = sh(&mut rt, &id, "mknod /tmp/mem c 1 1 && head -c1 /tmp/mem").await;
    assert!(!out.contains("Operation not permitted"), "{out}");
    let (code, out) = sh(
        &mut rt,
        &id,
        "mknod /tmp/disk b 7 0 && head -c1 /tmp/disk | wc -c",
    )
    .await;
    assert_eq!((code, out.trim()), (0, "0"), "{out}");
    if let Some(dir) = devices_dir(&id) {
        assert_eq!(sorted_lines(&dir.join("devices.list")), ["a *:* rwm"]);
    }

    // /sys/fs/cgroup is writable and is the container's own cgroup.
    let (code, out) = sh(&mut rt, &id, "grep ' /sys/fs/cgroup' /proc/self/mounts").await;
    assert_eq!(code, 0, "{out}");
    for line in out.lines() {
        let options = line.split(' ').nth(3).unwrap_or_default();
        assert!(options.split(',').any(|o| o == "rw"), "{line}");
    }
    if v1_host() {
        let (code, out) = sh(
            &mut rt,
            &id,
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes && mkdir /sys/fs/cgroup/memory/sub \
             && rmdir /sys/fs/cgroup/memory/sub && echo made",
        )
        .await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>(),
            [(80 * MIB).to_string().as_str(), "made"]
        );
        // Its own cgroup in every hierarchy (binds, in the host's cgroup namespace).
        let (_, out) = sh(&mut rt, &id, "ls /sys/fs/cgroup/*/ | grep -c ferrocri").await;
        assert_eq!(out.trim(), "0", "the host's tree shows: {out}");
    }

    stop_and_remove_pod(&mut rt, &pod_id).await;
}

/// The daemon in a mount namespace whose only cgroup filesystem is cgroup2 at
/// /sys/fs/cgroup: to ferrocri this host is pure v2 (the same kernel tree a hybrid host
/// mounts at /sys/fs/cgroup/unified), so devices go through the BPF program and the
/// container gets one cgroup2 mount.
#[tokio::test]
async fn on_a_cgroup2_only_view_the_device_program_and_the_cgroup2_mount_hold() {
    let _serial = SERIAL.lock().await;
    if !Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        eprintln!("skipped: no cgroup2 tree");
        return;
    }
    let mut env = start_env(3);
    env.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    env.daemon.wait(std::time::Duration::from_secs(30));
    let script = "set -e
        umount -l /sys/fs/cgroup
        mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
        exec \"$@\"";
    env.daemon.wrapper = ["unshare", "-m", "sh", "-c", script, "sh"]
        .map(str::to_owned)
        .to_vec();
    env.daemon.restart();
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;

    let pod = pod_with_logs(&env, "iso-v2", "uid-iso-v2");
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    let config = busybox_config("v2", &["sleep", "3600"], false);
    let id = new_container(&env, &mut rt, &pod_id, &pod, config).await;
    let (code, out) = sh(&mut rt, &id, "mknod /tmp/mem c 1 1 && head -c1 /tmp/mem").await;
    assert!(
        code != 0 && out.contains("Operation not permitted"),
        "{out}"
    );
    let (code, out) = sh(&mut rt, &id, "mknod /tmp/disk b 7 0 && head -c1 /tmp/disk").await;
    assert!(
        code != 0 && out.contains("Operation not permitted"),
        "{out}"
    );
    let (code, out) = sh(
        &mut rt,
        &id,
        "echo x >/dev/null && head -c4 /dev/zero | wc -c",
    )
    .await;
    assert_eq!((code, out.trim()), (0, "4"), "{out}");

    let (code, out) = sh(&mut rt, &id, "grep ' /sys/fs/cgroup ' /proc/self/mounts").await;
    assert_eq!(code, 0, "{out}");
    let fields: Vec<&str> = out.split(' ').collect();
    assert_eq!(fields[2], "cgroup2", "{out}");
    assert!(fields[3].split(',').any(|o| o == "ro"), "{out}");
    let (code, out) = sh(
        &mut rt,
        &id,
        "cat /sys/fs/cgroup/cgroup.procs | wc -l; ls /sys/fs/cgroup | grep -c ferrocri; \
         mkdir /sys/fs/cgroup/x",
    )
    .await;
    assert_ne!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0].trim(), "0", "the container's own processes: {out}");
    assert_eq!(lines[1].trim(), "0", "the host's tree shows: {out}");
    assert!(out.contains("Read-only file system"), "{out}");
    let (code, out) = sh(&mut rt, &id, "cat /proc/self/cgroup | grep -vc ':/$'").await;
    assert_eq!((code, out.trim()), (1, "0"), "{out}");

    // Privileged: every device.
    let mut privileged_pod = pod_with_logs(&env, "iso-v2p", "uid-iso-v2p");
    privileged_pod
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .privileged = true;
    let privileged_pod_id = run_pod(&env, &mut rt, privileged_pod.clone()).await;
    let mut config = busybox_config("v2p", &["sleep", "3600"], false);
    config.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let privileged =
        new_container(&env, &mut rt, &privileged_pod_id, &privileged_pod, config).await;
    let (code, out) = sh(
        &mut rt,
        &privileged,
        "mknod /tmp/disk b 7 0 && head -c1 /tmp/disk | wc -c",
    )
    .await;
    assert_eq!((code, out.trim()), (0, "0"), "{out}");

    for pod in [pod_id, privileged_pod_id] {
        stop_and_remove_pod(&mut rt, &pod).await;
    }
}
