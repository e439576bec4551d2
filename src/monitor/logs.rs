//! The container log file in the CRI format kubelet and crictl read:
//!
//! ```text
//! 2016-10-06T00:17:09.669794202Z stdout F hello World
//! ```
//!
//! One record per line: an RFC 3339 UTC timestamp with nine fraction digits, the stream
//! (`stdout` or `stderr`), a tag (`F` for a full line or the last piece of one, `P` for a
//! piece that continues in the next record of the same stream) and the content, without the
//! line's `\n` (a `\r` before it stays, as containerd keeps it).
//!
//! [`LogWriter`] turns the chunks the monitor reads from a container's pipes into records:
//! each stream keeps its own unfinished line until its newline arrives, a line longer than
//! `max_line` is cut into `P` pieces, [`LogWriter::flush_partial`] writes what is pending as
//! `P` records (for a timer), and [`LogWriter::close_stream`] writes it as the final `F`
//! record at end of file. [`LogWriter::reopen`] carries out ReopenContainerLog.
//!
//! A write that fails (disk full, EIO) drops that call's records, counts them, cuts the
//! file back to its last whole record and returns the error; the writer keeps working, so
//! the next write succeeds once space is back, and starts with one `stderr` record saying
//! how many records were lost (`[ferrocri] 3 log record(s) dropped: …`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// containerd's and CRI-O's limit on one record's content.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

/// The mode of a log file ferrocri creates.
const LOG_MODE: u32 = 0o640;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// A write that did not reach the file: its records are dropped, the writer goes on.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to the container log {}: {source} ({dropped} record(s) dropped)", path.display())]
pub struct LogError {
    pub path: PathBuf,
    /// Records this call dropped.
    pub dropped: u64,
    #[source]
    pub source: io::Error,
}

pub struct LogWriter {
    path: PathBuf,
    file: File,
    /// The file's length up to its last whole record; a failed write is cut back to it.
    len: u64,
    /// A failed write left part of a record that could not be cut off: the next write
    /// starts with a newline so that later records stay whole.
    torn: bool,
    max_line: usize,
    tty: bool,
    /// Each stream's unfinished line.
    pending: [Vec<u8>; 2],
    /// The records of the current call, written with one write at its end.
    batch: Vec<u8>,
    batch_records: u64,
    dropped: u64,
    /// Records dropped since the file last said so, and why.
    unreported: u64,
    last_error: String,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("path", &self.path)
            .field("max_line", &self.max_line)
            .field("tty", &self.tty)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl LogWriter {
    /// Opens (appending) or creates (mode 0640) the log file at `path`. Its directory must
    /// exist: kubelet creates it.
    pub fn open(path: impl AsRef<Path>) -> io::Result<LogWriter> {
        let path = path.as_ref().to_path_buf();
        let file = open_log(&path)?;
        let len = file.metadata()?.len();
        Ok(LogWriter {
            path,
            file,
            len,
            torn: false,
            max_line: DEFAULT_MAX_LINE,
            tty: false,
            pending: [Vec::new(), Vec::new()],
            batch: Vec::new(),
            batch_records: 0,
            dropped: 0,
            unreported: 0,
            last_error: String::new(),
        })
    }

    /// The most content bytes in one record (at least 1; default 16 KiB).
    pub fn with_max_line(mut self, max_line: usize) -> LogWriter {
        self.max_line = max_line.max(1);
        self
    }

    /// A TTY container has one output: everything is recorded as `stdout`.
    pub fn with_tty(mut self, tty: bool) -> LogWriter {
        self.tty = tty;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records dropped so far because writing failed.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records a chunk read from one of the container's streams.
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) -> Result<(), LogError> {
        let stream = self.stream(stream);
        let index = stream.index();
        let stamp = timestamp(SystemTime::now());
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = (&rest[..newline], &rest[newline + 1..]);
            if self.pending[index].is_empty() {
                self.line(&stamp, stream, line);
            } else {
                let mut whole = std::mem::take(&mut self.pending[index]);
                whole.extend_from_slice(line);
                self.line(&stamp, stream, &whole);
                // Keep the allocation for the next unfinished line.
                whole.clear();
                self.pending[index] = whole;
            }
            rest = tail;
        }
        if !rest.is_empty() {
            self.pending[index].extend_from_slice(rest);
            // Whatever exceeds max_line cannot wait for its newline.
            let max = self.max_line;
            if self.pending[index].len() > max {
                let pending = std::mem::take(&mut self.pending[index]);
                let mut start = 0;
                while pending.len() - start > max {
                    self.record(&stamp, stream, b'P', &pending[start..start + max]);
                    start += max;
                }
                self.pending[index] = pending[start..].to_vec();
            }
        }
        self.flush_batch()
    }

