//! Registry host configuration in containerd's `hosts.toml` layout, so existing node setups
//! and mirror configurations carry over unchanged.
//!
//! `<config_dir>/<host>/hosts.toml` configures one registry host (`registry.k8s.io`,
//! `localhost:5000`); `<config_dir>/_default/hosts.toml` configures every host without its own
//! folder. A file lists mirrors as `[host."<url>"]` tables, tried in file order, and the
//! registry itself as the top-level `server`, tried last.
//!
//! Unknown keys are refused with the file and key named, so a typo never silently drops a
//! mirror or a CA.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// The file name inside each host folder.
pub const HOSTS_FILE: &str = "hosts.toml";
/// The folder used for hosts that have none of their own.
pub const DEFAULT_HOST_DIR: &str = "_default";

/// What a registry endpoint may be used for (containerd's `capabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Fetch manifests and blobs by digest.
    pub pull: bool,
    /// Turn a tag into a digest.
    pub resolve: bool,
    pub push: bool,
}

impl Capabilities {
    /// The default for the server and for mirrors that do not say.
    pub const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };
}

/// One registry endpoint, in the order it is to be tried.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `scheme://host[:port][/prefix]` without a trailing `/`. The scheme decides plain HTTP
    /// or TLS. Unless `override_path` is set, the API lives under `<url>/v2/`.
    pub url: String,
    /// The URL path is the API root itself (no `/v2` is added), for mirrors that serve the
    /// registry API under another path.
    pub override_path: bool,
    pub capabilities: Capabilities,
    /// Do not verify the server's TLS certificate.
    pub skip_verify: bool,
    /// Extra CA certificate files (PEM) trusted for this endpoint; relative paths from the file
    /// are already joined to its folder.
    pub ca: Vec<PathBuf>,
    /// Sent with every request to this endpoint.
    pub headers: HeaderMap,
}

impl Endpoint {
    /// The default endpoint of `host` when no hosts.toml configures it.
    pub fn default_for(host: &str) -> Endpoint {
        Endpoint {
            url: default_server(host),
            override_path: false,
            capabilities: Capabilities::ALL,
            skip_verify: false,
            ca: Vec::new(),
            headers: HeaderMap::new(),
        }
    }

    /// Whether requests go over plain HTTP (no TLS).
    pub fn is_plain_http(&self) -> bool {
        self.url.starts_with("http://")
    }

    /// The registry API root, ending in `/`: `http://127.0.0.1:5000/v2/`.
    pub fn api_url(&self) -> String {
        if self.override_path {
            format!("{}/", self.url)
        } else {
            format!("{}/v2/", self.url)
        }
    }

    /// `<api>/<repository>/manifests/<tag or digest>`.
    pub fn manifest_url(&self, repository: &str, reference: &str) -> String {
        format!("{}{repository}/manifests/{reference}", self.api_url())
    }

    /// `<api>/<repository>/blobs/<digest>`.
    pub fn blob_url(&self, repository: &str, digest: &str) -> String {
        format!("{}{repository}/blobs/{digest}", self.api_url())
    }

    /// Whether a tag may be resolved here. Resolving fetches the manifest the tag points to,
    /// so, as in containerd, the endpoint needs `pull` as well as `resolve`.
    pub fn can_resolve(&self) -> bool {
        self.capabilities.resolve && self.capabilities.pull
    }

    /// Whether manifests and blobs may be fetched here by digest.
    pub fn can_pull(&self) -> bool {
        self.capabilities.pull
    }
}

/// The endpoints to try, in order, for turning a tag into a manifest.
pub fn resolve_endpoints(endpoints: &[Endpoint]) -> impl Iterator<Item = &Endpoint> {
    endpoints.iter().filter(|e| e.can_resolve())
}

/// The endpoints to try, in order, for fetching a manifest or blob by digest.
pub fn pull_endpoints(endpoints: &[Endpoint]) -> impl Iterator<Item = &Endpoint> {
    endpoints.iter().filter(|e| e.can_pull())
}

