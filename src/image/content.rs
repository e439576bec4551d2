//! The content store: blobs (manifests, configs, compressed layers) addressed by digest.
//!
//! A blob is written to a temporary file under `ingest/`, checked against its expected size
//! and digest, synced, and only then renamed to `blobs/sha256/<hex>`. A blob that is visible is
//! therefore always complete and correct; a crash leaves at most a temporary file, and those
//! are removed when the store opens.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob {digest}: {context}: {source}")]
    Io {
        digest: String,
        context: &'static str,
        source: io::Error,
    },
    #[error("blob {expected} does not match its digest: the bytes received hash to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} should be {expected} bytes but {actual} arrived")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
}

#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens the store under `root`, removing leftovers of interrupted writes.
    pub fn open(root: &Path) -> io::Result<ContentStore> {
        let store = ContentStore {
            blobs: root.join("blobs").join("sha256"),
            ingest: root.join("ingest"),
        };
        std::fs::create_dir_all(&store.blobs)?;
        if store.ingest.exists() {
            std::fs::remove_dir_all(&store.ingest)?;
        }
        std::fs::create_dir_all(&store.ingest)?;
        Ok(store)
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// The size of a stored blob, or None when it is not stored.
    pub fn size(&self, digest: &Digest) -> Option<u64> {
        std::fs::metadata(self.path(digest)).ok().map(|m| m.len())
    }

    /// Reads a whole (small) blob: a manifest, index or config.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        std::fs::read(self.path(digest)).map_err(|source| ContentError::Io {
            digest: digest.to_string(),
            context: "cannot read",
            source,
        })
    }

    /// Stores `bytes` (already in memory) under `digest`, verifying them first.
    pub fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<(), ContentError> {
        if self.size(digest).is_some() {
            return Ok(());
        }
        let mut writer = self.writer(digest.clone(), Some(bytes.len() as u64))?;
        writer.write(bytes)?;
        writer.commit()
    }

    /// Starts writing the blob `digest`; nothing is visible until [`BlobWriter::commit`].
    pub fn writer(
        &self,
        digest: Digest,
        expected_size: Option<u64>,
    ) -> Result<BlobWriter, ContentError> {
        let file = tempfile::Builder::new()
            .prefix(digest.hex())
            .tempfile_in(&self.ingest)
            .map_err(|source| ContentError::Io {
                digest: digest.to_string(),
                context: "cannot create a temporary file",
                source,
            })?;
        Ok(BlobWriter {
            file,
            hasher: Hasher::default(),
            digest,
            expected_size,
            target: self.blobs.clone(),
        })
    }

    /// Deletes a blob; a missing one is not an error.
    pub fn delete(&self, digest: &Digest) -> io::Result<()> {
        match std::fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every stored blob with its size.
    pub fn list(&self) -> io::Result<Vec<(Digest, u64)>> {
        let mut blobs = Vec::new();
        for entry in std::fs::read_dir(&self.blobs)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(digest) = name
                .to_str()
                .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok())
            else {
                continue;
            };
            blobs.push((digest, entry.metadata()?.len()));
        }
        Ok(blobs)
    }
}

/// A blob being written. Dropping it without `commit` deletes the temporary file.
pub struct BlobWriter {
    file: tempfile::NamedTempFile,
    hasher: Hasher,
    digest: Digest,
    expected_size: Option<u64>,
    target: PathBuf,
}