    /// Writes every stream's unfinished line as a `P` record (a line that stays unfinished
    /// too long, e.g. a prompt).
    pub fn flush_partial(&mut self) -> Result<(), LogError> {
        let stamp = timestamp(SystemTime::now());
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = std::mem::take(&mut self.pending[stream.index()]);
            if !pending.is_empty() {
                self.record(&stamp, stream, b'P', &pending);
            }
        }
        self.flush_batch()
    }

    /// The stream reached end of file: its unfinished line is written as the last, `F`,
    /// record.
    pub fn close_stream(&mut self, stream: Stream) -> Result<(), LogError> {
        let stream = self.stream(stream);
        let pending = std::mem::take(&mut self.pending[stream.index()]);
        if !pending.is_empty() {
            let stamp = timestamp(SystemTime::now());
            self.record(&stamp, stream, b'F', &pending);
        }
        self.flush_batch()
    }

    /// ReopenContainerLog: kubelet has renamed the file; later records go to a new file
    /// at the same path and the old one stops growing. If the new file cannot be opened,
    /// the old one stays in use and the error is returned.
    pub fn reopen(&mut self) -> io::Result<()> {
        let file = open_log(&self.path)?;
        let len = file.metadata()?.len();
        self.file = file;
        self.len = len;
        self.torn = false;
        Ok(())
    }

    fn stream(&self, stream: Stream) -> Stream {
        if self.tty { Stream::Stdout } else { stream }
    }

    /// A complete line: `P` pieces of `max_line` bytes while more than that is left, then
    /// the `F` record.
    fn line(&mut self, stamp: &[u8], stream: Stream, mut content: &[u8]) {
        while content.len() > self.max_line {
            let (piece, rest) = content.split_at(self.max_line);
            self.record(stamp, stream, b'P', piece);
            content = rest;
        }
        self.record(stamp, stream, b'F', content);
    }

    fn record(&mut self, stamp: &[u8], stream: Stream, tag: u8, content: &[u8]) {
        let batch = &mut self.batch;
        batch.extend_from_slice(stamp);
        batch.push(b' ');
        batch.extend_from_slice(stream.as_str().as_bytes());
        batch.push(b' ');
        batch.push(tag);
        batch.push(b' ');
        batch.extend_from_slice(content);
        batch.push(b'\n');
        self.batch_records += 1;
    }

    fn flush_batch(&mut self) -> Result<(), LogError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.batch_records);
        if self.unreported > 0 {
            // The gap is marked where it happened, ahead of the records that follow it.
            let body = std::mem::take(&mut self.batch);
            let note = format!(
                "[ferrocri] {} log record(s) dropped: {}",
                self.unreported, self.last_error
            );
            let stream = self.stream(Stream::Stderr);
            self.record(&timestamp(SystemTime::now()), stream, b'F', note.as_bytes());
            self.batch.extend_from_slice(&body);
        }
        if self.torn {
            self.batch.insert(0, b'\n');
        }
        let result = self.file.write_all(&self.batch);
        let written = self.batch.len() as u64;
        self.batch.clear();
        match result {
            Ok(()) => {
                self.unreported = 0;
                if self.torn {
                    // Where the torn record ended is unknown: ask the file.
                    self.torn = false;
                    self.len = self.file.metadata().map_or(self.len + written, |m| m.len());
                } else {
                    self.len += written;
                }
                Ok(())
            }
            Err(source) => {
                // Part of the batch may be in the file: cut it back to the last whole
                // record (shrinking needs no space). If even that fails, the next write
                // starts on a new line.
                if !self.torn && self.file.set_len(self.len).is_err() {
                    self.torn = true;
                }
                self.dropped += records;
                self.unreported += records;
                self.last_error = source.to_string();
                Err(LogError {
                    path: self.path.clone(),
                    dropped: records,
                    source,
                })
            }
        }
    }
}

