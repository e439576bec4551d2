//! Preflight: what this host needs to run pods, checked one requirement at a time, each with
//! what to do when it is missing. `ferrocri check` prints the findings (and fails on a
//! failed one); the daemon logs the same findings when it starts.

use std::path::Path;

use crate::config::Config;
use crate::probes;

/// Linux 4.14 is the oldest kernel ferrocri knows to work (overlayfs, cgroup and seccomp as
/// the executor uses them); 5.12 brings mount_setattr.
const MIN_KERNEL: (u32, u32) = (4, 14);
const MOUNT_SETATTR_KERNEL: (u32, u32) = (5, 12);
/// Overlayfs accepts idmapped lower layers from Linux 5.19.
const IDMAPPED_OVERLAY_KERNEL: (u32, u32) = (5, 19);
/// Without these a pod's limits cannot be applied.
const REQUIRED_CONTROLLERS: &[&str] = &["cpu", "memory", "pids"];
/// Without these some limits and stats are missing.
const WANTED_CONTROLLERS: &[&str] = &["cpuset", "hugetlb"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// One requirement and how this host meets it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub requirement: &'static str,
    pub level: Level,
    pub detail: String,
    /// What to do about a warn or fail; empty for ok.
    pub fix: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<4} {}: {}",
            self.level.as_str(),
            self.requirement,
            self.detail
        )?;
        if !self.fix.is_empty() {
            write!(f, " (fix: {})", self.fix)?;
        }
        Ok(())
    }
}

fn ok(requirement: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        requirement,
        level: Level::Ok,
        detail: detail.into(),
        fix: String::new(),
    }
}

fn not_ok(
    level: Level,
    requirement: &'static str,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        requirement,
        level,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// Every check, in a fixed order. Nothing is changed on the host.
pub fn run(config: &Config) -> Vec<Finding> {
    let kernel = probes::kernel_version();
    let mut findings = vec![
        check_kernel(kernel),
        check_monitor_binary(),
        check_overlayfs(),
    ];
    findings.extend(check_cgroups());
    findings.push(check_cgroup_moves(
        kernel,
        &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
    ));
    findings.push(check_seccomp());
    findings.push(check_user_namespaces());
    findings.push(check_mount_setattr());
    findings.push(check_idmapped_mounts(kernel));
    findings.push(check_cni(config));
    findings.push(check_registry_config(&config.registry.config_dir));
    findings.push(check_writable("root_dir", &config.root_dir));
    findings.push(check_writable("state_dir", &config.state_dir));
    findings.push(check_socket(&config.socket));
    findings
}

/// Whether any finding is a failure.
pub fn failed(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.level == Level::Fail)
}

/// Logs the findings: ok ones at debug, warnings and failures so an operator sees them.
pub fn log(findings: &[Finding]) {
    for f in findings {
        match f.level {
            Level::Ok => {
                tracing::debug!(requirement = f.requirement, detail = %f.detail, "preflight ok")
            }
            Level::Warn => {
                tracing::warn!(requirement = f.requirement, detail = %f.detail, fix = %f.fix, "preflight warning")
            }
            Level::Fail => {
                tracing::error!(requirement = f.requirement, detail = %f.detail, fix = %f.fix, "preflight failure")
            }
        }
    }
}

fn at_least(version: (u32, u32, u32), min: (u32, u32)) -> bool {
    (version.0, version.1) >= min
}