/// A host configuration that cannot be used; the message names the file and key.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("registry host {host:?} cannot be looked up in the hosts directory: {reason}")]
    InvalidHost { host: String, reason: &'static str },
    #[error("cannot read hosts file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("hosts file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("hosts file {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// The endpoints for registry `host` (`registry.k8s.io`, `localhost:5000`): the mirrors of its
/// hosts.toml in file order, then the server. Uses `_default/hosts.toml` when the host has no
/// file, and the host's default endpoint when neither exists.
pub fn endpoints_for(config_dir: &Path, host: &str) -> Result<Vec<Endpoint>, HostsError> {
    check_host(host)?;
    for folder in [host, DEFAULT_HOST_DIR] {
        let path = config_dir.join(folder).join(HOSTS_FILE);
        if let Some(text) = read_if_present(&path)? {
            return parse_hosts(&path, &text, host);
        }
    }
    Ok(vec![Endpoint::default_for(host)])
}

/// Parses the text of `path`, the hosts.toml used for registry `host`. Relative `ca` paths are
/// taken relative to the folder of `path`.
pub fn parse_hosts(path: &Path, text: &str, host: &str) -> Result<Vec<Endpoint>, HostsError> {
    let mut file: HostsFile = toml::from_str(text).map_err(|e| HostsError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    let invalid = |key: String, message: String| HostsError::Invalid {
        path: path.to_owned(),
        key,
        message,
    };
    let server_settings = file.server_settings();
    let mut endpoints = Vec::with_capacity(file.host.0.len() + 1);
    for (url, table) in file.host.0 {
        let prefix = format!("host.{}", quote_key(&url));
        let endpoint = table
            .into_endpoint(&url, base, &prefix)
            .map_err(|(key, message)| invalid(key, message))?;
        endpoints.push(endpoint);
    }
    let server = file.server.unwrap_or_else(|| default_server(host));
    let endpoint = server_settings
        .into_endpoint(&server, base, "")
        .map_err(|(key, message)| invalid(key, message))?;
    endpoints.push(endpoint);
    Ok(endpoints)
}

/// The host becomes a folder name: refuse anything that could leave `config_dir`.
fn check_host(host: &str) -> Result<(), HostsError> {
    let reason = if host.is_empty() {
        "it is empty"
    } else if host.contains(['/', '\\', '\0']) {
        "it contains a path separator"
    } else if host == "." || host == ".." {
        "it is not a host name"
    } else if host == DEFAULT_HOST_DIR {
        "it is the name of the fallback folder"
    } else {
        return Ok(());
    };
    Err(HostsError::InvalidHost {
        host: host.to_owned(),
        reason,
    })
}

/// A missing file (or a host entry that is a file, not a folder) means "not configured here".
fn read_if_present(path: &Path) -> Result<Option<String>, HostsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(source) => Err(HostsError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Docker Hub's API is not served at `docker.io` itself. Loopback registries (the test
/// registry on `127.0.0.1:5000`, `localhost:5000`) default to plain HTTP: containerd tries
/// HTTPS and falls back to HTTP for them; choosing HTTP directly skips a failing handshake.
fn default_server(host: &str) -> String {
    if host == "docker.io" {
        "https://registry-1.docker.io".to_owned()
    } else if is_loopback(host) {
        format!("http://{host}")
    } else {
        format!("https://{host}")
    }
}

/// `localhost` or a loopback IP, with or without a port.
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or(bracketed, |(ip, _)| ip),
        None => host.split_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `"http://127.0.0.1:5000"` as it would be written in a TOML key path.
fn quote_key(key: &str) -> String {
    format!("{key:?}")
}

/// Turns a `server` or `[host."…"]` URL into `Endpoint::url`. A URL without a scheme means
/// HTTPS. Without `override_path`, a trailing `/v2` is dropped, since `api_url` adds it back.
fn normalise_url(raw: &str, override_path: bool) -> Result<String, String> {
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("https://{raw}")
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("{raw:?}: the scheme must be http or https"));
    }
    let authority = match uri.authority() {
        Some(a) if !a.host().is_empty() => a.as_str(),
        _ => return Err(format!("{raw:?} has no host")),
    };
    if authority.contains('@') {
        return Err(format!("{raw:?}: credentials do not belong in the URL"));
    }
    if uri.query().is_some() {
        return Err(format!("{raw:?}: a query string is not allowed"));
    }
    let mut segments: Vec<&str> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if segments.contains(&"..") {
        return Err(format!("{raw:?}: `..` is not allowed in the path"));
    }
    if !override_path && segments.last() == Some(&"v2") {
        segments.pop();
    }
    let path: String = segments.iter().map(|s| format!("/{s}")).collect();
    Ok(format!("{scheme}://{authority}{path}"))
}

/// The top level of a hosts.toml: the server and its settings, plus the mirrors.
/// serde's `flatten` does not work with `deny_unknown_fields`, hence the keys repeated from
/// `HostTable`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    server: Option<String>,
    #[serde(default)]
    host: OrderedHosts,
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    ca: Option<Strings>,
    header: Option<BTreeMap<String, Strings>>,
    override_path: Option<bool>,
    client: Option<toml::Value>,
}

