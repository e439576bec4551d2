//! Unpacked layers: one directory per layer under `<root_dir>/layers/sha256/<chain ID hex>`,
//! used as an overlayfs `lowerdir` and shared by every image whose stack contains it.
//!
//! A layer is unpacked into a temporary directory under `layers/tmp/` and renamed into place
//! only once it is complete and synced, so a layer directory that exists is always whole.
//! Leftover temporary directories of an interrupted unpack are removed at start.

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

#[derive(Debug, Clone)]
pub struct LayerStore {
    done: PathBuf,
    tmp: PathBuf,
}

impl LayerStore {
    pub fn open(root: &Path) -> io::Result<LayerStore> {
        let store = LayerStore {
            done: root.join("sha256"),
            tmp: root.join("tmp"),
        };
        std::fs::create_dir_all(&store.done)?;
        if store.tmp.exists() {
            std::fs::remove_dir_all(&store.tmp)?;
        }
        std::fs::create_dir_all(&store.tmp)?;
        Ok(store)
    }

    /// The directory of a complete layer (whether or not it exists).
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.done.join(chain_id.hex())
    }

    pub fn exists(&self, chain_id: &Digest) -> bool {
        self.path(chain_id).is_dir()
    }

    /// A fresh, empty directory to unpack into; removed if dropped before [`Self::commit`].
    pub fn scratch(&self) -> io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("unpack-")
            .tempdir_in(&self.tmp)
    }

    /// Makes an unpacked (and synced) scratch directory the layer `chain_id`. If another
    /// unpack of the same layer won the race, that one is kept and this one discarded.
    pub fn commit(&self, scratch: tempfile::TempDir, chain_id: &Digest) -> io::Result<()> {
        let target = self.path(chain_id);
        if target.exists() {
            return Ok(());
        }
        let path = scratch.keep();
        match std::fs::rename(&path, &target) {
            // The rename is durable once its directory is synced.
            Ok(()) => std::fs::File::open(&self.done)?.sync_all(),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&path);
                if target.exists() { Ok(()) } else { Err(e) }
            }
        }
    }

    /// Removes a layer; a missing one is not an error.
    pub fn remove(&self, chain_id: &Digest) -> io::Result<()> {
        match std::fs::remove_dir_all(self.path(chain_id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The chain IDs of every complete layer.
    pub fn list(&self) -> io::Result<Vec<Digest>> {
        let mut layers = Vec::new();
        for entry in std::fs::read_dir(&self.done)? {
            let name = entry?.file_name();
            if let Some(d) = name
                .to_str()
                .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok())
            {
                layers.push(d);
            }
        }
        Ok(layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_commit_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let layers = LayerStore::open(dir.path()).unwrap();
        let id = Digest::of(b"layer");
        let scratch = layers.scratch().unwrap();
        std::fs::write(scratch.path().join("f"), b"x").unwrap();
        assert!(!layers.exists(&id));
        layers.commit(scratch, &id).unwrap();
        assert_eq!(std::fs::read(layers.path(&id).join("f")).unwrap(), b"x");
        // A second unpack of the same layer loses the race quietly.
        let again = layers.scratch().unwrap();
        layers.commit(again, &id).unwrap();
        assert_eq!(layers.list().unwrap(), vec![id.clone()]);
        layers.remove(&id).unwrap();
        layers.remove(&id).unwrap();
        assert!(layers.list().unwrap().is_empty());
    }

    #[test]
    fn interrupted_unpacks_are_cleared_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let layers = LayerStore::open(dir.path()).unwrap();
        let scratch = layers.scratch().unwrap();
        std::fs::write(scratch.path().join("half"), b"x").unwrap();
        let _kept = scratch.keep(); // as if the daemon died mid-unpack
        LayerStore::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
