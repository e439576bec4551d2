//! Pod sandbox tests: a daemon with a private CNI network (its own bridge, subnet, host-local
//! lease folder and conf dir, all inside the test's temp dir), probes of the kernel state a pod
//! leaves (mounts, processes, cgroups, leases, iptables rules, veths), and a clean-up that
//! runs even when a test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient;
use ferrocri::cri::v1::*;
use tonic::transport::Channel;

use super::Daemon;

pub const CNI_BIN: &str = "/usr/lib/cni";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The plugin chain a test's network configuration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// bridge + host-local, then portmap with `snat: true` and the portMappings capability.
    Standard,
    /// bridge, then a script plugin whose ADD fails with `code 7, "boom from test"`.
    FailSecond,
    /// bridge, then a script plugin whose ADD sleeps 5 s before passing prevResult on.
    SlowSecond,
}

/// Script plugin names (in the test's own bin dir, searched before /usr/lib/cni).
pub const FAIL_PLUGIN: &str = "fcpt-fail";
pub const SLOW_PLUGIN: &str = "fcpt-slow";

const FAIL_SCRIPT: &str = r#"#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
ADD)
    echo '{"cniVersion":"1.0.0","code":7,"msg":"boom from test"}'
    exit 1
    ;;
esac
exit 0
"#;

const SLOW_SCRIPT: &str = r#"#!/usr/bin/python3
import json, os, sys, time
command = os.environ.get("CNI_COMMAND", "")
conf = json.load(sys.stdin) if command in ("ADD", "CHECK", "DEL") else {}
if command == "ADD":
    time.sleep(5)
    print(json.dumps(conf["prevResult"]))
elif command == "VERSION":
    print('{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}')
sys.exit(0)
"#;

/// A daemon with a private CNI network. Dropping it removes every pod (through the daemon
/// first, then by force), the bridge, iptables rules, mounts, cgroups and processes.
pub struct PodEnv {
    pub daemon: Daemon,
    /// Bridge and network name, `fcpt<4 hex>`.
    pub bridge: String,
    /// The /24 of this test, e.g. 10.235.17.0.
    pub subnet: Ipv4Addr,
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// host-local's `dataDir`.
    pub ipam_dir: PathBuf,
    /// Every sandbox ID this test saw; the forced clean-up removes what is left of them.
    ids: Mutex<BTreeSet<String>>,
}

