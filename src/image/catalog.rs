//! The pulled images and their names, kept in the store's `images` table: one record per
//! image ID (`sha256:<config digest>`) with all its tags and digest references.

use serde::{Deserialize, Serialize};

use super::manifest::{ImageConfig, Platform};
use super::reference::{self, Reference};
use crate::digest::Digest;
use crate::store::{Conn, Result, Table};

/// One pulled image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:<config digest hex>`: the same value in every API (CRI image identity rule).
    pub id: String,
    /// `registry.k8s.io/pause:3.9`, … in the order they were added.
    pub repo_tags: Vec<String>,
    /// `registry.k8s.io/pause@sha256:…`: the digest each name resolved to.
    pub repo_digests: Vec<String>,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub platform: Platform,
    pub config: ImageConfig,
    pub layers: Vec<LayerRecord>,
    /// Every blob this image keeps in the content store (index, manifest, config, layers).
    pub blobs: Vec<Digest>,
    /// Bytes of the image as stored in the registry (config and compressed layers).
    pub size: u64,
    /// Set for an OCI artifact (its artifact type): not runnable, each layer blob is a file
    /// of one layer directory, for image volumes. Its ID is its manifest digest.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub artifact_type: String,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// Bytes and inodes of the unpacked layer directory.
    pub unpacked_bytes: u64,
    pub unpacked_inodes: u64,
}

impl ImageRecord {
    /// The layer directories of this image, bottom first.
    pub fn chain_ids(&self) -> impl DoubleEndedIterator<Item = &Digest> {
        self.layers.iter().map(|l| &l.chain_id)
    }

    /// The image's `User` as CRI reports it: a numeric uid, or a user name.
    pub fn uid_or_username(&self) -> (Option<i64>, String) {
        let user = self.config.user();
        let name = user.split(':').next().unwrap_or("");
        match name.parse::<i64>() {
            Ok(uid) => (Some(uid), String::new()),
            Err(_) => (None, name.to_owned()),
        }
    }

    fn add_name(list: &mut Vec<String>, name: &str) {
        if !list.iter().any(|n| n == name) {
            list.push(name.to_owned());
        }
    }
}

/// Which image a CRI `ImageSpec.image` string means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Id(String),
    Tag(String),
    Digest(String),
}

impl Lookup {
    /// An image ID (`sha256:<hex>` or the bare hex), else a reference normalised as docker
    /// does (`busybox` means `docker.io/library/busybox:latest`).
    pub fn parse(text: &str) -> std::result::Result<Lookup, reference::ReferenceError> {
        if let Some(id) = reference::image_id_digest(text) {
            return Ok(Lookup::Id(id));
        }
        let r = Reference::parse(text)?;
        Ok(match &r.digest {
            Some(digest) => Lookup::Digest(r.digested(digest)),
            None => Lookup::Tag(r.tagged().unwrap_or_else(|| r.to_string())),
        })
    }

    fn matches(&self, image: &ImageRecord) -> bool {
        match self {
            Lookup::Id(id) => &image.id == id,
            Lookup::Tag(tag) => image.repo_tags.iter().any(|t| t == tag),
            Lookup::Digest(d) => image.repo_digests.iter().any(|r| r == d),
        }
    }
}

/// Every image, oldest first.
pub fn list(conn: &Conn<'_>) -> Result<Vec<ImageRecord>> {
    conn.list(Table::Images)
}

/// The image `lookup` names, if any.
pub fn find(conn: &Conn<'_>, lookup: &Lookup) -> Result<Option<ImageRecord>> {
    if let Lookup::Id(id) = lookup {
        return conn.get(Table::Images, id);
    }
    Ok(list(conn)?.into_iter().find(|i| lookup.matches(i)))
}

