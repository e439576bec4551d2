//! Pod user namespaces (`NamespaceOption.userns_options`, KEP-127) and idmapped mounts.
//!
//! A pod in mode POD gets a user namespace with the kubelet's one uid and one gid mapping,
//! and a network namespace owned by it (so `CAP_NET_ADMIN` and net sysctls inside the pod
//! work, as with containerd 2). The daemon is multi-threaded and cannot unshare a user
//! namespace itself, so a short-lived helper (`ferrocri-monitor userns`, [`helper_main`])
//! unshares both, the daemon writes the maps and pins both namespaces with bind mounts, and
//! the helper exits. The pause and every container join the pinned user namespace; the
//! executor makes the rootfs and every bind mount idmapped with it
//! (`mount_setattr(MOUNT_ATTR_IDMAP)`), so nothing is ever chowned.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::cri::v1::{IdMapping, NamespaceMode, UserNamespace};

/// One `container_id host_id length` line of a uid or gid map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

impl Mapping {
    fn line(&self) -> String {
        format!("{} {} {}\n", self.container_id, self.host_id, self.length)
    }
}

/// The pod's uid and gid mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mappings {
    pub uid: Mapping,
    pub gid: Mapping,
}

/// Reads the CRI options: None for no user namespace (absent options or mode NODE), the
/// mappings for mode POD. CONTAINER and TARGET are refused, as are anything but exactly one
/// mapping each and a mapping that leaves container ID 0 out. The error is (field, why).
pub fn mappings_of(
    options: Option<&UserNamespace>,
) -> Result<Option<Mappings>, (&'static str, String)> {
    let Some(options) = options else {
        return Ok(None);
    };
    match NamespaceMode::try_from(options.mode) {
        Ok(NamespaceMode::Node) => {
            if !options.uids.is_empty() || !options.gids.is_empty() {
                return Err((
                    "userns_options",
                    "mode NODE takes no uid or gid mappings".into(),
                ));
            }
            Ok(None)
        }
        Ok(NamespaceMode::Pod) => Ok(Some(Mappings {
            uid: one_mapping("userns_options.uids", &options.uids)?,
            gid: one_mapping("userns_options.gids", &options.gids)?,
        })),
        Ok(other) => Err((
            "userns_options.mode",
            format!(
                "{} is not supported for user namespaces (only POD and NODE)",
                other.as_str_name()
            ),
        )),
        Err(_) => Err((
            "userns_options.mode",
            format!("unknown mode {}", options.mode),
        )),
    }
}

fn one_mapping(field: &'static str, list: &[IdMapping]) -> Result<Mapping, (&'static str, String)> {
    let [m] = list else {
        return Err((
            field,
            format!("exactly one mapping is supported, got {}", list.len()),
        ));
    };
    if m.length == 0
        || m.container_id.checked_add(m.length).is_none()
        || m.host_id.checked_add(m.length).is_none()
    {
        return Err((field, format!("mapping {m:?} is empty or overflows")));
    }
    if m.container_id != 0 {
        return Err((
            field,
            format!(
                "container ID 0 must be mapped (the mapping starts at {})",
                m.container_id
            ),
        ));
    }
    Ok(Mapping {
        container_id: m.container_id,
        host_id: m.host_id,
        length: m.length,
    })
}

/// `ferrocri-monitor userns`: a new user namespace and a network namespace owned by it;
/// "ready" on stdout; then wait for stdin to close (the daemon has written the maps and
/// pinned both) and exit.
pub fn helper_main() -> std::process::ExitCode {
    use nix::sched::{CloneFlags, unshare};
    // One call: the user namespace is made first and owns the network namespace.
    if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET) {
        eprintln!("unshare(CLONE_NEWUSER|CLONE_NEWNET): {e}");
        return std::process::ExitCode::FAILURE;
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "ready").and_then(|()| out.flush()).is_err() {
        return std::process::ExitCode::FAILURE;
    }
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::ExitCode::SUCCESS
}