fn check_kernel(kernel: Option<(u32, u32, u32)>) -> Finding {
    const NAME: &str = "kernel version";
    let Some(v) = kernel else {
        return not_ok(
            Level::Warn,
            NAME,
            "cannot read /proc/sys/kernel/osrelease",
            "mount /proc",
        );
    };
    let text = format!("{}.{}.{}", v.0, v.1, v.2);
    if !at_least(v, MIN_KERNEL) {
        not_ok(
            Level::Fail,
            NAME,
            format!("{text} is older than {}.{}", MIN_KERNEL.0, MIN_KERNEL.1),
            format!(
                "boot a kernel ≥ {}.{}",
                MOUNT_SETATTR_KERNEL.0, MOUNT_SETATTR_KERNEL.1
            ),
        )
    } else if !at_least(v, MOUNT_SETATTR_KERNEL) {
        not_ok(
            Level::Warn,
            NAME,
            format!("{text}: recursive read-only and idmapped mounts unavailable"),
            format!(
                "boot a kernel ≥ {}.{}",
                MOUNT_SETATTR_KERNEL.0, MOUNT_SETATTR_KERNEL.1
            ),
        )
    } else {
        ok(NAME, text)
    }
}

fn check_monitor_binary() -> Finding {
    const NAME: &str = "monitor binary";
    match crate::monitor::client::program() {
        Ok(path) if path.is_file() => ok(NAME, path.display().to_string()),
        Ok(path) => not_ok(
            Level::Fail,
            NAME,
            format!("{} is missing", path.display()),
            "install ferrocri-monitor beside ferrocri",
        ),
        Err(e) => not_ok(
            Level::Fail,
            NAME,
            format!("cannot find the daemon's executable: {e}"),
            "run ferrocri from its installed path",
        ),
    }
}

fn check_overlayfs() -> Finding {
    const NAME: &str = "overlayfs";
    if probes::filesystem_supported("overlay") {
        ok(NAME, "overlay in /proc/filesystems")
    } else {
        not_ok(
            Level::Fail,
            NAME,
            "overlay is not in /proc/filesystems: container root filesystems cannot be mounted",
            "modprobe overlay (and add it to /etc/modules-load.d/)",
        )
    }
}

fn check_cgroups() -> Vec<Finding> {
    const MODE: &str = "cgroup mode";
    const CONTROLLERS: &str = "cgroup controllers";
    let cgroups = match crate::cgroup::Cgroups::detect() {
        Ok(c) => c,
        Err(e) => {
            return vec![not_ok(
                Level::Fail,
                MODE,
                format!("no cgroup filesystem found: {e}"),
                "mount cgroup2 on /sys/fs/cgroup (or the v1 hierarchies)",
            )];
        }
    };
    let mode = match cgroups.layout() {
        crate::cgroup::Layout::Unified => "v2 (unified)",
        crate::cgroup::Layout::Hybrid => "v1 (hybrid: v1 controllers, cgroup2 mounted)",
        crate::cgroup::Layout::Legacy => "v1 (legacy)",
    };
    let available = cgroups.available_controllers();
    let missing = |list: &[&str]| -> Vec<String> {
        list.iter()
            .filter(|c| !available.iter().any(|a| a == *c))
            .map(|c| (*c).to_owned())
            .collect()
    };
    let (required, wanted) = (missing(REQUIRED_CONTROLLERS), missing(WANTED_CONTROLLERS));
    let controllers = if !required.is_empty() {
        not_ok(
            Level::Fail,
            CONTROLLERS,
            format!(
                "missing {}; have {}",
                required.join(", "),
                available.join(" ")
            ),
            "enable them (kernel config, or cgroup_enable=… on the kernel command line)",
        )
    } else if !wanted.is_empty() {
        not_ok(
            Level::Warn,
            CONTROLLERS,
            format!(
                "missing {}; have {}",
                wanted.join(", "),
                available.join(" ")
            ),
            "enable them for their limits and stats",
        )
    } else {
        ok(CONTROLLERS, available.join(" "))
    };
    vec![ok(MODE, mode), controllers]
}

