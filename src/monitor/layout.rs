//! The monitor's files in a pod's state dir, named once for both sides: the monitor writes
//! them, the daemon reads them (exit records, the exit count, the pause's exit) or uses
//! them (the socket, the namespace pins). Nothing else builds these paths.
//!
//! `<pod dir>/`: `pod.json` (the spec, from the daemon), `monitor.pid`, `monitor.sock`,
//! `ns/ipc` and `ns/uts` (bind-mount pins), `pause.exit` (the pause's wait status once it
//! has died), `exits` (the exit count), `containers/<id>/exit.json` (a container's exit).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const SPEC_FILE: &str = "pod.json";
pub const SOCKET: &str = "monitor.sock";
pub const PID_FILE: &str = "monitor.pid";
pub const PAUSE_EXIT_FILE: &str = "pause.exit";

/// The pinned namespaces of a pod, inside its state dir.
pub fn namespace_pin(dir: &Path, kind: &str) -> PathBuf {
    dir.join("ns").join(kind)
}

/// Removes the namespace pins (idempotent: also used by the daemon's cleanup).
pub fn unpin_namespaces(dir: &Path) {
    for kind in ["ipc", "uts"] {
        let pin = namespace_pin(dir, kind);
        let _ = nix::mount::umount2(&pin, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&pin);
    }
}

/// How a container ended, as kept in `exit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The exit code, or 128 + the signal that killed it.
    pub code: i32,
    /// Nanoseconds since the epoch.
    pub finished_at: i64,
    /// Killed by the kernel's OOM killer (its cgroup counted an OOM kill).
    pub oom_killed: bool,
}

pub const EXIT_FILE: &str = "exit.json";

/// The folder of a container's monitor-side files.
pub fn container_dir(pod_dir: &Path, id: &str) -> PathBuf {
    pod_dir.join("containers").join(id)
}

/// Reads a recorded exit; None while the container has not exited (or never ran).
pub fn read_exit(pod_dir: &Path, id: &str) -> Option<Exit> {
    let bytes = std::fs::read(container_dir(pod_dir, id).join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `<pod dir>/exits` counts the exits recorded so far, bumped after each `exit.json` is in
/// place: ListContainers reads one file per pod and the pod's `exit.json` files only when the
/// count changed. Missing (a monitor older than the file, or a failed write): read them all.
pub const EXITS_FILE: &str = "exits";

pub fn read_exit_count(pod_dir: &Path) -> Option<u64> {
    std::fs::read_to_string(pod_dir.join(EXITS_FILE))
        .ok()?
        .parse()
        .ok()
}

/// Records a container's exit durably: written aside, synced, renamed into place.
pub fn write_exit(dir: &Path, exit: &Exit) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(".exit.json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(exit).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(EXIT_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`. As sysctl(8) accepts, a name
/// with `/` separators keeps its dots (`net/ipv4/conf/eth0.100/forwarding`); nothing may
/// climb out of /proc/sys.
pub fn sysctl_path(key: &str) -> Option<std::path::PathBuf> {
    let relative = if key.contains('/') {
        key.to_owned()
    } else {
        key.replace('.', "/")
    };
    let valid = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && relative
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    valid.then(|| std::path::Path::new("/proc/sys").join(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").unwrap(),
            std::path::Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            sysctl_path("kernel.shm_rmid_forced").unwrap(),
            std::path::Path::new("/proc/sys/kernel/shm_rmid_forced")
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.100/forwarding").unwrap(),
            std::path::Path::new("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
        for bad in [
            "",
            "..",
            "net..x",
            "net/../../etc",
            "net.ipv4 x",
            "/abs",
            "net.ipv4.",
        ] {
            assert!(sysctl_path(bad).is_none(), "{bad}");
        }
    }
}