/// Records a finished pull: `image` gets `tag` and `digest_ref`. A tag that pointed at another
/// image moves (that image keeps its other names, and stays listed by ID).
pub fn record_pull(
    conn: &Conn<'_>,
    mut image: ImageRecord,
    tag: Option<&str>,
    digest_ref: &str,
) -> Result<ImageRecord> {
    if let Some(tag) = tag {
        for mut other in list(conn)? {
            if other.id != image.id && other.repo_tags.iter().any(|t| t == tag) {
                other.repo_tags.retain(|t| t != tag);
                conn.update(Table::Images, &other.id.clone(), &other)?;
            }
        }
    }
    let existing: Option<ImageRecord> = conn.get(Table::Images, &image.id)?;
    if let Some(old) = &existing {
        // Keep the names it already had; the new pull adds its own.
        let (mut tags, mut digests) = (old.repo_tags.clone(), old.repo_digests.clone());
        for t in &image.repo_tags {
            ImageRecord::add_name(&mut tags, t);
        }
        for d in &image.repo_digests {
            ImageRecord::add_name(&mut digests, d);
        }
        for b in &old.blobs {
            if !image.blobs.contains(b) {
                image.blobs.push(b.clone());
            }
        }
        (image.repo_tags, image.repo_digests) = (tags, digests);
    }
    if let Some(tag) = tag {
        ImageRecord::add_name(&mut image.repo_tags, tag);
    }
    ImageRecord::add_name(&mut image.repo_digests, digest_ref);
    if existing.is_some() {
        conn.update(Table::Images, &image.id.clone(), &image)?;
    } else {
        conn.insert(
            Table::Images,
            &image.id.clone(),
            &image.id.clone(),
            "",
            &image,
        )?;
    }
    Ok(image)
}

/// Removes an image with all its names; returns it, or None when it was not there.
pub fn remove(conn: &Conn<'_>, id: &str) -> Result<Option<ImageRecord>> {
    let image: Option<ImageRecord> = conn.get(Table::Images, id)?;
    if image.is_some() {
        conn.delete(Table::Images, id)?;
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn image(config: &[u8], user: &str) -> ImageRecord {
        let id = Digest::of(config);
        ImageRecord {
            id: id.to_string(),
            repo_tags: vec![],
            repo_digests: vec![],
            manifest_digest: Digest::of(b"m"),
            manifest_media_type: String::new(),
            platform: Platform::host(),
            config: ImageConfig {
                config: Some(super::super::manifest::RunConfig {
                    user: user.into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            layers: vec![],
            blobs: vec![id],
            size: 1,
            artifact_type: String::new(),
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        (dir, store)
    }

    #[test]
    fn lookups() {
        let hex = "a".repeat(64);
        assert_eq!(
            Lookup::parse(&format!("sha256:{hex}")).unwrap(),
            Lookup::Id(format!("sha256:{hex}"))
        );
        assert_eq!(
            Lookup::parse(&hex).unwrap(),
            Lookup::Id(format!("sha256:{hex}"))
        );
        assert_eq!(
            Lookup::parse("busybox").unwrap(),
            Lookup::Tag("docker.io/library/busybox:latest".into())
        );
        assert_eq!(
            Lookup::parse(&format!("x/y:1@sha256:{hex}")).unwrap(),
            Lookup::Digest(format!("docker.io/x/y@sha256:{hex}"))
        );
        assert!(Lookup::parse("library/UPPER").is_err());
    }

    #[test]
    fn tags_move_and_names_accumulate() {
        let (_d, store) = store();
        let a = image(b"a", "");
        let b = image(b"b", "");
        store
            .blocking(|c| {
                record_pull(c, a.clone(), Some("r/x:1"), "r/x@sha256:1")?;
                record_pull(c, a.clone(), Some("r/x:2"), "r/x@sha256:1")?;
                // The tag 1 now points at b: a keeps tag 2 only.
                record_pull(c, b.clone(), Some("r/x:1"), "r/x@sha256:2")?;
                let a_now = find(c, &Lookup::Id(a.id.clone()))?.unwrap();
                assert_eq!(a_now.repo_tags, ["r/x:2"]);
                assert_eq!(a_now.repo_digests, ["r/x@sha256:1"]);
                let by_tag = find(c, &Lookup::Tag("r/x:1".into()))?.unwrap();
                assert_eq!(by_tag.id, b.id);
                let by_digest = find(c, &Lookup::Digest("r/x@sha256:2".into()))?.unwrap();
                assert_eq!(by_digest.id, b.id);
                assert_eq!(list(c)?.len(), 2);
                assert!(remove(c, &b.id)?.is_some());
                assert!(remove(c, &b.id)?.is_none());
                assert!(find(c, &Lookup::Tag("r/x:1".into()))?.is_none());
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn user_is_reported_as_uid_or_name() {
        assert_eq!(
            image(b"1", "1002").uid_or_username(),
            (Some(1002), String::new())
        );
        assert_eq!(
            image(b"2", "www-data").uid_or_username(),
            (None, "www-data".into())
        );
        assert_eq!(
            image(b"3", "1003:1004").uid_or_username(),
            (Some(1003), String::new())
        );
        assert_eq!(
            image(b"4", "www-data:1004").uid_or_username(),
            (None, "www-data".into())
        );
        assert_eq!(image(b"5", "").uid_or_username(), (None, String::new()));
    }
}