impl PodEnv {
    /// Starts a daemon with its own network. `slot` (0..=9) picks the second octet of the
    /// subnet (10.230+slot.x.0/24), so tests running at the same time never share a subnet.
    pub fn start(slot: u8, chain: Chain) -> PodEnv {
        assert!(slot <= 9, "slot {slot} out of range");
        let dir = tempfile::tempdir().expect("tempdir");
        let (bridge, subnet) = pick_network(slot);
        let conf_dir = dir.path().join("net.d");
        let bin_dir = dir.path().join("cni-bin");
        let ipam_dir = dir.path().join("ipam");
        for d in [&conf_dir, &bin_dir, &ipam_dir] {
            std::fs::create_dir_all(d).unwrap();
        }
        for (name, text) in [(FAIL_PLUGIN, FAIL_SCRIPT), (SLOW_PLUGIN, SLOW_SCRIPT)] {
            let path = bin_dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let extra = format!(
            "[cni]\nconf_dir = \"{}\"\nbin_dirs = [\"{}\", \"{CNI_BIN}\"]\n",
            conf_dir.display(),
            bin_dir.display()
        );
        // The clean-up guard exists before the daemon can create anything.
        let mut env = PodEnv {
            daemon: Daemon::prepare(dir, &extra),
            bridge,
            subnet,
            conf_dir,
            bin_dir,
            ipam_dir,
            ids: Mutex::new(BTreeSet::new()),
        };
        env.write_chain(chain);
        env.daemon.restart();
        env
    }

    /// (Re)writes the one configuration file of the conf dir.
    pub fn write_chain(&self, chain: Chain) {
        let bridge = serde_json::json!({
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": format!("{}/24", self.subnet)}]],
                "dataDir": self.ipam_dir,
            },
        });
        let portmap = serde_json::json!({
            "type": "portmap",
            "snat": true,
            "capabilities": {"portMappings": true},
        });
        let plugins = match chain {
            Chain::Standard => vec![bridge, portmap],
            Chain::FailSecond => vec![bridge, serde_json::json!({"type": FAIL_PLUGIN})],
            Chain::SlowSecond => vec![bridge, serde_json::json!({"type": SLOW_PLUGIN})],
        };
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.bridge,
            "plugins": plugins,
        });
        let tmp = self.conf_dir.join(".10-test.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&conf).unwrap()).unwrap();
        std::fs::rename(&tmp, self.conf_dir.join("10-test.conflist")).unwrap();
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        self.daemon.runtime().await
    }

    pub fn state_dir(&self) -> PathBuf {
        self.daemon.state()
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.daemon.state().join("pods")
    }

    /// Where host-local keeps this network's leases (one file per address).
    pub fn lease_dir(&self) -> PathBuf {
        self.ipam_dir.join(&self.bridge)
    }

    /// The addresses host-local has leased.
    pub fn leased_ips(&self) -> Vec<IpAddr> {
        std::fs::read_dir(self.lease_dir())
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn in_subnet(&self, ip: &str) -> bool {
        match ip.parse::<Ipv4Addr>() {
            Ok(ip) => ip.octets()[..3] == self.subnet.octets()[..3],
            Err(_) => false,
        }
    }

    /// Remembers an ID for the forced clean-up.
    pub fn note(&self, id: &str) {
        self.ids.lock().unwrap().insert(id.to_owned());
    }

    /// Names of entries under `<state>/pods`.
    pub fn pod_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.pods_dir())
            .map(|e| {
                e.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Entries of the daemon's CNI result cache.
    pub fn cni_cache_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.daemon.root().join("cni").join("results"))
            .map(|e| {
                e.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Everything a set of removed pods could have left behind, as a list of findings.
    pub async fn leftovers(&self, ids: &[String]) -> Vec<String> {
        let mut found = Vec::new();
        if self.daemon.running() {
            let listed = self
                .runtime()
                .await
                .list_pod_sandbox(ListPodSandboxRequest { filter: None })
                .await
                .map(|r| r.into_inner().items)
                .unwrap_or_default();
            for pod in listed {
                found.push(format!(
                    "sandbox still listed: {} ({:?})",
                    pod.id, pod.state
                ));
            }
        }
        found.extend(self.kernel_leftovers(ids));
        if let Some(daemon) = self.daemon.child.as_ref().map(|c| c.id() as i32) {
            // A monitor that just exited may wait a moment for the daemon to reap it.
            eventually(Duration::from_secs(5), || {
                zombie_children(daemon).is_empty()
            })
            .await;
            for (pid, comm) in zombie_children(daemon) {
                found.push(format!("unreaped child of the daemon: {pid} ({comm})"));
            }
        }
        found
    }

    /// [`PodEnv::leftovers`] without asking the daemon.
    pub fn kernel_leftovers(&self, ids: &[String]) -> Vec<String> {
        let mut found = Vec::new();
        let dir = self.daemon.dir.path();
        for mount in mounts_under(dir) {
            found.push(format!("mount left: {mount}"));
        }
        // Pod processes by cgroup, and anything else started from the test folder (CNI
        // plugins).
        let exclude = self.daemon.child.as_ref().map(|c| c.id() as i32);
        let mut procs: BTreeMap<i32, String> = self.pod_processes(ids).into_iter().collect();
        procs.extend(processes_mentioning(&dir.to_string_lossy(), exclude));
        for (pid, cmd) in procs {
            found.push(format!("process left: {pid} {cmd}"));
        }
        for dir in self.pod_dirs() {
            found.push(format!("pod dir left: {dir}"));
        }
        for ip in self.leased_ips() {
            found.push(format!("lease left: {ip}"));
        }
        for entry in self.cni_cache_entries() {
            found.push(format!("CNI cache entry left: {entry}"));
        }
        for id in ids {
            for dir in cgroup_dirs(&format!("/ferrocri/{id}")) {
                found.push(format!("cgroup left: {}", dir.display()));
            }
        }
        for line in iptables_lines_mentioning(ids) {
            found.push(format!("iptables rule left: {line}"));
        }
        for veth in veths_on(&self.bridge) {
            found.push(format!("veth left on {}: {veth}", self.bridge));
        }
        found
    }

    /// Live processes of this daemon's pods: those in the cgroup of any pod it made (`ids`,
    /// the pods noted, in the pod folder or named in the log), plus any whose command line
    /// names the state folder (a monitor before it joins its cgroup and renames itself).
    /// Monitors and pauses rename themselves, so the cgroup is what finds them.
    pub fn pod_processes(&self, ids: &[String]) -> Vec<(i32, String)> {
        let mut all: BTreeSet<String> = self.ids.lock().unwrap().clone();
        all.extend(ids.iter().cloned());
        all.extend(self.pod_dirs().into_iter().filter(|d| is_id(d)));
        all.extend(ids_in(&self.daemon.log()));
        let exclude = self.daemon.child.as_ref().map(|c| c.id() as i32);
        let mut found: BTreeMap<i32, String> = BTreeMap::new();
        for id in &all {
            found.extend(processes_in_cgroup(&format!("/ferrocri/{id}")));
        }
        found.extend(processes_mentioning(
            &self.state_dir().to_string_lossy(),
            exclude,
        ));
        found
            .into_iter()
            .filter(|(pid, _)| Some(*pid) != exclude)
            .collect()
    }

    /// Asserts [`PodEnv::leftovers`] finds nothing.
    pub async fn assert_clean(&self, ids: &[String]) {
        let found = self.leftovers(ids).await;
        assert!(
            found.is_empty(),
            "left behind:\n  {}\ndaemon log tail:\n{}",
            found.join("\n  "),
            log_tail(&self.daemon.log(), 60)
        );
    }

    /// Removes what a failed test may have left: through the daemon first (its own clean-up),
    /// then by force.
    fn sweep(&mut self) {
        let dir = self.daemon.dir.path().to_owned();
        // FERROCRI_TEST_LOGS=<folder> keeps each daemon's log for a look afterwards.
        if let Some(keep) = std::env::var_os("FERROCRI_TEST_LOGS") {
            let name = format!("{}-{}.log", self.bridge, std::process::id());
            let _ = std::fs::create_dir_all(&keep);
            let _ = std::fs::copy(dir.join("daemon.log"), Path::new(&keep).join(name));
        }
        let mut ids: BTreeSet<String> = self.ids.lock().unwrap().clone();
        ids.extend(self.pod_dirs().into_iter().filter(|d| is_id(d)));
        ids.extend(ids_in(&self.daemon.log()));
        if self.daemon.running() {
            let socket = self.daemon.socket.clone();
            let graceful = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(60), async {
                        let mut rt = RuntimeServiceClient::new(super::connect(&socket).await);
                        let pods = rt
                            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
                            .await
                            .map(|r| r.into_inner().items)
                            .unwrap_or_default();
                        for pod in pods {
                            let _ = rt
                                .remove_pod_sandbox(RemovePodSandboxRequest {
                                    pod_sandbox_id: pod.id,
                                })
                                .await;
                        }
                    })
                    .await;
                });
            });
            let _ = graceful.join();
        }
        if let Some(child) = self.daemon.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
            self.daemon.child = None;
        }
        force_clean(&dir, &ids, &self.bridge);
    }
}