impl HostsFile {
    /// The top-level keys other than `server` and `host` configure the server endpoint.
    fn server_settings(&mut self) -> HostTable {
        HostTable {
            capabilities: self.capabilities.take(),
            skip_verify: self.skip_verify.take(),
            ca: self.ca.take(),
            header: self.header.take(),
            override_path: self.override_path.take(),
            client: self.client.take(),
        }
    }
}

/// One endpoint's settings: a `[host."…"]` table, or the top level for the server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostTable {
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    ca: Option<Strings>,
    header: Option<BTreeMap<String, Strings>>,
    override_path: Option<bool>,
    /// Client certificates are not supported yet; the key is recognised to refuse it clearly.
    client: Option<toml::Value>,
}

/// A failed key: its full name (`host."…".capabilities`) and what is wrong.
type KeyError = (String, String);

impl HostTable {
    /// `url` is the mirror's table key or the server; `prefix` is the key path of the table
    /// (`host."…"`, or empty for the top level).
    fn into_endpoint(self, url: &str, base: &Path, prefix: &str) -> Result<Endpoint, KeyError> {
        let key = |name: &str| match prefix {
            "" => name.to_owned(),
            _ => format!("{prefix}.{name}"),
        };
        if self.client.is_some() {
            return Err((
                key("client"),
                "client certificates are not supported".into(),
            ));
        }
        let override_path = self.override_path.unwrap_or(false);
        let url_key = if prefix.is_empty() {
            "server".to_owned()
        } else {
            prefix.to_owned()
        };
        let url = normalise_url(url, override_path).map_err(|m| (url_key, m))?;
        let capabilities = match self.capabilities {
            Some(names) => parse_capabilities(&names).map_err(|m| (key("capabilities"), m))?,
            None => Capabilities::ALL,
        };
        let ca = match self.ca {
            Some(paths) => ca_paths(paths.0, base).map_err(|m| (key("ca"), m))?,
            None => Vec::new(),
        };
        let headers = match self.header {
            Some(map) => {
                parse_headers(map).map_err(|(name, m)| (key(&format!("header.{name}")), m))?
            }
            None => HeaderMap::new(),
        };
        Ok(Endpoint {
            url,
            override_path,
            capabilities,
            skip_verify: self.skip_verify.unwrap_or(false),
            ca,
            headers,
        })
    }
}

fn parse_capabilities(names: &[String]) -> Result<Capabilities, String> {
    let mut caps = Capabilities {
        pull: false,
        resolve: false,
        push: false,
    };
    for name in names {
        match name.as_str() {
            "pull" => caps.pull = true,
            "resolve" => caps.resolve = true,
            "push" => caps.push = true,
            other => {
                return Err(format!(
                    "unknown capability {other:?} (expected pull, resolve or push)"
                ));
            }
        }
    }
    Ok(caps)
}

