//! The hardening suite (issue 11): a default container looked at from inside (ExecSync) and
//! from the host, compared rule by rule with what containerd 2.x + runc 1.x give a CRI
//! container. Each rule is one named test; a failure names the rule and says what differed.
//!
//! The reference, read in their sources: containerd `pkg/oci/spec.go` (capabilities, masked
//! and read-only paths, mounts), `internal/cri/server/container_create.go` and
//! `internal/cri/opts/spec_linux_opts.go` (what the CRI changes: no seccomp, no_new_privs
//! and masked paths unless asked, /sys/fs/cgroup read-only, privileged), runc
//! `libcontainer/specconv` (the device allowlist and nodes) and `libcontainer/rootfs_linux.go`
//! (/dev links, the cgroup v1 tmpfs with one directory per hierarchy). Where ferrocri is
//! stricter on purpose it says so next to the rule: masked paths apply when the CRI gives
//! none (kubelet always sends them), and the container has its own cgroup namespace on v1
//! too.
//!
//! One daemon, two pods (the default one and a privileged one), four containers, made once;
//! `libtest-mimic` runs the rules (this file has its own `main`) and the pods are removed
//! after the last one. Every rule runs on the host's cgroup layout (`v1::…` or `v2::…`) and,
//! on a hybrid host, again against a daemon that sees only the cgroup2 tree (`v2::…`).
//! Known differences are ignored tests (`-- --ignored`). `HARDENING_DUMP='<sh script>'`
//! prints the script's output in each container after the run, to look at a failure.
//! Runs as root with the local registry (hack/registry.sh) up, as the other integration
//! tests.

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use common::pods::{PodEnv, log_tail, ns_id, pod_config, unescape_mountinfo};
use ctr::*;
use ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient;
use ferrocri::cri::v1::*;
use libtest_mimic::{Arguments, Failed, Trial};

/// containerd's default capability set for a CRI container (`defaultUnixCaps`), by bit.
const DEFAULT_CAPS: &[(&str, u32)] = &[
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_RAW", 13),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_MKNOD", 27),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_SETFCAP", 31),
];

/// runc's `AllowedDevices` (libcontainer/specconv): what an unprivileged container's device
/// cgroup allows, as `devices.list` prints it.
const DEVICE_ALLOWLIST: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:8 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:5 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
];

/// containerd's default masked paths (`populateDefaultUnixSpec`, the list kubelet sends).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The memory limit the default container asks for; its cgroup view must show it.
const MEMORY_LIMIT: i64 = 100 * 1024 * 1024;

/// A global sysctl a container must not change (harmless if it did: the suite puts the old
/// value back).
const HOST_SYSCTL: &str = "/proc/sys/kernel/printk_ratelimit_burst";

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let host = Layout::detect();
    // Every rule on the host's layout; on a hybrid host also on a cgroup2-only view of it.
    let mut fixtures = vec![(host.name(), View::Host, Arc::new(OnceLock::new()))];
    if let Layout::V1 { hybrid: true, .. } = host {
        fixtures.push(("v2", View::Cgroup2Only, Arc::new(OnceLock::new())));
    }
    let rules = RULES.iter().map(|&(name, rule)| (name, rule, None));
    let gaps = KNOWN_GAPS
        .iter()
        .map(|&(name, rule, why)| (name, rule, Some(why)));
    let rules: Vec<(&str, Rule, Option<&str>)> = rules.chain(gaps).collect();
    let mut trials = Vec::new();
    for (label, view, fixture) in &fixtures {
        for &(name, rule, known_gap) in &rules {
            let (fixture, view) = (Arc::clone(fixture), *view);
            let name = format!("{label}::{name}");
            trials.push(
                Trial::test(name.clone(), move || {
                    let fx: &Fixture = fixture.get_or_init(|| Fixture::start(view));
                    let findings = rule(fx);
                    if findings.is_empty() {
                        return Ok(());
                    }
                    let gap = known_gap
                        .map(|w| format!(" (known gap: {w})"))
                        .unwrap_or_default();
                    Err(Failed::from(format!(
                        "rule {name} broken{gap}:\n  {}",
                        findings.join("\n  ")
                    )))
                })
                .with_ignored_flag(known_gap.is_some()),
            );
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    for (label, _, fixture) in fixtures {
        if let Ok(script) = std::env::var("HARDENING_DUMP")
            && let Some(fx) = fixture.get()
        {
            for ctr in [&fx.default, &fx.confined, &fx.privileged] {
                let out = fx.sh(ctr, &script);
                eprintln!("== {label} {}\n{}{}", ctr.name, out.stdout, out.stderr);
            }
        }
        // Every trial (and its clone of the Arc) is gone: remove the pods, then the daemon.
        if let Some(fixture) = Arc::into_inner(fixture).and_then(OnceLock::into_inner) {
            fixture.stop();
        }
    }
    conclusion.exit_code()
}

/// Where the daemon of a fixture runs.
#[derive(Debug, Clone, Copy)]
enum View {
    /// As the host is.
    Host,
    /// In a mount namespace whose only cgroup filesystem is the host's cgroup2 tree at
    /// /sys/fs/cgroup: to ferrocri a pure v2 host.
    Cgroup2Only,
}

type Rule = fn(&Fixture) -> Vec<String>;

const RULES: &[(&str, Rule)] = &[
    ("devices::cgroup_allowlist", devices_cgroup_allowlist),
    ("devices::mknod_then_open", devices_mknod_then_open),
    ("devices::dev_contents", devices_dev_contents),
    ("devices::standard_nodes_work", devices_standard_nodes_work),
    ("capabilities::default_set", capabilities_default_set),
    ("capabilities::non_root_user", capabilities_non_root_user),
    ("capabilities::no_new_privs_as_asked", no_new_privs_as_asked),
    ("capabilities::seccomp_as_asked", seccomp_as_asked),
    ("paths::masked", paths_masked),
    ("paths::read_only", paths_read_only),
    ("paths::sys_read_only", paths_sys_read_only),
    ("paths::host_sysctl_unchanged", paths_host_sysctl_unchanged),
    ("cgroupfs::own_cgroup_view", cgroupfs_own_cgroup_view),
    ("cgroupfs::read_only", cgroupfs_read_only),
    ("cgroupfs::cgroup_namespace", cgroupfs_cgroup_namespace),
    ("mounts::flags", mounts_flags),
    ("mounts::only_expected", mounts_only_expected),
    ("mounts::rootfs_propagation", mounts_rootfs_propagation),
    ("isolation::processes", isolation_processes),
    ("isolation::network", isolation_network),
    ("isolation::namespaces", isolation_namespaces),
    ("isolation::fds_and_cwd", isolation_fds_and_cwd),
    ("isolation::session_keyring", isolation_session_keyring),
    ("privileged::capabilities", privileged_capabilities),
    ("privileged::devices", privileged_devices),
    ("privileged::sys_and_cgroupfs_writable", privileged_writable),
    ("privileged::no_masked_or_read_only_paths", privileged_paths),
    ("privileged::own_dev_and_devpts", privileged_own_dev),
    ("devices::terminal_in_own_devpts", terminal_in_own_devpts),
];

/// Differences from containerd that are known and not fixed yet: ignored by default, run with
/// `cargo test --test hardening -- --ignored`.
const KNOWN_GAPS: &[(&str, Rule, &str)] = &[];

// ---------------------------------------------------------------------------------------
// The fixture: one daemon, a default pod and a privileged pod.

/// The cgroup layout of this host, which decides what /sys/fs/cgroup must show.
#[derive(Debug, Clone)]
enum Layout {
    /// v1 or hybrid: the base names of the v1 hierarchies (`memory`, `cpu,cpuacct`,
    /// `systemd`, …); `hybrid` when an (empty) cgroup2 is mounted next to them.
    V1 {
        hierarchies: Vec<String>,
        hybrid: bool,
    },
    /// v2; `root` is where the test (in the host's mount namespace) finds the tree.
    V2 { root: String },
}

impl Layout {
    fn name(&self) -> &'static str {
        match self {
            Layout::V1 { .. } => "v1",
            Layout::V2 { .. } => "v2",
        }
    }

    fn detect() -> Layout {
        let mounts = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
        if mounts
            .iter()
            .any(|m| m.mount_point == "/sys/fs/cgroup" && m.fstype == "cgroup2")
        {
            return Layout::V2 {
                root: "/sys/fs/cgroup".into(),
            };
        }
        let hierarchies = mounts
            .iter()
            .filter(|m| m.fstype == "cgroup")
            .filter_map(|m| m.mount_point.strip_prefix("/sys/fs/cgroup/"))
            .map(str::to_owned)
            .collect();
        let hybrid = mounts.iter().any(|m| m.fstype == "cgroup2");
        Layout::V1 {
            hierarchies,
            hybrid,
        }
    }
}

