//! Rules shared by many fields. Each takes the field's path for its message.

use std::collections::HashMap;

use super::{Invalid, invalid};

/// Linux's PATH_MAX, the longest path a system call takes.
const MAX_PATH: usize = 4096;
/// A Kubernetes object name (DNS-1123 subdomain): pod names, which kubelet also puts in labels.
pub const MAX_NAME: usize = 253;
/// Kubernetes' limit on all of an object's annotations together (keys and values).
const MAX_ANNOTATIONS: usize = 256 * 1024;
/// The kernel's HOST_NAME_MAX.
const MAX_HOSTNAME: usize = 64;
/// IDs are 64 hex digits; callers may give a unique prefix.
const MAX_ID: usize = 128;

/// A short, escaped view of a value for a message: a 14 MiB key must not come back whole in
/// a gRPC header, and a NUL or newline must show as an escape.
pub fn shown(s: &str) -> String {
    let short: String = s.chars().take(64).collect();
    if short.len() < s.len() {
        format!("{short:?}…")
    } else {
        format!("{short:?}")
    }
}

pub fn required(field: &str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(invalid(field, "is required"));
    }
    Ok(())
}

/// Bytes the kernel cannot carry in a C string (argv, env, paths, file contents we write).
pub fn no_nul(field: &str, s: &str) -> Result<(), Invalid> {
    if s.contains('\0') {
        return Err(invalid(field, "must not contain a NUL byte"));
    }
    Ok(())
}

/// One line of text: no NUL, newline or other control character. Names, keys and anything
/// written into a line-based file (resolv.conf, hosts) or a CNI plugin's environment.
pub fn plain(field: &str, s: &str) -> Result<(), Invalid> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(invalid(
            field,
            format!("must not contain control characters (found {c:?})"),
        ));
    }
    Ok(())
}

pub fn max_len(field: &str, s: &str, max: usize) -> Result<(), Invalid> {
    if s.len() > max {
        return Err(invalid(
            field,
            format!("is {} bytes long, more than {max}", s.len()),
        ));
    }
    Ok(())
}

/// A required one-line name of at most `max` bytes.
pub fn name(field: &str, s: &str, max: usize) -> Result<(), Invalid> {
    required(field, s)?;
    plain(field, s)?;
    max_len(field, s, max)
}

/// A pod or container ID, or a unique prefix of one.
pub fn id(field: &str, s: &str) -> Result<(), Invalid> {
    required(field, s)?;
    optional_id(field, s)
}

/// An ID in a filter: empty means any.
pub fn optional_id(field: &str, s: &str) -> Result<(), Invalid> {
    max_len(field, s, MAX_ID)?;
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(invalid(
            field,
            format!("{} is not an ID (letters, digits, '-', '_', '.')", shown(s)),
        ));
    }
    Ok(())
}

/// A path the kernel will resolve on the host or in the container: absolute, as the CRI says.
pub fn absolute_path(field: &str, s: &str) -> Result<(), Invalid> {
    required(field, s)?;
    no_nul(field, s)?;
    max_len(field, s, MAX_PATH)?;
    if !s.starts_with('/') {
        return Err(invalid(
            field,
            format!("{} must be an absolute path", shown(s)),
        ));
    }
    Ok(())
}

pub fn optional_absolute_path(field: &str, s: &str) -> Result<(), Invalid> {
    if s.is_empty() {
        return Ok(());
    }
    absolute_path(field, s)
}

/// A path below a directory the request gave (a log path below the pod's log directory):
/// relative, and never climbing out with `..`.
pub fn path_below(field: &str, s: &str) -> Result<(), Invalid> {
    no_nul(field, s)?;
    max_len(field, s, MAX_PATH)?;
    if s.starts_with('/') || s.split('/').any(|part| part == "..") {
        return Err(invalid(
            field,
            format!("{} must be a relative path without \"..\"", shown(s)),
        ));
    }
    Ok(())
}

/// RFC 1123 host name, as the kernel and Kubernetes take it: at most 64 bytes (HOST_NAME_MAX)
/// of dot-separated labels of 1–63 letters, digits and `-`, not starting or ending with `-`.
pub fn hostname(field: &str, s: &str) -> Result<(), Invalid> {
    max_len(field, s, MAX_HOSTNAME)?;
    if s.is_empty() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !s.split('.').all(label_ok) {
        return Err(invalid(
            field,
            format!(
                "{} is not a host name (dot-separated labels of 1-63 letters, digits and '-', \
                 not starting or ending with '-')",
                shown(s)
            ),
        ));
    }
    Ok(())
}

/// A DNS-1123 subdomain: the prefix of a qualified name, a DNS search domain.
fn dns_subdomain(s: &str) -> bool {
    (1..=MAX_NAME).contains(&s.len())
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A Kubernetes label or annotation key: `[prefix/]name`, the prefix a DNS-1123 subdomain,
/// the name 1–63 letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit.
pub fn qualified_name(field: &str, key: &str) -> Result<(), Invalid> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if !name_ok || !prefix.is_none_or(dns_subdomain) {
        return Err(invalid(
            field,
            format!(
                "key {} is not a qualified name ([DNS subdomain/]name, name 1-63 letters, \
                 digits, '-', '_', '.')",
                shown(key)
            ),
        ));
    }
    Ok(())
}