/// Moving a process into a cgroup (every container create) takes the kernel's
/// cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period (about 10 ms
/// measured here, half of CreateContainer) unless a hierarchy is mounted with
/// `favordynmods` (Linux 6.0+; the lock is shared, so one hierarchy is enough).
fn check_cgroup_moves(kernel: Option<(u32, u32, u32)>, mountinfo: &str) -> Finding {
    const NAME: &str = "cgroup moves";
    let favoured = mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let mut fs = fs.split_whitespace();
        let fs_type = fs.next()?;
        let options = fs.nth(1)?;
        let mount_point = mount.split_whitespace().nth(4)?;
        (fs_type.starts_with("cgroup") && options.split(',').any(|o| o == "favordynmods"))
            .then(|| mount_point.to_owned())
    });
    match favoured {
        Some(at) => ok(NAME, format!("{at} is mounted with favordynmods")),
        None if !kernel.is_some_and(|k| at_least(k, (6, 0))) => {
            ok(NAME, "favordynmods needs Linux 6.0; moves wait for RCU")
        }
        None => not_ok(
            Level::Warn,
            NAME,
            "no cgroup hierarchy has favordynmods: each container create waits ~10 ms for an RCU grace period to move its process into its cgroup",
            "mount -o remount,favordynmods on the cgroup2 hierarchy (/sys/fs/cgroup, or /sys/fs/cgroup/unified when hybrid); forks and exits get slightly dearer",
        ),
    }
}

fn check_seccomp() -> Finding {
    const NAME: &str = "seccomp";
    if probes::seccomp_filter_supported() {
        ok(NAME, "filters supported")
    } else {
        not_ok(
            Level::Fail,
            NAME,
            "the kernel has no seccomp filters: RuntimeDefault profiles cannot be applied",
            "boot a kernel with CONFIG_SECCOMP_FILTER=y",
        )
    }
}

fn check_user_namespaces() -> Finding {
    const NAME: &str = "user namespaces";
    match probes::max_user_namespaces() {
        Some(n) if n > 0 => ok(NAME, format!("up to {n}")),
        Some(_) => not_ok(
            Level::Warn,
            NAME,
            "user.max_user_namespaces is 0: pods with user namespaces cannot run",
            "sysctl -w user.max_user_namespaces=65536",
        ),
        None => not_ok(
            Level::Warn,
            NAME,
            "the kernel has no user namespaces: pods with user namespaces cannot run",
            "boot a kernel with CONFIG_USER_NS=y",
        ),
    }
}

fn check_mount_setattr() -> Finding {
    const NAME: &str = "mount_setattr";
    if probes::mount_setattr_supported() {
        ok(NAME, "available")
    } else {
        not_ok(
            Level::Warn,
            NAME,
            "missing: recursive read-only mounts are refused",
            "boot a kernel ≥ 5.12",
        )
    }
}

fn check_idmapped_mounts(kernel: Option<(u32, u32, u32)>) -> Finding {
    const NAME: &str = "idmapped mounts";
    let overlay_ok = kernel.is_some_and(|v| at_least(v, IDMAPPED_OVERLAY_KERNEL));
    if probes::mount_setattr_supported() && overlay_ok {
        ok(NAME, "available (mount_setattr, overlayfs ≥ 5.19)")
    } else {
        not_ok(
            Level::Warn,
            NAME,
            "unavailable: user-namespaced pods cannot map their root filesystem",
            "boot a kernel ≥ 5.19",
        )
    }
}

