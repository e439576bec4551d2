//! What the running kernel offers, probed once: shared by `ferrocri check`, the start-up log,
//! the Status RPC's feature flags and the seccomp profile's kernel conditions.

use std::sync::OnceLock;

/// The running kernel's version, e.g. (6, 18, 44).
pub fn kernel_version() -> Option<(u32, u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_kernel_version(release.trim())
}

/// `6.18.44-fc-v769` → (6, 18, 44); `4.8` → (4, 8, 0).
pub fn parse_kernel_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = [0u32; 3];
    let mut count = 0;
    for (i, piece) in text.split('.').take(3).enumerate() {
        let digits: String = piece.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            break;
        }
        parts[i] = digits.parse().ok()?;
        count = i + 1;
        if digits.len() != piece.len() {
            break;
        }
    }
    (count >= 2).then_some((parts[0], parts[1], parts[2]))
}

/// Whether the kernel has mount_setattr (Linux 5.12), needed for recursive read-only and
/// idmapped mounts.
pub fn mount_setattr_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        // An invalid call: ENOSYS means the kernel lacks it, anything else means it exists.
        // SAFETY: mount_setattr with a null attr and size 0 touches no memory.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                -1,
                c"".as_ptr(),
                0,
                std::ptr::null::<u8>(),
                0,
            )
        };
        !(r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
    })
}

/// Whether a filesystem type is registered with the kernel (/proc/filesystems).
pub fn filesystem_supported(name: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|text| {
        text.lines()
            .any(|line| line.split_whitespace().last() == Some(name))
    })
}

/// Whether seccomp filters can be installed (CONFIG_SECCOMP_FILTER).
pub fn seccomp_filter_supported() -> bool {
    // PR_GET_SECCOMP fails with EINVAL on a kernel built without seccomp.
    // SAFETY: PR_GET_SECCOMP takes no pointers.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    mode >= 0 && std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.contains("Seccomp:"))
}

/// How many user namespaces may exist (0: none may be created).
pub fn max_user_namespaces() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v769"), Some((6, 18, 44)));
        assert_eq!(parse_kernel_version("4.8"), Some((4, 8, 0)));
        assert_eq!(parse_kernel_version("5.15.0-91-generic"), Some((5, 15, 0)));
        assert_eq!(parse_kernel_version("6.1-rc3"), Some((6, 1, 0)));
        assert_eq!(parse_kernel_version("5.10.0-28-amd64"), Some((5, 10, 0)));
        assert_eq!(parse_kernel_version("6"), None);
        assert_eq!(parse_kernel_version("junk"), None);
        assert!(kernel_version().is_some());
    }

    #[test]
    fn this_host() {
        // The test hosts run containers: these must hold there.
        assert!(filesystem_supported("proc"));
        assert!(!filesystem_supported("no-such-fs"));
        assert!(seccomp_filter_supported());
    }
}