impl Drop for PodEnv {
    fn drop(&mut self) {
        self.sweep();
    }
}

/// Kills processes, unmounts, removes cgroups, iptables rules and the bridge; never panics.
fn force_clean(dir: &Path, ids: &BTreeSet<String>, bridge: &str) {
    let needle = dir.to_string_lossy().into_owned();
    for _ in 0..20 {
        let procs = processes_mentioning(&needle, None);
        if procs.is_empty() {
            break;
        }
        for (pid, _) in procs {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in ids {
        let cg = format!("/ferrocri/{id}");
        for d in cgroup_dirs(&cg) {
            if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
    for _ in 0..20 {
        let mut mounts = mounts_under(dir);
        if mounts.is_empty() {
            break;
        }
        // Deepest first.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
    for id in ids {
        let cg = format!("/ferrocri/{id}");
        for _ in 0..50 {
            let dirs = cgroup_dirs(&cg);
            if dirs.is_empty() {
                break;
            }
            for d in dirs {
                let _ = std::fs::remove_dir(d);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let ids: Vec<String> = ids.iter().cloned().collect();
    remove_iptables_rules(&ids);
    let _ = Command::new("ip")
        .args(["link", "del", bridge])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Deletes the rules that mention any of `ids`, and the per-pod chains they jump to.
fn remove_iptables_rules(ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    for table in ["nat", "filter", "mangle"] {
        let Ok(out) = Command::new("iptables-save").args(["-t", table]).output() else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut chains = BTreeSet::new();
        let mut commands = Vec::new();
        for line in text.lines() {
            if !ids.iter().any(|id| line.contains(id.as_str())) {
                continue;
            }
            if let Some(rule) = line.strip_prefix("-A ") {
                commands.push(format!("-D {rule}"));
                if let Some(target) = line.split(" -j ").nth(1) {
                    let target = target.split_whitespace().next().unwrap_or("");
                    if target.starts_with("CNI-") && !target.starts_with("CNI-HOSTPORT-") {
                        chains.insert(target.to_owned());
                    }
                }
            }
        }
        for chain in chains {
            commands.push(format!("-F {chain}"));
            commands.push(format!("-X {chain}"));
        }
        for command in commands {
            let script = format!("*{table}\n{command}\nCOMMIT\n");
            if let Ok(mut child) = Command::new("iptables-restore")
                .arg("--noflush")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
            {
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(script.as_bytes());
                }
                let _ = child.wait();
            }
        }
    }
}

/// A bridge name no link has, and a 10.230+slot.x.0/24 no route or address uses.
fn pick_network(slot: u8) -> (String, Ipv4Addr) {
    let routes = command_output("ip", &["-4", "route", "show", "table", "all"])
        + &command_output("ip", &["-4", "-o", "addr"]);
    let links = command_output("ip", &["-o", "link"]);
    let bridge = loop {
        let name = format!("fcpt{:04x}", rand::random::<u16>());
        if !links.contains(&format!(" {name}:")) && !links.contains(&format!(" {name}@")) {
            break name;
        }
    };
    let second = 230 + slot;
    let subnet = loop {
        let third = rand::random::<u8>();
        let prefix = format!("10.{second}.{third}.");
        if !routes.contains(&prefix) {
            break Ipv4Addr::new(10, second, third, 0);
        }
    };
    (bridge, subnet)
}

/// StopPodSandbox then RemovePodSandbox, each expected to succeed.
pub async fn stop_and_remove_pod(rt: &mut RuntimeServiceClient<Channel>, pod_id: &str) {
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod_id.to_owned(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod_id.to_owned(),
    })
    .await
    .expect("RemovePodSandbox");
}

pub fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Runs a command and returns its trimmed stdout; panics with its stderr when it fails.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Mount points at or below `dir` in /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_mountinfo))
        .filter(|mp| mp == &prefix || mp.starts_with(&format!("{prefix}/")))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
pub fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let digit = |b: u8| u32::from(b - b'0');
            let v = digit(bytes[i + 1]) * 64 + digit(bytes[i + 2]) * 8 + digit(bytes[i + 3]);
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Live processes (not zombies, not this one, not `exclude`) whose command line contains
/// `needle`.
pub fn processes_mentioning(needle: &str, exclude: Option<i32>) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me || Some(pid) == exclude {
            continue;
        }
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(needle) && !process_gone(pid) {
            found.push((pid, cmd.trim().to_owned()));
        }
    }
    found
}

/// Live processes (not zombies, not this one) in the cgroup `cgroup` (e.g. `/ferrocri/<id>`)
/// or below it, in any hierarchy, with their command lines.
pub fn processes_in_cgroup(cgroup: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let below = format!("{}/", cgroup.trim_end_matches('/'));
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        // Lines are `hierarchy:controllers:path`.
        let inside = cgroups.lines().any(|line| {
            line.splitn(3, ':')
                .nth(2)
                .is_some_and(|path| path == cgroup || path.starts_with(&below))
        });
        if inside && pid != me && !process_gone(pid) {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            found.push((pid, cmd.trim().to_owned()));
        }
    }
    found
}

/// Whether `pid` has exited: no /proc entry, or a zombie waiting for its parent.
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // The state follows the ")" that ends the command name.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim().chars().next());
            matches!(state, Some('Z') | Some('X') | None)
        }
    }
}