/// A running helper: its namespaces exist until it is dropped (stdin closed, waited for).
pub struct Helper {
    child: std::process::Child,
}

impl Helper {
    /// Starts the helper (`program userns`: the monitor's binary, whose path the caller
    /// knows) and writes `mappings` as its maps. Blocking.
    pub fn start(program: &Path, mappings: &Mappings) -> std::io::Result<Helper> {
        let mut child = Command::new(program)
            .arg("userns")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        let ready = BufReader::new(stdout).read_line(&mut line);
        let mut helper = Helper { child };
        if ready.is_err() || line.trim() != "ready" {
            let mut err = String::new();
            if let Some(mut e) = helper.child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(std::io::Error::other(format!(
                "user namespace helper failed: {}",
                err.trim()
            )));
        }
        let pid = helper.child.id();
        // The gid map needs no "setgroups deny": the writer is privileged in the parent.
        std::fs::write(format!("/proc/{pid}/uid_map"), mappings.uid.line())
            .map_err(|e| std::io::Error::other(format!("writing uid_map: {e}")))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), mappings.gid.line())
            .map_err(|e| std::io::Error::other(format!("writing gid_map: {e}")))?;
        Ok(helper)
    }

    /// `/proc/<pid>/ns/<kind>` of the helper.
    pub fn ns_path(&self, kind: &str) -> String {
        format!("/proc/{}/ns/{kind}", self.child.id())
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Joins the user namespace `userns` (an open pin) and becomes its root (uid and gid 0 there, no
/// groups), with every capability inside it; a container's user is switched to afterwards.
/// Needs a single-threaded process whose filesystem context is not shared.
pub fn join(userns: &std::fs::File) -> Result<(), String> {
    use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
    nix::sched::setns(userns, nix::sched::CloneFlags::CLONE_NEWUSER)
        .map_err(|e| format!("join the user namespace: {e}"))?;
    setgroups(&[]).map_err(|e| format!("setgroups in the user namespace: {e}"))?;
    let (gid, uid) = (Gid::from_raw(0), Uid::from_raw(0));
    setresgid(gid, gid, gid).map_err(|e| format!("setresgid to the namespace's root: {e}"))?;
    setresuid(uid, uid, uid).map_err(|e| format!("setresuid to the namespace's root: {e}"))
}

/// Bind-mounts a namespace file onto `pin` (created; must not exist).
pub fn pin(ns_file: &str, pin: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(pin)?;
    nix::mount::mount(
        Some(ns_file),
        pin,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        let _ = std::fs::remove_file(pin);
        std::io::Error::other(format!("pinning {ns_file} at {}: {e}", pin.display()))
    })
}

/// A detached copy of the mount tree at `source` (recursive or not) made idmapped with the
/// user namespace `userns`; attach it with `move_mount`. Needs Linux 5.12 and a filesystem
/// that supports idmapped mounts (every mount of the tree, when recursive).
pub fn idmapped_tree(
    source: &Path,
    userns: &impl AsFd,
    recursive: bool,
) -> std::io::Result<OwnedFd> {
    use rustix::mount::OpenTreeFlags;
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let tree = rustix::mount::open_tree(rustix::fs::CWD, source, flags)
        .map_err(|e| std::io::Error::other(format!("open_tree {}: {e}", source.display())))?;
    set_idmap(&tree, userns, recursive)
        .map_err(|e| with_context(e, &format!("idmapped mount of {}", source.display())))?;
    Ok(tree)
}

/// mount_setattr(MOUNT_ATTR_IDMAP) on a detached mount.
fn set_idmap(tree: &impl AsFd, userns: &impl AsFd, recursive: bool) -> std::io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_fd().as_raw_fd() as u64,
    };
    let at = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: the path is a valid C string, `attr` lives across the call and its size is
    // passed with it; the fds are open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_fd().as_raw_fd(),
            c"".as_ptr(),
            at,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(with_context(
            std::io::Error::last_os_error(),
            "mount_setattr MOUNT_ATTR_IDMAP",
        ));
    }
    Ok(())
}

