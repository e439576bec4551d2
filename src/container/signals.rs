//! Stop signals: the CRI's `Signal` enum and image `StopSignal` names, as numbers, and back.
//!
//! Names follow what image builders write (`SIGQUIT`, `QUIT`, `3`, `SIGRTMIN+3`,
//! `RTMAX-1`); real-time signals count from glibc's `SIGRTMIN` (34), as Go's and
//! moby's tables do, so a number means the same here as in the image's own tooling.

use crate::cri::v1::Signal;

/// The classic signals by name (without `SIG`), aliases included.
const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// glibc's first and last real-time signal (the kernel's 32 and 33 are glibc's own).
const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

/// `SIGQUIT`, `QUIT`, `3`, `SIGRTMIN+2`, `RTMAX-1` → a signal number.
pub fn from_name(name: &str) -> Option<i32> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i32>() {
        return (1..=RTMAX).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES.iter().find(|(known, _)| *known == bare) {
        return Some(n);
    }
    let offset = |text: &str| -> Option<i32> {
        if text.is_empty() {
            return Some(0);
        }
        text.parse::<i32>().ok()
    };
    let n = if let Some(rest) = bare.strip_prefix("RTMIN") {
        RTMIN + offset(rest.strip_prefix('+').unwrap_or(rest))?
    } else if let Some(rest) = bare.strip_prefix("RTMAX") {
        RTMAX - offset(rest.strip_prefix('-').unwrap_or(rest))?
    } else {
        return None;
    };
    (RTMIN..=RTMAX).contains(&n).then_some(n)
}

/// The CRI enum value → a signal number (the enum names are `SIGNAL_SIG<NAME>`, with
/// `PLUS`/`MINUS` for the real-time offsets). 0 (runtime default) and unknown values: None.
pub fn from_cri(value: i32) -> Option<i32> {
    let signal = Signal::try_from(value).ok()?;
    if signal == Signal::RuntimeDefault {
        return None;
    }
    let name = signal
        .as_str_name()
        .trim_start_matches("SIGNAL_")
        .replace("PLUS", "+")
        .replace("MINUS", "-");
    from_name(&name)
}

/// A signal number → the CRI enum (for ContainerStatus.stop_signal), by its main name.
pub fn to_cri(number: i32) -> Signal {
    let name = match number {
        RTMIN => "RTMIN".to_owned(),
        RTMAX => "RTMAX".to_owned(),
        n if (RTMIN + 1..RTMIN + 16).contains(&n) => format!("RTMINPLUS{}", n - RTMIN),
        n if (RTMIN + 16..RTMAX).contains(&n) => format!("RTMAXMINUS{}", RTMAX - n),
        n => match NAMES.iter().find(|(_, known)| *known == n) {
            Some((name, _)) => (*name).to_owned(),
            None => return Signal::RuntimeDefault,
        },
    };
    Signal::from_str_name(&format!("SIGNAL_SIG{name}")).unwrap_or(Signal::RuntimeDefault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(from_name("SIGQUIT"), Some(libc::SIGQUIT));
        assert_eq!(from_name("term"), Some(libc::SIGTERM));
        assert_eq!(from_name("9"), Some(9));
        assert_eq!(from_name("SIGIOT"), Some(libc::SIGABRT));
        assert_eq!(from_name("SIGRTMIN"), Some(34));
        assert_eq!(from_name("SIGRTMIN+3"), Some(37));
        assert_eq!(from_name("RTMAX-1"), Some(63));
        assert_eq!(from_name("SIGRTMAX"), Some(64));
        assert_eq!(from_name("SIGRTMIN+40"), None);
        assert_eq!(from_name("65"), None);
        assert_eq!(from_name("SIGNOPE"), None);
        assert_eq!(from_name(""), None);
    }

    #[test]
    fn every_cri_value_maps_and_round_trips() {
        assert_eq!(from_cri(Signal::RuntimeDefault as i32), None);
        assert_eq!(from_cri(999), None);
        assert_eq!(from_cri(Signal::Sigkill as i32), Some(libc::SIGKILL));
        assert_eq!(from_cri(Signal::Sigrtminplus1 as i32), Some(35));
        assert_eq!(from_cri(Signal::Sigrtmaxminus14 as i32), Some(50));
        assert_eq!(from_cri(Signal::Sigrtmax as i32), Some(64));
        for value in 1..=Signal::Sigrtmax as i32 {
            let number = from_cri(value).unwrap_or_else(|| panic!("enum {value} has no number"));
            let back = to_cri(number);
            // Aliases (IOT, CLD, POLL) come back as their main name: same number.
            assert_eq!(from_cri(back as i32), Some(number), "enum {value}");
        }
        assert_eq!(to_cri(libc::SIGUSR1), Signal::Sigusr1);
        assert_eq!(to_cri(0), Signal::RuntimeDefault);
    }
}
