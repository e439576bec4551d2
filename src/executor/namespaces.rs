//! Joining or creating the container's network, IPC, UTS and cgroup namespaces. The PID namespace
//! is the monitor's business (it applies to children, so it is set up before the fork);
//! the mount namespace is always new and handled by `rootfs`.

use nix::sched::{CloneFlags, setns, unshare};

use super::error::{Context, Result};
use super::spec::{NamespaceMode, Namespaces};

/// Applies every namespace of `namespaces` except PID, network first (the order runc uses;
/// none of these depends on another).
pub fn enter(namespaces: &Namespaces) -> Result<()> {
    let wanted = [
        ("network", &namespaces.network, CloneFlags::CLONE_NEWNET),
        ("ipc", &namespaces.ipc, CloneFlags::CLONE_NEWIPC),
        ("uts", &namespaces.uts, CloneFlags::CLONE_NEWUTS),
    ];
    for (kind, mode, flag) in wanted {
        enter_one(kind, mode, flag)?;
    }
    Ok(())
}

/// The cgroup namespace, entered apart from the others: its root is the cgroup the process
/// is in at that moment, so it comes after joining the container's cgroup.
pub fn enter_cgroup(mode: &NamespaceMode) -> Result<()> {
    enter_one("cgroup", mode, CloneFlags::CLONE_NEWCGROUP)
}

fn enter_one(kind: &str, mode: &NamespaceMode, flag: CloneFlags) -> Result<()> {
    match mode {
        NamespaceMode::Host => Ok(()),
        NamespaceMode::New => unshare(flag).context(|| format!("create a {kind} namespace")),
        NamespaceMode::Join(path) => {
            let file = std::fs::File::open(path)
                .context(|| format!("open {kind} namespace {}", path.display()))?;
            // The type check makes setns refuse a path that is some other namespace.
            setns(&file, flag).context(|| format!("join {kind} namespace {}", path.display()))
        }
    }
}

/// A mount namespace of the container's own: everything mounted from here on is invisible
/// to the host.
pub fn new_mount_namespace() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).context(|| "create a mount namespace")
}

/// The pod's user namespace, joined as its root (see [`crate::userns::join`]).
pub fn join_user(userns: &std::fs::File) -> Result<()> {
    crate::userns::join(userns).map_err(super::error::Error::new)
}