fn ca_paths(paths: Vec<String>, base: &Path) -> Result<Vec<PathBuf>, String> {
    paths
        .into_iter()
        .map(|p| match p.as_str() {
            "" => Err("an empty path".to_owned()),
            _ => Ok(base.join(p)),
        })
        .collect()
}

/// Checked here so that a bad header fails at load with its key, not on the first request.
fn parse_headers(map: BTreeMap<String, Strings>) -> Result<HeaderMap, KeyError> {
    let mut headers = HeaderMap::new();
    for (name, values) in map {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| (name.clone(), "not a valid header name".to_owned()))?;
        for value in values.0 {
            let value = HeaderValue::from_str(&value).map_err(|_| {
                (
                    name.clone(),
                    format!("{value:?} is not a valid header value"),
                )
            })?;
            headers.append(header.clone(), value);
        }
    }
    Ok(headers)
}

/// `[host."…"]` tables in file order: the order says which mirror is tried first.
/// (A map type would sort them; toml's `preserve_order` makes the deserializer keep order.)
#[derive(Debug, Default)]
struct OrderedHosts(Vec<(String, HostTable)>);

impl<'de> Deserialize<'de> for OrderedHosts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HostsVisitor;
        impl<'de> Visitor<'de> for HostsVisitor {
            type Value = OrderedHosts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("tables of host settings keyed by URL")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedHosts, A::Error> {
                let mut hosts = Vec::new();
                while let Some((url, table)) = map.next_entry::<String, HostTable>()? {
                    hosts.push((url, table));
                }
                Ok(OrderedHosts(hosts))
            }
        }
        deserializer.deserialize_map(HostsVisitor)
    }
}