/// A running container of the fixture.
struct Ctr {
    name: &'static str,
    id: String,
    /// Its process on the host.
    pid: i32,
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    env: PodEnv,
    layout: Layout,
    /// The memory limit the default container asked for: none when the cgroup2 view has
    /// no memory controller (a hybrid host keeps it in v1).
    memory_limit: Option<i64>,
    pod: String,
    pod_pid: i32,
    privileged_pod: String,
    /// No security settings at all, as a bare CRI request (plus a memory limit).
    default: Ctr,
    /// seccomp RuntimeDefault, no_new_privs, a terminal.
    confined: Ctr,
    /// run_as_user 1000.
    nonroot: Ctr,
    /// privileged, in a privileged pod.
    privileged: Ctr,
}

/// What an ExecSync gave back.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Fixture {
    fn start(view: View) -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        // Before the daemon starts, so that it and its monitors inherit this keyring.
        plant_session_key();
        let (mut env, layout) = match view {
            View::Host => (start_env(2), Layout::detect()),
            View::Cgroup2Only => (
                start_env(1),
                Layout::V2 {
                    root: "/sys/fs/cgroup/unified".into(),
                },
            ),
        };
        if let View::Cgroup2Only = view {
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
        }
        let memory_limit = match &layout {
            Layout::V1 { .. } => Some(MEMORY_LIMIT),
            Layout::V2 { root } => std::fs::read_to_string(format!("{root}/cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .any(|c| c == "memory")
                .then_some(MEMORY_LIMIT),
        };
        let made = rt.block_on(make_pods(&env, memory_limit));
        Fixture {
            rt,
            env,
            layout,
            memory_limit,
            pod: made.pod,
            pod_pid: made.pod_info.pid,
            privileged_pod: made.privileged_pod,
            default: made.default,
            confined: made.confined,
            nonroot: made.nonroot,
            privileged: made.privileged,
        }
    }

    /// Removes both pods through the CRI, then lets the environment's guard sweep.
    fn stop(self) {
        let Fixture {
            rt,
            env,
            pod,
            privileged_pod,
            ..
        } = self;
        rt.block_on(async {
            let mut client = env.runtime().await;
            for id in [pod, privileged_pod] {
                let _ = client
                    .stop_pod_sandbox(StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await;
                let _ = client
                    .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await;
            }
        });
        drop(env);
        drop(rt);
    }

    /// Runs `script` with `sh -c` in `ctr` through ExecSync.
    fn sh(&self, ctr: &Ctr, script: &str) -> Out {
        self.rt.block_on(async {
            let mut client = self.env.runtime().await;
            let resp = exec(&mut client, &ctr.id, &["sh", "-c", script], 20)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "ExecSync in {}: {e}\n{}",
                        ctr.name,
                        log_tail(&self.env.daemon.log(), 30)
                    )
                });
            Out {
                code: resp.exit_code,
                stdout: String::from_utf8_lossy(&resp.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&resp.stderr).into_owned(),
            }
        })
    }

    /// `sh` that must succeed; its stdout.
    fn read(&self, ctr: &Ctr, script: &str) -> String {
        let out = self.sh(ctr, script);
        assert_eq!(
            out.code, 0,
            "`{script}` in {} exited {}: {}{}",
            ctr.name, out.code, out.stdout, out.stderr
        );
        out.stdout
    }

    fn mountinfo(&self, ctr: &Ctr) -> Vec<MountEntry> {
        parse_mountinfo(&self.read(ctr, "cat /proc/self/mountinfo"))
    }
}

/// What [`make_pods`] made.
struct Made {
    pod: String,
    pod_info: common::pods::PodInfo,
    privileged_pod: String,
    default: Ctr,
    confined: Ctr,
    nonroot: Ctr,
    privileged: Ctr,
}

/// The default pod with its three containers, and the privileged pod with its one.
async fn make_pods(env: &PodEnv, memory_limit: Option<i64>) -> Made {
    pull_busybox(env).await;
    let mut client = env.runtime().await;
    let pod_config = pod_config("hardening", "fchd-ns", "uid-hardening", 0);
    let pod = run_pod(env, &mut client, pod_config.clone()).await;
    let (_, pod_info) = common::pods::status(&mut client, &pod).await;

    let mut default = container("default", &["sleep", "3600"]);
    if let Some(limit) = memory_limit {
        linux(&mut default).resources = Some(LinuxContainerResources {
            memory_limit_in_bytes: limit,
            ..Default::default()
        });
    }
    // Its own process writes to its terminal once, for devices::standard_nodes_work.
    let mut confined = container(
        "confined",
        &[
            "sh",
            "-c",
            "if echo tty-check > /dev/tty; then echo ok; else echo failed; fi \
             > /tmp/tty-result 2>&1; exec sleep 3600",
        ],
    );
    confined.tty = true;
    let confined_security = security(&mut confined);
    confined_security.no_new_privs = true;
    confined_security.seccomp = Some(SecurityProfile {
        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
        localhost_ref: String::new(),
    });
    let mut nonroot = container("nonroot", &["sleep", "3600"]);
    security(&mut nonroot).run_as_user = Some(Int64Value { value: 1000 });

    let default = run_ctr(env, &mut client, &pod, &pod_config, "default", default).await;
    let confined = run_ctr(env, &mut client, &pod, &pod_config, "confined", confined).await;
    let nonroot = run_ctr(env, &mut client, &pod, &pod_config, "nonroot", nonroot).await;

    let mut privileged_pod_config = pod_config_privileged("hardening-priv", "uid-hardening-priv");
    privileged_pod_config.hostname = "hardening-priv".into();
    let privileged_pod = run_pod(env, &mut client, privileged_pod_config.clone()).await;
    let mut privileged = container("privileged", &["sleep", "3600"]);
    security(&mut privileged).privileged = true;
    let privileged = run_ctr(
        env,
        &mut client,
        &privileged_pod,
        &privileged_pod_config,
        "privileged",
        privileged,
    )
    .await;
    Made {
        pod,
        pod_info,
        privileged_pod,
        default,
        confined,
        nonroot,
        privileged,
    }
}

fn container(name: &'static str, args: &[&str]) -> ContainerConfig {
    let mut config = busybox_config(name, args, false);
    // As kubelet asks for a pod without shareProcessNamespace.
    security(&mut config).namespace_options = Some(NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    });
    config
}

fn linux(config: &mut ContainerConfig) -> &mut LinuxContainerConfig {
    config.linux.get_or_insert_with(Default::default)
}

fn security(config: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    linux(config)
        .security_context
        .get_or_insert_with(Default::default)
}

fn pod_config_privileged(name: &str, uid: &str) -> PodSandboxConfig {
    let mut config = pod_config(name, "fchd-ns", uid, 0);
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .privileged = true;
    config
}

async fn run_ctr(
    env: &PodEnv,
    client: &mut RuntimeServiceClient<tonic::transport::Channel>,
    pod: &str,
    pod_config: &PodSandboxConfig,
    name: &'static str,
    config: ContainerConfig,
) -> Ctr {
    let id = create(env, client, pod, pod_config, config).await;
    start(env, client, &id).await;
    let (_, info) = container_status(client, &id).await;
    let pid = info["pid"].as_i64().unwrap_or_default() as i32;
    assert!(pid > 0, "{name}: no pid in ContainerStatus info {info}");
    Ctr { name, id, pid }
}

// ---------------------------------------------------------------------------------------
// Parsing what the kernel shows.

#[derive(Debug, Clone)]
struct MountEntry {
    /// The filesystem's `major:minor` (one per superblock: tells instances apart).
    device: String,
    mount_point: String,
    /// Per-mount options (`rw,nosuid,…`).
    options: BTreeSet<String>,
    /// Optional fields (`shared:N`, `master:N`, …).
    optional: Vec<String>,
    fstype: String,
    /// Superblock options (`mode=755`, `size=…`).
    super_options: BTreeSet<String>,
}

fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            Some(MountEntry {
                device: (*fields.get(2)?).to_owned(),
                mount_point: unescape_mountinfo(fields.get(4)?),
                options: fields.get(5)?.split(',').map(str::to_owned).collect(),
                optional: fields[6..].iter().map(|s| (*s).to_owned()).collect(),
                fstype: (*right.first()?).to_owned(),
                super_options: right
                    .get(2)
                    .map(|o| o.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The last (topmost) mount at `path`.
fn mount_at<'a>(mounts: &'a [MountEntry], path: &str) -> Option<&'a MountEntry> {
    mounts.iter().rev().find(|m| m.mount_point == path)
}

/// The flags among ro/rw, nosuid, nodev, noexec that `entry` has, in a fixed order.
fn security_flags(entry: &MountEntry) -> String {
    ["ro", "rw", "nosuid", "nodev", "noexec"]
        .iter()
        .filter(|f| entry.options.contains(**f))
        .copied()
        .collect::<Vec<_>>()
        .join(",")
}

/// `Cap*`, `NoNewPrivs`, `Seccomp` lines of a /proc/<pid>/status text.
fn status_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.starts_with("Cap") || *k == "NoNewPrivs" || *k == "Seccomp")
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

