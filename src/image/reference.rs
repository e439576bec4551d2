//! Image references as kubelet, crictl and critest send them (`busybox`,
//! `registry.k8s.io/pause:3.10`, `name@sha256:…`), and the digests and image IDs around them.
//!
//! References are normalised the way docker and containerd do it, so that `busybox`,
//! `docker.io/busybox` and `docker.io/library/busybox:latest` are one image in the store and
//! `crictl images` shows the same names containerd would.

use std::fmt;
use std::str::FromStr;

/// The registry of references that name none (Docker Hub), under its canonical name.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag of references that carry neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

/// Older clients write Docker Hub as `index.docker.io`; docker maps it to `docker.io`.
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
/// Single-component Docker Hub names are official images under `library/`.
const OFFICIAL_PREFIX: &str = "library/";
/// The distribution spec caps `registry/repository` at 255 characters.
const NAME_MAX: usize = 255;
/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
const TAG_MAX: usize = 128;

/// A parsed, normalised image reference. At least one of `tag` and `digest` is set after
/// [`Reference::parse`]: a reference without either gets the tag `latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with port if one was given: `docker.io`, `localhost:5000`.
    pub registry: String,
    /// Path inside the registry: `library/busybox`, `e2e-test-images/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    /// `algorithm:hex`, e.g. `sha256:9700…`.
    pub digest: Option<String>,
}

/// A reference or digest that cannot be used; the message includes the input and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference {input:?}: {reason}")]
    Reference { input: String, reason: String },
    #[error("invalid digest {input:?}: {reason}")]
    Digest { input: String, reason: String },
}

impl Reference {
    /// Parses and normalises a reference: `busybox` becomes `docker.io/library/busybox:latest`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        parse_reference(input).map_err(|reason| ReferenceError::Reference {
            input: input.to_owned(),
            reason,
        })
    }

    /// `registry/repository`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag`, if the reference has a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|tag| format!("{}:{tag}", self.name()))
    }

    /// `registry/repository@digest`: the name under which pulled content is pinned.
    pub fn digested(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }

    /// What goes in `/v2/<repository>/manifests/<here>`: the digest when there is one (it
    /// pins the content, a tag next to it is informational), else the tag.
    pub fn api_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

fn parse_reference(input: &str) -> Result<Reference, String> {
    if input.is_empty() {
        return Err("empty reference".into());
    }
    if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("contains the character {c:?}"));
    }
    // docker refuses these so that an image ID is never mistaken for a Docker Hub repository.
    if is_hex(input, 64) {
        return Err("a 64-character hex string is an image ID, not a reference".into());
    }
    let (rest, digest) = split_digest(input)?;
    let (name, tag) = split_tag(rest)?;
    if name.is_empty() {
        return Err("missing the repository name".into());
    }
    let (registry, repository) = split_registry(name);
    check_registry(registry)?;
    check_repository(repository)?;
    let (registry, repository) = normalise(registry, repository);
    let full_len = registry.len() + 1 + repository.len();
    if full_len > NAME_MAX {
        return Err(format!(
            "the name is {full_len} characters long, the limit is {NAME_MAX}"
        ));
    }
    let tag = match (tag, &digest) {
        (None, None) => Some(DEFAULT_TAG.to_owned()),
        (tag, _) => tag.map(str::to_owned),
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

/// Splits `rest@digest`. A name never contains `@`, so the first one starts the digest.
fn split_digest(input: &str) -> Result<(&str, Option<String>), String> {
    let Some((rest, digest)) = input.split_once('@') else {
        return Ok((input, None));
    };
    if digest.is_empty() {
        return Err("`@` is not followed by a digest".into());
    }
    check_digest(digest).map_err(|reason| format!("bad digest {digest:?}: {reason}"))?;
    Ok((rest, Some(digest.to_owned())))
}

/// Splits `name:tag`. A `:` before the last `/` belongs to a registry port, not a tag.
fn split_tag(rest: &str) -> Result<(&str, Option<&str>), String> {
    let Some(colon) = rest.rfind(':') else {
        return Ok((rest, None));
    };
    if rest[colon..].contains('/') {
        return Ok((rest, None));
    }
    let tag = &rest[colon + 1..];
    check_tag(tag)?;
    Ok((&rest[..colon], Some(tag)))
}

fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("empty tag after `:`".into());
    }
    if tag.len() > TAG_MAX {
        return Err(format!(
            "the tag is {} characters long, the limit is {TAG_MAX}",
            tag.len()
        ));
    }
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let bytes = tag.as_bytes();
    if !word(bytes[0]) || !bytes.iter().all(|&c| word(c) || c == b'.' || c == b'-') {
        return Err(format!(
            "tag {tag:?} must start with a letter, digit or `_` and contain only letters, \
             digits, `_`, `.` and `-`"
        ));
    }
    Ok(())
}