/// A string or a list of strings (`ca`, header values), as containerd accepts.
#[derive(Debug)]
struct Strings(Vec<String>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StringsVisitor;
        impl<'de> Visitor<'de> for StringsVisitor {
            type Value = Strings;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Strings, E> {
                Ok(Strings(vec![s.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strings, A::Error> {
                let mut all = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    all.push(s);
                }
                Ok(Strings(all))
            }
        }
        deserializer.deserialize_any(StringsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `<dir>/<folder>/hosts.toml`.
    fn write(dir: &Path, folder: &str, text: &str) -> PathBuf {
        let folder = dir.join(folder);
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join(HOSTS_FILE);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn caps(pull: bool, resolve: bool, push: bool) -> Capabilities {
        Capabilities {
            pull,
            resolve,
            push,
        }
    }

    fn urls(endpoints: &[Endpoint]) -> Vec<&str> {
        endpoints.iter().map(|e| e.url.as_str()).collect()
    }

    fn error(dir: &Path, host: &str) -> String {
        endpoints_for(dir, host).unwrap_err().to_string()
    }

    #[test]
    fn test_registry_mirror_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "registry.k8s.io",
            r#"server = "https://registry.k8s.io"

[host."http://127.0.0.1:5000"]
capabilities = ["pull", "resolve"]
"#,
        );
        let eps = endpoints_for(dir.path(), "registry.k8s.io").unwrap();
        assert_eq!(
            urls(&eps),
            ["http://127.0.0.1:5000", "https://registry.k8s.io"]
        );
        assert!(eps[0].is_plain_http());
        assert_eq!(eps[0].capabilities, caps(true, true, false));
        assert_eq!(eps[0].api_url(), "http://127.0.0.1:5000/v2/");
        assert_eq!(
            eps[0].manifest_url("pause", "3.9"),
            "http://127.0.0.1:5000/v2/pause/manifests/3.9"
        );
        assert_eq!(
            eps[0].blob_url("e2e-test-images/busybox", "sha256:ab"),
            "http://127.0.0.1:5000/v2/e2e-test-images/busybox/blobs/sha256:ab"
        );
        assert!(!eps[1].is_plain_http());
        assert_eq!(eps[1].capabilities, Capabilities::ALL);
        assert_eq!(eps[1].api_url(), "https://registry.k8s.io/v2/");
        assert!(!eps[1].skip_verify && eps[1].ca.is_empty() && eps[1].headers.is_empty());
    }

    #[test]
    fn no_configuration_gives_the_default_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("does-not-exist");
        for config_dir in [dir.path(), missing.as_path()] {
            let eps = endpoints_for(config_dir, "docker.io").unwrap();
            assert_eq!(eps, [Endpoint::default_for("docker.io")]);
            assert_eq!(eps[0].url, "https://registry-1.docker.io");
            assert_eq!(eps[0].capabilities, Capabilities::ALL);
            let eps = endpoints_for(config_dir, "quay.io").unwrap();
            assert_eq!(urls(&eps), ["https://quay.io"]);
        }
    }

    #[test]
    fn loopback_hosts_default_to_plain_http() {
        let dir = tempfile::tempdir().unwrap();
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.1.2.3:80",
            "[::1]:5000",
            "[::1]",
        ] {
            let eps = endpoints_for(dir.path(), host).unwrap();
            assert_eq!(urls(&eps), [format!("http://{host}")], "{host}");
        }
        for host in [
            "localhost.example.com",
            "10.0.0.1:5000",
            "[fd00::1]:5000",
            "localhostx:5000",
        ] {
            let eps = endpoints_for(dir.path(), host).unwrap();
            assert_eq!(urls(&eps), [format!("https://{host}")], "{host}");
        }
        // A hosts.toml without `server` keeps the host's default server.
        write(dir.path(), "127.0.0.1:5000", "skip_verify = true\n");
        let eps = endpoints_for(dir.path(), "127.0.0.1:5000").unwrap();
        assert_eq!(urls(&eps), ["http://127.0.0.1:5000"]);
        assert!(eps[0].skip_verify);
    }

    #[test]
    fn host_folder_with_port() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "localhost:5000",
            "server = \"https://localhost:5000\"\n",
        );
        let eps = endpoints_for(dir.path(), "localhost:5000").unwrap();
        assert_eq!(urls(&eps), ["https://localhost:5000"]);
        // The folder is for that port only.
        let eps = endpoints_for(dir.path(), "localhost:5001").unwrap();
        assert_eq!(urls(&eps), ["http://localhost:5001"]);
    }

    #[test]
    fn default_folder_is_the_fallback() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            DEFAULT_HOST_DIR,
            "[host.\"https://mirror.example.com\"]\ncapabilities = [\"pull\"]\n",
        );
        write(dir.path(), "registry.k8s.io", "");
        // The server of a fallback file is the requested host, not `_default`.
        let eps = endpoints_for(dir.path(), "quay.io").unwrap();
        assert_eq!(
            urls(&eps),
            ["https://mirror.example.com", "https://quay.io"]
        );
        assert_eq!(eps[0].capabilities, caps(true, false, false));
        let eps = endpoints_for(dir.path(), "docker.io").unwrap();
        assert_eq!(
            urls(&eps),
            ["https://mirror.example.com", "https://registry-1.docker.io"]
        );
        // A host with its own file (even an empty one) does not use the fallback.
        let eps = endpoints_for(dir.path(), "registry.k8s.io").unwrap();
        assert_eq!(urls(&eps), ["https://registry.k8s.io"]);
        // `_default` itself is not a host.
        assert!(error(dir.path(), DEFAULT_HOST_DIR).contains("fallback folder"));
    }

    #[test]
    fn mirrors_keep_file_order() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "docker.io",
            r#"server = "https://registry-1.docker.io"
[host."https://z.example.com"]
[host."http://a.example.com:8080"]
capabilities = ["pull", "resolve"]
[host."https://m.example.com"]
"#,
        );
        let eps = endpoints_for(dir.path(), "docker.io").unwrap();
        assert_eq!(
            urls(&eps),
            [
                "https://z.example.com",
                "http://a.example.com:8080",
                "https://m.example.com",
                "https://registry-1.docker.io"
            ]
        );
    }

    #[test]
    fn url_forms() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "example.com",
            r#"server = "registry.example.com:8443/"
