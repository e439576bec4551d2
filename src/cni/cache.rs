//! The record of each network attachment: what DEL needs after a daemon restart.
//!
//! One JSON file per attachment, `<cache_dir>/<network>-<container id>-<ifname>.json` (the
//! key libcni uses), holding the configuration list the attachment was made with, the runtime
//! arguments it got and its final ADD result. Written to a temp file and renamed, so a reader
//! sees the old or the new version, never a torn one. Not fsynced, as libcni does not: a
//! daemon crash loses nothing (the page cache survives it), and what a power loss could lose
//! protects nothing then, since the netns, veths and iptables rules it describes are gone
//! with the reboot. The pod's own record (SQLite, synced) names the attachment in any case.
//! Two fsyncs per write were a quarter of CNI ADD.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::invoke::PortMapping;

pub(crate) const KIND: &str = "ferrocri-cni-attachment/v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    pub kind: String,
    pub network_name: String,
    pub container_id: String,
    pub if_name: String,
    pub netns: PathBuf,
    #[serde(default)]
    pub cni_args: Vec<(String, String)>,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// The file the configuration was loaded from, for messages.
    #[serde(default)]
    pub config_file: PathBuf,
    /// The configuration list exactly as the plugins were run with it.
    pub config: Value,
    /// The final ADD result; `None` while ADD is running or when it did not finish.
    #[serde(default)]
    pub result: Option<Value>,
}

pub(crate) fn path(dir: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    dir.join(format!("{network}-{container_id}-{ifname}.json"))
}

/// Reads an entry; `Ok(None)` when there is none. A file that does not parse is an
/// `InvalidData` error.
pub(crate) fn load(path: &Path) -> io::Result<Option<Entry>> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let entry: Entry =
        serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if entry.kind != KIND {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown cache entry kind {:?}", entry.kind),
        ));
    }
    Ok(Some(entry))
}

/// Writes an entry atomically (see the module documentation for why it is not synced).
pub(crate) fn store(path: &Path, entry: &Entry) -> io::Result<()> {
    let dir = path.parent().expect("cache paths have a parent");
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .suffix(".json")
        .tempfile_in(dir)?;
    serde_json::to_writer(&mut tmp, entry)?;
    tmp.flush()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Deletes an entry; a missing one is fine.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Every readable entry of one container, in file-name order. Unreadable files are skipped
/// with a warning: one broken entry must not hide the others.
pub(crate) fn list(dir: &Path, container_id: &str) -> io::Result<Vec<(PathBuf, Entry)>> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let needle = format!("-{container_id}-");
    let mut paths: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.') && n.contains(&needle))
        })
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        match load(&path) {
            // The file name is ambiguous (names may contain '-'): the content decides.
            Ok(Some(entry)) if entry.container_id == container_id => out.push((path, entry)),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable CNI cache entry")
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cid: &str) -> Entry {
        Entry {
            kind: KIND.into(),
            network_name: "net-a".into(),
            container_id: cid.into(),
            if_name: "eth0".into(),
            netns: "/run/netns/x".into(),
            cni_args: vec![("K8S_POD_NAME".into(), "p".into())],
            port_mappings: vec![],
            config_file: "/etc/cni/net.d/10.conflist".into(),
            config: serde_json::json!({"name": "net-a"}),
            result: None,
        }
    }

    #[test]
    fn store_load_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("results");
        let p1 = path(&cache, "net-a", "abc", "eth0");
        let p2 = path(&cache, "net-a", "abc-1", "eth0");
        store(&p1, &entry("abc")).unwrap();
        store(&p2, &entry("abc-1")).unwrap();
        assert_eq!(load(&p1).unwrap().unwrap().container_id, "abc");
        // "net-a-abc-1-eth0.json" contains "-abc-" too; only the content decides.
        let found = list(&cache, "abc").unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, p1);
        // No temp files are left behind.
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 2);
        remove(&p1).unwrap();
        remove(&p1).unwrap();
        assert!(load(&p1).unwrap().is_none());
        assert!(list(&dir.path().join("nope"), "abc").unwrap().is_empty());
    }

    #[test]
    fn corrupt_entries_are_invalid_data_and_skipped_by_list() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "n", "c1", "eth0");
        fs::write(&p, "{ half").unwrap();
        assert_eq!(load(&p).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(list(dir.path(), "c1").unwrap().is_empty());
    }
}
