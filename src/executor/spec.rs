//! What the monitor needs to start one container process: the daemon builds it from the CRI
//! container config, the sandbox and the image, and hands it to the pod's monitor as JSON.
//! Everything in it is already resolved (paths absolute, users numeric, argv final), so the
//! executor only carries it out.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub id: String,
    pub rootfs: Rootfs,
    /// argv of the process, entrypoint and command already combined as Docker does.
    pub args: Vec<String>,
    /// `KEY=VALUE`, image env first then the container's.
    pub env: Vec<String>,
    /// Working directory inside the container; created if missing.
    pub cwd: String,
    pub user: User,
    pub namespaces: Namespaces,
    /// In order: applied after the rootfs is mounted, before pivot_root.
    pub mounts: Vec<Mount>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub devices: Vec<Device>,
    /// Capability names (`CAP_CHOWN`, …) put in the bounding, effective and permitted sets.
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
    pub privileged: bool,
    /// The compiled seccomp filter to load last, or None (unconfined).
    pub seccomp: Option<SeccompProfile>,
    pub rlimits: Vec<Rlimit>,
    pub oom_score_adj: Option<i32>,
    pub tty: bool,
    /// Absolute cgroup path the process runs in (joined before exec).
    pub cgroup: String,
    /// Exec mode: run inside the already running container with this pid (its mount
    /// namespace and root) instead of building a rootfs. The monitor has put the process in
    /// that container's PID namespace already.
    #[serde(default)]
    pub exec_in: Option<i32>,
    /// The pod's pinned user namespace (mode POD): joined last, after every mount, and the
    /// rootfs and bind mounts are idmapped with it. None: the host's.
    #[serde(default)]
    pub userns: Option<PathBuf>,
    /// OCI hooks (from CDI devices). The executor runs `create_container` and
    /// `start_container`; the daemon `poststart` and `poststop` (see `crate::hooks`).
    #[serde(default)]
    pub hooks: Hooks,
}

/// OCI hooks by the point where they run. `prestart` (deprecated) runs with
/// `create_runtime`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    #[serde(default)]
    pub create_runtime: Vec<Hook>,
    #[serde(default)]
    pub create_container: Vec<Hook>,
    #[serde(default)]
    pub start_container: Vec<Hook>,
    #[serde(default)]
    pub poststart: Vec<Hook>,
    #[serde(default)]
    pub poststop: Vec<Hook>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.create_runtime.is_empty()
            && self.create_container.is_empty()
            && self.start_container.is_empty()
            && self.poststart.is_empty()
            && self.poststop.is_empty()
    }
}

pub use crate::hooks::Hook;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rootfs {
    /// Unpacked image layers, TOP-MOST FIRST (overlayfs `lowerdir` order).
    pub lower_dirs: Vec<PathBuf>,
    /// The container's writable layer and overlayfs work dir (same filesystem).
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
    /// Where the overlay is mounted and pivot_root'ed into.
    pub mount_point: PathBuf,
    pub readonly: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// How the container gets each namespace. The mount namespace is always new.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    pub network: NamespaceMode,
    pub ipc: NamespaceMode,
    pub uts: NamespaceMode,
    /// Arranged by the monitor before it forks (a PID namespace applies to children).
    pub pid: NamespaceMode,
    /// Entered right after joining the container's cgroup, so that cgroup is the namespace's
    /// root: `/proc/self/cgroup` shows `/` and cgroupfs mounts show only the container's.
    #[serde(default)]
    pub cgroup: NamespaceMode,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", content = "path", rename_all = "snake_case")]
pub enum NamespaceMode {
    /// The host's (the monitor's) namespace.
    #[default]
    Host,
    /// Join the namespace pinned or living at this path (`/proc/<pid>/ns/net`, a pin file).
    Join(PathBuf),
    /// A new namespace of the container's own.
    New,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Host path for binds, or the filesystem source (`proc`, `tmpfs`, …).
    pub source: String,
    /// Absolute path inside the container.
    pub destination: String,
    /// `bind`, `proc`, `sysfs`, `tmpfs`, `devpts`, `mqueue`, `cgroup`, `cgroup2`, …
    pub fstype: String,
    /// mount(8)-style options: `rbind`, `bind`, `ro`, `nosuid`, `noexec`, `nodev`,
    /// `rprivate`, `rslave`, `rshared`, `rro` (recursive read-only), and data options such as
    /// `mode=755` or `size=65536k`.
    pub options: Vec<String>,
    /// An image volume (fstype `image`): the image's layers merged read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageLayers>,
}

/// What an image volume mounts: an overlay of these layers with no upper dir (read-only by
/// itself), or only `sub_path` of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLayers {
    /// Unpacked layers, TOP-MOST FIRST; at least two (overlayfs needs two lower dirs
    /// without an upper one: a one-layer image gets an empty dir below it).
    pub lower_dirs: Vec<PathBuf>,
    /// A directory of the merged image to mount instead of its root; relative, resolved
    /// inside the image (`openat2(RESOLVE_IN_ROOT)`). Empty: the root.
    #[serde(default)]
    pub sub_path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Path inside the container.
    pub path: String,
    /// 'c' or 'b'.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE`, …
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

/// A seccomp profile in the shape of Docker's/containerd's JSON profiles, already chosen
/// (RuntimeDefault, Localhost file contents) and filtered for this architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    /// `SCMP_ACT_ERRNO`, `SCMP_ACT_ALLOW`, …
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// Architectures the filter accepts besides the native one (libseccomp names such as
    /// `SCMP_ARCH_X86`): 32-bit programs on a 64-bit host. Empty: the native one only, and a
    /// syscall of any other architecture kills the process.
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub syscalls: Vec<SeccompRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompRule {
    pub names: Vec<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<SeccompArg>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompArg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    /// `SCMP_CMP_EQ`, `SCMP_CMP_MASKED_EQ`, …
    pub op: String,
}