/// Opens the log for appending, creating it with mode 0640 (whatever the umask).
fn open_log(path: &Path) -> io::Result<File> {
    let mut attempts = 0;
    loop {
        let created = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(LOG_MODE)
            .open(path);
        match created {
            Ok(file) => {
                file.set_permissions(std::fs::Permissions::from_mode(LOG_MODE))?;
                return Ok(file);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match OpenOptions::new().append(true).open(path) {
                    // Removed in between: create it after all.
                    Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => {
                        attempts += 1;
                    }
                    other => return other,
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// `2016-10-06T00:17:09.669794202Z`: UTC, always nine fraction digits (30 bytes).
pub fn timestamp(time: SystemTime) -> [u8; 30] {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    let mut out = [0u8; 30];
    let mut at = 0;
    let mut put = |value: u64, width: usize, after: Option<u8>| {
        for i in (0..width).rev() {
            out[at + i] = b'0' + (value / 10u64.pow((width - 1 - i) as u32) % 10) as u8;
        }
        at += width;
        if let Some(sep) = after {
            out[at] = sep;
            at += 1;
        }
    };
    put(year as u64, 4, Some(b'-'));
    put(u64::from(month), 2, Some(b'-'));
    put(u64::from(day), 2, Some(b'T'));
    put(of_day / 3600, 2, Some(b':'));
    put(of_day / 60 % 60, 2, Some(b':'));
    put(of_day % 60, 2, Some(b'.'));
    put(u64::from(since.subsec_nanos()), 9, Some(b'Z'));
    out
}

/// The proleptic Gregorian (year, month, day) of a day count from 1970-01-01, by splitting
/// time into 400-year eras that each start on a March 1st (so the leap day ends a year).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Day 0 of the count moved to 0000-03-01.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097); // 0..=146096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: 0 = March … 11 = February.
    let march_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * march_month + 2) / 5 + 1) as u32;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    struct Record {
        time: SystemTime,
        stream: String,
        tag: String,
        content: String,
    }

    /// Parses a log as kubelet does: `SplitN(" ", 4)`, RFC 3339 timestamp, known stream.
    fn parse(text: &str) -> Vec<Record> {
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "unterminated: {text:?}"
        );
        // Not `lines()`: it would take a `\r` before the newline away.
        text.split_terminator('\n')
            .map(|line| {
                let mut parts = line.splitn(4, ' ');
                let stamp = parts.next().unwrap();
                let stream = parts.next().unwrap().to_string();
                let tag = parts.next().unwrap().to_string();
                let content = parts
                    .next()
                    .unwrap_or_else(|| panic!("{line:?}"))
                    .to_string();
                assert_eq!(stamp.len(), 30, "{stamp}");
                let time =
                    humantime::parse_rfc3339(stamp).unwrap_or_else(|e| panic!("{stamp}: {e}"));
                assert!(stream == "stdout" || stream == "stderr", "{line}");
                assert!(tag == "P" || tag == "F", "{line}");
                Record {
                    time,
                    stream,
                    tag,
                    content,
                }
            })
            .collect()
    }

    fn read(path: &Path) -> Vec<Record> {
        parse(&std::fs::read_to_string(path).unwrap())
    }

    /// `stream tag content` of each record.
    fn summary(path: &Path) -> Vec<String> {
        read(path)
            .into_iter()
            .map(|r| format!("{} {} {}", r.stream, r.tag, r.content))
            .collect()
    }

    fn writer(dir: &tempfile::TempDir) -> (LogWriter, PathBuf) {
        let path = dir.path().join("0.log");
        (LogWriter::open(&path).unwrap(), path)
    }

    #[test]
    fn timestamps_are_rfc3339_with_nine_digits() {
        let at = |secs: u64, nanos: u32| {
            let t = UNIX_EPOCH + Duration::new(secs, nanos);
            String::from_utf8(timestamp(t).to_vec()).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            at(1_475_713_029, 669_794_202),
            "2016-10-06T00:17:09.669794202Z"
        );
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            at(4_107_542_399, 999_999_999),
            "2100-02-28T23:59:59.999999999Z"
        );
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000000Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000000000Z");
        // Before 1970 cannot happen on a sane clock; it is clamped, not garbled.
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(&timestamp(before)[..10], b"1970-01-01");
        // Every day over four centuries agrees with humantime's formatter.
        for day in (0..146_097u64).step_by(7) {
            let t = UNIX_EPOCH + Duration::new(day * 86_400 + 45_296, 123_456_789);
            assert_eq!(
                String::from_utf8(timestamp(t).to_vec()).unwrap(),
                humantime::format_rfc3339_nanos(t).to_string()
            );
        }
    }

    #[test]
    fn a_line_becomes_one_full_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, path) = writer(&dir);
        let before = SystemTime::now();
        log.write(Stream::Stdout, b"hello World\n").unwrap();
        let after = SystemTime::now();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(&text[30..], " stdout F hello World\n");
        let records = parse(&text);
        assert_eq!(records.len(), 1);
        assert!(records[0].time >= before - Duration::from_micros(1));
        assert!(records[0].time <= after);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn several_lines_empty_lines_and_carriage_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, path) = writer(&dir);
        log.write(Stream::Stderr, b"one\n\ntwo\r\nthree with  spaces\n")
            .unwrap();
        assert_eq!(
            summary(&path),
            [
                "stderr F one",
                "stderr F ",
                "stderr F two\r",
                "stderr F three with  spaces"
            ]
        );
    }

    #[test]
    fn long_lines_are_split_into_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = writer(&dir);
        let mut log = log.with_max_line(8);
        log.write(
            Stream::Stdout,
            b"abcdefghijklmnopqrst\n12345678\n123456789\n",
        )
        .unwrap();
        assert_eq!(
            summary(&path),
            [
                "stdout P abcdefgh",
                "stdout P ijklmnop",
                "stdout F qrst",
                "stdout F 12345678",
                "stdout P 12345678",
                "stdout F 9",
            ]
        );
        // Without a newline yet: pieces go out once more than max_line is pending.
        log.write(Stream::Stdout, b"ABCDEFGH").unwrap();
        assert_eq!(summary(&path).len(), 6);
        log.write(Stream::Stdout, b"IJKLMNOPQ").unwrap();
        log.write(Stream::Stdout, b"R\n").unwrap();
        assert_eq!(
            summary(&path)[6..],
            ["stdout P ABCDEFGH", "stdout P IJKLMNOP", "stdout F QR"]
        );
    }

    #[test]
    fn a_partial_line_waits_for_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, path) = writer(&dir);
        log.write(Stream::Stdout, b"hel").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        log.write(Stream::Stdout, b"lo World\nnext").unwrap();
        assert_eq!(summary(&path), ["stdout F hello World"]);
        log.write(Stream::Stdout, b" line\n").unwrap();
        assert_eq!(
            summary(&path),
            ["stdout F hello World", "stdout F next line"]
        );
    }

    #[test]
    fn streams_keep_their_own_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, path) = writer(&dir);
        log.write(Stream::Stdout, b"out-a").unwrap();
        log.write(Stream::Stderr, b"err-a").unwrap();
        log.write(Stream::Stdout, b"+out-b\n").unwrap();
        log.write(Stream::Stderr, b"+err-b\nerr-2\n").unwrap();
        assert_eq!(
            summary(&path),
            [
                "stdout F out-a+out-b",
                "stderr F err-a+err-b",
                "stderr F err-2"
            ]
        );
    }

    #[test]
    fn tty_output_is_all_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = writer(&dir);
        let mut log = log.with_tty(true);
        log.write(Stream::Stderr, b"prompt$ ").unwrap();
        log.write(Stream::Stdout, b"ls\r\n").unwrap();
        log.close_stream(Stream::Stderr).unwrap();
        assert_eq!(summary(&path), ["stdout F prompt$ ls\r"]);
    }

    #[test]
    fn flush_partial_and_close_stream() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, path) = writer(&dir);
        log.write(Stream::Stdout, b"Password: ").unwrap();
        log.write(Stream::Stderr, b"warn").unwrap();
        log.flush_partial().unwrap();
        assert_eq!(summary(&path), ["stdout P Password: ", "stderr P warn"]);
        // Nothing pending: nothing written.
        log.flush_partial().unwrap();
        assert_eq!(summary(&path).len(), 2);
        log.write(Stream::Stdout, b"secret\nno newline at the end")
            .unwrap();
        log.close_stream(Stream::Stdout).unwrap();
        log.close_stream(Stream::Stderr).unwrap();
        assert_eq!(
            summary(&path)[2..],
            ["stdout F secret", "stdout F no newline at the end"]
        );
        // A reader joining P records and ending on F gets the lines back.
        let joined: String = read(&path)
            .iter()
            .filter(|r| r.stream == "stdout")
            .map(|r| {
                if r.tag == "F" {
                    format!("{}\n", r.content)
                } else {
                    r.content.clone()
                }
            })
            .collect();
        assert_eq!(joined, "Password: secret\nno newline at the end\n");
    }

    #[test]
    fn reopen_after_rename_moves_to_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, path) = writer(&dir);
        log.write(Stream::Stdout, b"first\n").unwrap();
        let rotated = dir.path().join("0.log.20240101-000000");
        std::fs::rename(&path, &rotated).unwrap();
        // Until the reopen, writes still land in the renamed file.
        log.write(Stream::Stdout, b"second\n").unwrap();
        log.reopen().unwrap();
        log.write(Stream::Stdout, b"third\n").unwrap();
        log.write(Stream::Stderr, b"fourth\n").unwrap();
        assert_eq!(summary(&rotated), ["stdout F first", "stdout F second"]);
        assert_eq!(summary(&path), ["stdout F third", "stderr F fourth"]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        // Reopening without a rename keeps appending to the same file.
        log.reopen().unwrap();
        log.write(Stream::Stdout, b"fifth\n").unwrap();
        assert_eq!(summary(&path).len(), 3);
        assert_eq!(summary(&rotated).len(), 2);
    }

    #[test]
    fn reopen_failure_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("pod");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("0.log");
        let mut log = LogWriter::open(&path).unwrap();
        let moved = dir.path().join("moved");
        std::fs::rename(&sub, &moved).unwrap();
        assert!(log.reopen().is_err());
        log.write(Stream::Stdout, b"still here\n").unwrap();
        assert_eq!(summary(&moved.join("0.log")), ["stdout F still here"]);
    }

    /// A tmpfs of 16 KiB mounted on a temporary directory, unmounted on drop.
    struct TinyFs {
        dir: tempfile::TempDir,
    }

    impl TinyFs {
        fn mount() -> Option<TinyFs> {
            let dir = tempfile::tempdir().unwrap();
            let mounted = nix::mount::mount(
                Some("tmpfs"),
                dir.path(),
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                Some("size=16k,mode=0700"),
            );
            match mounted {
                Ok(()) => Some(TinyFs { dir }),
                Err(e) => {
                    eprintln!("skipped: cannot mount a tmpfs ({e}); needs root");
                    None
                }
            }
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }
    }

    impl Drop for TinyFs {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }

    /// Fills the filesystem with `name` until a write fails.
    fn fill(dir: &Path, name: &str) {
        let mut filler = File::create(dir.join(name)).unwrap();
        let block = [b'x'; 512];
        loop {
            if filler.write_all(&block).is_err() {
                return;
            }
        }
    }

    #[test]
    fn a_full_disk_drops_records_and_the_writer_recovers() {
        let Some(fs) = TinyFs::mount() else {
            return;
        };
        let path = fs.path().join("0.log");
        let mut log = LogWriter::open(&path).unwrap();
        log.write(Stream::Stdout, b"before\n").unwrap();
        fill(fs.path(), "filler");

        // The record does not fit: an error naming the file, one record dropped.
        let long = vec![b'y'; 6000];
        let mut chunk = long.clone();
        chunk.extend_from_slice(b"\nshort\n");
        let err = log.write(Stream::Stdout, &chunk).unwrap_err();
        assert_eq!(err.dropped, 2);
        assert_eq!(err.source.raw_os_error(), Some(libc::ENOSPC));
        assert!(err.to_string().contains("0.log"), "{err}");
        assert_eq!(log.dropped(), 2);
        // Partly written bytes were cut off: the file still holds whole records only.
        assert_eq!(summary(&path), ["stdout F before"]);

        // Partial lines survive a failed write: they are still pending, in memory.
        let mut chunk = vec![b'z'; 5000];
        chunk.extend_from_slice(b"\nlater");
        let err = log.write(Stream::Stderr, &chunk).unwrap_err();
        assert_eq!(err.dropped, 1);
        assert_eq!(log.dropped(), 3);

        std::fs::remove_file(fs.path().join("filler")).unwrap();
        log.write(Stream::Stdout, b"after\n").unwrap();
        log.close_stream(Stream::Stderr).unwrap();
        assert_eq!(
            summary(&path),
            [
                "stdout F before",
                "stderr F [ferrocri] 3 log record(s) dropped: No space left on device (os error 28)",
                "stdout F after",
                "stderr F later"
            ]
        );
        assert_eq!(log.dropped(), 3);
    }
}