[host."mirror.example.com"]
[host."https://mirror.example.com/v2"]
[host."https://mirror.example.com/some/prefix/"]
[host."HTTP://Mirror.example.com:80//a/./b"]
"#,
        );
        let eps = endpoints_for(dir.path(), "example.com").unwrap();
        assert_eq!(
            urls(&eps),
            [
                "https://mirror.example.com",
                "https://mirror.example.com",
                "https://mirror.example.com/some/prefix",
                "http://Mirror.example.com:80/a/b",
                "https://registry.example.com:8443",
            ]
        );
        assert_eq!(eps[1].api_url(), "https://mirror.example.com/v2/");
        assert_eq!(
            eps[2].api_url(),
            "https://mirror.example.com/some/prefix/v2/"
        );
    }

    #[test]
    fn override_path_uses_the_path_as_is() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "registry.example.com",
            r#"server = "https://registry.example.com/custom/api"
override_path = true
[host."https://mirror.example.com/v2/proxy/v2"]
override_path = true
[host."https://other.example.com/registry"]
"#,
        );
        let eps = endpoints_for(dir.path(), "registry.example.com").unwrap();
        assert_eq!(eps[0].api_url(), "https://mirror.example.com/v2/proxy/v2/");
        assert_eq!(
            eps[0].manifest_url("x/y", "1"),
            "https://mirror.example.com/v2/proxy/v2/x/y/manifests/1"
        );
        assert_eq!(eps[1].api_url(), "https://other.example.com/registry/v2/");
        assert!(eps[2].override_path);
        assert_eq!(eps[2].api_url(), "https://registry.example.com/custom/api/");
    }

    #[test]
    fn ca_paths_are_relative_to_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "registry.example.com",
            r#"server = "https://registry.example.com"
ca = "server-ca.pem"
[host."https://mirror.example.com"]
ca = ["mirror-ca.pem", "sub/other.pem", "/etc/ssl/abs.pem"]
skip_verify = true
"#,
        );
        let folder = path.parent().unwrap();
        let eps = endpoints_for(dir.path(), "registry.example.com").unwrap();
        assert_eq!(
            eps[0].ca,
            [
                folder.join("mirror-ca.pem"),
                folder.join("sub/other.pem"),
                PathBuf::from("/etc/ssl/abs.pem")
            ]
        );
        assert!(eps[0].skip_verify);
        assert_eq!(eps[1].ca, [folder.join("server-ca.pem")]);
        assert!(!eps[1].skip_verify);
    }

    #[test]
    fn headers_take_a_string_or_a_list() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "registry.example.com",
            r#"[header]
x-custom = "one"
[host."https://mirror.example.com"]
[host."https://mirror.example.com".header]
X-Multi = ["a", "b"]
x-single = "c"
"#,
        );
        let eps = endpoints_for(dir.path(), "registry.example.com").unwrap();
        let multi: Vec<_> = eps[0].headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);
        assert_eq!(eps[0].headers.get("x-single").unwrap(), "c");
        assert!(eps[0].headers.get("x-custom").is_none());
        assert_eq!(eps[1].headers.get("x-custom").unwrap(), "one");
    }

    #[test]
    fn endpoint_filters_for_pulls() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "registry.example.com",
            r#"capabilities = ["pull", "resolve", "push"]
