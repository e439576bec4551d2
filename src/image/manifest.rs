//! OCI and Docker schema2 manifests, indexes (manifest lists) and image configs, and choosing
//! the manifest for this host's platform.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";

/// What a registry is asked for, most specific first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what} is not valid JSON of its kind: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("unsupported manifest media type {0:?} (Docker schema 1 images must be converted)")]
    Unsupported(String),
    #[error("no manifest for platform {wanted} in the index (it has: {available})")]
    NoPlatform { wanted: String, available: String },
    #[error("image config lists {diff_ids} layer diff IDs but the manifest has {layers} layers")]
    LayerCount { diff_ids: usize, layers: usize },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Platform {
    /// The platform this ferrocri runs on, in OCI terms.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "aarch64" => ("arm64", "v8"),
            "arm" => ("arm", "v7"),
            "x86" => ("386", ""),
            "powerpc64" => ("ppc64le", ""),
            other => (other, ""),
        };
        Platform {
            architecture: architecture.into(),
            os: std::env::consts::OS.into(),
            variant: variant.into(),
        }
    }

    /// Whether an index entry for `other` can run here. arm64's variant is optional ("" = v8).
    fn matches(&self, other: &Platform) -> bool {
        let normalise = |p: &Platform| match (p.architecture.as_str(), p.variant.as_str()) {
            ("arm64", "") => "v8".to_owned(),
            _ => p.variant.clone(),
        };
        self.os == other.os
            && self.architecture == other.architecture
            && (other.variant.is_empty() || normalise(self) == normalise(other))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// A fetched top-level document: either an index to choose from or an image manifest.
#[derive(Debug, Clone)]
pub enum Document {
    Index(Index),
    Manifest(Manifest),
}

/// Decodes a manifest or index. The `mediaType` inside the document wins over the HTTP
/// Content-Type, which some registries get wrong.
pub fn parse_document(content_type: &str, bytes: &[u8]) -> Result<Document, ManifestError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: String,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        what: "manifest",
        source,
    })?;
    let media_type = if probe.media_type.is_empty() {
        content_type.split(';').next().unwrap_or("").trim()
    } else {
        probe.media_type.as_str()
    };
    let is_index = match media_type {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        t if t.starts_with(DOCKER_SCHEMA1) => return Err(ManifestError::Unsupported(t.into())),
        // OCI allows an untyped document; its shape tells.
        _ => probe.manifests.is_some(),
    };
    let json = |what, source| ManifestError::Json { what, source };
    if is_index {
        serde_json::from_slice(bytes)
            .map(Document::Index)
            .map_err(|e| json("index", e))
    } else {
        serde_json::from_slice(bytes)
            .map(Document::Manifest)
            .map_err(|e| json("image manifest", e))
    }
}

/// Picks the index entry for `wanted`; entries without a platform are not chosen.
pub fn select<'a>(index: &'a Index, wanted: &Platform) -> Result<&'a Descriptor, ManifestError> {
    index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| wanted.matches(p)))
        .ok_or_else(|| ManifestError::NoPlatform {
            wanted: wanted.to_string(),
            available: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The parts of an image config that ferrocri uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// How the image wants to be run (Docker's names, as in the config JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<HashMap<String, String>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<HashMap<String, serde_json::Value>>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
            what: "image config",
            source,
        })
    }

    pub fn user(&self) -> &str {
        self.config.as_ref().map_or("", |c| c.user.as_str())
    }
}

/// How a layer blob is compressed, from its media type, else from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(media_type: &str, first_bytes: &[u8]) -> Compression {
        if media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip") {
            Compression::Gzip
        } else if media_type.ends_with("+zstd") {
            Compression::Zstd
        } else if first_bytes.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if first_bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn index_json() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":10,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":11,"platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":12}}]}}"#,
            d(1),
            d(2),
            d(3)
        )
    }

    #[test]
    fn index_platform_selection() {
        let Document::Index(index) = parse_document("", index_json().as_bytes()).unwrap() else {
            panic!("not an index")
        };
        let amd64 = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: String::new(),
        };
        assert_eq!(select(&index, &amd64).unwrap().size, 11);
        let arm64 = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: String::new(),
        };
        assert_eq!(select(&index, &arm64).unwrap().size, 10, "arm64 means v8");
        let s390 = Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: String::new(),
        };
        let err = select(&index, &s390).unwrap_err().to_string();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/amd64"),
            "{err}"
        );
    }

    #[test]
    fn document_kind_from_body_then_header_then_shape() {
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{}","size":1}},"layers":[]}}"#,
            d(4)
        );
        assert!(matches!(
            parse_document(DOCKER_MANIFEST, manifest.as_bytes()).unwrap(),
            Document::Manifest(_)
        ));
        let untyped_index = format!(r#"{{"manifests":[{{"digest":"{}","size":1}}]}}"#, d(5));
        assert!(matches!(
            parse_document("application/json", untyped_index.as_bytes()).unwrap(),
            Document::Index(_)
        ));
        let schema1 = r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert!(matches!(
            parse_document("", schema1.as_bytes()),
            Err(ManifestError::Unsupported(_))
        ));
        assert!(parse_document("", b"not json").is_err());
        let bad_digest = r#"{"config":{"digest":"sha256:zz","size":1},"layers":[]}"#;
        assert!(parse_document(OCI_MANIFEST, bad_digest.as_bytes()).is_err());
    }

    #[test]
    fn image_config_fields() {
        let cfg = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"User":"www-data:1004","Env":["PATH=/bin"],"Cmd":["sh"],"StopSignal":"SIGQUIT"}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            d(6)
        );
        let cfg = ImageConfig::parse(cfg.as_bytes()).unwrap();
        assert_eq!(cfg.user(), "www-data:1004");
        assert_eq!(cfg.config.as_ref().unwrap().stop_signal, "SIGQUIT");
        assert_eq!(cfg.rootfs.diff_ids.len(), 1);
    }

    #[test]
    fn compression_detection() {
        assert_eq!(
            Compression::detect("application/vnd.oci.image.layer.v1.tar+zstd", b""),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect("application/vnd.docker.image.rootfs.diff.tar.gzip", b""),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect("application/vnd.oci.image.layer.v1.tar", b"x"),
            Compression::None
        );
        assert_eq!(Compression::detect("", &[0x1f, 0x8b, 8]), Compression::Gzip);
    }
}
