//! File and directory operations on cgroupfs. Each error names the cgroup, the file and the
//! value, so a failed write reads like "cgroup /x: cannot write "100" to …/cpu.weight: …".

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::error::CgroupError;
use super::path::CgroupPath;

/// How long one removal keeps retrying rmdir on EBUSY (the kernel may still be releasing the
/// last task or a dying css), all hierarchies together.
pub(crate) const RMDIR_BUSY_RETRY: Duration = Duration::from_millis(600);

/// Writes `value` in one write(2), as cgroupfs expects.
pub(crate) fn write(cg: &CgroupPath, file: &Path, value: &str) -> Result<(), CgroupError> {
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(file)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::Write {
            path: cg.to_string(),
            file: file.to_owned(),
            value: value.to_owned(),
            source,
        })
}

pub(crate) fn read(cg: &CgroupPath, file: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(file).map_err(|source| CgroupError::Read {
        path: cg.to_string(),
        file: file.to_owned(),
        source,
    })
}

/// Reads a file that a controller or kernel version may not provide.
pub(crate) fn read_optional(cg: &CgroupPath, file: &Path) -> Result<Option<String>, CgroupError> {
    match read_small(file) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: cg.to_string(),
            file: file.to_owned(),
            source,
        }),
    }
}

/// A cgroupfs file's text: open, read until the end, close. `fs::read_to_string` asks for
/// the size first (statx and lseek), which cgroupfs does not know: stats read thousands of
/// these files per call.
fn read_small(file: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut f = fs::File::open(file)?;
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A file holding one unsigned number (`memory.current`, `pids.current`, …).
pub(crate) fn read_u64_optional(cg: &CgroupPath, file: &Path) -> Result<Option<u64>, CgroupError> {
    match read_optional(cg, file)? {
        None => Ok(None),
        Some(text) => parse_u64(cg, file, &text).map(Some),
    }
}

/// A limit file (see `stats::parse_limit`); 0 when absent or not a number.
pub(crate) fn read_limit(cg: &CgroupPath, file: &Path) -> Result<u64, CgroupError> {
    let text = read_optional(cg, file)?;
    Ok(text
        .and_then(|t| super::stats::parse_limit(&t))
        .unwrap_or(0))
}

pub(crate) fn parse_u64(cg: &CgroupPath, file: &Path, text: &str) -> Result<u64, CgroupError> {
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path: cg.to_string(),
        file: file.to_owned(),
        content: text.to_owned(),
    })
}

/// mkdir that accepts an existing directory.
pub(crate) fn mkdir(cg: &CgroupPath, dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: cg.to_string(),
            dir: dir.to_owned(),
            source,
        }),
    }
}

/// Removes `dir` and every cgroup below it, children first. A missing directory is fine;
/// EBUSY is retried until `busy_deadline`.
pub(crate) fn remove_tree(
    cg: &CgroupPath,
    dir: &Path,
    busy_deadline: Instant,
) -> Result<(), CgroupError> {
    for child in child_dirs(cg, dir)? {
        remove_tree(cg, &dir.join(child), busy_deadline)?;
    }
    rmdir(cg, dir, Some(busy_deadline)).map(|_| ())
}

/// rmdir, retrying EBUSY until `busy_deadline` if there is one. Ok(false) when the cgroup is
/// busy and there is no deadline; a missing directory counts as removed.
pub(crate) fn rmdir(
    cg: &CgroupPath,
    dir: &Path,
    busy_deadline: Option<Instant>,
) -> Result<bool, CgroupError> {
    let mut pause = Duration::from_millis(5);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let Some(deadline) = busy_deadline else {
                    return Ok(false);
                };
                let now = Instant::now();
                if now >= deadline {
                    return Err(CgroupError::Remove {
                        path: cg.to_string(),
                        dir: dir.to_owned(),
                        source: e,
                    });
                }
                sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: cg.to_string(),
                    dir: dir.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Names of the child cgroups of `dir`; none when `dir` does not exist.
pub(crate) fn child_dirs(cg: &CgroupPath, dir: &Path) -> Result<Vec<String>, CgroupError> {
    let read_err = |source| CgroupError::Read {
        path: cg.to_string(),
        file: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut children = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_err)?;
        if entry.file_type().map_err(read_err)?.is_dir() {
            children.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(children)
}

/// Adds the processes of `dir` (and, when `recursive`, of every cgroup below it) to `pids`.
/// Cgroups that vanish while being read are skipped.
pub(crate) fn collect_procs(
    cg: &CgroupPath,
    dir: &Path,
    recursive: bool,
    pids: &mut BTreeSet<i32>,
) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.procs");
    let Some(text) = read_optional(cg, &file)? else {
        return Ok(());
    };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let pid = line.parse().map_err(|_| CgroupError::Parse {
            path: cg.to_string(),
            file: file.clone(),
            content: text.clone(),
        })?;
        pids.insert(pid);
    }
    if recursive {
        for child in child_dirs(cg, dir)? {
            collect_procs(cg, &dir.join(child), true, pids)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_removes_children_first_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = CgroupPath::parse("/a").unwrap();
        let dir = tmp.path().join("a");
        fs::create_dir_all(dir.join("b/c")).unwrap();
        fs::create_dir_all(dir.join("d")).unwrap();
        fs::create_dir_all(tmp.path().join("sibling")).unwrap();
        let deadline = Instant::now() + RMDIR_BUSY_RETRY;
        remove_tree(&cg, &dir, deadline).unwrap();
        assert!(!dir.exists());
        assert!(tmp.path().join("sibling").exists());
        remove_tree(&cg, &dir, deadline).unwrap();
    }

    #[test]
    fn collect_procs_walks_children() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = CgroupPath::parse("/a").unwrap();
        fs::create_dir_all(tmp.path().join("b")).unwrap();
        fs::write(tmp.path().join("cgroup.procs"), "3\n1\n").unwrap();
        fs::write(tmp.path().join("b/cgroup.procs"), "2\n3\n").unwrap();
        let mut pids = BTreeSet::new();
        collect_procs(&cg, tmp.path(), true, &mut pids).unwrap();
        assert_eq!(pids.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
        let mut pids = BTreeSet::new();
        collect_procs(&cg, &tmp.path().join("gone"), true, &mut pids).unwrap();
        assert!(pids.is_empty());
    }

    #[test]
    fn write_names_cgroup_file_and_value() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = CgroupPath::parse("/x").unwrap();
        let err = write(&cg, &tmp.path().join("missing/cpu.max"), "max 100000").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/x") && text.contains("cpu.max") && text.contains("max 100000"));
    }
}