fn default_caps_mask() -> String {
    let mask = DEFAULT_CAPS.iter().fold(0u64, |m, (_, bit)| m | (1 << bit));
    format!("{mask:016x}")
}

/// The capabilities in `got` and not in `want` (extra), and the other way (missing).
fn cap_difference(got: &str, want: &str) -> String {
    let parse = |hex: &str| u64::from_str_radix(hex, 16).unwrap_or_default();
    let (got, want) = (parse(got), parse(want));
    let name = |bit: u32| {
        DEFAULT_CAPS
            .iter()
            .find(|(_, b)| *b == bit)
            .map(|(n, _)| (*n).to_owned())
            .unwrap_or_else(|| format!("capability {bit}"))
    };
    let list = |mask: u64| -> Vec<String> {
        (0..64)
            .filter(|b| mask & (1u64 << b) != 0)
            .map(name)
            .collect()
    };
    format!(
        "extra {:?}, missing {:?}",
        list(got & !want),
        list(want & !got)
    )
}

fn host_status(pid: i32) -> BTreeMap<String, String> {
    status_fields(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default())
}

/// The cgroup of `pid` in the v1 hierarchy holding `controller` (or the v2 path with "").
fn host_cgroup_of(pid: i32, controller: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| path.to_owned())
    })
}

/// Paths of `list` this host has (a masked path the kernel lacks cannot be masked).
fn existing_on_host(list: &[&'static str]) -> Vec<&'static str> {
    list.iter()
        .copied()
        .filter(|p| Path::new(p).exists())
        .collect()
}

/// A host block device that is a real disk (not loop, ram or zram): `(name, major, minor)`.
fn host_disk() -> Option<(String, u32, u32)> {
    let entries = std::fs::read_dir("/sys/block").ok()?;
    let mut disks: Vec<(String, u32, u32)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if ["loop", "ram", "zram"].iter().any(|p| name.starts_with(p)) {
                return None;
            }
            let dev = std::fs::read_to_string(e.path().join("dev")).ok()?;
            let (major, minor) = dev.trim().split_once(':')?;
            Some((name, major.parse().ok()?, minor.parse().ok()?))
        })
        .collect();
    disks.sort();
    disks.into_iter().next()
}

