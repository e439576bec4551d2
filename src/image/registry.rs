//! A client of the OCI distribution API (v2) over reqwest: manifests and blobs from a
//! registry's endpoints in the order `hosts.toml` gives (mirrors first, the server last), with
//! anonymous, Bearer-token and basic authentication.
//!
//! Why our own client and not `oci-client`: we need containerd's mirror semantics (fall back
//! to the next endpoint per request, keep the requested name), per-endpoint TLS settings, the
//! CRI's four kinds of credentials, a progress timeout per blob, and streaming blobs straight
//! into our verifying content store. That is a few hundred lines on reqwest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::StatusCode;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};

use super::hosts::{self, Endpoint};
use super::manifest::ACCEPT as MANIFEST_TYPES;
use super::reference::Reference;

/// Manifests and indexes larger than this are refused (real ones are kilobytes).
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// What went wrong at one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    NotFound,
    Unauthorized,
    Unavailable,
    Invalid,
}

#[derive(Debug, Clone)]
pub struct EndpointError {
    pub url: String,
    pub failure: Failure,
    pub message: String,
}

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.url, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{what}: {}", join(.errors))]
    Failed {
        what: String,
        errors: Vec<EndpointError>,
    },
    #[error("{what}: no endpoint of {host} is configured to {action} (see its hosts.toml)")]
    NoEndpoint {
        what: String,
        host: String,
        action: &'static str,
    },
    #[error(transparent)]
    Hosts(#[from] hosts::HostsError),
    #[error("invalid credentials: {0}")]
    Credentials(String),
}

fn join(errors: &[EndpointError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl RegistryError {
    /// The most telling failure across endpoints: any refusal of credentials, else "not
    /// found" only if every endpoint said so, else the registry was unreachable or broken.
    pub fn failure(&self) -> Failure {
        match self {
            RegistryError::Failed { errors, .. } => {
                let all = |f| errors.iter().all(|e| e.failure == f);
                if errors.iter().any(|e| e.failure == Failure::Unauthorized) {
                    Failure::Unauthorized
                } else if all(Failure::NotFound) {
                    Failure::NotFound
                } else if errors.iter().any(|e| e.failure == Failure::Invalid) {
                    Failure::Invalid
                } else {
                    Failure::Unavailable
                }
            }
            RegistryError::NoEndpoint { .. } | RegistryError::Hosts(_) => Failure::Invalid,
            RegistryError::Credentials(_) => Failure::Unauthorized,
        }
    }
}

/// Credentials from the CRI `AuthConfig`.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub identity_token: String,
    pub registry_token: String,
    /// Host the credentials are for; empty means any.
    pub server_address: String,
}

// Never print secrets, not even in debug logs.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// From the CRI fields; `auth` is base64 of `user:password`, as in docker's config.json.
    pub fn from_cri(
        username: &str,
        password: &str,
        auth: &str,
        server_address: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        let (mut user, mut pass) = (username.to_owned(), password.to_owned());
        if !auth.is_empty() {
            let decoded = BASE64
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    RegistryError::Credentials("auth is not base64 of user:password".into())
                })?;
            let (u, p) = decoded.split_once(':').ok_or_else(|| {
                RegistryError::Credentials("auth is not base64 of user:password".into())
            })?;
            (user, pass) = (u.to_owned(), p.to_owned());
        }
        if user.is_empty() && identity_token.is_empty() && registry_token.is_empty() {
            return Ok(None);
        }
        Ok(Some(Credentials {
            username: user,
            password: pass,
            identity_token: identity_token.to_owned(),
            registry_token: registry_token.to_owned(),
            server_address: server_address.to_owned(),
        }))
    }

    /// Whether these credentials may be sent to `host` (`registry.k8s.io`, `127.0.0.1:5000`).
    fn applies_to(&self, host: &str) -> bool {
        let server = self
            .server_address
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let server = server.split('/').next().unwrap_or("");
        server.is_empty() || server == host
    }
}

/// The shared client: one connection pool per TLS setting.
pub struct Registry {
    config_dir: PathBuf,
    progress_timeout: Duration,
    clients: Mutex<HashMap<(bool, Vec<PathBuf>), reqwest::Client>>,
}