[host."https://pull-only.example.com"]
capabilities = ["pull"]
[host."https://resolve-only.example.com"]
capabilities = ["resolve"]
[host."https://push-only.example.com"]
capabilities = ["push"]
[host."https://both.example.com"]
capabilities = ["resolve", "pull"]
"#,
        );
        let eps = endpoints_for(dir.path(), "registry.example.com").unwrap();
        let resolve: Vec<_> = resolve_endpoints(&eps).map(|e| e.url.as_str()).collect();
        assert_eq!(
            resolve,
            ["https://both.example.com", "https://registry.example.com"]
        );
        let pull: Vec<_> = pull_endpoints(&eps).map(|e| e.url.as_str()).collect();
        assert_eq!(
            pull,
            [
                "https://pull-only.example.com",
                "https://both.example.com",
                "https://registry.example.com"
            ]
        );
    }

    #[test]
    fn invalid_toml_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "registry.example.com", "server = \"https://x\n");
        let err = error(dir.path(), "registry.example.com");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.example.com", "sever = \"https://x\"\n");
        let err = error(dir.path(), "a.example.com");
        assert!(
            err.contains("sever") && err.contains(&path.display().to_string()),
            "{err}"
        );

        write(
            dir.path(),
            "b.example.com",
            "[host.\"https://m.example.com\"]\ncapabilites = [\"pull\"]\n",
        );
        let err = error(dir.path(), "b.example.com");
        assert!(err.contains("capabilites"), "{err}");

        // A server key inside a mirror table is a mistake, not a setting.
        write(
            dir.path(),
            "c.example.com",
            "[host.\"https://m.example.com\"]\nserver = \"https://y\"\n",
        );
        assert!(error(dir.path(), "c.example.com").contains("server"));
    }

    #[test]
    fn client_certificates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.example.com",
            "[host.\"https://m.example.com\"]\nclient = [\"cert.pem\", \"key.pem\"]\n",
        );
        let err = error(dir.path(), "a.example.com");
        assert!(
            err.contains("key `host.\"https://m.example.com\".client`")
                && err.contains("not supported"),
            "{err}"
        );
        write(dir.path(), "b.example.com", "client = \"cert.pem\"\n");
        let err = error(dir.path(), "b.example.com");
        assert!(err.contains("key `client`"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "capabilities = [\"pull\", \"fetch\"]\n",
                "key `capabilities`: unknown capability \"fetch\"",
            ),
            (
                "[host.\"https://m.example.com\"]\ncapabilities = [\"pul\"]\n",
                "key `host.\"https://m.example.com\".capabilities`",
            ),
            ("server = \"ftp://registry.example.com\"\n", "key `server`"),
            (
                "server = \"https://user:pw@registry.example.com\"\n",
                "credentials",
            ),
            (
                "server = \"https://registry.example.com/v2?x=1\"\n",
                "query",
            ),
            ("server = \"https:///v2\"\n", "key `server`"),
            (
                "[host.\"ftp://m.example.com\"]\n",
                "key `host.\"ftp://m.example.com\"`",
            ),
            ("[host.\"https://m.example.com/../x\"]\n", "`..`"),
            (
                "[host.\"https://m.example.com\"]\nca = \"\"\n",
                "key `host.\"https://m.example.com\".ca`: an empty path",
            ),
            (
                "[host.\"https://m.example.com\"]\nca = 5\n",
                "a string or a list of strings",
            ),
            (
                "[header]\n\"bad header\" = \"x\"\n",
                "key `header.bad header`",
            ),
            (
                "[header]\nx-ok = \"line\\nbreak\"\n",
                "not a valid header value",
            ),
            ("skip_verify = \"yes\"\n", "skip_verify"),
            ("override_path = 1\n", "override_path"),
            ("host = 3\n", "tables of host settings"),
        ];
        for (i, (text, expected)) in cases.into_iter().enumerate() {
            let host = format!("r{i}.example.com");
            let path = write(dir.path(), &host, text);
            let err = error(dir.path(), &host);
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(err.contains(&path.display().to_string()), "{text:?}: {err}");
        }
    }

    #[test]
    fn hosts_that_would_leave_the_folder_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for host in ["", ".", "..", "../etc", "a/b", "a\\b"] {
            assert!(
                matches!(
                    endpoints_for(dir.path(), host),
                    Err(HostsError::InvalidHost { .. })
                ),
                "{host:?}"
            );
        }
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the file should be cannot be read, and is not silently skipped.
        std::fs::create_dir_all(dir.path().join("a.example.com").join(HOSTS_FILE)).unwrap();
        let err = error(dir.path(), "a.example.com");
        assert!(err.contains("cannot read hosts file"), "{err}");
    }
}
