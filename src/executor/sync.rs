//! The two pipes between the monitor and `ferrocri-monitor executor`, both sides.
//!
//! The monitor forks, puts the container's stdio on fds 0/1/2, the write end of the REPORT
//! pipe on fd 3 and the read end of the START pipe on fd 4 (and, for a terminal, its end of
//! the console socket on fd 5: see `terminal`), and execs
//! `/proc/self/exe executor --spec <file>` ([`executor_args`]).
//!
//! - REPORT (executor → monitor), newline-terminated lines: zero or more
//!   `warning: <text>`, then `ready` once everything up to the exec is done, or
//!   `error: <text>` (the executor then exits 1).
//! - START (monitor → executor): one byte means exec now; closing the pipe without a byte
//!   means the container was removed before it started (the executor exits 0, running
//!   nothing).
//! - After the byte, the report pipe closes without a word when the exec succeeded (it is
//!   close-on-exec). If the exec fails: `error: exec <argv0>: <errno text>` and exit 127;
//!   if a step after the byte fails (seccomp): `error: <text>` and exit 1.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::path::Path;

/// The executor's fd for the write end of the report pipe.
pub const REPORT_FD: RawFd = 3;
/// The executor's fd for the read end of the start pipe.
pub const START_FD: RawFd = 4;
/// What the monitor writes on the start pipe to let the container run.
pub const START_BYTE: u8 = b'S';

/// Exit codes of the executor when it does not exec.
pub const EXIT_NOT_STARTED: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_EXEC_FAILED: i32 = 127;

const READY: &str = "ready";
const WARNING: &str = "warning: ";
const ERROR: &str = "error: ";

/// The arguments after the program (`/proc/self/exe`) that run the executor on `spec_file`.
pub fn executor_args(spec_file: &Path) -> [OsString; 3] {
    [
        "executor".into(),
        "--spec".into(),
        spec_file.as_os_str().to_owned(),
    ]
}

/// One line of the report pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Something the monitor should log; the executor goes on.
    Warning(String),
    /// Everything before the exec is done; the executor waits on the start pipe.
    Ready,
    /// The executor failed and exits (1, or 127 for a failed exec).
    Error(String),
}

impl Message {
    /// Parses one line (without its newline). Anything unknown is an error: the executor
    /// writes nothing else.
    pub fn parse(line: &str) -> Message {
        if line == READY {
            Message::Ready
        } else if let Some(text) = line.strip_prefix(WARNING) {
            Message::Warning(text.to_owned())
        } else if let Some(text) = line.strip_prefix(ERROR) {
            Message::Error(text.to_owned())
        } else {
            Message::Error(format!("unexpected report from the executor: {line:?}"))
        }
    }

    /// The line that carries this message, newline included; newlines inside become spaces.
    pub fn to_line(&self) -> String {
        let one_line = |text: &str| text.replace(['\n', '\r'], " ");
        match self {
            Message::Ready => format!("{READY}\n"),
            Message::Warning(text) => format!("{WARNING}{}\n", one_line(text)),
            Message::Error(text) => format!("{ERROR}{}\n", one_line(text)),
        }
    }
}

/// The monitor's (blocking) reader of the report pipe.
pub struct Reports<R: Read> {
    reader: BufReader<R>,
}

impl<R: Read> Reports<R> {
    pub fn new(reader: R) -> Reports<R> {
        Reports {
            reader: BufReader::new(reader),
        }
    }