/// Children of `parent` that exited and were never waited for.
pub fn zombie_children(parent: i32) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
        if state == Some("Z") && ppid == Some(parent) {
            let name = head.split_once('(').map(|(_, n)| n).unwrap_or_default();
            found.push((pid, name.to_owned()));
        }
    }
    found
}

/// The arguments in /proc/PID/cmdline (NUL-separated; empty ones, the padding of a
/// rewritten command line, left out).
pub fn cmdline_words(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The (device, inode) of a namespace file (a pin or /proc/<pid>/ns/<kind>).
pub fn ns_id(path: impl AsRef<Path>) -> (u64, u64) {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (meta.dev(), meta.ino())
}

/// The directories of a cgroup path (e.g. `/ferrocri/<id>`) in every mounted hierarchy.
pub fn cgroup_dirs(cgroup: &str) -> Vec<PathBuf> {
    let relative = cgroup.trim_start_matches('/');
    let Ok(entries) = std::fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|h| h.is_dir() && !relative.is_empty())
        .map(|h| h.join(relative))
        .filter(|d| d.is_dir())
        .collect();
    // A pure cgroup v2 host: the root itself is the hierarchy.
    let direct = Path::new(CGROUP_ROOT).join(relative);
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() && direct.is_dir() {
        dirs.push(direct);
    }
    dirs
}

