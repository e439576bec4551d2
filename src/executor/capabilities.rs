//! The container's capabilities, as containerd sets them: the spec's list in the bounding,
//! effective and permitted sets, inheritable and ambient empty (so a non-root process holds
//! none after its exec, and a root one holds exactly the list). Privileged: every
//! capability this kernel has.
//!
//! Two halves around the change of user: the bounding set can only shrink while
//! CAP_SETPCAP is still effective (before setuid); the other sets are set after it, with
//! PR_SET_KEEPCAPS keeping the permitted set across setuid in between.

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};

use super::error::{Context, Error, Result};

/// The capabilities a container gets by default (containerd's and CRI-O's set).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability this kernel generation knows, for privileged containers and `ALL`.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `CAP_`-prefixed upper case, as the lists above spell a name (CRI and seccomp profiles
/// may write `net_admin` or `NET_ADMIN`).
pub fn canonical_name(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The capabilities to keep, and the names this kernel does not know (ignored, as runc
/// does, with a warning). Privileged means every capability the executor itself holds (as
/// containerd reads them from its own process): one it lacks cannot be granted.
pub fn resolve(names: &[String], privileged: bool) -> Result<(CapsHashSet, Vec<String>)> {
    let held = caps::read(None, CapSet::Permitted).context(|| "read the permitted set")?;
    if privileged {
        return Ok((held, Vec::new()));
    }
    let supported = caps::runtime::thread_all_supported();
    let mut wanted = CapsHashSet::new();
    let mut unsupported = Vec::new();
    for name in names {
        let cap = Capability::from_str(&caps::to_canonical(name))
            .map_err(|_| Error::new(format!("unknown capability {name:?}")))?;
        if !supported.contains(&cap) {
            unsupported.push(name.clone());
        } else if held.contains(&cap) {
            wanted.insert(cap);
        } else {
            return Err(Error::new(format!("{cap} is not held by the runtime")));
        }
    }
    Ok((wanted, unsupported))
}

/// Drops every capability not in `wanted` from the bounding set, including ones newer than
/// the `caps` crate knows. Must run before the user changes.
pub fn limit_bounding(wanted: &CapsHashSet) -> Result<()> {
    let keep: Vec<u8> = wanted.iter().map(|c| c.index()).collect();
    for index in 0..64u8 {
        if keep.contains(&index) || !in_bounding(index)? {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(index), 0, 0, 0) } != 0 {
            return Err(Error::from(std::io::Error::last_os_error()))
                .context(|| format!("drop capability {index} from the bounding set"));
        }
    }
    Ok(())
}

/// Whether capability `index` is in the bounding set; false past the kernel's last one.
fn in_bounding(index: u8) -> Result<bool> {
    // SAFETY: prctl with integer arguments only.
    match unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(index), 0, 0, 0) } {
        1 => Ok(true),
        0 => Ok(false),
        _ => match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINVAL) => Ok(false),
            _ => Err(Error::from(std::io::Error::last_os_error()))
                .context(|| format!("read capability {index} of the bounding set")),
        },
    }
}

/// Keeps the permitted set across the coming setuid (the kernel would clear it).
pub fn keep_across_setuid() -> Result<()> {
    nix::sys::prctl::set_keepcaps(true).context(|| "PR_SET_KEEPCAPS")
}

/// The final sets, after the user changed. Effective first: it must stay within permitted
/// at every step.
pub fn apply(wanted: &CapsHashSet) -> Result<()> {
    caps::set(None, CapSet::Effective, wanted).context(|| "set the effective capabilities")?;
    caps::set(None, CapSet::Permitted, wanted).context(|| "set the permitted capabilities")?;
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new())
        .context(|| "clear the inheritable capabilities")?;
    caps::clear(None, CapSet::Ambient).context(|| "clear the ambient capabilities")?;
    nix::sys::prctl::set_keepcaps(false).context(|| "PR_SET_KEEPCAPS off")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_or_without_prefix() {
        let (wanted, unsupported) =
            resolve(&["CAP_CHOWN".into(), "net_raw".into()], false).unwrap();
        assert!(wanted.contains(&Capability::CAP_CHOWN));
        assert!(wanted.contains(&Capability::CAP_NET_RAW));
        assert_eq!(wanted.len(), 2);
        assert!(unsupported.is_empty());
        let e = resolve(&["CAP_NOPE".into()], false).unwrap_err();
        assert!(e.message().contains("CAP_NOPE"), "{e}");
        let (all, _) = resolve(&[], true).unwrap();
        assert!(all.contains(&Capability::CAP_SYS_ADMIN));
    }
}