    /// The next message, or None at end of file.
    pub fn next_message(&mut self) -> std::io::Result<Option<Message>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(Message::parse(line.trim_end_matches('\n'))))
    }

    /// Reads up to `ready`: Ok(the warnings before it), or Err(why the executor failed).
    pub fn wait_ready(&mut self) -> Result<Vec<String>, String> {
        let mut warnings = Vec::new();
        loop {
            match self.next_message() {
                Err(e) => return Err(format!("cannot read the executor's report: {e}")),
                Ok(None) => return Err("the executor exited before it was ready".to_owned()),
                Ok(Some(Message::Ready)) => return Ok(warnings),
                Ok(Some(Message::Warning(text))) => warnings.push(text),
                Ok(Some(Message::Error(text))) => return Err(text),
            }
        }
    }

    /// After the start byte: Ok when the pipe closes without an error (the exec happened),
    /// Err(the error) otherwise. Warnings are skipped.
    pub fn wait_exec(&mut self) -> Result<(), String> {
        loop {
            match self.next_message() {
                Err(e) => return Err(format!("cannot read the executor's report: {e}")),
                Ok(None) => return Ok(()),
                Ok(Some(Message::Error(text))) => return Err(text),
                Ok(Some(Message::Ready | Message::Warning(_))) => {}
            }
        }
    }
}

/// The executor's end of the report pipe.
pub(crate) struct Reporter(File);

impl Reporter {
    /// Takes over fd 3 and marks it close-on-exec, so the exec itself closes it.
    pub(crate) fn take() -> Result<Reporter, String> {
        set_cloexec(REPORT_FD).map_err(|e| format!("no report pipe on fd {REPORT_FD}: {e}"))?;
        // SAFETY: fd 3 is open (fcntl just succeeded) and nothing else in this process owns it.
        Ok(Reporter(unsafe { File::from_raw_fd(REPORT_FD) }))
    }

    pub(crate) fn send(&mut self, message: &Message) {
        // Nothing to do if the monitor is gone: it will not start us either.
        let _ = self.0.write_all(message.to_line().as_bytes());
    }

    pub(crate) fn warn(&mut self, text: impl Into<String>) {
        self.send(&Message::Warning(text.into()));
    }
}

/// The executor's end of the start pipe.
pub(crate) struct StartSignal(File);

impl StartSignal {
    /// Takes over fd 4 and marks it close-on-exec, so the container never sees it.
    pub(crate) fn take() -> Result<StartSignal, String> {
        set_cloexec(START_FD).map_err(|e| format!("no start pipe on fd {START_FD}: {e}"))?;
        // SAFETY: as for the report pipe.
        Ok(StartSignal(unsafe { File::from_raw_fd(START_FD) }))
    }

    /// Blocks until the monitor decides: true for a byte (start), false for end of file or
    /// a broken pipe (do not start).
    pub(crate) fn wait(mut self) -> bool {
        let mut byte = [0u8; 1];
        loop {
            match self.0.read(&mut byte) {
                Ok(n) => return n == 1,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
}

fn set_cloexec(fd: RawFd) -> nix::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    // SAFETY: only the flags of the fd change; an fd that is not open gives EBADF.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for m in [
            Message::Ready,
            Message::Warning("oom_score_adj kept".into()),
            Message::Error("mount /data: No such file or directory".into()),
        ] {
            let line = m.to_line();
            assert!(line.ends_with('\n'));
            assert_eq!(Message::parse(line.trim_end_matches('\n')), m);
        }
        assert_eq!(
            Message::Error("a\nb".into()).to_line(),
            "error: a b\n",
            "one message is one line"
        );
        assert!(matches!(Message::parse("garbage"), Message::Error(_)));
    }

    #[test]
    fn reader_collects_warnings_then_ready_then_eof() {
        let text = "warning: w1\nready\n";
        let mut reports = Reports::new(text.as_bytes());
        assert_eq!(reports.wait_ready(), Ok(vec!["w1".to_owned()]));
        assert_eq!(reports.wait_exec(), Ok(()));

        let mut failed = Reports::new("error: exec x: No such file or directory\n".as_bytes());
        assert_eq!(
            failed.wait_ready(),
            Err("exec x: No such file or directory".to_owned())
        );
        let mut silent = Reports::new("".as_bytes());
        assert!(silent.wait_ready().is_err());
    }
}
