//! What an unprivileged container is kept from: capabilities beyond its set, syscalls its
//! seccomp profile refuses, and the host paths it gets masked or read-only.

use super::{Invalid, invalid, to_strings};
use crate::cri::v1::{LinuxContainerSecurityContext, security_profile::ProfileType};
use crate::executor::capabilities::{ALL_CAPABILITIES, DEFAULT_CAPABILITIES, canonical_name};
use crate::executor::spec::SeccompProfile;

/// Paths hidden from unprivileged containers unless the config names its own.
const DEFAULT_MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const DEFAULT_READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The masked and the read-only paths: none for a privileged container, the defaults
/// unless the config names its own.
pub(super) fn hidden_paths(
    security: &LinuxContainerSecurityContext,
    privileged: bool,
) -> (Vec<String>, Vec<String>) {
    if privileged {
        (Vec::new(), Vec::new())
    } else if security.masked_paths.is_empty() && security.readonly_paths.is_empty() {
        (to_strings(DEFAULT_MASKED), to_strings(DEFAULT_READONLY))
    } else {
        (
            security.masked_paths.clone(),
            security.readonly_paths.clone(),
        )
    }
}

/// The capabilities in this process's bounding set, by name (ALL_CAPABILITIES is in
/// capability-number order).
fn held_capabilities() -> Vec<String> {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

pub(super) fn capabilities(
    security: &LinuxContainerSecurityContext,
    privileged: bool,
) -> Result<Vec<String>, Invalid> {
    if privileged {
        return Ok(to_strings(ALL_CAPABILITIES));
    }
    let mut caps = to_strings(DEFAULT_CAPABILITIES);
    let Some(change) = &security.capabilities else {
        return Ok(caps);
    };
    let is_all = |name: &String| name.eq_ignore_ascii_case("ALL");
    // "ALL" first, then the named ones, as containerd and CRI-O do: `drop: [ALL], add:
    // [NET_BIND_SERVICE]` (the restricted Pod Security profile's pattern) keeps the one added.
    if change.add_capabilities.iter().any(is_all) {
        // As containerd: every capability the runtime itself holds.
        caps = held_capabilities();
    }
    if change.drop_capabilities.iter().any(is_all) {
        caps.clear();
    }
    for add in change.add_capabilities.iter().filter(|c| !is_all(c)) {
        let cap = canonical_name(add);
        if !ALL_CAPABILITIES.contains(&cap.as_str()) {
            return Err(invalid(
                "config.linux.security_context.capabilities",
                format!("unknown capability {add:?}"),
            ));
        }
        if !caps.contains(&cap) {
            caps.push(cap);
        }
    }
    for drop in change.drop_capabilities.iter().filter(|c| !is_all(c)) {
        let cap = canonical_name(drop);
        caps.retain(|c| *c != cap);
    }
    Ok(caps)
}

/// The seccomp filter: none for privileged containers (they ignore profiles), else what the
/// security context names. No profile at all means unconfined, as the CRI says.
pub(super) fn seccomp(
    security: &LinuxContainerSecurityContext,
    privileged: bool,
    caps: &[String],
) -> Result<Option<SeccompProfile>, Invalid> {
    if privileged {
        return Ok(None);
    }
    let field = "config.linux.security_context.seccomp";
    #[allow(deprecated)]
    let legacy = security.seccomp_profile_path.as_str();
    let (kind, localhost) = match &security.seccomp {
        Some(p) => (
            ProfileType::try_from(p.profile_type).unwrap_or(ProfileType::RuntimeDefault),
            p.localhost_ref.clone(),
        ),
        None if legacy == "runtime/default" || legacy == "docker/default" => {
            (ProfileType::RuntimeDefault, String::new())
        }
        None if legacy.starts_with("localhost/") => (
            ProfileType::Localhost,
            legacy["localhost/".len()..].to_owned(),
        ),
        None => (ProfileType::Unconfined, String::new()),
    };
    match kind {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault => Ok(Some(crate::executor::seccomp::runtime_default(caps))),
        ProfileType::Localhost => {
            let bytes = std::fs::read(&localhost).map_err(|e| {
                invalid(
                    field,
                    format!("cannot read seccomp profile {localhost:?}: {e}"),
                )
            })?;
            crate::executor::seccomp::from_json(&bytes, caps)
                .map(Some)
                .map_err(|e| invalid(field, format!("seccomp profile {localhost:?}: {e}")))
        }
    }
}
