//! Process names an operator can read: `ps` shows a monitor as
//! `ferrocri-monitor <namespace>/<name> <pod id prefix>` and its pause as
//! `ferrocri-pause <pod id prefix>` (short name `pause`), instead of the path and flags they were started with.
//!
//! The command line (`/proc/PID/cmdline`, what `ps -f` shows) is the memory the kernel placed
//! the arguments in; it is rewritten in place, words separated by NULs like real arguments and
//! the rest filled with NULs, so it never grows past the original. The short name
//! (`/proc/PID/comm`, what `ps -e` and `top` show) is set with PR_SET_NAME, at most 15 bytes.

use std::sync::OnceLock;

/// The short name of a monitor: its binary's name cut to the kernel's 15 bytes, as `exec`
/// would give it.
pub const MONITOR_COMM: &str = "ferrocri-monito";
/// The short name of a pause: what the pause image's `/pause` shows, so tools that know
/// Kubernetes pause processes by name recognise ours.
pub const PAUSE_COMM: &str = "pause";
/// How much of the pod ID the titles show (as `crictl pods` does).
pub const ID_PREFIX_LEN: usize = 13;

/// Where this process's arguments are: [start, end) of the argv strings.
static ARG_AREA: OnceLock<Option<(usize, usize)>> = OnceLock::new();

/// The monitor's title words.
pub fn monitor_words<'a>(namespace: &'a str, name: &'a str, pod_id: &'a str) -> Vec<String> {
    vec![
        "ferrocri-monitor".to_owned(),
        format!("{namespace}/{name}"),
        id_prefix(pod_id).to_owned(),
    ]
}

/// The pause's title words.
pub fn pause_words(pod_id: &str) -> Vec<String> {
    vec!["ferrocri-pause".to_owned(), id_prefix(pod_id).to_owned()]
}

fn id_prefix(id: &str) -> &str {
    id.get(..ID_PREFIX_LEN).unwrap_or(id)
}

/// Renames this process: `comm` as its short name, `words` as its command line (cut to fit).
/// Best effort: a process that cannot be renamed works the same.
pub fn set(comm: &str, words: &[String]) {
    set_comm(comm);
    // Found once, before any fork: a forked pause shares the same addresses.
    let area = *ARG_AREA.get_or_init(find_arg_area);
    let Some((start, end)) = area else {
        return;
    };
    let len = end.saturating_sub(start);
    if len == 0 {
        return;
    }
    let text = layout(words, len);
    // SAFETY: [start, end) is this process's argument strings as the kernel reports them in
    // /proc/self/stat: mapped, writable (the initial stack) and `len` bytes long; `text` is
    // exactly `len` bytes. Nothing holds a Rust reference into that memory (std copies the
    // arguments when they are read), and the process is single-threaded when this runs.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), start as *mut u8, len);
    }
}

/// The words NUL-separated and NUL-padded to exactly `len` bytes, the last byte a NUL (so
/// the kernel reads the area as plain arguments).
fn layout(words: &[String], len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len);
    for word in words {
        text.extend_from_slice(word.as_bytes());
        text.push(0);
    }
    text.truncate(len.saturating_sub(1));
    text.resize(len, 0);
    text
}

fn set_comm(comm: &str) {
    // The kernel keeps 15 bytes and a NUL.
    let short = &comm.as_bytes()[..comm.len().min(15)];
    if let Ok(name) = std::ffi::CString::new(short) {
        let _ = nix::sys::prctl::set_name(&name);
    }
}

/// arg_start and arg_end, fields 48 and 49 of /proc/self/stat.
fn find_arg_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_arg_area(&stat)
}

fn parse_arg_area(stat: &str) -> Option<(usize, usize)> {
    // The command name (field 2) may hold spaces and parentheses; fields after it are plain.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let start = fields.get(48 - 3)?.parse().ok()?;
    let end = fields.get(49 - 3)?.parse().ok()?;
    (end > start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_cut_to_the_area() {
        let words = vec!["ferrocri-pause".to_owned(), "0123456789abc".to_owned()];
        let text = layout(&words, 40);
        assert_eq!(text.len(), 40);
        assert_eq!(&text[..29], b"ferrocri-pause\x000123456789abc\x00");
        assert!(text[29..].iter().all(|b| *b == 0));
        let short = layout(&words, 10);
        assert_eq!(short, b"ferrocri-\x00");
    }

    #[test]
    fn arg_area_from_stat() {
        let own = find_arg_area().expect("this process's arg area");
        assert!(own.1 > own.0);
        // A command name with ") " in it must not shift the fields.
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[48 - 3] = "1000".into();
        fields[49 - 3] = "1100".into();
        let stat = format!("42 (a) b) {}", fields.join(" "));
        assert_eq!(parse_arg_area(&stat), Some((1000, 1100)));
    }

    #[test]
    fn titles() {
        assert_eq!(
            monitor_words("kube-system", "coredns", &"f".repeat(64)),
            vec!["ferrocri-monitor", "kube-system/coredns", "fffffffffffff"]
        );
        assert_eq!(pause_words("abc"), vec!["ferrocri-pause", "abc"]);
    }
}
