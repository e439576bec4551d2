//! OCI and Docker schema2 manifests, indexes (manifest lists) and image configs, and choosing
//! the manifest for this host's platform.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Layer media types are these prefixes plus a tar type: `tar`, `tar+gzip`, `tar+zstd`,
/// `tar.gzip`, the nondistributable and foreign forms.
const OCI_LAYER_PREFIX: &str = "application/vnd.oci.image.layer.";
const DOCKER_LAYER_PREFIX: &str = "application/vnd.docker.image.rootfs.";
/// BuildKit marks its provenance and SBOM manifests in an index with this annotation.
const REFERENCE_TYPE_ANNOTATION: &str = "vnd.docker.reference.type";

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
    #[error(
        "not a container image: its {what} has media type {media_type:?}{}, \
         and ferrocri runs only images (OCI or Docker image configs and tar layers)",
        artifact_label(.artifact_type)
    )]
    NotAnImage {
        what: &'static str,
        media_type: String,
        artifact_type: String,
    },
}

fn artifact_label(artifact_type: &str) -> String {
    if artifact_type.is_empty() {
        String::new()
    } else {
        format!(" (artifact type {artifact_type:?})")
    }
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
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub artifact_type: String,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

impl Descriptor {
    /// An index entry that describes another manifest (BuildKit attestations, OCI artifacts
    /// such as signatures and SBOMs) rather than being an image for some platform.
    fn is_attachment(&self) -> bool {
        self.annotations.contains_key(REFERENCE_TYPE_ANNOTATION)
            || !self.artifact_type.is_empty()
            || self
                .platform
                .as_ref()
                .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
    }
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
    /// The platform this ferrocri runs on, in OCI terms. On amd64 the variant is the CPU's
    /// micro-architecture level (`v1` to `v4`), so `amd64/v2` and `amd64/v3` images can be chosen.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", amd64_level()),
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

    /// How well an index entry for `other` fits this platform: `None` when it cannot run here,
    /// else higher is better (the highest variant this CPU runs, as containerd orders them).
    fn fitness(&self, other: &Platform) -> Option<u32> {
        if self.os != other.os || self.architecture != normalise_arch(&other.architecture) {
            return None;
        }
        let level = |p: &Platform| variant_level(&self.architecture, &p.variant);
        match (level(self), level(other)) {
            // Ordered variants: anything up to ours runs.
            (Some(mine), Some(theirs)) => (theirs <= mine).then_some(theirs),
            // Unordered ones must be equal (or absent from the entry).
            _ if other.variant.is_empty() || other.variant == self.variant => Some(0),
            _ => None,
        }
    }
}

/// Architecture names some tools write instead of Go's.
fn normalise_arch(architecture: &str) -> &str {
    match architecture {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The place of a variant in its architecture's order; an absent variant is the baseline
/// (amd64 v1, arm64 v8, arm v7), as containerd normalises them.
fn variant_level(architecture: &str, variant: &str) -> Option<u32> {
    let number = |v: &str| v.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
    match (architecture, variant) {
        ("amd64", "") => Some(1),
        ("amd64", v) => number(v).filter(|n| (1..=4).contains(n)),
        ("arm64", "" | "v8") => Some(8),
        ("arm", "") => Some(7),
        ("arm", v) => number(v).filter(|n| (5..=8).contains(n)),
        _ => None,
    }
}

/// The x86-64 micro-architecture level of this CPU (psABI levels; v4 is AVX-512).
#[cfg(target_arch = "x86_64")]
fn amd64_level() -> &'static str {
    use std::arch::is_x86_feature_detected as has;
    let v2 = has!("cmpxchg16b")
        && has!("popcnt")
        && has!("sse3")
        && has!("sse4.1")
        && has!("sse4.2")
        && has!("ssse3");
    let v3 = v2
        && has!("avx")
        && has!("avx2")
        && has!("bmi1")
        && has!("bmi2")
        && has!("f16c")
        && has!("fma")
        && has!("lzcnt")
        && has!("movbe")
        && has!("xsave");
    let v4 = v3
        && has!("avx512f")
        && has!("avx512bw")
        && has!("avx512cd")
        && has!("avx512dq")
        && has!("avx512vl");
    match (v2, v3, v4) {
        (_, _, true) => "v4",
        (_, true, _) => "v3",
        (true, _, _) => "v2",
        _ => "v1",
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn amd64_level() -> &'static str {
    "v1"
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
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub artifact_type: String,
}

impl Manifest {
    /// What kind of OCI artifact this is (its `artifactType`, else its config's media type)
    /// when its config is not an image config; None for an image. Artifacts are stored as
    /// files, one per layer blob, for image volumes (see `pull`).
    pub fn artifact_kind(&self) -> Option<String> {
        let config = self.config.media_type.as_str();
        if matches!(config, OCI_CONFIG | DOCKER_CONFIG | "") {
            return None;
        }
        Some(if self.artifact_type.is_empty() {
            config.to_owned()
        } else {
            self.artifact_type.clone()
        })
    }

    /// Refuses what is not a runnable image: an OCI artifact (Helm chart, WASM module,
    /// signature, SBOM, `application/vnd.oci.empty.v1+json` config) or a layer that is not a tar.
    pub fn check_is_image(&self) -> Result<(), ManifestError> {
        let not_an_image = |what, media_type: &str| ManifestError::NotAnImage {
            what,
            media_type: media_type.to_owned(),
            artifact_type: self.artifact_type.clone(),
        };
        let config = self.config.media_type.as_str();
        if !matches!(config, OCI_CONFIG | DOCKER_CONFIG | "") {
            return Err(not_an_image("config", config));
        }
        for layer in &self.layers {
            if !is_tar_layer(&layer.media_type) {
                return Err(not_an_image("layer", &layer.media_type));
            }
        }
        Ok(())
    }
}

/// OCI and Docker layer types are all tars (plain, gzip or zstd; the bytes say which).
fn is_tar_layer(media_type: &str) -> bool {
    let Some(kind) = media_type
        .strip_prefix(OCI_LAYER_PREFIX)
        .or_else(|| media_type.strip_prefix(DOCKER_LAYER_PREFIX))
    else {
        return media_type.is_empty();
    };
    let kind = kind
        .strip_prefix("nondistributable.")
        .or_else(|| kind.strip_prefix("foreign."))
        .unwrap_or(kind);
    matches!(
        kind,
        "v1.tar" | "v1.tar+gzip" | "v1.tar+zstd" | "diff.tar" | "diff.tar.gzip" | "diff.tar.zstd"
    )
}

/// A fetched top-level document: either an index to choose from or an image manifest.
#[derive(Debug, Clone)]
pub enum Document {
    Index(Index),
    Manifest(Box<Manifest>),
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
            .map(|m| Document::Manifest(Box::new(m)))
            .map_err(|e| json("image manifest", e))
    }
}

/// Picks the index entry for `wanted`: the best-fitting platform (first among equals); else,
/// as containerd does, the first entry without a platform. Attestations, signatures and
/// other attached artifacts are never chosen.
pub fn select<'a>(index: &'a Index, wanted: &Platform) -> Result<&'a Descriptor, ManifestError> {
    let images = || index.manifests.iter().filter(|d| !d.is_attachment());
    let mut best: Option<(u32, &Descriptor)> = None;
    for entry in images() {
        let fitness = entry.platform.as_ref().and_then(|p| wanted.fitness(p));
        if let Some(fitness) = fitness
            && best.is_none_or(|(so_far, _)| fitness > so_far)
        {
            best = Some((fitness, entry));
        }
    }
    best.map(|(_, entry)| entry)
        .or_else(|| images().find(|d| d.platform.is_none()))
        .ok_or_else(|| ManifestError::NoPlatform {
            wanted: wanted.to_string(),
            available: images()
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

/// How a layer blob is compressed. The bytes decide, as in containerd: registries and tools
/// do get the media type wrong (gzip types over plain tar, and the reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(first_bytes: &[u8]) -> Compression {
        const GZIP: [u8; 2] = [0x1f, 0x8b];
        const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
        // A zstd skippable frame: magic 0x184D2A50..=0x184D2A5F, little-endian.
        let skippable = matches!(first_bytes, [b0, 0x2a, 0x4d, 0x18, ..] if b0 & 0xf0 == 0x50);
        if first_bytes.starts_with(&GZIP) {
            Compression::Gzip
        } else if first_bytes.starts_with(&ZSTD) || skippable {
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
        // No platform fits: the entry without a platform is taken, as containerd does.
        assert_eq!(select(&index, &s390).unwrap().size, 12);
        let mut only_platforms = index.clone();
        only_platforms.manifests.pop();
        let err = select(&only_platforms, &s390).unwrap_err().to_string();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/amd64"),
            "{err}"
        );
    }

    fn platform(text: &str) -> Platform {
        let mut parts = text.split('/');
        Platform {
            os: parts.next().unwrap().into(),
            architecture: parts.next().unwrap().into(),
            variant: parts.next().unwrap_or("").into(),
        }
    }

    /// An index of `(platform, annotation, artifactType)` entries, sizes 1, 2, 3, ...
    fn index_of(entries: &[(&str, &str, &str)]) -> Index {
        let manifests = entries
            .iter()
            .enumerate()
            .map(|(i, (p, annotation, artifact))| {
                let mut desc = serde_json::json!({
                    "mediaType": OCI_MANIFEST, "digest": d(i as u8), "size": i + 1,
                });
                if !p.is_empty() {
                    let pl = platform(p);
                    desc["platform"] = serde_json::json!({
                        "os": pl.os, "architecture": pl.architecture, "variant": pl.variant,
                    });
                }
                if !annotation.is_empty() {
                    desc["annotations"] =
                        serde_json::json!({ REFERENCE_TYPE_ANNOTATION: annotation });
                }
                if !artifact.is_empty() {
                    desc["artifactType"] = serde_json::json!(artifact);
                }
                desc
            })
            .collect::<Vec<_>>();
        let json = serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
        match parse_document("", json.to_string().as_bytes()).unwrap() {
            Document::Index(index) => index,
            Document::Manifest(_) => panic!("not an index"),
        }
    }

    #[test]
    fn attestations_and_artifacts_next_to_the_image_are_never_chosen() {
        // BuildKit: image, then its attestation manifest for unknown/unknown.
        let index = index_of(&[
            ("linux/amd64", "", ""),
            ("unknown/unknown", "attestation-manifest", ""),
        ]);
        assert_eq!(select(&index, &platform("linux/amd64")).unwrap().size, 1);
        let err = select(&index, &platform("linux/arm64/v8"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("unknown"), "{err}");
        // The attestation first, without a platform; a signature artifact; then the image.
        let index = index_of(&[
            ("", "attestation-manifest", ""),
            ("", "", "application/vnd.dev.cosign.artifact.sig.v1+json"),
            ("linux/amd64", "", ""),
        ]);
        assert_eq!(select(&index, &platform("linux/amd64")).unwrap().size, 3);
        // An index whose only image has no platform (as some tools write): that one.
        let index = index_of(&[
            ("unknown/unknown", "attestation-manifest", ""),
            ("", "", ""),
        ]);
        assert_eq!(select(&index, &platform("linux/amd64")).unwrap().size, 2);
    }

    #[test]
    fn variants_are_matched_as_containerd_orders_them() {
        let index = index_of(&[
            ("linux/amd64/v3", "", ""),
            ("linux/amd64", "", ""),
            ("linux/amd64/v2", "", ""),
            ("linux/arm64/v8", "", ""),
            ("linux/arm/v6", "", ""),
            ("linux/arm/v7", "", ""),
        ]);
        let pick = |p: &str| select(&index, &platform(p)).map(|d| d.size).ok();
        assert_eq!(pick("linux/amd64/v1"), Some(2));
        assert_eq!(pick("linux/amd64/v2"), Some(3));
        assert_eq!(
            pick("linux/amd64/v4"),
            Some(1),
            "the highest level that runs"
        );
        assert_eq!(pick("linux/arm64/v8"), Some(4));
        assert_eq!(pick("linux/arm64"), Some(4), "arm64 means v8");
        assert_eq!(pick("linux/arm/v7"), Some(6));
        assert_eq!(pick("linux/arm/v6"), Some(5));
        assert_eq!(pick("linux/arm/v5"), None);
        let only_v3 = index_of(&[("linux/amd64/v3", "", ""), ("linux/x86_64", "", "")]);
        assert_eq!(
            select(&only_v3, &platform("linux/amd64/v2")).unwrap().size,
            2,
            "v3 cannot run on v2; x86_64 is amd64"
        );
        let host = Platform::host();
        if cfg!(target_arch = "x86_64") {
            assert!(host.variant.starts_with('v'), "{host}");
            assert_eq!(
                select(&index, &host)
                    .unwrap()
                    .platform
                    .as_ref()
                    .unwrap()
                    .architecture,
                "amd64"
            );
        }
    }

    fn manifest_with(config: &str, layers: &[&str], artifact_type: &str) -> Manifest {
        let json = serde_json::json!({
            "schemaVersion": 2,
            "artifactType": artifact_type,
            "config": { "mediaType": config, "digest": d(1), "size": 2 },
            "layers": layers.iter().map(|t| serde_json::json!({
                "mediaType": t, "digest": d(2), "size": 3,
            })).collect::<Vec<_>>(),
        });
        match parse_document(OCI_MANIFEST, json.to_string().as_bytes()).unwrap() {
            Document::Manifest(m) => *m,
            Document::Index(_) => panic!("not a manifest"),
        }
    }

    #[test]
    fn images_pass_and_artifacts_are_refused_by_media_type() {
        for layer in [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.image.rootfs.diff.tar",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        ] {
            manifest_with(OCI_CONFIG, &[layer], "")
                .check_is_image()
                .unwrap();
            manifest_with(DOCKER_CONFIG, &[layer], "")
                .check_is_image()
                .unwrap();
        }
        manifest_with(OCI_CONFIG, &[], "").check_is_image().unwrap();
        let refused = |m: Manifest, media_type: &str| {
            let err = m.check_is_image().unwrap_err();
            assert!(
                matches!(&err, ManifestError::NotAnImage { media_type: t, .. } if t == media_type),
                "{err}"
            );
            err.to_string()
        };
        let helm = "application/vnd.cncf.helm.config.v1+json";
        refused(
            manifest_with(
                helm,
                &["application/vnd.cncf.helm.chart.content.v1.tar+gzip"],
                "",
            ),
            helm,
        );
        let empty = "application/vnd.oci.empty.v1+json";
        let text = refused(
            manifest_with(empty, &["application/wasm"], "application/vnd.example.wasm"),
            empty,
        );
        assert!(
            text.contains("config has media type \"application/vnd.oci.empty.v1+json\"")
                && text.contains("artifact type \"application/vnd.example.wasm\""),
            "{text}"
        );
        // cosign's signature manifests use the image config type with non-tar layers.
        let sig = "application/vnd.dev.cosign.simplesigning.v1+json";
        refused(manifest_with(OCI_CONFIG, &[sig], ""), sig);
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
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(&[0x5e, 0x2a, 0x4d, 0x18, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"etc/\0\0\0"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
        assert_eq!(Compression::detect(&[0x1f]), Compression::None);
    }
}
