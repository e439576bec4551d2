//! A fake OCI distribution registry for image-service tests: an HTTP/1 server on 127.0.0.1
//! (random port) serving `GET /v2/`, `GET|HEAD /v2/<repo>/manifests/<tag|digest>` and
//! `GET /v2/<repo>/blobs/<digest>` from in-memory maps, with per-test switches (stall, corrupt,
//! delay or fail a blob or path, Basic or Bearer auth per repository) and a count of every
//! request. Images are built in memory: gzip'd tar layers, a config with `rootfs.diff_ids`, an
//! OCI or Docker manifest, and OCI indexes.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:<hex>` digest.
pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256 digest")
}

/// The OCI architecture name of the machine running the tests (what the daemon picks).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("tests do not know the OCI name of {other}"),
    }
}

/// An architecture that is not this machine's.
pub fn other_arch() -> &'static str {
    if host_arch() == "amd64" {
        "arm64"
    } else {
        "amd64"
    }
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/// One tar entry. `name` is written into the header byte for byte, so it may hold anything a
/// hostile layer would (`..`, absolute paths) — tar-rs' own path setters refuse those.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: tar::EntryType,
    pub name: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub data: Vec<u8>,
    pub link: Option<String>,
}

impl Entry {
    pub fn dir(name: &str, mode: u32) -> Entry {
        Entry {
            kind: tar::EntryType::Directory,
            name: name.as_bytes().to_vec(),
            mode,
            uid: 0,
            gid: 0,
            data: Vec::new(),
            link: None,
        }
    }

    pub fn file(name: &str, mode: u32, data: &[u8]) -> Entry {
        Entry {
            kind: tar::EntryType::Regular,
            data: data.to_vec(),
            mode,
            ..Entry::dir(name, 0)
        }
    }

    pub fn symlink(name: &str, target: &str) -> Entry {
        Entry {
            kind: tar::EntryType::Symlink,
            mode: 0o777,
            link: Some(target.to_owned()),
            ..Entry::dir(name, 0)
        }
    }

    pub fn owned_by(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

/// An uncompressed tar of `entries`, names written raw into the header.
pub fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut header = tar::Header::new_gnu();
        let slot = &mut header.as_old_mut().name;
        assert!(e.name.len() < slot.len(), "tar name too long for the test");
        slot[..e.name.len()].copy_from_slice(&e.name);
        header.set_entry_type(e.kind);
        header.set_mode(e.mode);
        header.set_uid(e.uid);
        header.set_gid(e.gid);
        header.set_mtime(1_700_000_000);
        header.set_size(e.data.len() as u64);
        if let Some(link) = &e.link {
            header.set_link_name(link).expect("link name");
        }
        header.set_cksum();
        builder
            .append(&header, e.data.as_slice())
            .expect("tar append");
    }
    builder.into_inner().expect("tar finish")
}

/// A layer: a gzip'd tar, its digest (of the compressed bytes) and diff ID (of the tar).
#[derive(Debug, Clone)]
pub struct Layer {
    pub blob: Bytes,
    pub digest: String,
    pub diff_id: String,
}

impl Layer {
    pub fn new(entries: &[Entry]) -> Layer {
        let tar = tar_of(entries);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).expect("gzip");
        let blob = Bytes::from(gz.finish().expect("gzip finish"));
        Layer {
            digest: sha256(&blob),
            diff_id: sha256(&tar),
            blob,
        }
    }
}

/// An image as a registry holds it.
#[derive(Debug, Clone)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: Bytes,
    /// The config digest: the image ID.
    pub config_digest: String,
    pub manifest: Bytes,
    pub manifest_digest: String,
    pub manifest_type: &'static str,
}

impl Image {
    pub fn builder() -> ImageBuilder {
        ImageBuilder {
            layers: Vec::new(),
            user: String::new(),
            os: "linux".into(),
            arch: host_arch().into(),
            docker: false,
            label: String::new(),
        }
    }

    /// The image ID the CRI reports.
    pub fn id(&self) -> String {
        self.config_digest.clone()
    }

