//! Stop signals: the CRI's `Signal` enum and image `StopSignal` names, as numbers.

use crate::cri::v1::Signal;

/// `SIGQUIT`, `QUIT` or `3` → 3.
pub fn from_name(name: &str) -> Option<i32> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// The CRI enum value → a signal number (the enum names are `SIGNAL_<NAME>`).
pub fn from_cri(value: i32) -> Option<i32> {
    let signal = Signal::try_from(value).ok()?;
    let name = signal.as_str_name().trim_start_matches("SIGNAL_");
    from_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(from_name("SIGQUIT"), Some(libc::SIGQUIT));
        assert_eq!(from_name("term"), Some(libc::SIGTERM));
        assert_eq!(from_name("9"), Some(9));
        assert_eq!(from_name("SIGNOPE"), None);
        assert_eq!(from_name(""), None);
        assert_eq!(from_cri(Signal::Sigkill as i32), Some(libc::SIGKILL));
    }
}