/// How many BPF_CGROUP_DEVICE programs are attached to the cgroup2 directory `dir`
/// (BPF_PROG_QUERY, what `bpftool cgroup list` asks).
fn device_programs(dir: &str) -> std::io::Result<u32> {
    /// The BPF_PROG_QUERY member of `union bpf_attr`.
    #[repr(C)]
    #[derive(Default)]
    struct Query {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        _pad: u32,
        prog_attach_flags: u64,
    }
    const BPF_PROG_QUERY: libc::c_long = 16;
    const BPF_CGROUP_DEVICE: u32 = 6;
    let cgroup = std::fs::File::open(dir)?;
    let mut query = Query {
        target_fd: std::os::fd::AsRawFd::as_raw_fd(&cgroup) as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: bpf(BPF_PROG_QUERY) reads and writes `size_of::<Query>()` bytes of `query`,
    // which lives across the call; with no id buffer it only fills in the count.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut query as *mut Query,
            std::mem::size_of::<Query>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(query.prog_cnt)
}

// ---------------------------------------------------------------------------------------
// Devices.

fn devices_cgroup_allowlist(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    match &fx.layout {
        Layout::V1 { .. } => {
            for (ctr, want) in [
                (&fx.default, DEVICE_ALLOWLIST.to_vec()),
                (&fx.confined, DEVICE_ALLOWLIST.to_vec()),
            ] {
                let Some(cgroup) = host_cgroup_of(ctr.pid, "devices") else {
                    found.push(format!("{}: not in a devices cgroup", ctr.name));
                    continue;
                };
                let file = format!("/sys/fs/cgroup/devices{cgroup}/devices.list");
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let got: BTreeSet<&str> = text.lines().map(str::trim).collect();
                let want: BTreeSet<&str> = want.into_iter().collect();
                if got != want {
                    found.push(format!(
                        "{}: {file} is {:?}, runc's allowlist is {:?} (missing {:?}, extra {:?})",
                        ctr.name,
                        got,
                        want,
                        want.difference(&got).collect::<Vec<_>>(),
                        got.difference(&want).collect::<Vec<_>>()
                    ));
                }
            }
        }
        Layout::V2 { root } => {
            // v2 has no devices.list: a BPF_PROG_TYPE_CGROUP_DEVICE program carries the list
            // (its effect is what devices::mknod_then_open checks); here, that one is
            // attached to the container's cgroup.
            for ctr in [&fx.default, &fx.confined] {
                let Some(cgroup) = host_cgroup_of(ctr.pid, "") else {
                    found.push(format!("{}: no cgroup v2 path", ctr.name));
                    continue;
                };
                let dir = format!("{root}{cgroup}");
                match device_programs(&dir) {
                    Ok(0) => {
                        found.push(format!("{}: no device program attached to {dir}", ctr.name))
                    }
                    Ok(_) => {}
                    Err(e) => found.push(format!("{}: query {dir}: {e}", ctr.name)),
                }
            }
        }
    }
    found
}

/// For each node: mknod must succeed (`c *:* m`, `b *:* m`), then the open either fails with
/// EPERM (not allowed) or gets past the device cgroup (any other outcome).
fn devices_mknod_then_open(fx: &Fixture) -> Vec<String> {
    // (type major minor, how to open, allowed). Reads only: nothing is written to a device.
    let mut probes: Vec<(String, &str, bool)> = vec![
        ("c 1 1".into(), "<", false),   // /dev/mem
        ("c 1 11".into(), ">>", false), // /dev/kmsg: write-open needs no capability
        ("b 7 0".into(), "<", false),   // loop0
        ("b 8 0".into(), "<", false),   // sda
        ("c 1 3".into(), "<>", true),
        ("c 1 5".into(), "<>", true),
        ("c 1 7".into(), "<>", true),
        ("c 1 8".into(), "<>", true),
        ("c 1 9".into(), "<>", true),
        ("c 5 0".into(), "<>", true),
        ("c 5 2".into(), "<>", true),
        ("c 10 200".into(), "<>", true),
        ("c 136 0".into(), "<>", true),
    ];
    if let Some((_, major, minor)) = host_disk() {
        probes.push((format!("b {major} {minor}"), "<", false));
    }
    let mut script = String::new();
    for (i, (node, redirect, _)) in probes.iter().enumerate() {
        script.push_str(&format!(
            "n=/tmp/node{i}; rm -f $n; \
             if ! mknod $n {node} 2>/tmp/err; then echo \"{i}|mknod|$(cat /tmp/err)\"; \
             elif ( exec 3{redirect}$n ) 2>/tmp/err; then echo '{i}|open|ok'; \
             else echo \"{i}|open|$(cat /tmp/err)\"; fi; rm -f $n\n"
        ));
    }
    let mut found = Vec::new();
    for ctr in [&fx.default, &fx.confined] {
        let out = fx.sh(ctr, &script);
        let mut seen = BTreeSet::new();
        for line in out.stdout.lines() {
            let mut parts = line.splitn(3, '|');
            let (Some(i), Some(step), Some(result)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(i) = i.parse::<usize>() else { continue };
            seen.insert(i);
            let (node, _, allowed) = &probes[i];
            let eperm = result.contains("Operation not permitted");
            match (step, allowed) {
                ("mknod", _) => found.push(format!(
                    "{}: mknod {node} failed ({result}); `c *:* m` and `b *:* m` allow it",
                    ctr.name
                )),
                (_, true) if eperm => found.push(format!(
                    "{}: open of {node} is refused ({result}); runc allows it",
                    ctr.name
                )),
                (_, false) if !eperm => found.push(format!(
                    "{}: open of {node} got past the device cgroup ({result}); must fail with EPERM",
                    ctr.name
                )),
                _ => {}
            }
        }
        if seen.len() != probes.len() {
            found.push(format!(
                "{}: the probe script did not report every node: {}{}",
                ctr.name, out.stdout, out.stderr
            ));
        }
    }
    found
}

/// /dev holds exactly runc's nodes and links (plus the console of a terminal).
fn devices_dev_contents(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let nodes = [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ];
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    let dirs = ["pts", "shm", "mqueue"];
    for ctr in [&fx.default, &fx.confined] {
        // name|type|major|minor (hex)|mode|uid|gid, then link targets.
        let listing = fx.read(
            ctr,
            "cd /dev && for f in * .[!.]*; do [ -e \"$f\" ] || [ -L \"$f\" ] || continue; \
             if [ -L \"$f\" ]; then echo \"$f|link|$(readlink \"$f\")\"; \
             else stat -c '%n|%F|%t|%T|%a|%u|%g' \"$f\"; fi; done",
        );
        let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in listing.lines() {
            let mut parts = line.split('|');
            let name = parts.next().unwrap_or_default().to_owned();
            got.insert(name, parts.map(str::to_owned).collect());
        }
        let mut want: BTreeSet<String> = nodes.iter().map(|(n, _, _)| (*n).to_owned()).collect();
        want.extend(links.iter().map(|(n, _)| (*n).to_owned()));
        want.extend(dirs.iter().map(|d| (*d).to_owned()));
        if ctr.name == "confined" {
            want.insert("console".into());
        }
        let mut names: BTreeSet<String> = got.keys().cloned().collect();
        // runc links /dev/core to /proc/kcore only when the kernel has it; ferrocri always
        // does (a dangling link where it has not, harmless): required only with a kcore.
        if Path::new("/proc/kcore").exists() {
            want.insert("core".into());
        } else {
            names.remove("core");
        }
        if names != want {
            found.push(format!(
                "{}: /dev holds {:?}; expected {:?} (missing {:?}, extra {:?})",
                ctr.name,
                names,
                want,
                want.difference(&names).collect::<Vec<_>>(),
                names.difference(&want).collect::<Vec<_>>()
            ));
        }
        for (name, major, minor) in nodes {
            let want = vec![
                "character special file".to_owned(),
                format!("{major:x}"),
                format!("{minor:x}"),
                "666".into(),
                "0".into(),
                "0".into(),
            ];
            if got.get(name) != Some(&want) {
                found.push(format!(
                    "{}: /dev/{name} is {:?}; runc makes c {major}:{minor} 0666 root:root",
                    ctr.name,
                    got.get(name)
                ));
            }
        }
        let kcore = Path::new("/proc/kcore")
            .exists()
            .then_some(("core", "/proc/kcore"));
        for (name, target) in links.into_iter().chain(kcore) {
            let want = vec!["link".to_owned(), target.to_owned()];
            if got.get(name) != Some(&want) {
                found.push(format!(
                    "{}: /dev/{name} is {:?}; expected a link to {target}",
                    ctr.name,
                    got.get(name)
                ));
            }
        }
    }
    found
}

fn devices_standard_nodes_work(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let checks: &[(&str, &str)] = &[
        ("echo x > /dev/null && echo ok", "write /dev/null"),
        ("head -c 8 /dev/zero | wc -c", "read /dev/zero"),
        ("head -c 8 /dev/urandom | wc -c", "read /dev/urandom"),
        ("head -c 8 /dev/random | wc -c", "read /dev/random"),
        (
            "if echo x > /dev/full; then echo wrote; else echo refused; fi 2>&1",
            "write /dev/full",
        ),
        ("( exec 3<>/dev/ptmx ) && echo ok", "open /dev/ptmx"),
    ];
    let want = ["ok", "8", "8", "8", "No space left on device", "ok"];
    for ctr in [&fx.default, &fx.confined, &fx.nonroot] {
        for ((script, what), want) in checks.iter().zip(want) {
            let out = fx.sh(ctr, script);
            if !out.stdout.contains(want) && !out.stderr.contains(want) {
                found.push(format!(
                    "{}: {what}: expected {want:?}, got {:?} {:?}",
                    ctr.name, out.stdout, out.stderr
                ));
            }
        }
        // ExecSync has no terminal: /dev/tty must fail with ENXIO (no controlling
        // terminal), never EPERM (the device cgroup).
        let out = fx.sh(ctr, "( exec 3<>/dev/tty ) 2>&1; true");
        if out.stdout.contains("Operation not permitted") {
            found.push(format!(
                "{}: /dev/tty refused by the device cgroup: {}",
                ctr.name, out.stdout
            ));
        }
    }
    // The terminal container's own process wrote to /dev/tty at its start.
    let result = fx.sh(&fx.confined, "cat /tmp/tty-result").stdout;
    if result.trim() != "ok" {
        found.push(format!(
            "confined: its process could not write /dev/tty (its controlling terminal): {result:?}"
        ));
    }
    found
}

// ---------------------------------------------------------------------------------------
// Capabilities, no_new_privs, seccomp.

fn expect_status(
    found: &mut Vec<String>,
    who: &str,
    status: &BTreeMap<String, String>,
    want: &[(&str, &str)],
) {
    for (key, value) in want {
        let got = status.get(*key).map(String::as_str).unwrap_or("<missing>");
        if got != *value {
            let detail = if key.starts_with("Cap") {
                format!(" ({})", cap_difference(got, value))
            } else {
                String::new()
            };
            found.push(format!("{who}: {key} is {got}, expected {value}{detail}"));
        }
    }
}

fn capabilities_default_set(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let caps = default_caps_mask();
    let zero = "0000000000000000";
    let want = [
        ("CapInh", zero),
        ("CapPrm", caps.as_str()),
        ("CapEff", caps.as_str()),
        ("CapBnd", caps.as_str()),
        ("CapAmb", zero),
    ];
    for ctr in [&fx.default, &fx.confined] {
        let host = host_status(ctr.pid);
        expect_status(
            &mut found,
            &format!("{} (its process)", ctr.name),
            &host,
            &want,
        );
        let inside = status_fields(&fx.read(ctr, "cat /proc/self/status"));
        expect_status(
            &mut found,
            &format!("{} (an exec)", ctr.name),
            &inside,
            &want,
        );
    }
    found
}

/// A non-root process keeps the bounding set, and holds nothing after its exec (inheritable
/// and ambient are empty), as under runc.
fn capabilities_non_root_user(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let caps = default_caps_mask();
    let zero = "0000000000000000";
    let want = [
        ("CapInh", zero),
        ("CapPrm", zero),
        ("CapEff", zero),
        ("CapBnd", caps.as_str()),
        ("CapAmb", zero),
    ];
    let host = host_status(fx.nonroot.pid);
    expect_status(&mut found, "nonroot (its process)", &host, &want);
    let inside = status_fields(&fx.read(&fx.nonroot, "cat /proc/self/status"));
    expect_status(&mut found, "nonroot (an exec)", &inside, &want);
    let id = fx.read(&fx.nonroot, "id -u").trim().to_owned();
    if id != "1000" {
        found.push(format!("nonroot: runs as uid {id}, asked 1000"));
    }
    found
}

fn no_new_privs_as_asked(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    for (ctr, want) in [(&fx.default, "0"), (&fx.confined, "1"), (&fx.nonroot, "0")] {
        let host = host_status(ctr.pid);
        expect_status(&mut found, ctr.name, &host, &[("NoNewPrivs", want)]);
        let inside = status_fields(&fx.read(ctr, "cat /proc/self/status"));
        expect_status(
            &mut found,
            &format!("{} (an exec)", ctr.name),
            &inside,
            &[("NoNewPrivs", want)],
        );
    }
    found
}

/// No profile in the request is Unconfined (mode 0), as containerd does; RuntimeDefault is
/// a filter (mode 2) on the process and on every exec.
fn seccomp_as_asked(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    for (ctr, want) in [
        (&fx.default, "0"),
        (&fx.confined, "2"),
        (&fx.privileged, "0"),
    ] {
        let host = host_status(ctr.pid);
        expect_status(&mut found, ctr.name, &host, &[("Seccomp", want)]);
        let inside = status_fields(&fx.read(ctr, "cat /proc/self/status"));
        expect_status(
            &mut found,
            &format!("{} (an exec)", ctr.name),
            &inside,
            &[("Seccomp", want)],
        );
    }
    // The filter works: RuntimeDefault refuses a new user namespace (CAP_SYS_ADMIN only),
    // which the unconfined default container may make.
    let confined = fx
        .sh(&fx.confined, "unshare -U true 2>&1; echo rc=$?")
        .stdout;
    if !confined.contains("Operation not permitted") {
        found.push(format!(
            "confined: unshare of a user namespace under RuntimeDefault: {confined:?}"
        ));
    }
    let default = fx
        .sh(&fx.default, "unshare -U true 2>&1; echo rc=$?")
        .stdout;
    let userns_allowed = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .is_ok_and(|n| n.trim() != "0");
    if userns_allowed && !default.contains("rc=0") {
        found.push(format!(
            "default: unshare of a user namespace failed without a filter: {default:?}"
        ));
    }
    found
}

// ---------------------------------------------------------------------------------------
// Masked and read-only paths, /sys, host sysctls.

fn paths_masked(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let masked = existing_on_host(MASKED_PATHS);
    for ctr in [&fx.default, &fx.confined] {
        let mounts = fx.mountinfo(ctr);
        for path in &masked {
            if mount_at(&mounts, path).is_none() {
                found.push(format!(
                    "{}: {path} is not masked (no mount on it)",
                    ctr.name
                ));
                continue;
            }
            // A file reads empty (/dev/null over it); a directory is empty and read-only.
            let script = format!(
                "if [ -d {path} ]; then ls -A {path} | wc -l; \
                 ( : > {path}/probe ) 2>&1 | grep -o 'Read-only file system'; \
                 else head -c 64 {path} | wc -c; fi"
            );
            let out = fx.sh(ctr, &script).stdout;
            let mut lines = out.lines();
            if lines.next().map(str::trim) != Some("0") {
                found.push(format!("{}: masked {path} is not empty: {out:?}", ctr.name));
            }
            if Path::new(path).is_dir() && lines.next() != Some("Read-only file system") {
                found.push(format!(
                    "{}: the mask over {path} is writable: {out:?}",
                    ctr.name
                ));
            }
        }
    }
    found
}

fn paths_read_only(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let readonly = existing_on_host(READONLY_PATHS);
    for ctr in [&fx.default, &fx.confined] {
        let mounts = fx.mountinfo(ctr);
        for path in &readonly {
            match mount_at(&mounts, path) {
                None => found.push(format!("{}: {path} is not a mount", ctr.name)),
                Some(m) if !m.options.contains("ro") => found.push(format!(
                    "{}: {path} is mounted {}, expected ro",
                    ctr.name,
                    security_flags(m)
                )),
                _ => {}
            }
        }
        // Opening for writing fails at the mount (nothing is written even if it opened).
        for file in [
            "/proc/sysrq-trigger",
            "/proc/sys/kernel/printk_ratelimit_burst",
            "/proc/sys/vm/drop_caches",
            "/proc/sys/net/core/somaxconn",
        ] {
            if !Path::new(file).exists() {
                continue;
            }
            let out = fx.sh(ctr, &format!("( exec 3>>{file} ) 2>&1; echo rc=$?"));
            if !out.stdout.contains("Read-only file system") {
                found.push(format!(
                    "{}: opening {file} for writing did not fail with EROFS: {:?}",
                    ctr.name, out.stdout
                ));
            }
        }
    }
    found
}

fn paths_sys_read_only(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    for ctr in [&fx.default, &fx.confined] {
        let mounts = fx.mountinfo(ctr);
        match mount_at(&mounts, "/sys") {
            Some(m) if m.fstype == "sysfs" && security_flags(m) == "ro,nosuid,nodev,noexec" => {}
            other => found.push(format!(
                "{}: /sys is {:?}, expected sysfs ro,nosuid,nodev,noexec",
                ctr.name,
                other.map(|m| (&m.fstype, security_flags(m)))
            )),
        }
        for file in [
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "/sys/kernel/uevent_helper",
            "/sys/class/net/lo/mtu",
            "/sys/module/printk/parameters/time",
        ] {
            if !Path::new(file).exists() {
                continue;
            }
            let out = fx.sh(ctr, &format!("( exec 3>>{file} ) 2>&1; echo rc=$?"));
            if !out.stdout.contains("Read-only file system") {
                found.push(format!(
                    "{}: opening {file} for writing did not fail with EROFS: {:?}",
                    ctr.name, out.stdout
                ));
            }
        }
    }
    found
}

/// A real write to a global sysctl fails and the host's value stays (put back if not).
fn paths_host_sysctl_unchanged(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let before = std::fs::read_to_string(HOST_SYSCTL).unwrap_or_default();
    let new_value = before.trim().parse::<u64>().unwrap_or(10) + 7;
    for ctr in [&fx.default, &fx.nonroot] {
        let out = fx.sh(
            ctr,
            &format!("echo {new_value} > {HOST_SYSCTL} 2>&1; echo rc=$?"),
        );
        let after = std::fs::read_to_string(HOST_SYSCTL).unwrap_or_default();
        if after != before {
            let _ = std::fs::write(HOST_SYSCTL, &before);
            found.push(format!(
                "{}: wrote the host's {HOST_SYSCTL} ({} -> {}); put back",
                ctr.name,
                before.trim(),
                after.trim()
            ));
        }
        if out.stdout.contains("rc=0") {
            found.push(format!(
                "{}: the write to {HOST_SYSCTL} succeeded",
                ctr.name
            ));
        }
    }
    // The hostname is the pod's and a write to it does not reach the host.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let _ = fx.sh(
        &fx.default,
        "hostname hacked-by-container 2>/dev/null; true",
    );
    let after = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if after != host {
        found.push(format!(
            "default: changed the host's hostname to {}",
            after.trim()
        ));
        let _ = std::fs::write("/proc/sys/kernel/hostname", host.trim());
    }
    found
}

// ---------------------------------------------------------------------------------------
// /sys/fs/cgroup.

fn cgroupfs_own_cgroup_view(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let ctr = &fx.default;
    let mounts = fx.mountinfo(ctr);
    match &fx.layout {
        Layout::V1 { hierarchies, .. } => {
            match mount_at(&mounts, "/sys/fs/cgroup") {
                Some(m) if m.fstype == "tmpfs" => {
                    if !["nosuid", "nodev", "noexec"]
                        .iter()
                        .all(|f| m.options.contains(*f))
                    {
                        found.push(format!(
                            "/sys/fs/cgroup is tmpfs {}, expected nosuid,nodev,noexec",
                            security_flags(m)
                        ));
                    }
                }
                other => found.push(format!(
                    "/sys/fs/cgroup is {:?}, expected a tmpfs holding one directory per \
                     hierarchy (runc's v1 layout)",
                    other.map(|m| &m.fstype)
                )),
            }
            for h in hierarchies {
                let path = format!("/sys/fs/cgroup/{h}");
                match mount_at(&mounts, &path) {
                    Some(m) if m.fstype == "cgroup" => {}
                    other => found.push(format!(
                        "{path} is {:?}, expected the container's cgroup of that hierarchy",
                        other.map(|m| &m.fstype)
                    )),
                }
                // runc links each controller of a co-mounted hierarchy (cpu -> cpu,cpuacct).
                if h.contains(',') {
                    for part in h.split(',') {
                        let link = fx
                            .sh(ctr, &format!("readlink /sys/fs/cgroup/{part}"))
                            .stdout;
                        if link.trim() != h {
                            found.push(format!(
                                "/sys/fs/cgroup/{part} is not a link to {h}: {link:?}"
                            ));
                        }
                    }
                }
            }
            let memory_dir = hierarchies
                .iter()
                .find(|h| h.split(',').any(|c| c == "memory"))
                .map(|h| format!("/sys/fs/cgroup/{h}"))
                .unwrap_or_else(|| "/sys/fs/cgroup/memory".into());
            expect_cgroup_file(
                fx,
                &mut found,
                &format!("{memory_dir}/memory.limit_in_bytes"),
                &MEMORY_LIMIT.to_string(),
            );
            expect_own_cgroup(fx, &mut found, &memory_dir);
            // The host's cgroup of the container says the same.
            if let Some(cg) = host_cgroup_of(ctr.pid, "memory") {
                let host_file = format!("/sys/fs/cgroup/memory{cg}/memory.limit_in_bytes");
                let host = std::fs::read_to_string(&host_file).unwrap_or_default();
                if host.trim() != MEMORY_LIMIT.to_string() {
                    found.push(format!("host {host_file} is {host:?}"));
                }
            }
        }
        Layout::V2 { .. } => {
            match mount_at(&mounts, "/sys/fs/cgroup") {
                Some(m) if m.fstype == "cgroup2" => {}
                other => found.push(format!(
                    "/sys/fs/cgroup is {:?}, expected cgroup2",
                    other.map(|m| &m.fstype)
                )),
            }
            if let Some(limit) = fx.memory_limit {
                expect_cgroup_file(
                    fx,
                    &mut found,
                    "/sys/fs/cgroup/memory.max",
                    &limit.to_string(),
                );
            }
            expect_own_cgroup(fx, &mut found, "/sys/fs/cgroup");
        }
    }
    found
}

fn expect_cgroup_file(fx: &Fixture, found: &mut Vec<String>, file: &str, want: &str) {
    let out = fx.sh(&fx.default, &format!("cat {file}"));
    if out.stdout.trim() != want {
        found.push(format!(
            "{file} reads {:?} {:?}, expected {want} (the CRI memory limit)",
            out.stdout.trim(),
            out.stderr.trim()
        ));
    }
}

/// The cgroup shown at `dir` is the container's own: its processes are the container's (pid
/// 1 in its PID namespace), and the host's tree (ferrocri's cgroups) is not below it.
fn expect_own_cgroup(fx: &Fixture, found: &mut Vec<String>, dir: &str) {
    let out = fx.sh(&fx.default, &format!("cat {dir}/cgroup.procs"));
    let pids: Vec<&str> = out.stdout.lines().collect();
    // Pids of other namespaces read as 0.
    if !pids.contains(&"1") || pids.contains(&"0") {
        found.push(format!(
            "{dir}/cgroup.procs lists {pids:?}: not the container's own cgroup (its process \
             is 1) {:?}",
            out.stderr.trim()
        ));
    }
    let listing = fx.sh(&fx.default, &format!("ls {dir}")).stdout;
    if listing.split_whitespace().any(|e| e == "ferrocri") {
        found.push(format!("{dir} shows the host's tree: {listing:?}"));
    }
}

fn cgroupfs_read_only(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let ctr = &fx.default;
    let mounts = fx.mountinfo(ctr);
    let cgroup_mounts: Vec<&MountEntry> = mounts
        .iter()
        .filter(|m| {
            m.mount_point.starts_with("/sys/fs/cgroup/") || m.mount_point == "/sys/fs/cgroup"
        })
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect();
    if cgroup_mounts.is_empty() {
        found.push("no cgroup filesystem under /sys/fs/cgroup".into());
    }
    for m in cgroup_mounts {
        if security_flags(m) != "ro,nosuid,nodev,noexec" {
            found.push(format!(
                "{} is {}, expected ro,nosuid,nodev,noexec",
                m.mount_point,
                security_flags(m)
            ));
        }
    }
    // A write that would matter if it went through: the memory limit, or (a v2 view without
    // the memory controller) moving a process.
    let (file, value, dir) = match (&fx.layout, fx.memory_limit) {
        (Layout::V1 { .. }, _) => (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "1073741824",
            "/sys/fs/cgroup/memory",
        ),
        (Layout::V2 { .. }, Some(_)) => {
            ("/sys/fs/cgroup/memory.max", "1073741824", "/sys/fs/cgroup")
        }
        (Layout::V2 { .. }, None) => ("/sys/fs/cgroup/cgroup.procs", "0", "/sys/fs/cgroup"),
    };
    for (script, what) in [
        (format!("( echo {value} > {file} )"), "write its cgroup"),
        (format!("mkdir {dir}/escape"), "create a child cgroup"),
    ] {
        let out = fx.sh(ctr, &format!("{script} 2>&1; echo rc=$?"));
        if !out.stdout.contains("Read-only file system") {
            found.push(format!(
                "the container could {what} or failed otherwise than EROFS: {:?}",
                out.stdout
            ));
        }
    }
    // Whatever the view, the host's limit is still the one asked.
    if let Layout::V1 { .. } = fx.layout
        && let Some(cg) = host_cgroup_of(ctr.pid, "memory")
    {
        let host_file = format!("/sys/fs/cgroup/memory{cg}/memory.limit_in_bytes");
        let host = std::fs::read_to_string(&host_file).unwrap_or_default();
        if host.trim() != MEMORY_LIMIT.to_string() {
            found.push(format!("host {host_file} changed to {host:?}"));
        }
    }
    found
}

/// A cgroup namespace of its own, so /proc/self/cgroup shows `/` (containerd does this on v2;
/// ferrocri on v1 too).
fn cgroupfs_cgroup_namespace(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    for ctr in [&fx.default, &fx.confined] {
        let text = fx.read(ctr, "cat /proc/self/cgroup");
        for line in text.lines() {
            if !line.ends_with(":/") {
                found.push(format!("{}: /proc/self/cgroup shows {line:?}", ctr.name));
            }
        }
        let host = ns_id("/proc/self/ns/cgroup");
        if ns_id(format!("/proc/{}/ns/cgroup", ctr.pid)) == host {
            found.push(format!("{}: shares the host's cgroup namespace", ctr.name));
        }
    }
    found
}

// ---------------------------------------------------------------------------------------
// Mounts.

fn mounts_flags(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    // (mount point, fstype, ro/rw nosuid nodev noexec, superblock options that must be there)
    let want: &[(&str, &str, &str, &[&str])] = &[
        ("/proc", "proc", "rw,nosuid,nodev,noexec", &[]),
        ("/dev", "tmpfs", "rw,nosuid", &["mode=755", "size=65536k"]),
        (
            "/dev/pts",
            "devpts",
            "rw,nosuid,noexec",
            &["gid=5", "mode=620", "ptmxmode=666"],
        ),
        ("/dev/mqueue", "mqueue", "rw,nosuid,nodev,noexec", &[]),
        ("/dev/shm", "tmpfs", "rw,nosuid,nodev,noexec", &[]),
        ("/sys", "sysfs", "ro,nosuid,nodev,noexec", &[]),
    ];
    for ctr in [&fx.default, &fx.confined] {
        let mounts = fx.mountinfo(ctr);
        for (path, fstype, flags, super_options) in want {
            let Some(m) = mount_at(&mounts, path) else {
                found.push(format!("{}: nothing mounted on {path}", ctr.name));
                continue;
            };
            if m.fstype != *fstype || security_flags(m) != *flags {
                found.push(format!(
                    "{}: {path} is {} {}, expected {fstype} {flags}",
                    ctr.name,
                    m.fstype,
                    security_flags(m)
                ));
            }
            for o in *super_options {
                if !m.super_options.contains(*o) {
                    found.push(format!(
                        "{}: {path} lacks {o} (has {:?})",
                        ctr.name, m.super_options
                    ));
                }
            }
        }
        match mount_at(&mounts, "/") {
            Some(m) if m.fstype == "overlay" && m.options.contains("rw") => {}
            other => found.push(format!(
                "{}: / is {:?}, expected a rw overlay",
                ctr.name,
                other.map(|m| (&m.fstype, security_flags(m)))
            )),
        }
    }
    found
}

/// Nothing of the host is mounted in: the mount points are exactly the profile's.
fn mounts_only_expected(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let mut base: BTreeSet<String> = [
        "/",
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/mqueue",
        "/dev/shm",
        "/sys",
        "/sys/fs/cgroup",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    base.extend(
        existing_on_host(MASKED_PATHS)
            .iter()
            .map(|s| (*s).to_owned()),
    );
    base.extend(
        existing_on_host(READONLY_PATHS)
            .iter()
            .map(|s| (*s).to_owned()),
    );
    let mut optional = BTreeSet::new();
    if let Layout::V1 {
        hierarchies,
        hybrid,
    } = &fx.layout
    {
        base.extend(hierarchies.iter().map(|h| format!("/sys/fs/cgroup/{h}")));
        if *hybrid {
            optional.insert("/sys/fs/cgroup/unified".to_owned());
        }
    }
    for ctr in [&fx.default, &fx.confined] {
        let mut want = base.clone();
        if ctr.name == "confined" {
            want.insert("/dev/console".into());
        }
        let got: BTreeSet<String> = fx
            .mountinfo(ctr)
            .into_iter()
            .map(|m| m.mount_point)
            .collect();
        let extra: Vec<&String> = got
            .difference(&want)
            .filter(|p| !optional.contains(*p))
            .collect();
        let missing: Vec<&String> = want.difference(&got).collect();
        if !extra.is_empty() || !missing.is_empty() {
            found.push(format!(
                "{}: mount points differ from the profile: extra {extra:?}, missing {missing:?}",
                ctr.name
            ));
        }
    }
    found
}

/// The root is not shared with the host: nothing mounted in the container propagates out
/// (private here; runc's default is rslave, the CRI asks rshared only for Bidirectional
/// volumes).
fn mounts_rootfs_propagation(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    for ctr in [&fx.default, &fx.confined] {
        let mounts = fx.mountinfo(ctr);
        for m in &mounts {
            if m.optional.iter().any(|o| o.starts_with("shared:")) {
                found.push(format!(
                    "{}: {} is shared ({:?}): mounts would propagate to the host",
                    ctr.name, m.mount_point, m.optional
                ));
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------
// Isolation from the host.

/// Only the container's own processes are visible: none of the host's (the daemon, the pod's
/// monitor and pause, this test, kernel threads), and pid 1 is its command. (Other rules run
/// execs at the same time, so the list itself is not fixed.)
fn isolation_processes(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let comm = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let mut host_only: BTreeSet<String> =
        [fx.env.daemon.pid(), fx.pod_pid, std::process::id() as i32]
            .into_iter()
            .map(comm)
            .collect();
    host_only.extend(["kthreadd", "systemd", "init", "cargo"].map(str::to_owned));
    host_only.remove("");
    for ctr in [&fx.default, &fx.confined, &fx.nonroot] {
        let text = fx.read(
            ctr,
            "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(cat $p/comm 2>/dev/null)\"; done",
        );
        let visible: Vec<(&str, &str)> = text
            .lines()
            .map(|l| l.split_once(' ').unwrap_or((l, "")))
            .collect();
        for (pid, name) in &visible {
            if host_only.contains(*name) {
                found.push(format!(
                    "{}: sees the host's process {pid} {name}",
                    ctr.name
                ));
            }
        }
        if !visible.contains(&("1", "sleep")) {
            found.push(format!("{}: pid 1 is not its sleep: {visible:?}", ctr.name));
        }
        if visible.len() > 50 {
            found.push(format!("{}: sees {} processes", ctr.name, visible.len()));
        }
        let host = ns_id("/proc/self/ns/pid");
        if ns_id(format!("/proc/{}/ns/pid", ctr.pid)) == host {
            found.push(format!("{}: in the host's PID namespace", ctr.name));
        }
    }
    found
}

fn isolation_network(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    for ctr in [&fx.default, &fx.confined] {
        let text = fx.read(ctr, "cat /proc/net/dev");
        let names: BTreeSet<String> = text
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|n| n.trim().to_owned())
            .collect();
        let want: BTreeSet<String> = ["lo", "eth0"].iter().map(|s| (*s).to_owned()).collect();
        if names != want {
            found.push(format!(
                "{}: network interfaces {names:?}, expected only the pod's {want:?}",
                ctr.name
            ));
        }
        let mine = ns_id(format!("/proc/{}/ns/net", ctr.pid));
        if mine == ns_id("/proc/self/ns/net") {
            found.push(format!("{}: in the host's network namespace", ctr.name));
        }
        // The pod's: the pause's (the pin is in the daemon's mount namespace, which a
        // cgroup2-only view does not share with this test).
        if mine != ns_id(format!("/proc/{}/ns/net", fx.pod_pid)) {
            found.push(format!("{}: not in the pod's network namespace", ctr.name));
        }
    }
    found
}

fn isolation_namespaces(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    for ctr in [&fx.default, &fx.confined] {
        for kind in ["mnt", "uts", "ipc", "net", "pid"] {
            let mine = ns_id(format!("/proc/{}/ns/{kind}", ctr.pid));
            if mine == ns_id(format!("/proc/self/ns/{kind}")) {
                found.push(format!("{}: shares the host's {kind} namespace", ctr.name));
            }
        }
        // The pod's: IPC and UTS with the pause (CRI pod namespaces).
        for kind in ["uts", "ipc"] {
            let mine = ns_id(format!("/proc/{}/ns/{kind}", ctr.pid));
            if mine != ns_id(format!("/proc/{}/ns/{kind}", fx.pod_pid)) {
                found.push(format!("{}: not in the pod's {kind} namespace", ctr.name));
            }
        }
        let hostname = fx.read(ctr, "hostname");
        if hostname.trim() != "hardening" {
            found.push(format!(
                "{}: hostname {:?}, expected the pod's \"hardening\"",
                ctr.name,
                hostname.trim()
            ));
        }
    }
    found
}

/// No descriptor of the runtime reaches the container, and its process does not start in a
/// host directory (runc CVE-2024-21626).
fn isolation_fds_and_cwd(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    for ctr in [&fx.default, &fx.confined, &fx.nonroot] {
        let fds: BTreeSet<String> = std::fs::read_dir(format!("/proc/{}/fd", ctr.pid))
            .map(|e| {
                e.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let want: BTreeSet<String> = ["0", "1", "2"].iter().map(|s| (*s).to_owned()).collect();
        if fds != want {
            let targets: Vec<String> = fds
                .iter()
                .map(|fd| {
                    let target = std::fs::read_link(format!("/proc/{}/fd/{fd}", ctr.pid))
                        .unwrap_or_default();
                    format!("{fd} -> {}", target.display())
                })
                .collect();
            found.push(format!("{}: its process holds fds {targets:?}", ctr.name));
        }
        // An exec: the shell's own descriptors.
        let text = fx.read(ctr, "ls /proc/$$/fd");
        let exec_fds: BTreeSet<String> = text.split_whitespace().map(str::to_owned).collect();
        if !exec_fds.is_subset(
            &["0", "1", "2", "3", "10"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        ) {
            let detail = fx.sh(ctr, "ls -l /proc/$$/fd").stdout;
            found.push(format!("{}: an exec holds fds {detail}", ctr.name));
        }
        let cwd = fx.read(ctr, "readlink /proc/1/cwd; readlink /proc/1/root");
        if cwd.lines().collect::<Vec<_>>() != ["/", "/"] {
            found.push(format!(
                "{}: its process's cwd and root are {cwd:?}, expected / inside",
                ctr.name
            ));
        }
    }
    found
}

/// The description of the key [`plant_session_key`] adds.
const PLANTED_KEY: &str = "ferrocri-hardening-probe";

/// Gives this thread (and so the daemon it starts, and its monitors) a session keyring of
/// its own holding a key that only its possessors may see: a container that still holds the
/// runtime's session keyring lists it in /proc/keys.
fn plant_session_key() {
    let name = std::ffi::CString::new("ferrocri-hardening-host").unwrap();
    let description = std::ffi::CString::new(PLANTED_KEY).unwrap();
    let user = std::ffi::CString::new("user").unwrap();
    let payload = b"secret of the runtime";
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, name) reads a NUL-terminated string that
    // lives across the call; it only changes this thread's credentials.
    let ring = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_JOIN_SESSION_KEYRING,
            name.as_ptr(),
        )
    };
    assert!(
        ring > 0,
        "join a session keyring: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: add_key reads two NUL-terminated strings and `payload.len()` bytes, all alive
    // across the call.
    let key = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            user.as_ptr(),
            description.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            libc::KEY_SPEC_SESSION_KEYRING,
        )
    };
    assert!(key > 0, "add_key: {}", std::io::Error::last_os_error());
    // Possessor permissions only (view, read, write, search, link, setattr).
    // SAFETY: keyctl(KEYCTL_SETPERM, serial, perm) takes integers only.
    let set = unsafe { libc::syscall(libc::SYS_keyctl, libc::KEYCTL_SETPERM, key, 0x3f00_0000u32) };
    assert_eq!(set, 0, "setperm: {}", std::io::Error::last_os_error());
    // The probe works: this thread possesses the key, so its /proc/keys lists it.
    let keys = std::fs::read_to_string("/proc/keys").unwrap_or_default();
    assert!(
        keys.contains(PLANTED_KEY),
        "{PLANTED_KEY} not listed: {keys}"
    );
}

/// Each container has a session keyring of its own (runc joins `_ses.<container id>`), not
/// the runtime's: keyrings are not namespaced, and a container without a seccomp profile
/// may read and link any key it possesses.
fn isolation_session_keyring(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    // /proc/keys is masked elsewhere: the privileged container shows what the executor
    // leaves to every container, for its process and for an exec.
    let keys = fx.read(&fx.privileged, "cat /proc/keys");
    if keys.contains(PLANTED_KEY) {
        found.push(format!(
            "privileged (an exec): possesses the runtime's session keyring (sees {PLANTED_KEY})"
        ));
    }
    // The exec joined its container's keyring, not a new one of the same name.
    let own = format!("_ses.{}", fx.privileged.id);
    if keys.matches(&own).count() != 1 {
        found.push(format!(
            "privileged (an exec): {} keyrings named {own}: {keys}",
            keys.matches(&own).count()
        ));
    }
    // Keyrings owned by root are listed to any root process: one per container.
    let host_keys = std::fs::read_to_string("/proc/keys").unwrap_or_default();
    for ctr in [&fx.default, &fx.confined, &fx.nonroot, &fx.privileged] {
        let ring = format!("_ses.{}", ctr.id);
        if !host_keys.contains(&ring) {
            found.push(format!(
                "{}: no session keyring {ring} of its own",
                ctr.name
            ));
        }
    }
    found
}

// ---------------------------------------------------------------------------------------
// The privileged container: what containerd gives one.

fn privileged_capabilities(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    // Every capability the runtime holds (containerd: WithAllCurrentCapabilities).
    let daemon = host_status(fx.env.daemon.pid());
    let all = daemon.get("CapEff").cloned().unwrap_or_default();
    let zero = "0000000000000000";
    let want = [
        ("CapInh", zero),
        ("CapPrm", all.as_str()),
        ("CapEff", all.as_str()),
        ("CapBnd", all.as_str()),
        ("CapAmb", zero),
        ("NoNewPrivs", "0"),
        ("Seccomp", "0"),
    ];
    expect_status(
        &mut found,
        "privileged (its process)",
        &host_status(fx.privileged.pid),
        &want,
    );
    let inside = status_fields(&fx.read(&fx.privileged, "cat /proc/self/status"));
    expect_status(&mut found, "privileged (an exec)", &inside, &want);
    found
}

fn privileged_devices(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let ctr = &fx.privileged;
    if let Layout::V1 { .. } = fx.layout {
        match host_cgroup_of(ctr.pid, "devices") {
            Some(cg) => {
                let file = format!("/sys/fs/cgroup/devices{cg}/devices.list");
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                if text.trim() != "a *:* rwm" {
                    found.push(format!("{file} is {text:?}, expected \"a *:* rwm\""));
                }
            }
            None => found.push("not in a devices cgroup".into()),
        }
    }
    // The host's device nodes are there, the same devices.
    let listing = fx.read(
        ctr,
        "for f in /dev/*; do [ -b \"$f\" ] || [ -c \"$f\" ] || continue; \
         stat -c '%n %t:%T' \"$f\"; done",
    );
    let inside: BTreeSet<String> = listing.lines().map(str::to_owned).collect();
    for entry in std::fs::read_dir("/dev").into_iter().flatten().flatten() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let Ok(meta) = entry.metadata() else { continue };
        let kind = meta.file_type();
        if !kind.is_char_device() && !kind.is_block_device() {
            continue;
        }
        // /dev/console and /dev/ptmx are the container's own (its terminal, its devpts).
        let name = entry.file_name().to_string_lossy().into_owned();
        if ["console", "ptmx", "tty"].contains(&name.as_str()) {
            continue;
        }
        let rdev = meta.rdev();
        let line = format!(
            "/dev/{name} {:x}:{:x}",
            nix::sys::stat::major(rdev),
            nix::sys::stat::minor(rdev)
        );
        if !inside.contains(&line) {
            found.push(format!("the host's {line} is not in the container's /dev"));
        }
    }
    // A node the default allowlist refuses opens.
    let out = fx.sh(
        ctr,
        "rm -f /tmp/kmsg; mknod /tmp/kmsg c 1 11 && ( exec 3>>/tmp/kmsg ) 2>&1; echo rc=$?; rm -f /tmp/kmsg",
    );
    if !out.stdout.contains("rc=0") {
        found.push(format!(
            "opening a kmsg node (c 1:11) failed: {:?}",
            out.stdout
        ));
    }
    found
}

fn privileged_writable(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let ctr = &fx.privileged;
    let mounts = fx.mountinfo(ctr);
    match mount_at(&mounts, "/sys") {
        Some(m) if m.options.contains("rw") => {}
        other => found.push(format!(
            "/sys is {:?}, expected rw",
            other.map(security_flags)
        )),
    }
    let cgroup_mounts: Vec<&MountEntry> = mounts
        .iter()
        .filter(|m| m.mount_point.starts_with("/sys/fs/cgroup"))
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect();
    if cgroup_mounts.is_empty() {
        found.push("no cgroup filesystem under /sys/fs/cgroup".into());
    }
    for m in cgroup_mounts {
        if !m.options.contains("rw") {
            found.push(format!(
                "{} is {}, expected rw",
                m.mount_point,
                security_flags(m)
            ));
        }
    }
    for file in [
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/proc/sys/kernel/printk_ratelimit_burst",
    ] {
        if !Path::new(file).exists() {
            continue;
        }
        let out = fx.sh(ctr, &format!("( exec 3>>{file} ) 2>&1; echo rc=$?"));
        if !out.stdout.contains("rc=0") {
            found.push(format!("cannot open {file} for writing: {:?}", out.stdout));
        }
    }
    found
}

fn privileged_paths(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let mounts = fx.mountinfo(&fx.privileged);
    for path in MASKED_PATHS.iter().chain(READONLY_PATHS) {
        if let Some(m) = mount_at(&mounts, path) {
            found.push(format!(
                "{path} is masked or read-only ({} {}) in a privileged container",
                m.fstype,
                security_flags(m)
            ));
        }
    }
    if let Some(m) = mount_at(&mounts, "/proc")
        && !m.options.contains("rw")
    {
        found.push(format!("/proc is {}", security_flags(m)));
    }
    // /proc/keys and /sys/firmware show the kernel's, not an empty mask.
    if Path::new("/sys/firmware").is_dir() {
        let n = fx.read(&fx.privileged, "ls -A /sys/firmware | wc -l");
        let host = std::fs::read_dir("/sys/firmware")
            .map(|e| e.count())
            .unwrap_or(0);
        if n.trim() != host.to_string() {
            found.push(format!(
                "/sys/firmware lists {} entries, the host's {host}",
                n.trim()
            ));
        }
    }
    found
}

/// containerd gives a privileged container a tmpfs /dev holding nodes of the host's devices
/// and a devpts of its own, with the same mounts and links as any container; what it does in
/// /dev does not reach the host's.
fn privileged_own_dev(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let ctr = &fx.privileged;
    let mounts = fx.mountinfo(ctr);
    let want: &[(&str, &str, &str, &[&str])] = &[
        ("/dev", "tmpfs", "rw,nosuid", &["mode=755"]),
        (
            "/dev/pts",
            "devpts",
            "rw,nosuid,noexec",
            &["gid=5", "mode=620", "ptmxmode=666"],
        ),
        ("/dev/mqueue", "mqueue", "rw,nosuid,nodev,noexec", &[]),
        ("/dev/shm", "tmpfs", "rw,nosuid,nodev,noexec", &[]),
    ];
    for (path, fstype, flags, super_options) in want {
        match mount_at(&mounts, path) {
            Some(m)
                if m.fstype == *fstype
                    && security_flags(m) == *flags
                    && super_options.iter().all(|o| m.super_options.contains(*o)) => {}
            other => found.push(format!(
                "{path} is {:?}, expected {fstype} {flags} {super_options:?}",
                other.map(|m| (&m.fstype, security_flags(m), &m.super_options))
            )),
        }
    }
    let host = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    for path in ["/dev", "/dev/pts"] {
        let host_fs = mount_at(&host, path).map(|m| m.device.clone());
        if mount_at(&mounts, path).map(|m| &m.device) == host_fs.as_ref() {
            found.push(format!("{path} is the host's filesystem {host_fs:?}"));
        }
    }
    let links = fx.read(
        ctr,
        "for l in ptmx fd stdin stdout stderr; do echo \"$l $(readlink /dev/$l)\"; done",
    );
    let want_links = "ptmx pts/ptmx\nfd /proc/self/fd\nstdin /proc/self/fd/0\n\
                      stdout /proc/self/fd/1\nstderr /proc/self/fd/2\n";
    if links != want_links {
        found.push(format!("/dev links are {links:?}, expected {want_links:?}"));
    }
    let probe = "/dev/ferrocri-hardening-probe";
    let out = fx.sh(ctr, &format!("touch {probe} && echo made; rm -f {probe}"));
    if !out.stdout.contains("made") {
        found.push(format!("cannot create {probe}: {}", out.stderr));
    }
    let out = fx.sh(ctr, &format!("touch {probe}"));
    if Path::new(probe).exists() {
        let _ = std::fs::remove_file(probe);
        found.push(format!(
            "{probe}, made in the container, is in the host's /dev"
        ));
    } else if out.code == 0 {
        fx.sh(ctr, &format!("rm -f {probe}"));
    }
    found
}

/// runc makes a terminal container's pty in the container's own devpts: its /dev/pts/0 is
/// the process's terminal (ttyname works), /dev/console is bound from it, and the host's
/// devpts does not hold it.
fn terminal_in_own_devpts(fx: &Fixture) -> Vec<String> {
    let mut found = Vec::new();
    let out = fx.read(
        &fx.confined,
        "stat -L -c %d /proc/1/fd/0; stat -c %d /dev/pts/ptmx; readlink /proc/1/fd/0; \
         stat -c %t:%T /dev/console /dev/pts/0; ls /dev/pts",
    );
    let lines: Vec<&str> = out.lines().collect();
    if lines.len() < 5 || lines[0] != lines[1] || lines[2] != "/dev/pts/0" || lines[3] != lines[4] {
        found.push(format!(
            "confined: its terminal is not /dev/pts/0 of its own devpts (fs {:?} vs {:?}, \
             it reads as {:?}; console and pts/0 are {:?} {:?}); /dev/pts holds {:?}",
            lines.first(),
            lines.get(1),
            lines.get(2),
            lines.get(3),
            lines.get(4),
            &lines[5.min(lines.len())..]
        ));
    }
    // From the host: the terminal on the process's fd 0 is not on the host's devpts.
    use std::os::unix::fs::MetadataExt;
    let host_devpts = std::fs::metadata("/dev/pts/ptmx").map(|m| m.dev());
    let terminal = std::fs::metadata(format!("/proc/{}/fd/0", fx.confined.pid)).map(|m| m.dev());
    match (host_devpts, terminal) {
        (Ok(host), Ok(terminal)) if host != terminal => {}
        other => found.push(format!(
            "confined: its terminal's filesystem vs the host's devpts: {other:?}"
        )),
    }
    found
}