    /// Config plus compressed layers: what the CRI reports as the image size.
    pub fn size(&self) -> u64 {
        self.config.len() as u64 + self.layers.iter().map(|l| l.blob.len() as u64).sum::<u64>()
    }

    /// The chain ID of each layer, bottom first: the unpacked layer directories' names.
    pub fn chain_ids(&self) -> Vec<String> {
        let mut chain: Vec<String> = Vec::new();
        for layer in &self.layers {
            let next = match chain.last() {
                None => layer.diff_id.clone(),
                Some(parent) => sha256(format!("{parent} {}", layer.diff_id).as_bytes()),
            };
            chain.push(next);
        }
        chain
    }
}

pub struct ImageBuilder {
    layers: Vec<Layer>,
    user: String,
    os: String,
    arch: String,
    docker: bool,
    label: String,
}

impl ImageBuilder {
    pub fn layer(mut self, entries: &[Entry]) -> Self {
        self.layers.push(Layer::new(entries));
        self
    }

    /// A layer whose blob someone else made (gzip'd or plain tar bytes), with the sha256 of
    /// its uncompressed tar as the diff ID.
    pub fn raw_layer(mut self, blob: Vec<u8>, diff_id: &str) -> Self {
        let blob = Bytes::from(blob);
        self.layers.push(Layer {
            digest: sha256(&blob),
            diff_id: diff_id.to_owned(),
            blob,
        });
        self
    }

    /// A layer holding one file of `size` bytes that do not compress (for slower downloads).
    pub fn random_layer(self, name: &str, size: usize, seed: u64) -> Self {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let data: Vec<u8> = (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        self.layer(&[Entry::file(name, 0o644, &data)])
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = user.into();
        self
    }

    pub fn platform(mut self, os: &str, arch: &str) -> Self {
        self.os = os.into();
        self.arch = arch.into();
        self
    }

    /// Docker schema 2 media types instead of OCI ones.
    pub fn docker(mut self) -> Self {
        self.docker = true;
        self
    }

    /// A label in the config, to make otherwise equal images distinct.
    pub fn label(mut self, label: &str) -> Self {
        self.label = label.into();
        self
    }

    pub fn build(self) -> Image {
        let (manifest_type, config_type, layer_type) = if self.docker {
            (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP)
        } else {
            (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP)
        };
        let config = serde_json::json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": self.arch,
            "os": self.os,
            "config": {
                "User": self.user,
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["/bin/sh"],
                "Labels": {"test": self.label},
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
        });
        let config = Bytes::from(serde_json::to_vec(&config).unwrap());
        let config_digest = sha256(&config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {
                "mediaType": config_type,
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": self.layers.iter().map(|l| serde_json::json!({
                "mediaType": layer_type,
                "digest": l.digest,
                "size": l.blob.len(),
            })).collect::<Vec<_>>(),
        });
        let manifest = Bytes::from(serde_json::to_vec_pretty(&manifest).unwrap());
        Image {
            layers: self.layers,
            config,
            config_digest,
            manifest_digest: sha256(&manifest),
            manifest,
            manifest_type,
        }
    }
}

