//! The CRI log files a pod's containers were given (`log_directory` + `log_path`, outside
//! ferrocri's folders). As containerd and CRI-O do, RemoveContainer leaves the file: kubelet
//! deletes it with its rotations before RemoveContainer, and crictl after `rm` (and reports a
//! file that is already gone). What no client deleted goes when the pod is removed, so no log
//! outlives its pod. The list lives in the pod folder, NUL-separated (a path has no NUL).

use std::io::Write;
use std::path::Path;

const LIST: &str = "container-logs";

/// Adds `log` to the pod's list, durably enough: a crash loses at most this entry.
pub fn remember(pod_dir: &Path, log: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let mut list = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(pod_dir.join(LIST))?;
    let mut entry = log.as_os_str().as_bytes().to_vec();
    entry.push(0);
    list.write_all(&entry)
}

/// Deletes every listed file that is still there (before the pod folder goes).
pub fn remove_all(pod_dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(list) = std::fs::read(pod_dir.join(LIST)) else {
        return;
    };
    for entry in list.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let path = Path::new(std::ffi::OsStr::from_bytes(entry));
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a container log");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_logs_go_and_others_stay() {
        let pod = tempfile::tempdir().unwrap();
        let logs = tempfile::tempdir().unwrap();
        let odd = logs.path().join("with\nnewline.log");
        let kept = logs.path().join("kubelet-rotated.log.1");
        for f in [&odd, &kept] {
            std::fs::write(f, "x").unwrap();
        }
        remember(pod.path(), &odd).unwrap();
        remember(pod.path(), &logs.path().join("never-made.log")).unwrap();
        remove_all(pod.path());
        assert!(!odd.exists());
        assert!(kept.exists());
        remove_all(tempfile::tempdir().unwrap().path());
    }
}
