//! Killing every process of a cgroup (and its descendants) and waiting until it is empty.
//!
//! 1. Where the cgroup2 tree has `cgroup.kill` (Linux >= 5.14; also in a hybrid host's
//!    controller-less tree) one write kills the whole subtree without any PID race.
//! 2. For whatever is left (v1, older kernels): freeze the cgroup (v1 freezer, else v2
//!    `cgroup.freeze`) so nothing can fork or exit, SIGKILL every listed PID, thaw, and
//!    repeat until the cgroup is empty or the deadline passes. A frozen process cannot exit,
//!    so its PID cannot be reused between reading and signalling it.

use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::error::CgroupError;
use super::fs;
use super::path::CgroupPath;

/// How long the processes get to die (processes in uninterruptible sleep can take a while).
pub(crate) const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a freeze before signalling anyway.
const FREEZE_TIMEOUT: Duration = Duration::from_millis(500);

/// Where to freeze a cgroup.
pub(crate) enum Freezer {
    /// The cgroup's directory in the v1 freezer hierarchy.
    V1(PathBuf),
    /// The cgroup's directory in a cgroup2 tree.
    V2(PathBuf),
}

/// What `kill_all` needs to know about the cgroup.
pub(crate) struct Target<'a> {
    pub(crate) cg: &'a CgroupPath,
    /// The cgroup's directory in every hierarchy.
    pub(crate) dirs: Vec<PathBuf>,
    /// Its directory in the cgroup2 tree, if there is one.
    pub(crate) unified: Option<PathBuf>,
    pub(crate) freezer: Option<Freezer>,
}

impl Target<'_> {
    fn processes(&self, dirs: &[PathBuf]) -> Result<Vec<i32>, CgroupError> {
        let mut pids = std::collections::BTreeSet::new();
        for dir in dirs {
            fs::collect_procs(self.cg, dir, true, &mut pids)?;
        }
        Ok(pids.into_iter().collect())
    }

    /// Polls until `dirs` hold no process or `until` passes; returns the processes left.
    fn wait_empty(&self, dirs: &[PathBuf], until: Instant) -> Result<Vec<i32>, CgroupError> {
        let mut pause = Duration::from_millis(1);
        loop {
            let pids = self.processes(dirs)?;
            if pids.is_empty() || Instant::now() >= until {
                return Ok(pids);
            }
            sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

pub(crate) fn kill_all(target: &Target<'_>, timeout: Duration) -> Result<(), CgroupError> {
    let cg = target.cg;
    let deadline = Instant::now() + timeout;
    if let Some(dir) = &target.unified {
        let file = dir.join("cgroup.kill");
        if file.exists() {
            match fs::write(cg, &file, "1") {
                Ok(()) => {}
                // The cgroup went away meanwhile: nothing left to kill there.
                Err(CgroupError::Write { source, .. })
                    if source.raw_os_error() == Some(libc::ENOENT)
                        || source.raw_os_error() == Some(libc::ENODEV) => {}
                Err(e) => return Err(e),
            }
            target.wait_empty(std::slice::from_ref(dir), deadline)?;
        }
    }
    loop {
        let pids = target.processes(&target.dirs)?;
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::KillTimeout {
                path: cg.to_string(),
                pids,
                timeout,
            });
        }
        signal_frozen(target)?;
        let round = (Instant::now() + Duration::from_millis(500)).min(deadline);
        target.wait_empty(&target.dirs, round)?;
    }
}

/// Freezes (when possible), SIGKILLs every listed process, thaws.
fn signal_frozen(target: &Target<'_>) -> Result<(), CgroupError> {
    let cg = target.cg;
    // A freezer that fails only costs the PID-reuse guarantee; killing matters more.
    let frozen = match &target.freezer {
        Some(freezer) => match Frozen::freeze(cg, freezer) {
            Ok(frozen) => Some(frozen),
            Err(error) => {
                tracing::warn!(cgroup = %cg, %error, "cannot freeze; killing unfrozen");
                None
            }
        },
        None => None,
    };
    let result = (|| {
        for pid in target.processes(&target.dirs)? {
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => {
                    return Err(CgroupError::Signal {
                        path: cg.to_string(),
                        pid,
                        source: e.into(),
                    });
                }
            }
        }
        Ok(())
    })();
    if let Some(frozen) = frozen {
        frozen.thaw()?;
    }
    result
}

/// A freeze in progress; thawed explicitly, or on drop if an error intervened.
struct Frozen<'a> {
    cg: &'a CgroupPath,
    freezer: &'a Freezer,
    thawed: bool,
}

impl<'a> Frozen<'a> {
    fn freeze(cg: &'a CgroupPath, freezer: &'a Freezer) -> Result<Frozen<'a>, CgroupError> {
        let (file, value) = match freezer {
            Freezer::V1(dir) => (dir.join("freezer.state"), "FROZEN"),
            Freezer::V2(dir) => (dir.join("cgroup.freeze"), "1"),
        };
        if !file.exists() {
            // The cgroup is gone from that hierarchy (or the kernel has no v2 freezer).
            return Ok(Frozen {
                cg,
                freezer,
                thawed: true,
            });
        }
        let frozen = Frozen {
            cg,
            freezer,
            thawed: false,
        };
        fs::write(cg, &file, value)?;
        let until = Instant::now() + FREEZE_TIMEOUT;
        while !frozen.is_frozen()? && Instant::now() < until {
            sleep(Duration::from_millis(1));
        }
        Ok(frozen)
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        Ok(match self.freezer {
            Freezer::V1(dir) => fs::read_optional(self.cg, &dir.join("freezer.state"))?
                .is_none_or(|s| s.trim() == "FROZEN"),
            Freezer::V2(dir) => fs::read_optional(self.cg, &dir.join("cgroup.events"))?
                .is_none_or(|s| super::stats::flat_keyed(&s, "frozen") == Some(1)),
        })
    }

    fn thaw(mut self) -> Result<(), CgroupError> {
        self.thawed = true;
        thaw(self.cg, self.freezer)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if !self.thawed
            && let Err(error) = thaw(self.cg, self.freezer)
        {
            tracing::warn!(cgroup = %self.cg, %error, "cannot thaw cgroup");
        }
    }
}

fn thaw(cg: &CgroupPath, freezer: &Freezer) -> Result<(), CgroupError> {
    let (file, value) = match freezer {
        Freezer::V1(dir) => (dir.join("freezer.state"), "THAWED"),
        Freezer::V2(dir) => (dir.join("cgroup.freeze"), "0"),
    };
    match fs::write(cg, &file, value) {
        Err(CgroupError::Write { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
            Ok(())
        }
        other => other,
    }
}