/// An OCI index of `entries` (image, os, architecture); returns its bytes.
pub fn index_of(entries: &[(&Image, &str, &str)]) -> Bytes {
    let manifests: Vec<_> = entries
        .iter()
        .map(|(image, os, arch)| {
            serde_json::json!({
                "mediaType": image.manifest_type,
                "digest": image.manifest_digest,
                "size": image.manifest.len(),
                "platform": {"os": os, "architecture": arch},
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    Bytes::from(serde_json::to_vec(&index).unwrap())
}

// ---------------------------------------------------------------------------------------------
// The registry
// ---------------------------------------------------------------------------------------------

type Body = BoxBody<Bytes, Infallible>;

#[derive(Default)]
struct State {
    /// (repository, tag or digest) -> (document, media type)
    manifests: HashMap<(String, String), (Bytes, String)>,
    /// Blobs by digest, served under any repository.
    blobs: HashMap<String, Bytes>,
    /// "METHOD /path" -> how many requests.
    requests: HashMap<String, usize>,
    stalled: HashSet<String>,
    corrupt: HashSet<String>,
    delayed: HashMap<String, Duration>,
    /// Exact path -> HTTP status to answer with.
    failures: HashMap<String, u16>,
    fail_everything: Option<u16>,
    /// Repository -> (user, password) for Basic auth.
    basic: HashMap<String, (String, String)>,
    /// Repository -> (user, password) the token endpoint accepts for it.
    bearer: HashMap<String, (String, String)>,
    /// Issued token -> repository it grants.
    tokens: HashMap<String, String>,
    /// Bearer tokens presented on accepted requests, in order.
    bearer_seen: Vec<String>,
}

struct Inner {
    addr: SocketAddr,
    state: Mutex<State>,
    /// Bumped whenever a stalled blob is released.
    released: watch::Sender<u64>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake registry; the server stops when this is dropped.
pub struct FakeRegistry {
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.server.abort();
    }
}

impl FakeRegistry {
    pub async fn start() -> FakeRegistry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake registry");
        let inner = Arc::new(Inner {
            addr: listener.local_addr().unwrap(),
            state: Mutex::new(State::default()),
            released: watch::channel(0).0,
        });
        let server = {
            let inner = inner.clone();
            tokio::spawn(async move {
                let mut connections = tokio::task::JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let inner = inner.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let inner = inner.clone();
                            async move { Ok::<_, Infallible>(handle(&inner, req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                    // Reap finished connections.
                    while connections.try_join_next().is_some() {}
                }
            })
        };
        FakeRegistry { inner, server }
    }

    pub fn port(&self) -> u16 {
        self.inner.addr.port()
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state()
    }

    /// Stores the image's blobs and its manifest, by digest and under `tag`.
    pub fn push(&self, repo: &str, tag: &str, image: &Image) {
        self.push_blobs(repo, image);
        self.state().manifests.insert(
            (repo.into(), tag.into()),
            (image.manifest.clone(), image.manifest_type.into()),
        );
    }

    fn push_blobs(&self, repo: &str, image: &Image) {
        let mut state = self.state();
        state
            .blobs
            .insert(image.config_digest.clone(), image.config.clone());
        for layer in &image.layers {
            state.blobs.insert(layer.digest.clone(), layer.blob.clone());
        }
        state.manifests.insert(
            (repo.into(), image.manifest_digest.clone()),
            (image.manifest.clone(), image.manifest_type.into()),
        );
    }

    /// Stores an index of `entries` (image, os, architecture) under `tag`, with every image it
    /// lists; returns the index digest.
    pub fn push_index(&self, repo: &str, tag: &str, entries: &[(&Image, &str, &str)]) -> String {
        for (image, _, _) in entries {
            self.push_blobs(repo, image);
        }
        let index = index_of(entries);
        let digest = sha256(&index);
        let mut state = self.state();
        for reference in [tag, digest.as_str()] {
            state.manifests.insert(
                (repo.into(), reference.into()),
                (index.clone(), OCI_INDEX.into()),
            );
        }
        digest
    }

    /// How many `method` requests `path` (e.g. `/v2/a/blobs/sha256:…`) received.
    pub fn requests(&self, method: &str, path: &str) -> usize {
        self.state()
            .requests
            .get(&format!("{method} {path}"))
            .copied()
            .unwrap_or(0)
    }

    /// GETs of the blob `digest`, under any repository.
    pub fn blob_gets(&self, digest: &str) -> usize {
        let suffix = format!("/blobs/{digest}");
        self.state()
            .requests
            .iter()
            .filter(|(k, _)| k.starts_with("GET ") && k.ends_with(&suffix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every request so far, `METHOD /path` with its count.
    pub fn all_requests(&self) -> HashMap<String, usize> {
        self.state().requests.clone()
    }

    /// Blob `digest` sends half its bytes, then nothing until [`Self::unstall`].
    pub fn stall(&self, digest: &str) {
        self.state().stalled.insert(digest.into());
    }

    pub fn unstall(&self, digest: &str) {
        self.state().stalled.remove(digest);
        self.inner.released.send_modify(|n| *n += 1);
    }

    /// Blob `digest` is served with one byte changed (same length).
    pub fn corrupt(&self, digest: &str) {
        self.state().corrupt.insert(digest.into());
    }

    pub fn uncorrupt(&self, digest: &str) {
        self.state().corrupt.remove(digest);
    }

    /// Blob `digest` is answered only after `delay`.
    pub fn delay(&self, digest: &str, delay: Duration) {
        self.state().delayed.insert(digest.into(), delay);
    }

    /// Requests of exactly `path` are answered with `status`.
    pub fn fail(&self, path: &str, status: u16) {
        self.state().failures.insert(path.into(), status);
    }

    /// Every request is answered with `status`.
    pub fn fail_everything(&self, status: u16) {
        self.state().fail_everything = Some(status);
    }

    /// `repo` requires `Authorization: Basic` with these credentials.
    pub fn require_basic(&self, repo: &str, user: &str, password: &str) {
        self.state()
            .basic
            .insert(repo.into(), (user.into(), password.into()));
    }

    /// `repo` requires a Bearer token, which `/token` issues for these credentials.
    pub fn require_bearer(&self, repo: &str, user: &str, password: &str) {
        self.state()
            .bearer
            .insert(repo.into(), (user.into(), password.into()));
    }

    /// Tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> Vec<String> {
        self.state().tokens.keys().cloned().collect()
    }

    /// Bearer tokens presented with requests that were accepted.
    pub fn bearer_tokens_seen(&self) -> Vec<String> {
        self.state().bearer_seen.clone()
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn status_response(status: StatusCode, code: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": code}]}).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body))
        .unwrap()
}

fn basic_credentials(req: &Request<Incoming>) -> Option<(String, String)> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn bearer_token(req: &Request<Incoming>) -> Option<String> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
}

async fn handle(inner: &Arc<Inner>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    {
        let mut state = inner.state();
        *state
            .requests
            .entry(format!("{method} {path}"))
            .or_default() += 1;
        let failure = state
            .fail_everything
            .or_else(|| state.failures.get(&path).copied());
        if let Some(status) = failure {
            return status_response(StatusCode::from_u16(status).unwrap(), "FAILED");
        }
    }
    if path == "/token" {
        return token(inner, &req);
    }
    if path == "/v2/" || path == "/v2" {
        return Response::builder()
            .header("docker-distribution-api-version", "registry/2.0")
            .body(full("{}"))
            .unwrap();
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return status_response(StatusCode::NOT_FOUND, "NOT_FOUND");
    };
    let (repo, kind, reference) = if let Some((repo, r)) = rest.rsplit_once("/manifests/") {
        (repo, "manifests", r)
    } else if let Some((repo, r)) = rest.rsplit_once("/blobs/") {
        (repo, "blobs", r)
    } else {
        return status_response(StatusCode::NOT_FOUND, "NOT_FOUND");
    };
    if let Some(refusal) = check_auth(inner, &req, repo) {
        return refusal;
    }
    match (kind, &method) {
        ("manifests", &Method::GET | &Method::HEAD) => {
            manifest(inner, repo, reference, method == Method::HEAD)
        }
        ("blobs", &Method::GET) => blob(inner, reference).await,
        _ => status_response(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
    }
}

/// None when the request may proceed, else the 401 to answer with.
fn check_auth(inner: &Inner, req: &Request<Incoming>, repo: &str) -> Option<Response<Body>> {
    let mut state = inner.state();
    if let Some(wanted) = state.basic.get(repo) {
        if basic_credentials(req).as_ref() == Some(wanted) {
            return None;
        }
        return Some(
            Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("www-authenticate", "Basic realm=\"fake\"")
                .body(full("{}"))
                .unwrap(),
        );
    }
    if state.bearer.contains_key(repo) {
        if let Some(token) = bearer_token(req)
            && state.tokens.get(&token).is_some_and(|r| r == repo)
        {
            state.bearer_seen.push(token);
            return None;
        }
        let challenge = format!(
            "Bearer realm=\"http://{}/token\",service=\"fake\",scope=\"repository:{repo}:pull\"",
            inner.addr
        );
        return Some(
            Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("www-authenticate", challenge)
                .body(full("{}"))
                .unwrap(),
        );
    }
    None
}

/// `GET /token?service=fake&scope=repository:<repo>:pull` with Basic credentials.
fn token(inner: &Inner, req: &Request<Incoming>) -> Response<Body> {
    let query = req.uri().query().unwrap_or("");
    let scope = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "scope")
        .map(|(_, v)| {
            v.replace("%3A", ":")
                .replace("%3a", ":")
                .replace("%2F", "/")
        })
        .unwrap_or_default();
    let repo = scope
        .strip_prefix("repository:")
        .and_then(|s| s.strip_suffix(":pull"))
        .unwrap_or("")
        .to_owned();
    let mut state = inner.state();
    let granted = state
        .bearer
        .get(&repo)
        .is_some_and(|wanted| basic_credentials(req).as_ref() == Some(wanted));
    if !granted {
        return status_response(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    let token = format!(
        "token-{}-{}",
        state.tokens.len() + 1,
        repo.replace('/', "_")
    );
    state.tokens.insert(token.clone(), repo);
    Response::builder()
        .header("content-type", "application/json")
        .body(full(serde_json::json!({ "token": token }).to_string()))
        .unwrap()
}

fn manifest(inner: &Inner, repo: &str, reference: &str, head: bool) -> Response<Body> {
    let found = inner
        .state()
        .manifests
        .get(&(repo.to_owned(), reference.to_owned()))
        .cloned();
    let Some((bytes, media_type)) = found else {
        return status_response(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    };
    let builder = Response::builder()
        .header("content-type", media_type)
        .header("docker-content-digest", sha256(&bytes))
        .header("content-length", bytes.len());
    let body = if head {
        full(Bytes::new())
    } else {
        full(bytes)
    };
    builder.body(body).unwrap()
}

async fn blob(inner: &Arc<Inner>, digest: &str) -> Response<Body> {
    let (found, corrupt, delay, stalled) = {
        let state = inner.state();
        (
            state.blobs.get(digest).cloned(),
            state.corrupt.contains(digest),
            state.delayed.get(digest).copied(),
            state.stalled.contains(digest),
        )
    };
    let Some(mut bytes) = found else {
        return status_response(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if corrupt {
        let mut changed = bytes.to_vec();
        let middle = changed.len() / 2;
        changed[middle] ^= 0xff;
        bytes = Bytes::from(changed);
    }
    let builder = Response::builder()
        .header("content-type", "application/octet-stream")
        .header("docker-content-digest", digest)
        .header("content-length", bytes.len());
    if !stalled {
        return builder.body(full(bytes)).unwrap();
    }
    // Half the bytes now; the rest only once the test releases the blob.
    let half = bytes.len() / 2;
    let (first, rest) = (bytes.slice(..half), bytes.slice(half..));
    let mut released = inner.released.subscribe();
    let inner = inner.clone();
    let digest = digest.to_owned();
    let body = futures::stream::iter([Ok::<_, Infallible>(Frame::data(first))]).chain(
        futures::stream::once(async move {
            // Wait until this blob is released (or the registry is gone).
            while inner.state().stalled.contains(&digest) {
                if released.changed().await.is_err() {
                    break;
                }
            }
            Ok(Frame::data(rest))
        }),
    );
    builder.body(BodyExt::boxed(StreamBody::new(body))).unwrap()
}

/// Writes `<config_dir>/<host>/hosts.toml`: `mirrors` (URLs) are tried in order for pull and
/// resolve. The server itself (`https://<host>`) is given only the `push` capability, so a
/// test never falls through to it: that would be network traffic beyond 127.0.0.1.
pub fn write_hosts(config_dir: &Path, host: &str, mirrors: &[String]) {
    let folder = config_dir.join(host);
    std::fs::create_dir_all(&folder).unwrap();
    let mut text = format!("server = \"https://{host}\"\ncapabilities = [\"push\"]\n");
    for mirror in mirrors {
        text.push_str(&format!(
            "\n[host.\"{mirror}\"]\ncapabilities = [\"pull\", \"resolve\"]\n"
        ));
    }
    std::fs::write(folder.join("hosts.toml"), text).unwrap();
}

/// A URL on 127.0.0.1 where nothing listens (the port was free a moment ago).
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