/// The memory hierarchy's directory of a cgroup (or the unified one on v2).
pub fn memory_cgroup_dir(cgroup: &str) -> PathBuf {
    let relative = cgroup.trim_start_matches('/');
    let v1 = Path::new(CGROUP_ROOT).join("memory");
    if v1.join("memory.usage_in_bytes").exists() {
        v1.join(relative)
    } else {
        Path::new(CGROUP_ROOT).join(relative)
    }
}

/// Rule lines of iptables-save (nat, filter, mangle) that mention any of `ids`.
pub fn iptables_lines_mentioning(ids: &[String]) -> Vec<String> {
    if ids.is_empty() {
        return Vec::new();
    }
    let mut found = Vec::new();
    for table in ["nat", "filter", "mangle"] {
        let out = run_ok("iptables-save", &["-t", table]);
        found.extend(
            out.lines()
                .filter(|l| ids.iter().any(|id| l.contains(id.as_str())))
                .map(|l| format!("[{table}] {l}")),
        );
    }
    found
}

/// Names of every veth on the host.
pub fn all_veths() -> BTreeSet<String> {
    parse_link_names(&command_output(
        "ip",
        &["-o", "link", "show", "type", "veth"],
    ))
}

/// Names of the veths enslaved to `bridge`.
pub fn veths_on(bridge: &str) -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge, "type", "veth"])
        .stderr(std::process::Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    parse_link_names(&out)
}

/// Whether a veth's `ip -o link` line says it is enslaved to `bridge`.
pub fn veth_master(name: &str) -> Option<String> {
    let out = command_output("ip", &["-o", "link", "show", "dev", name]);
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "master" {
            return words.next().map(str::to_owned);
        }
    }
    None
}

fn parse_link_names(out: &str) -> BTreeSet<String> {
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect()
}

pub fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every 64-hex-digit word in a text (the IDs a daemon log mentions).
pub fn ids_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| is_id(w))
        .map(str::to_owned)
        .collect()
}