impl BlobWriter {
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), ContentError> {
        if let Some(expected) = self.expected_size {
            // Stop a registry that sends more than it promised before it fills the disk.
            if self.hasher.len() + chunk.len() as u64 > expected {
                return Err(ContentError::SizeMismatch {
                    digest: self.digest.clone(),
                    expected,
                    actual: self.hasher.len() + chunk.len() as u64,
                });
            }
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .map_err(|source| self.io("cannot write", source))
    }

    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// Verifies size and digest, syncs, and makes the blob visible. Blocking (fsync).
    pub fn commit(self) -> Result<(), ContentError> {
        let actual_size = self.hasher.len();
        if let Some(expected) = self.expected_size.filter(|e| *e != actual_size) {
            return Err(ContentError::SizeMismatch {
                digest: self.digest,
                expected,
                actual: actual_size,
            });
        }
        let actual = self.hasher.clone().finish();
        if actual != self.digest {
            return Err(ContentError::DigestMismatch {
                expected: self.digest,
                actual,
            });
        }
        self.file
            .as_file()
            .sync_all()
            .map_err(|source| self.io("cannot sync", source))?;
        let target = self.target.join(self.digest.hex());
        let digest = self.digest.clone();
        self.file.persist(&target).map_err(|e| ContentError::Io {
            digest: digest.to_string(),
            context: "cannot move into place",
            source: e.error,
        })?;
        sync_dir(&self.target).map_err(|source| ContentError::Io {
            digest: digest.to_string(),
            context: "cannot sync the blob folder",
            source,
        })
    }

    fn io(&self, context: &'static str, source: io::Error) -> ContentError {
        ContentError::Io {
            digest: self.digest.to_string(),
            context,
            source,
        }
    }
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn verified_blob_becomes_visible() {
        let (_d, s) = store();
        let digest = Digest::of(b"layer bytes");
        let mut w = s.writer(digest.clone(), Some(11)).unwrap();
        w.write(b"layer ").unwrap();
        assert_eq!(s.size(&digest), None, "nothing is visible before commit");
        w.write(b"bytes").unwrap();
        w.commit().unwrap();
        assert_eq!(s.read(&digest).unwrap(), b"layer bytes");
        assert_eq!(s.list().unwrap(), vec![(digest, 11)]);
    }

    #[test]
    fn wrong_bytes_are_never_stored() {
        let (d, s) = store();
        let digest = Digest::of(b"expected");
        let mut w = s.writer(digest.clone(), None).unwrap();
        w.write(b"tampered").unwrap();
        let err = w.commit().unwrap_err();
        assert!(err.to_string().contains(digest.as_str()), "{err}");
        assert_eq!(s.size(&digest), None);
        assert_eq!(
            std::fs::read_dir(d.path().join("ingest")).unwrap().count(),
            0
        );
    }

    #[test]
    fn size_is_enforced_while_writing_and_at_the_end() {
        let (_d, s) = store();
        let digest = Digest::of(b"abc");
        let mut w = s.writer(digest.clone(), Some(2)).unwrap();
        assert!(matches!(
            w.write(b"abc"),
            Err(ContentError::SizeMismatch { .. })
        ));
        let mut w = s.writer(digest.clone(), Some(4)).unwrap();
        w.write(b"abc").unwrap();
        assert!(matches!(w.commit(), Err(ContentError::SizeMismatch { .. })));
    }

    #[test]
    fn abandoned_writes_leave_nothing_and_reopen_clears_ingest() {
        let (d, s) = store();
        let mut w = s.writer(Digest::of(b"x"), None).unwrap();
        w.write(b"x").unwrap();
        drop(w);
        assert_eq!(
            std::fs::read_dir(d.path().join("ingest")).unwrap().count(),
            0
        );
        // A crash leaves a temporary file behind; the next open removes it.
        std::fs::write(d.path().join("ingest").join("partial"), b"half").unwrap();
        ContentStore::open(d.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(d.path().join("ingest")).unwrap().count(),
            0
        );
    }

    #[test]
    fn put_and_delete() {
        let (_d, s) = store();
        let digest = Digest::of(b"{}");
        s.put(&digest, b"{}").unwrap();
        s.put(&digest, b"{}").unwrap();
        s.delete(&digest).unwrap();
        s.delete(&digest).unwrap();
        assert!(s.list().unwrap().is_empty());
        assert!(s.put(&digest, b"[]").is_err());
    }
}