/// CRI labels: qualified-name keys; values one line of at most 253 bytes (kubelet puts pod
/// names, which may be that long, next to the pod's own labels of at most 63); 256 KiB in
/// all, as annotations. Every list answer carries them: without a bound, a few containers
/// with megabytes of labels push ListContainers past the clients' 16 MiB message limit, and
/// `crictl ps -a` / `crictl rm -af` can no longer see or remove anything.
pub fn labels(field: &str, labels: &HashMap<String, String>) -> Result<(), Invalid> {
    let mut total = 0usize;
    for (key, value) in labels {
        qualified_name(field, key)?;
        let field = format!("{field}[{}]", shown(key));
        plain(&field, value)?;
        max_len(&field, value, MAX_NAME)?;
        total += key.len() + value.len();
    }
    if total > MAX_ANNOTATIONS {
        return Err(invalid(
            field,
            format!("{total} bytes of keys and values, more than {MAX_ANNOTATIONS}"),
        ));
    }
    Ok(())
}

/// CRI annotations: qualified-name keys, values without NUL, 256 KiB in all (Kubernetes'
/// limit on an object's annotations).
pub fn annotations(field: &str, annotations: &HashMap<String, String>) -> Result<(), Invalid> {
    let mut total = 0usize;
    for (key, value) in annotations {
        qualified_name(field, key)?;
        no_nul(&format!("{field}[{}]", shown(key)), value)?;
        total += key.len() + value.len();
    }
    if total > MAX_ANNOTATIONS {
        return Err(invalid(
            field,
            format!("{total} bytes of keys and values, more than {MAX_ANNOTATIONS}"),
        ));
    }
    Ok(())
}

/// A label selector of a list filter: compared, never stored, so one-line text is enough.
pub fn selector(field: &str, selector: &HashMap<String, String>) -> Result<(), Invalid> {
    for (key, value) in selector {
        plain(field, key)?;
        plain(&format!("{field}[{}]", shown(key)), value)?;
    }
    Ok(())
}

/// A port number in `min..=65535`.
pub fn port(field: &str, port: i32, min: i32) -> Result<(), Invalid> {
    if !(min..=65535).contains(&port) {
        return Err(invalid(
            field,
            format!("{port} is not a port number ({min}-65535)"),
        ));
    }
    Ok(())
}

pub fn ip(field: &str, s: &str) -> Result<(), Invalid> {
    if s.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid(
            field,
            format!("{} is not an IPv4 or IPv6 address", shown(s)),
        ));
    }
    Ok(())
}

/// A protobuf enum field holds a value the CRI defines.
pub fn known<E: TryFrom<i32>>(field: &str, value: i32) -> Result<(), Invalid> {
    if E::try_from(value).is_err() {
        return Err(invalid(field, format!("{value} is not a known value")));
    }
    Ok(())
}

/// A uid or gid: 0..=4294967294 (-1 is "no id" to the kernel).
pub fn unix_id(field: &str, value: i64) -> Result<(), Invalid> {
    if !(0..=4_294_967_294).contains(&value) {
        return Err(invalid(field, format!("{value} is outside 0..=4294967294")));
    }
    Ok(())
}

/// Pod sysctls: only those kubelet and runc know to be namespaced — IPC (`kernel.shm*`,
/// `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`) and, outside the host network, `net.*`; names
/// as sysctl(8) writes them (dots, or slashes); values one line, numbers unless the sysctl
/// takes words.
pub fn sysctl(field: &str, name: &str, value: &str, host_network: bool) -> Result<(), Invalid> {
    let field = format!("{field}[{}]", shown(name));
    if crate::monitor::layout::sysctl_path(name).is_none() {
        return Err(invalid(
            &field,
            "is not a sysctl name (letters, digits, '_', '-', '.' or '/' separators)",
        ));
    }
    let dotted = if name.contains('/') {
        name.replace('/', ".")
    } else {
        name.to_owned()
    };
    let ipc = dotted.starts_with("kernel.shm")
        || dotted.starts_with("kernel.msg")
        || dotted == "kernel.sem"
        || dotted.starts_with("fs.mqueue.");
    let net = dotted.starts_with("net.");
    if !ipc && !net {
        return Err(invalid(
            &field,
            "is not a namespaced sysctl (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.*)",
        ));
    }
    if net && host_network {
        return Err(invalid(
            &field,
            "net.* sysctls cannot be set in a pod on the host network",
        ));
    }
    if value.is_empty() {
        return Err(invalid(&field, "needs a value"));
    }
    max_len(&field, value, MAX_PATH)?;
    let words = WORD_SYSCTLS.iter().any(|w| glob_match(w, &dotted));
    let ok = if words {
        value.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b' ' | b'\t' | b'_' | b'-' | b':' | b'.' | b',')
        })
    } else {
        // Integers, lists of them, ranges: "1", "-1", "1024 65000", "8080,9000-9100".
        value
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'\t' | b'-' | b','))
            && value.bytes().any(|b| b.is_ascii_digit())
    };
    if !ok {
        return Err(invalid(
            &field,
            format!(
                "value {} is not {}",
                shown(value),
                if words {
                    "one line of words"
                } else {
                    "a number or a list of numbers"
                }
            ),
        ));
    }
    Ok(())
}

/// Namespaced sysctls whose values are words, not numbers (`*` is one name component).
const WORD_SYSCTLS: &[&str] = &[
    "net.ipv4.tcp_congestion_control",
    "net.ipv4.tcp_allowed_congestion_control",
    "net.ipv4.tcp_fastopen_key",
    "net.ipv6.conf.*.stable_secret",
    "net.core.default_qdisc",
];

fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), name.split('.').collect());
    p.len() == n.len() && p.iter().zip(&n).all(|(p, n)| *p == "*" || p == n)
}
