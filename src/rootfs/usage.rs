//! How much a folder holds: bytes of regular files and number of entries (inodes), for
//! ImageFsInfo and a container's writable-layer stats.

use std::path::Path;

/// (bytes, inodes) under `dir`; unreadable parts count as empty.
pub fn disk_usage(dir: &Path) -> (u64, u64) {
    fn walk(dir: &Path, usage: &mut (u64, u64)) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            usage.1 += 1;
            if meta.is_dir() {
                walk(&entry.path(), usage);
            } else {
                usage.0 += meta.len();
            }
        }
    }
    let mut usage = (0, 0);
    walk(dir, &mut usage);
    usage
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_files_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/f"), b"12345").unwrap();
        assert_eq!(super::disk_usage(dir.path()), (5, 2));
    }
}
