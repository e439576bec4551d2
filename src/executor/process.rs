//! The container process's own attributes: working directory, resource limits, OOM score,
//! terminal, user and groups, HOME, no_new_privs, and the seccomp hook.

use std::os::fd::AsRawFd;
use std::path::Path;

use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};

use super::error::{Context, Error, Result};
use super::inroot::Root;
use super::spec::{Rlimit, SeccompProfile, User};

/// Sets the OOM score adjustment. Lowering it needs CAP_SYS_RESOURCE; without it the kernel
/// answers EACCES and the current value stays: Ok(Some(warning)) then, as containerd
/// clamps rather than failing the container.
pub fn set_oom_score_adj(value: i32) -> Result<Option<String>> {
    const FILE: &str = "/proc/self/oom_score_adj";
    match std::fs::write(FILE, value.to_string()) {
        Ok(()) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            let current = std::fs::read_to_string(FILE).unwrap_or_default();
            Ok(Some(format!(
                "oom_score_adj {value} is not allowed here; keeping {}",
                current.trim()
            )))
        }
        Err(e) => Err(e).context(|| format!("write {value} to {FILE}")),
    }
}

/// Creates the working directory (and its missing parents) owned by the container user, as
/// runc does, so a process running as that user can write where it starts.
pub fn make_cwd(cwd: &str, user: &User) -> Result<()> {
    let root = Root::open(Path::new("/"))?;
    root.ensure_dir(cwd, 0o755, Some((user.uid, user.gid)))
        .map(drop)
}

pub fn chdir(cwd: &str) -> Result<()> {
    let cwd = if cwd.is_empty() { "/" } else { cwd };
    nix::unistd::chdir(cwd).context(|| format!("enter {cwd}"))
}

pub fn set_rlimits(rlimits: &[Rlimit]) -> Result<()> {
    for limit in rlimits {
        let resource = resource(&limit.kind)
            .ok_or_else(|| Error::new(format!("unknown rlimit {:?}", limit.kind)))?;
        let value = libc::rlimit {
            rlim_cur: limit.soft,
            rlim_max: limit.hard,
        };
        // SAFETY: `value` is a valid rlimit that outlives the call.
        if unsafe { libc::setrlimit(resource, &value) } != 0 {
            return Err(Error::from(std::io::Error::last_os_error()))
                .context(|| format!("{} (soft {}, hard {})", limit.kind, limit.soft, limit.hard));
        }
    }
    Ok(())
}

/// `RLIMIT_NOFILE` (or `nofile`) to its resource number.
fn resource(kind: &str) -> Option<libc::__rlimit_resource_t> {
    let upper = kind.to_ascii_uppercase();
    Some(match upper.strip_prefix("RLIMIT_").unwrap_or(&upper) {
        "AS" => libc::RLIMIT_AS,
        "CORE" => libc::RLIMIT_CORE,
        "CPU" => libc::RLIMIT_CPU,
        "DATA" => libc::RLIMIT_DATA,
        "FSIZE" => libc::RLIMIT_FSIZE,
        "LOCKS" => libc::RLIMIT_LOCKS,
        "MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "NICE" => libc::RLIMIT_NICE,
        "NOFILE" => libc::RLIMIT_NOFILE,
        "NPROC" => libc::RLIMIT_NPROC,
        "RSS" => libc::RLIMIT_RSS,
        "RTPRIO" => libc::RLIMIT_RTPRIO,
        "RTTIME" => libc::RLIMIT_RTTIME,
        "SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "STACK" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

/// Makes the terminal on fd 0 this process's controlling terminal, in a session of its own.
pub fn take_terminal() -> Result<()> {
    // EPERM only means this process already leads a session.
    let _ = nix::unistd::setsid();
    // SAFETY: TIOCSCTTY takes an integer argument.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(Error::from(std::io::Error::last_os_error()))
            .context(|| "make fd 0 the controlling terminal");
    }
    Ok(())
}

/// Gives fds 0-2 (a terminal, pipes) to the container's user, as runc does, so that a
/// non-root process can open its own terminal (`/dev/pts/N`, `/dev/tty` aside) or
/// `/dev/stdout` again. /dev/null and what the user already owns stay as they are; the
/// group stays (a devpts gives its terminals the `tty` group).
pub fn own_stdio(uid: u32) -> Result<()> {
    for fd in 0..=2 {
        // SAFETY: fds 0-2 are open for the executor's whole life (the monitor set them up).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let stat = rustix::fs::fstat(fd).context(|| "stat stdio")?;
        let rdev = (
            rustix::fs::major(stat.st_rdev),
            rustix::fs::minor(stat.st_rdev),
        );
        let is_char = rustix::fs::FileType::from_raw_mode(stat.st_mode)
            == rustix::fs::FileType::CharacterDevice;
        if stat.st_uid == uid || (is_char && rdev == (1, 3)) {
            continue;
        }
        match rustix::fs::fchown(fd, Some(rustix::fs::Uid::from_raw_unchecked(uid)), None) {
            // In a user namespace that does not map the owner or the user, as runc: leave it.
            Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::PERM) => {}
            Err(e) => {
                return Err(e).context(|| format!("give fd {} to uid {uid}", fd.as_raw_fd()));
            }
        }
    }
    Ok(())
}

/// Supplementary groups, then group, then user (after the user changes, the others could
/// not be set any more).
pub fn switch_user(user: &User) -> Result<()> {
    let groups: Vec<Gid> = user
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    setgroups(&groups).context(|| format!("setgroups {:?}", user.additional_gids))?;
    let gid = Gid::from_raw(user.gid);
    setresgid(gid, gid, gid).context(|| format!("setgid {}", user.gid))?;
    let uid = Uid::from_raw(user.uid);
    setresuid(uid, uid, uid).context(|| format!("setuid {}", user.uid))
}

/// `env` with `HOME` added when it has none: the user's home from the container's
/// /etc/passwd, else `/` (what runc does).
pub fn with_home(env: &[String], uid: u32) -> Vec<String> {
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let home = home_from_passwd(&passwd, uid).unwrap_or("/");
        env.push(format!("HOME={home}"));
    }
    env
}

fn home_from_passwd(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [_, _, id, _, _, home, ..] if id.parse() == Ok(uid) && !home.is_empty() => Some(*home),
            _ => None,
        }
    })
}

pub fn set_no_new_privs() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().context(|| "PR_SET_NO_NEW_PRIVS")
}

/// Loads the container's seccomp filter. Called as runc does: before the user and
/// capabilities change when no_new_privs is off (loading a filter then needs
/// CAP_SYS_ADMIN), right before the exec when it is on.
pub fn load_seccomp(profile: &SeccompProfile) -> Result<()> {
    crate::executor::seccomp::load(profile)
        .map_err(|e| Error::new(format!("loading the seccomp profile: {}", e.describe())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_lookup() {
        let passwd =
            "root:x:0:0:root:/root:/bin/sh\nbroken\nnobody:x:65534:65534::/home:/bin/false\n";
        assert_eq!(home_from_passwd(passwd, 0), Some("/root"));
        assert_eq!(home_from_passwd(passwd, 65534), Some("/home"));
        assert_eq!(home_from_passwd(passwd, 1001), None);
    }

    #[test]
    fn rlimit_names() {
        assert_eq!(resource("RLIMIT_NOFILE"), Some(libc::RLIMIT_NOFILE));
        assert_eq!(resource("nproc"), Some(libc::RLIMIT_NPROC));
        assert_eq!(resource("RLIMIT_BOGUS"), None);
    }
}
