//! Telling systemd how the daemon is (`Type=notify`): READY=1 once the CRI socket serves,
//! STOPPING=1 when shutdown begins, WATCHDOG=1 every half watchdog period when the unit sets
//! `WatchdogSec=`. The protocol is one datagram of `KEY=value` lines on the unix socket named
//! by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace); without it, nothing
//! is sent, so the daemon runs the same outside systemd.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where to notify, taken from the environment once at start-up.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<std::ffi::OsString>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`/`$WATCHDOG_PID` and removes them from the
    /// environment, so monitors and CNI plugins (which outlive or are not the main process)
    /// never notify in the daemon's name.
    ///
    /// # Safety
    /// Changes the environment: call it while the process has a single thread.
    pub unsafe fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty());
        let usec = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        // WATCHDOG_PID, when set, says which process the watchdog is meant for.
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            // SAFETY: the caller guarantees no other thread reads the environment now.
            unsafe { std::env::remove_var(key) };
        }
        Notifier {
            socket,
            watchdog: usec.filter(|u| *u > 0 && for_us).map(Duration::from_micros),
        }
    }

    /// How often to send WATCHDOG=1: half the period systemd waits, as sd_watchdog_enabled(3)
    /// advises.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!(
            "READY=1\nSTATUS={status}\nMAINPID={}\n",
            std::process::id()
        ));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=shutting down\n");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1\n");
    }

    fn send(&self, message: &str) {
        let Some(socket) = &self.socket else {
            return;
        };
        if let Err(e) = send_datagram(socket, message.as_bytes()) {
            tracing::debug!(error = %e, socket = ?socket, "cannot notify systemd");
        }
    }
}

fn send_datagram(socket: &std::ffi::OsStr, message: &[u8]) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    let bytes = socket.as_bytes();
    let address = match bytes.strip_prefix(b"@") {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name)?,
        None if bytes.starts_with(b"/") => std::os::unix::net::SocketAddr::from_pathname(socket)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither an absolute path nor an abstract name (@…)",
            ));
        }
    };
    let datagram = UnixDatagram::unbound()?;
    // A listener that stops reading must never block the daemon: a full queue drops the
    // message (EAGAIN) instead.
    datagram.set_nonblocking(true)?;
    datagram.send_to_addr(message, &address)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_to_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            socket: Some(path.into_os_string()),
            watchdog: None,
        };
        notifier.stopping();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\nSTATUS=shutting down\n");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("ferrocri-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        let notifier = Notifier {
            socket: Some(format!("@{name}").into()),
            watchdog: Some(Duration::from_secs(10)),
        };
        notifier.watchdog();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1\n");
        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(5)));
    }
}