fn with_context(e: std::io::Error, what: &str) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Does this host run user namespace pods? A throw-away user namespace is made (as for a
/// pod), and idmapped mounts are tried for real on `root_dir` and `state_dir` (container
/// folders, pod files) and on a detached overlay made in `root_dir` (the rootfs). Blocking.
pub fn probe_host(program: &Path, root_dir: &Path, state_dir: &Path) -> Result<(), String> {
    let mapping = Mapping {
        container_id: 0,
        host_id: 65536,
        length: 65536,
    };
    let helper = Helper::start(
        program,
        &Mappings {
            uid: mapping,
            gid: mapping,
        },
    )
    .map_err(|e| format!("user namespace: {e}"))?;
    let userns =
        std::fs::File::open(helper.ns_path("user")).map_err(|e| format!("user namespace: {e}"))?;
    for dir in [root_dir, state_dir] {
        idmapped_tree(dir, &userns, false).map_err(|e| e.to_string())?;
    }
    let scratch = tempfile::Builder::new()
        .prefix(".idmap-probe-")
        .tempdir_in(root_dir)
        .map_err(|e| format!("scratch folder in {}: {e}", root_dir.display()))?;
    let overlay = || -> std::io::Result<()> {
        use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};
        let dirs = ["lower", "upper", "work"].map(|d| scratch.path().join(d));
        for d in &dirs {
            std::fs::create_dir(d)?;
        }
        // As the executor mounts a pod's rootfs: an idmapped lower layer, a plain upper.
        let lower = idmapped_tree(&dirs[0], &userns, false)?;
        let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        let lower_path = format!("/proc/self/fd/{}", lower.as_raw_fd());
        rustix::mount::fsconfig_set_string(&fs, "lowerdir", lower_path.as_str())?;
        rustix::mount::fsconfig_set_string(&fs, "upperdir", &dirs[1])?;
        rustix::mount::fsconfig_set_string(&fs, "workdir", &dirs[2])?;
        rustix::mount::fsconfig_create(&fs)?;
        // Detached: never visible anywhere, gone with the fd.
        rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
            .map(drop)
            .map_err(Into::into)
    };
    overlay().map_err(|e| format!("idmapped overlay: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(container_id: u32, host_id: u32, length: u32) -> IdMapping {
        IdMapping {
            container_id,
            host_id,
            length,
        }
    }

    fn pod(uids: Vec<IdMapping>, gids: Vec<IdMapping>) -> UserNamespace {
        UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids,
            gids,
        }
    }

    #[test]
    fn modes_and_mappings() {
        assert_eq!(mappings_of(None), Ok(None));
        let node = UserNamespace {
            mode: NamespaceMode::Node as i32,
            ..Default::default()
        };
        assert_eq!(mappings_of(Some(&node)), Ok(None));
        let ok = pod(vec![m(0, 1000, 65536)], vec![m(0, 2000, 65536)]);
        let got = mappings_of(Some(&ok)).unwrap().unwrap();
        assert_eq!(got.uid.host_id, 1000);
        assert_eq!(got.gid.line(), "0 2000 65536\n");
        for (bad, field) in [
            (
                pod(vec![m(0, 1000, 10), m(0, 2000, 10)], vec![m(0, 1, 1)]),
                "userns_options.uids",
            ),
            (
                pod(vec![m(1, 1000, 10)], vec![m(0, 1000, 10)]),
                "userns_options.uids",
            ),
            (pod(vec![m(0, 1000, 10)], vec![]), "userns_options.gids"),
            (
                pod(vec![m(0, u32::MAX, 10)], vec![m(0, 1, 1)]),
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
        ] {
            assert_eq!(mappings_of(Some(&bad)).unwrap_err().0, field, "{bad:?}");
        }
    }
}
