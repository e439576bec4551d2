//! Content digests (`sha256:<hex>`) and a hasher that checks bytes against one.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A validated `sha256:<64 lowercase hex>` digest. Only sha256 is accepted: it is what every
/// registry and image in use produces, and we must be able to verify what we store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
pub struct InvalidDigest(pub String);

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, InvalidDigest> {
        let hex = text
            .strip_prefix("sha256:")
            .ok_or_else(|| InvalidDigest(text.into()))?;
        let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if valid {
            Ok(Digest(text.to_owned()))
        } else {
            Err(InvalidDigest(text.into()))
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The 64 hex digits, used as a file name.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(d)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 over a stream of chunks.
#[derive(Default, Clone)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest(format!("sha256:{}", hex::encode(self.inner.finalize())))
    }
}

/// A reader that hashes everything read through it (used to check layer diff IDs while the
/// layer is being unpacked).
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: std::io::Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::default(),
        }
    }

    /// Reads what is left (tar readers stop before the end padding) and returns the digest of
    /// the whole stream.
    pub fn finish(mut self) -> std::io::Result<Digest> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok(self.hasher.finish())
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The chain IDs of a stack of layers: the first is its diff ID, each next one hashes the
/// previous chain ID and its own diff ID (OCI image spec), so a chain ID names a layer
/// together with everything beneath it.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chain: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match chain.last() {
            None => diff.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_only_sha256_hex() {
        assert!(Digest::parse(EMPTY).is_ok());
        assert!(Digest::parse(&EMPTY.to_uppercase()).is_err());
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse("md5:e3b0c44298fc1c149afbf4c8996fb924").is_err());
        assert!(Digest::parse(&EMPTY.replace("sha256:", "sha256:/")).is_err());
        assert_eq!(Digest::parse(EMPTY).unwrap().hex().len(), 64);
    }

    #[test]
    fn hashing_agrees_everywhere() {
        assert_eq!(Digest::of(b"").as_str(), EMPTY);
        let mut h = Hasher::default();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.len(), 11);
        assert_eq!(h.finish(), Digest::of(b"hello world"));
        let mut r = HashingReader::new(&b"hello world"[..]);
        let mut first = [0u8; 3];
        r.read_exact(&mut first).unwrap();
        assert_eq!(r.finish().unwrap(), Digest::of(b"hello world"));
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }
}