impl Registry {
    pub fn new(config_dir: &Path, progress_timeout: Duration) -> Registry {
        // reqwest is built without a bundled crypto provider; ring is ours. A second call
        // (tests) finds it installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Registry {
            config_dir: config_dir.to_owned(),
            progress_timeout,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn progress_timeout(&self) -> Duration {
        self.progress_timeout
    }

    /// A session for pulling from `reference`'s repository.
    pub fn session(
        self: &Arc<Self>,
        reference: &Reference,
        credentials: Option<Credentials>,
    ) -> Result<Session, RegistryError> {
        let endpoints = hosts::endpoints_for(&self.config_dir, &reference.registry)?;
        let credentials = credentials.filter(|c| c.applies_to(&reference.registry));
        Ok(Session {
            registry: self.clone(),
            host: reference.registry.clone(),
            repository: reference.repository.clone(),
            endpoints,
            credentials,
            authorizations: Mutex::new(HashMap::new()),
        })
    }

    fn client(&self, endpoint: &Endpoint) -> Result<reqwest::Client, EndpointError> {
        let key = (endpoint.skip_verify, endpoint.ca.clone());
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let invalid = |message: String| EndpointError {
            url: endpoint.url.clone(),
            failure: Failure::Invalid,
            message,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(self.progress_timeout)
            .user_agent(concat!("ferrocri/", env!("CARGO_PKG_VERSION")))
            .tls_danger_accept_invalid_certs(endpoint.skip_verify);
        for path in &endpoint.ca {
            let pem = std::fs::read(path)
                .map_err(|e| invalid(format!("cannot read CA file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| invalid(format!("CA file {} is not PEM: {e}", path.display())))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// A manifest or index as fetched.
pub struct FetchedManifest {
    pub bytes: bytes::Bytes,
    pub content_type: String,
    /// Index into the session's endpoints of the one that answered (blobs are tried there first).
    pub endpoint: usize,
}

/// Pulls from one repository of one registry; remembers tokens between requests.
pub struct Session {
    registry: Arc<Registry>,
    host: String,
    repository: String,
    endpoints: Vec<Endpoint>,
    credentials: Option<Credentials>,
    authorizations: Mutex<HashMap<String, String>>,
}

impl Session {
    pub fn host(&self) -> &str {
        &self.host
    }

    /// How long a transfer may go without receiving a byte.
    pub fn progress_timeout(&self) -> Duration {
        self.registry.progress_timeout
    }

    /// Fetches a manifest by tag (`resolve` endpoints) or digest (`pull` endpoints).
    pub async fn fetch_manifest(
        &self,
        reference: &str,
        by_digest: bool,
    ) -> Result<FetchedManifest, RegistryError> {
        let what = format!("manifest {}/{}:{reference}", self.host, self.repository);
        let candidates: Vec<usize> = (0..self.endpoints.len())
            .filter(|&i| {
                let e = &self.endpoints[i];
                if by_digest {
                    e.can_pull()
                } else {
                    e.can_resolve()
                }
            })
            .collect();
        if candidates.is_empty() {
            return Err(RegistryError::NoEndpoint {
                what,
                host: self.host.clone(),
                action: if by_digest { "pull" } else { "resolve" },
            });
        }
        let mut errors = Vec::new();
        for i in candidates {
            let endpoint = &self.endpoints[i];
            let url = endpoint.manifest_url(&self.repository, reference);
            match self.get_manifest(endpoint, &url).await {
                Ok((bytes, content_type)) => {
                    return Ok(FetchedManifest {
                        bytes,
                        content_type,
                        endpoint: i,
                    });
                }
                Err(e) => {
                    tracing::debug!(url, error = %e.message, "manifest fetch failed, trying next endpoint");
                    errors.push(e);
                }
            }
        }
        Err(RegistryError::Failed { what, errors })
    }

    async fn get_manifest(
        &self,
        endpoint: &Endpoint,
        url: &str,
    ) -> Result<(bytes::Bytes, String), EndpointError> {
        let response = self.get(endpoint, url, Some(MANIFEST_TYPES)).await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_MANIFEST_BYTES)
        {
            return Err(endpoint_error(
                url,
                Failure::Invalid,
                "manifest is larger than 4 MiB",
            ));
        }
        let bytes = tokio::time::timeout(self.registry.progress_timeout, response.bytes())
            .await
            .map_err(|_| {
                endpoint_error(url, Failure::Unavailable, "timed out reading the manifest")
            })?
            .map_err(|e| endpoint_error(url, Failure::Unavailable, &describe(&e)))?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(endpoint_error(
                url,
                Failure::Invalid,
                "manifest is larger than 4 MiB",
            ));
        }
        Ok((bytes, content_type))
    }

    /// Opens a blob for streaming, trying `preferred` first and then every other `pull`
    /// endpoint.
    pub async fn open_blob(
        &self,
        digest: &str,
        preferred: usize,
    ) -> Result<(reqwest::Response, String), RegistryError> {
        let mut order: Vec<usize> = vec![preferred];
        order.extend((0..self.endpoints.len()).filter(|&i| i != preferred));
        let mut errors = Vec::new();
        for i in order {
            let Some(endpoint) = self.endpoints.get(i).filter(|e| e.can_pull()) else {
                continue;
            };
            let url = endpoint.blob_url(&self.repository, digest);
            match self.get(endpoint, &url, None).await {
                Ok(response) => return Ok((response, url)),
                Err(e) => errors.push(e),
            }
        }
        Err(RegistryError::Failed {
            what: format!("blob {digest} of {}/{}", self.host, self.repository),
            errors,
        })
    }

    /// GET with this session's authorization; answers one authentication challenge.
    async fn get(
        &self,
        endpoint: &Endpoint,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, EndpointError> {
        let client = self.registry.client(endpoint)?;
        let mut challenged = false;
        loop {
            let mut request = client.get(url).headers(endpoint.headers.clone());
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(auth) = self.cached_authorization(&endpoint.url) {
                request = request.header(AUTHORIZATION, auth);
            }
            let response = request
                .send()
                .await
                .map_err(|e| endpoint_error(url, Failure::Unavailable, &describe(&e)))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let auth = self.authorize(&client, url, &challenge).await?;
                self.authorizations
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(endpoint.url.clone(), auth);
                continue;
            }
            return check_status(url, response).await;
        }
    }

    fn cached_authorization(&self, endpoint_url: &str) -> Option<String> {
        self.authorizations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(endpoint_url)
            .cloned()
    }

    /// Answers a `WWW-Authenticate` challenge with an `Authorization` header value.
    async fn authorize(
        &self,
        client: &reqwest::Client,
        url: &str,
        challenge: &str,
    ) -> Result<String, EndpointError> {
        let unauthorized = |message: &str| endpoint_error(url, Failure::Unauthorized, message);
        let (scheme, params) = parse_challenge(challenge);
        let creds = self.credentials.as_ref();
        if scheme.eq_ignore_ascii_case("basic") {
            let c = creds
                .filter(|c| !c.username.is_empty())
                .ok_or_else(|| unauthorized("the registry requires a username and password"))?;
            let pair = BASE64.encode(format!("{}:{}", c.username, c.password));
            return Ok(format!("Basic {pair}"));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthorized(&format!(
                "unsupported authentication challenge {challenge:?}"
            )));
        }
        if let Some(token) = creds.map(|c| &c.registry_token).filter(|t| !t.is_empty()) {
            return Ok(format!("Bearer {token}"));
        }
        let realm = params
            .get("realm")
            .ok_or_else(|| unauthorized("Bearer challenge without a realm"))?;
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
        let service = params.get("service").cloned().unwrap_or_default();
        let request = match creds.map(|c| &c.identity_token).filter(|t| !t.is_empty()) {
            // An identity token is an OAuth2 refresh token (docker login with a token).
            Some(refresh) => client.post(realm).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("service", service.as_str()),
                ("scope", scope.as_str()),
                ("client_id", "ferrocri"),
            ]),
            None => {
                let mut r = client
                    .get(realm)
                    .query(&[("service", service.as_str()), ("scope", scope.as_str())]);
                if let Some(c) = creds.filter(|c| !c.username.is_empty()) {
                    r = r.basic_auth(&c.username, Some(&c.password));
                }
                r
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| endpoint_error(realm, Failure::Unavailable, &describe(&e)))?;
        let response = check_status(realm, response).await.map_err(|mut e| {
            e.message = format!("token request failed: {}", e.message);
            e
        })?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let body: TokenResponse = response.json().await.map_err(|e| {
            endpoint_error(realm, Failure::Invalid, &format!("bad token response: {e}"))
        })?;
        let token = if body.token.is_empty() {
            body.access_token
        } else {
            body.token
        };
        if token.is_empty() {
            return Err(unauthorized("the token service returned no token"));
        }
        Ok(format!("Bearer {token}"))
    }
}

/// Turns a non-success HTTP status into a message a user can act on.
async fn check_status(
    url: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response, EndpointError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let (failure, message) = match status {
        StatusCode::NOT_FOUND => (Failure::NotFound, "not found (404)".to_owned()),
        StatusCode::UNAUTHORIZED => (
            Failure::Unauthorized,
            "authentication required or credentials refused (401)".to_owned(),
        ),
        StatusCode::FORBIDDEN => (Failure::Unauthorized, "access denied (403)".to_owned()),
        StatusCode::TOO_MANY_REQUESTS => (
            Failure::Unavailable,
            "rate limited by the registry (429); retry later or use a mirror".to_owned(),
        ),
        s if s.is_server_error() => (
            Failure::Unavailable,
            format!("registry error ({})", s.as_u16()),
        ),
        s => (
            Failure::Invalid,
            format!("unexpected HTTP status {}", s.as_u16()),
        ),
    };
    Err(endpoint_error(url, failure, &message))
}

fn endpoint_error(url: &str, failure: Failure, message: &str) -> EndpointError {
    EndpointError {
        url: url.to_owned(),
        failure,
        message: message.to_owned(),
    }
}

/// A reqwest error in words: connection refused, TLS failure, timeout.
pub fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut message = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Splits `Bearer realm="https://auth",service="reg",scope="repository:x:pull"`.
fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        params.insert(key, value.to_owned());
        rest = remainder.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_owned(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parsing() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (scheme, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(scheme, "Basic");
        assert_eq!(p["realm"], "Registry Realm");
        let (scheme, p) = parse_challenge("Bearer realm=unquoted, service = x");
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "unquoted");
        assert_eq!(p["service"], "x");
        assert_eq!(parse_challenge("").0, "");
    }

    #[test]
    fn credentials_from_cri() {
        assert!(
            Credentials::from_cri("", "", "", "", "", "")
                .unwrap()
                .is_none()
        );
        let c = Credentials::from_cri("", "", &BASE64.encode("me:secret"), "", "", "")
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("me", "secret"));
        assert!(
            !format!("{c:?}").contains("secret"),
            "secrets never reach logs"
        );
        assert!(Credentials::from_cri("", "", "%%%", "", "", "").is_err());
        let scoped = Credentials::from_cri("u", "p", "", "https://quay.io", "", "")
            .unwrap()
            .unwrap();
        assert!(scoped.applies_to("quay.io"));
        assert!(!scoped.applies_to("docker.io"));
    }

    #[test]
    fn failure_summary_prefers_what_a_user_must_fix() {
        let e = |failure| EndpointError {
            url: "u".into(),
            failure,
            message: "m".into(),
        };
        let failed = |errors| RegistryError::Failed {
            what: "x".into(),
            errors,
        };
        assert_eq!(
            failed(vec![e(Failure::NotFound), e(Failure::NotFound)]).failure(),
            Failure::NotFound
        );
        assert_eq!(
            failed(vec![e(Failure::NotFound), e(Failure::Unavailable)]).failure(),
            Failure::Unavailable
        );
        assert_eq!(
            failed(vec![e(Failure::Unavailable), e(Failure::Unauthorized)]).failure(),
            Failure::Unauthorized
        );
    }
}