fn check_cni(config: &Config) -> Finding {
    const NAME: &str = "CNI";
    use crate::cni::config as cni;
    let dir = &config.cni.conf_dir;
    let dirs = config
        .cni
        .bin_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match cni::check_ready(dir, &config.cni.bin_dirs) {
        Ok(net) => ok(
            NAME,
            format!(
                "network {:?} ({}), plugins {} found",
                net.name,
                net.file.display(),
                net.plugin_types().collect::<Vec<_>>().join(", ")
            ),
        ),
        Err(missing @ cni::NotReady::MissingPlugin { .. }) => not_ok(
            Level::Fail,
            NAME,
            format!("{missing}"),
            format!(
                "install the plugin into one of {dirs}, or fix the configuration in {}",
                dir.display()
            ),
        ),
        Err(cni::NotReady::NoConfig(_)) => {
            // The daemon writes its default bridge network into an empty folder at start.
            let default = crate::cni::default::default_network(&config.cni.pod_subnet)
                .ok()
                .and_then(|v| cni::parse_value(&v, &dir.join("10-ferrocri.conflist")));
            let unusable = unusable_files(dir);
            let missing: Vec<String> = default
                .iter()
                .flat_map(|n| n.plugin_types().map(str::to_owned).collect::<Vec<_>>())
                .filter(|t| cni::find_plugin(t, &config.cni.bin_dirs).is_none())
                .collect();
            if !unusable.is_empty() {
                not_ok(
                    Level::Fail,
                    NAME,
                    format!(
                        "no usable network configuration in {}: {} not a valid CNI configuration",
                        dir.display(),
                        unusable.join(", ")
                    ),
                    format!("fix or remove them from {}", dir.display()),
                )
            } else if missing.is_empty() {
                not_ok(
                    Level::Warn,
                    NAME,
                    format!(
                        "no network configuration in {}: ferrocri writes its default bridge network ({}) at start",
                        dir.display(),
                        config.cni.pod_subnet
                    ),
                    "none needed; install your pod network's configuration to use another",
                )
            } else {
                not_ok(
                    Level::Fail,
                    NAME,
                    format!(
                        "no network configuration in {}, and the default network's plugins {} are not in {dirs}",
                        dir.display(),
                        missing.join(", ")
                    ),
                    "apt install containernetworking-plugins, or install a pod network",
                )
            }
        }
    }
}

/// Configuration files (by extension) in `dir` that do not parse as a CNI network.
fn unusable_files(dir: &Path) -> Vec<String> {
    let Ok(files) = crate::cni::config::config_files(dir) else {
        return Vec::new();
    };
    files
        .iter()
        .filter(|p| crate::cni::config::parse_file(p).is_none())
        .map(|p| p.display().to_string())
        .collect()
}

fn check_registry_config(config_dir: &Path) -> Finding {
    const NAME: &str = "registry config";
    let Ok(entries) = std::fs::read_dir(config_dir) else {
        return ok(
            NAME,
            format!(
                "{} absent: registries are used as named",
                config_dir.display()
            ),
        );
    };
    let mut hosts: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("hosts.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    hosts.sort();
    for host in &hosts {
        if let Err(e) = crate::image::hosts::endpoints_for(config_dir, host) {
            return not_ok(
                Level::Fail,
                NAME,
                e.to_string(),
                format!(
                    "correct {}",
                    config_dir.join(host).join("hosts.toml").display()
                ),
            );
        }
    }
    ok(
        NAME,
        format!(
            "{} host(s) configured in {}",
            hosts.len(),
            config_dir.display()
        ),
    )
}

/// A directory the daemon writes: writable where it is, or creatable in its nearest existing
/// ancestor. Checked with access(2), so nothing is created.
fn check_writable(key: &'static str, dir: &Path) -> Finding {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    if !existing.is_dir() {
        return not_ok(
            Level::Fail,
            key,
            format!("{} is not a directory", existing.display()),
            format!("remove it or set {key} elsewhere"),
        );
    }
    match nix::unistd::access(existing, nix::unistd::AccessFlags::W_OK) {
        Ok(()) if existing == dir => ok(key, format!("{} writable", dir.display())),
        Ok(()) => ok(
            key,
            format!(
                "{} will be created in {}",
                dir.display(),
                existing.display()
            ),
        ),
        Err(e) => not_ok(
            Level::Fail,
            key,
            format!("{} is not writable: {e}", existing.display()),
            format!("run as root on a writable filesystem, or set {key} elsewhere"),
        ),
    }
}

fn check_socket(socket: &Path) -> Finding {
    const NAME: &str = "socket";
    if !socket.exists() {
        return ok(NAME, format!("{} free", socket.display()));
    }
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => not_ok(
            Level::Fail,
            NAME,
            format!("{} answers: another daemon serves on it", socket.display()),
            "stop it, or set socket (and root_dir, state_dir) elsewhere",
        ),
        Err(_) => ok(
            NAME,
            format!("{} is a stale file; replaced at start", socket.display()),
        ),
    }
}

