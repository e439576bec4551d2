//! The container's own session keyring, as runc gives one. Keyrings are not namespaced: a
//! container that kept the session keyring it inherited (the monitor's, so the daemon's)
//! could read and link every key in it — and would share it with every other container.
//! The container joins a new keyring named `_ses.<container id>`; an exec joins that one
//! by name, so it sees what its container sees.

use std::ffi::CString;

use super::error::{Context, Error, Result};

/// The owner (root, who runs the executor) may search the keyring: how an exec finds it
/// by name. With the defaults of a new session keyring: possessor all, owner view, read
/// and link (runc ends with the same bits).
const NEW_KEYRING_PERM: u32 = 0x3f00_0000 | 0x0001_0000 | 0x0002_0000 | 0x0008_0000 | 0x0010_0000;

/// Joins `_ses.<id>`: a new keyring for a container, its container's for an exec.
pub fn join_own(container_id: &str, exec: bool) -> Result<()> {
    let name = CString::new(format!("_ses.{container_id}"))
        .map_err(|_| Error::new("the container ID holds a NUL byte"))?;
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, name) reads a NUL-terminated string that
    // outlives the call; it changes only this process's credentials.
    let serial = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_JOIN_SESSION_KEYRING,
            name.as_ptr(),
        )
    };
    if serial < 0 {
        let e = std::io::Error::last_os_error();
        // A kernel without keyrings has none to share.
        if e.raw_os_error() == Some(libc::ENOSYS) {
            return Ok(());
        }
        return Err(Error::from(e)).context(|| format!("join session keyring _ses.{container_id}"));
    }
    if exec {
        return Ok(());
    }
    // SAFETY: keyctl(KEYCTL_SETPERM, serial, perm) takes integers only.
    let set = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            libc::KEYCTL_SETPERM,
            serial,
            NEW_KEYRING_PERM,
        )
    };
    if set != 0 {
        return Err(Error::from(std::io::Error::last_os_error()))
            .context(|| format!("set the permissions of _ses.{container_id}"));
    }
    Ok(())
}