/// docker's rule: the first component names a registry only if it looks like a host (has a
/// `.` or `:`, is `localhost`, or has capitals, which a repository never has); otherwise the
/// whole name is a Docker Hub repository.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

/// `host[:port]`, where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
fn check_registry(registry: &str) -> Result<(), String> {
    let problem = registry_problem(registry);
    problem.map_or(Ok(()), |why| Err(format!("registry {registry:?} {why}")))
}

fn registry_problem(registry: &str) -> Option<&'static str> {
    let port = if let Some(inner) = registry.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return Some("has no closing `]`");
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Some("has an invalid IPv6 address");
        }
        match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Some("has text after the IPv6 address"),
            },
        }
    } else {
        let (host, port) = match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        };
        if !host.split('.').all(valid_host_label) {
            return Some("is not a valid host name");
        }
        port
    };
    match port {
        Some(p) if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) => {
            Some("has an invalid port")
        }
        _ => None,
    }
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn valid_host_label(label: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|&c| alnum(c) || c == b'-')
        }
        _ => false,
    }
}

fn check_repository(repository: &str) -> Result<(), String> {
    if repository.bytes().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("repository {repository:?} must be lowercase"));
    }
    for component in repository.split('/') {
        if component.is_empty() {
            return Err(format!(
                "repository {repository:?} has an empty path component"
            ));
        }
        if !valid_path_component(component) {
            return Err(format!(
                "path component {component:?} must be lowercase letters and digits, \
                 separated by one `.`, one or two `_`, or dashes"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(component: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = component.as_bytes();
    if !bytes.first().is_some_and(|&c| alnum(c)) || !bytes.last().is_some_and(|&c| alnum(c)) {
        return false;
    }
    // Between alphanumeric runs, each separator run must be one of the allowed forms.
    component
        .split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        .filter(|sep| !sep.is_empty())
        .all(|sep| matches!(sep, "." | "_" | "__") || sep.bytes().all(|c| c == b'-'))
}

fn normalise(registry: &str, repository: &str) -> (String, String) {
    let registry = if registry == LEGACY_DEFAULT_REGISTRY {
        DEFAULT_REGISTRY
    } else {
        registry
    };
    let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        format!("{OFFICIAL_PREFIX}{repository}")
    } else {
        repository.to_owned()
    };
    (registry.to_owned(), repository)
}

/// Splits `sha256:<64 hex>` or `sha512:<128 hex>` (lowercase hex) into algorithm and hex.
pub fn parse_digest(digest: &str) -> Result<(&str, &str), ReferenceError> {
    check_digest(digest).map_err(|reason| ReferenceError::Digest {
        input: digest.to_owned(),
        reason,
    })
}

fn check_digest(digest: &str) -> Result<(&str, &str), String> {
    let (algorithm, hex) = digest.split_once(':').ok_or("expected algorithm:hex")?;
    let len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err(format!("unsupported algorithm {algorithm:?}")),
    };
    if !is_hex(hex, len) {
        return Err(format!("{algorithm} needs {len} lowercase hex characters"));
    }
    Ok((algorithm, hex))
}

/// Whether `s` is a valid digest such as `sha256:<64 hex>`.
pub fn is_digest(s: &str) -> bool {
    check_digest(s).is_ok()
}

/// Whether `s` is an image ID as crictl and kubelet send them to ImageStatus and RemoveImage:
/// `sha256:<64 hex>` or the bare 64 hex characters.
pub fn is_image_id(s: &str) -> bool {
    image_id_digest(s).is_some()
}

/// The image ID `s` as a full digest (`sha256:<hex>`), or `None` if `s` is not an image ID.
pub fn image_id_digest(s: &str) -> Option<String> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    is_hex(hex, 64).then(|| format!("sha256:{hex}"))
}

/// Exactly `len` lowercase hex characters: digests are compared as strings, so `A-F` would
/// name the same content twice.
fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf";

    fn ok(input: &str) -> Reference {
        Reference::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"))
    }

    /// `registry repository tag digest`, `-` for a missing part: one short line per case.
    fn fields(r: &Reference) -> String {
        let tag = r.tag.as_deref().unwrap_or("-");
        let digest = r.digest.as_deref().unwrap_or("-");
        format!("{} {} {tag} {digest}", r.registry, r.repository)
    }

    #[test]
    fn valid_references_normalise() {
        let sha512 = format!("sha512:{}", "0a".repeat(64));
        let tag128 = "t".repeat(128);
        let path243 = "a".repeat(243);
        let cases = [
            ("busybox", "docker.io library/busybox latest -"),
            ("busybox:1.36", "docker.io library/busybox 1.36 -"),
            ("user/app", "docker.io user/app latest -"),
            ("docker.io/busybox", "docker.io library/busybox latest -"),
            (
                "docker.io/library/busybox:latest",
                "docker.io library/busybox latest -",
            ),
            (
                "index.docker.io/busybox",
                "docker.io library/busybox latest -",
            ),
            ("index.docker.io/user/app:v1", "docker.io user/app v1 -"),
            // Not an alias in docker or containerd: a real host, kept as written.
            (
                "registry-1.docker.io/library/x",
                "registry-1.docker.io library/x latest -",
            ),
            (
                "registry.k8s.io/e2e-test-images/busybox:1.29-2",
                "registry.k8s.io e2e-test-images/busybox 1.29-2 -",
            ),
            ("registry.k8s.io/pause:3.9", "registry.k8s.io pause 3.9 -"),
            (
                "public.ecr.aws/docker/library/busybox:1.35.0-glibc",
                "public.ecr.aws docker/library/busybox 1.35.0-glibc -",
            ),
            ("localhost:5000/a/b", "localhost:5000 a/b latest -"),
            ("localhost/x", "localhost x latest -"),
            ("127.0.0.1:5000/x:1", "127.0.0.1:5000 x 1 -"),
            ("[::1]:5000/x:1", "[::1]:5000 x 1 -"),
            ("[fd00::1]/x", "[fd00::1] x latest -"),
            // docker: a first component with capitals is a host, as repositories are lowercase.
            ("Registry/x", "Registry x latest -"),
            (
                "r.example.com:443/a.b/c_d/e__f/g--h",
                "r.example.com:443 a.b/c_d/e__f/g--h latest -",
            ),
            ("x:v1.0_rc-1", "docker.io library/x v1.0_rc-1 -"),
            ("x:_Tag.With-All", "docker.io library/x _Tag.With-All -"),
            // Without a `/` the colon starts a tag: docker reads this as library/localhost:5000.
            ("localhost:5000", "docker.io library/localhost 5000 -"),
        ];
        let owned = [
            (
                format!("gcr.io/k8s-staging-cri-tools/test-image-digest@{D}"),
                format!("gcr.io k8s-staging-cri-tools/test-image-digest - {D}"),
            ),
            (
                format!("busybox@{D}"),
                format!("docker.io library/busybox - {D}"),
            ),
            (
                format!("busybox:1.36@{D}"),
                format!("docker.io library/busybox 1.36 {D}"),
            ),
            (
                format!("localhost:5000/x:t@{D}"),
                format!("localhost:5000 x t {D}"),
            ),
            (
                format!("quay.io/x@{sha512}"),
                format!("quay.io x - {sha512}"),
            ),
            (
                format!("x:{tag128}"),
                format!("docker.io library/x {tag128} -"),
            ),
            (
                format!("example.com/{path243}"),
                format!("example.com {path243} latest -"),
            ),
        ];
        let all = cases
            .iter()
            .map(|(i, e)| (i.to_string(), e.to_string()))
            .chain(owned);
        for (input, expected) in all {
            let r = ok(&input);
            assert_eq!(fields(&r), expected, "{input}");
            // The canonical string parses back to the same reference.
            assert_eq!(ok(&r.to_string()), r, "{input}");
        }
    }

    #[test]
    fn canonical_strings() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("user/app", "docker.io/user/app:latest"),
            ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
            ("localhost:5000/a/b", "localhost:5000/a/b:latest"),
        ];
        for (input, canonical) in cases {
            assert_eq!(ok(input).to_string(), canonical, "{input}");
        }
        assert_eq!(
            ok(&format!("busybox@{D}")).to_string(),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(
            ok(&format!("busybox:1@{D}")).to_string(),
            format!("docker.io/library/busybox:1@{D}")
        );
    }

    #[test]
    fn accessors() {
        let r = ok("busybox");
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(
            r.tagged().as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        assert_eq!(r.api_reference(), "latest");
        assert_eq!(r.digested(D), format!("docker.io/library/busybox@{D}"));

        let r = ok(&format!(
            "gcr.io/k8s-staging-cri-tools/test-image-digest@{D}"
        ));
        assert_eq!(r.tagged(), None);
        assert_eq!(r.api_reference(), D);

        let r = ok(&format!("registry.k8s.io/pause:3.9@{D}"));
        assert_eq!(r.tagged().as_deref(), Some("registry.k8s.io/pause:3.9"));
        assert_eq!(r.api_reference(), D);

        let r: Reference = "127.0.0.1:5000/x:1".parse().unwrap();
        assert_eq!(r.name(), "127.0.0.1:5000/x");
        assert_eq!(r.api_reference(), "1");
    }

    #[test]
    fn invalid_references_say_why() {
        let too_long = format!("example.com/{}", "a".repeat(244));
        let long_tag = format!("x:{}", "t".repeat(129));
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "empty reference"),
            ("Busybox".into(), "must be lowercase"),
            ("docker.io/Library/busybox".into(), "must be lowercase"),
            ("registry.k8s.io/Pause:3.9".into(), "must be lowercase"),
            ("a//b".into(), "empty path component"),
            ("a/".into(), "empty path component"),
            ("/a".into(), "empty path component"),
            ("registry.k8s.io/".into(), "empty path component"),
            (":tag".into(), "missing the repository name"),
            (format!("@{D}"), "missing the repository name"),
            ("busybox:".into(), "empty tag"),
            ("busy box".into(), "contains the character ' '"),
            (" busybox".into(), "contains the character ' '"),
            ("busybox\n".into(), "contains the character '\\n'"),
            ("busybox@".into(), "not followed by a digest"),
            ("busybox@sha256".into(), "expected algorithm:hex"),
            ("busybox@sha256:abc".into(), "64 lowercase hex"),
            (
                format!("busybox@{}", D.to_uppercase().replace("SHA256", "sha256")),
                "64 lowercase hex",
            ),
            (
                format!("busybox@md5:{}", "a".repeat(32)),
                "unsupported algorithm",
            ),
            (
                format!("busybox@sha512:{}", "a".repeat(64)),
                "128 lowercase hex",
            ),
            (format!("busybox@{D}@{D}"), "64 lowercase hex"),
            ("busybox:.bad".into(), "must start with"),
            ("busybox:-bad".into(), "must start with"),
            ("busybox:ba/d".into(), "invalid port"),
            ("busybox:b@d".into(), "bad digest"),
            (long_tag, "the limit is 128"),
            ("a..b".into(), "path component \"a..b\""),
            ("a___b".into(), "path component"),
            ("-a".into(), "path component"),
            ("a-".into(), "path component"),
            ("a.".into(), "path component"),
            ("_a/b".into(), "path component"),
            ("a/b!".into(), "path component"),
            ("ünicode".into(), "path component"),
            ("registry.k8s.io/pa$use".into(), "path component"),
            ("-bad.example/x".into(), "is not a valid host name"),
            ("bad..example/x".into(), "is not a valid host name"),
            ("bad_host.example/x".into(), "is not a valid host name"),
            ("localhost:/x".into(), "invalid port"),
            ("localhost:50a0/x".into(), "invalid port"),
            ("[::1/x".into(), "no closing"),
            ("[zz::1]:5000/x".into(), "invalid IPv6"),
            ("[::1]x/y".into(), "text after the IPv6"),
            (too_long, "the limit is 255"),
            // The limit applies to the normalised name: docker.io/library/ + 240.
            ("a".repeat(240), "is 258 characters long"),
            (
                "9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf".into(),
                "image ID",
            ),
        ];
        for (input, expected) in cases {
            let err = match Reference::parse(&input) {
                Ok(r) => panic!("{input:?} parsed as {r:?}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(expected), "{input:?}: {err}");
            assert!(err.contains(&format!("{input:?}")), "{input:?}: {err}");
        }
    }

    #[test]
    fn digests() {
        assert_eq!(parse_digest(D).unwrap(), ("sha256", &D["sha256:".len()..]));
        let sha512 = format!("sha512:{}", "f".repeat(128));
        assert_eq!(parse_digest(&sha512).unwrap().0, "sha512");
        assert!(is_digest(D));
        for bad in [
            "",
            "sha256",
            "sha256:",
            &D[..D.len() - 1],
            &format!("{D}0"),
            &D.replace('a', "A"),
            &D.replace("sha256", "SHA256"),
            &D.replace('9', "g"),
            &D["sha256:".len()..],
            &format!("sha384:{}", "a".repeat(96)),
        ] {
            assert!(!is_digest(bad), "{bad:?}");
        }
        let err = parse_digest("sha256:xyz").unwrap_err().to_string();
        assert!(err.contains("invalid digest \"sha256:xyz\""), "{err}");
    }

    #[test]
    fn image_ids() {
        let hex = &D["sha256:".len()..];
        assert!(is_image_id(D));
        assert!(is_image_id(hex));
        assert_eq!(image_id_digest(hex).as_deref(), Some(D));
        assert_eq!(image_id_digest(D).as_deref(), Some(D));
        for not_id in [
            "busybox",
            "registry.k8s.io/pause:3.9",
            &hex[..12],
            &hex.to_uppercase(),
            &format!("sha512:{}", "a".repeat(128)),
            &format!("sha256:{}", "a".repeat(63)),
            "",
        ] {
            assert!(!is_image_id(not_id), "{not_id:?}");
        }
        // An ID is never taken for a repository name.
        assert!(Reference::parse(hex).is_err());
    }
}