/// Whether user namespace pods work here (the Status RPC's feature flag): probed once per
/// process (see `userns::probe_host`), the reason logged when they do not.
pub async fn user_namespaces_supported(root_dir: &Path, state_dir: &Path) -> bool {
    static SUPPORTED: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    let (root, state) = (root_dir.to_owned(), state_dir.to_owned());
    *SUPPORTED
        .get_or_init(|| async move {
            let probe = tokio::task::spawn_blocking(move || {
                let program = crate::monitor::client::program().map_err(|e| e.to_string())?;
                crate::userns::probe_host(&program, &root, &state)
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            match probe {
                Ok(()) => true,
                Err(reason) => {
                    tracing::warn!(%reason, "user namespace pods are not supported here");
                    false
                }
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_moves_follow_the_mount_options() {
        // Lines as this host's /proc/self/mountinfo writes them (hybrid layout).
        let plain = "35 28 0:30 / /sys/fs/cgroup/unified rw,relatime shared:12 - cgroup2 cgroup2 rw\n\
                     36 28 0:31 / /sys/fs/cgroup/cpu rw,relatime shared:13 - cgroup cgroup rw,cpu\n";
        let favoured = "35 28 0:30 / /sys/fs/cgroup/unified rw,relatime shared:12 - cgroup2 cgroup2 rw,favordynmods\n";
        let warn = check_cgroup_moves(Some((6, 18, 0)), plain);
        assert_eq!(warn.level, Level::Warn);
        assert!(warn.fix.contains("favordynmods"), "{}", warn.fix);
        let good = check_cgroup_moves(Some((6, 18, 0)), favoured);
        assert_eq!(good.level, Level::Ok);
        assert!(
            good.detail.contains("/sys/fs/cgroup/unified"),
            "{}",
            good.detail
        );
        assert_eq!(check_cgroup_moves(Some((5, 15, 0)), plain).level, Level::Ok);
        // A tmpfs whose options happen to say favordynmods is not a cgroup hierarchy.
        let tmpfs = "40 28 0:40 / /tmp rw - tmpfs tmpfs rw,favordynmods\n";
        assert_eq!(
            check_cgroup_moves(Some((6, 18, 0)), tmpfs).level,
            Level::Warn
        );
    }

    #[test]
    fn kernel_levels() {
        assert_eq!(check_kernel(Some((6, 18, 0))).level, Level::Ok);
        assert_eq!(check_kernel(Some((5, 10, 0))).level, Level::Warn);
        assert_eq!(check_kernel(Some((3, 10, 0))).level, Level::Fail);
    }

    #[test]
    fn line_format() {
        let f = not_ok(Level::Fail, "socket", "in use", "stop it");
        assert_eq!(f.to_string(), "fail socket: in use (fix: stop it)");
        assert_eq!(ok("seccomp", "yes").to_string(), "ok   seccomp: yes");
    }

    #[test]
    fn writable_and_socket() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_writable("root_dir", dir.path()).level, Level::Ok);
        let nested = dir.path().join("a/b");
        let f = check_writable("root_dir", &nested);
        assert!(
            f.level == Level::Ok && f.detail.contains("will be created"),
            "{f}"
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            check_writable("root_dir", &file.join("x")).level,
            Level::Fail
        );

        let sock = dir.path().join("s.sock");
        assert_eq!(check_socket(&sock).level, Level::Ok);
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(check_socket(&sock).level, Level::Fail);
        drop(listener);
        assert_eq!(check_socket(&sock).level, Level::Ok);
    }

    #[test]
    fn registry_config_names_the_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_registry_config(dir.path()).level, Level::Ok);
        let host = dir.path().join("example.com");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("hosts.toml"), "server = [").unwrap();
        let f = check_registry_config(dir.path());
        assert_eq!(f.level, Level::Fail);
        assert!(f.to_string().contains("example.com"), "{f}");
    }
}