pub fn log_tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A TCP port nothing listens on at the moment.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET /` over HTTP/1.0 to 127.0.0.1:`port`; the status code and body.
pub fn http_get(port: u16) -> std::io::Result<(u16, String)> {
    http_get_from(SocketAddr::from(([127, 0, 0, 1], port)))
}

pub fn http_get_from(addr: SocketAddr) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// Polls `check` until it holds, at most `limit`; false if it never did.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What PodSandboxStatus's verbose "info" says.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub netns: Option<PathBuf>,
    pub network: String,
    pub ip: String,
    pub cgroup: String,
    pub monitor_pid: i32,
    pub pid: i32,
    pub dir: PathBuf,
    pub raw: serde_json::Value,
}

impl PodInfo {
    pub fn parse(info: &std::collections::HashMap<String, String>) -> PodInfo {
        let text = info.get("info").expect("verbose status has \"info\"");
        let raw: serde_json::Value = serde_json::from_str(text).expect("info is JSON");
        let s = |k: &str| raw[k].as_str().unwrap_or_default().to_owned();
        PodInfo {
            netns: raw["netns"].as_str().map(PathBuf::from),
            network: s("network"),
            ip: s("ip"),
            cgroup: s("cgroup"),
            monitor_pid: raw["monitorPid"].as_i64().unwrap_or_default() as i32,
            pid: raw["pid"].as_i64().unwrap_or_default() as i32,
            dir: PathBuf::from(s("dir")),
            raw,
        }
    }
}

/// PodSandboxStatus with verbose info.
pub async fn status(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> (PodSandboxStatus, PodInfo) {
    let resp = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        })
        .await
        .unwrap_or_else(|e| panic!("PodSandboxStatus {id}: {e}"))
        .into_inner();
    (resp.status.expect("status"), PodInfo::parse(&resp.info))
}

pub async fn list(
    rt: &mut RuntimeServiceClient<Channel>,
    filter: Option<PodSandboxFilter>,
) -> Vec<PodSandbox> {
    rt.list_pod_sandbox(ListPodSandboxRequest { filter })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
}

/// A minimal pod configuration.
pub fn pod_config(name: &str, namespace: &str, uid: &str, attempt: u32) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: namespace.into(),
            attempt,
        }),
        hostname: name.into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn run_request(config: PodSandboxConfig) -> RunPodSandboxRequest {
    RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Checks that a stopped pod holds nothing any more; returns the findings.
pub async fn stopped_pod_leftovers(env: &PodEnv, id: &str, info: &PodInfo) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(pin) = info.netns.as_ref().filter(|p| p.exists()) {
        found.push(format!("netns pin still exists: {}", pin.display()));
    }
    for m in mounts_under(&info.dir) {
        found.push(format!("mount left under the pod dir: {m}"));
    }
    if !info.ip.is_empty() && env.lease_dir().join(&info.ip).exists() {
        found.push(format!("lease of {} still exists", info.ip));
    }
    let pids = [("pause", info.pid), ("monitor", info.monitor_pid)];
    let all_gone = eventually(Duration::from_secs(10), || {
        pids.iter().all(|(_, p)| *p <= 0 || process_gone(*p))
    })
    .await;
    if !all_gone {
        for (what, pid) in pids {
            if !process_gone(pid) {
                found.push(format!("{what} process {pid} still runs ({})", comm(pid)));
            }
        }
    }
    let mut procs: BTreeMap<i32, String> = processes_in_cgroup(&info.cgroup).into_iter().collect();
    procs.extend(processes_mentioning(&info.dir.to_string_lossy(), None));
    for (pid, cmd) in procs {
        found.push(format!("process of the pod left: {pid} {cmd}"));
    }
    for dir in cgroup_dirs(&info.cgroup) {
        found.push(format!("cgroup left: {}", dir.display()));
    }
    for line in iptables_lines_mentioning(&[id.to_owned()]) {
        found.push(format!("iptables rule left: {line}"));
    }
    found
}

/// Counts of each item, for messages.
pub fn tally<T: Ord + Clone>(items: &[T]) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i.clone()).or_insert(0) += 1;
    }
    m
}
