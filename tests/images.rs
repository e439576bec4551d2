//! The ImageService against a fake registry on 127.0.0.1 that the test runs itself. The daemon
//! (the real binary, as root) reaches it through a hosts.toml mirror for `registry.example`,
//! so images are pulled as `registry.example/<repo>:<tag>`.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use common::registry::{
    Entry, FakeRegistry, Image, closed_port_url, hex_of, host_arch, other_arch, sha256, write_hosts,
};
use common::{Daemon, image_client_without_local_deadlines};
use ferrocri::cri::v1::image_service_client::ImageServiceClient;
use ferrocri::cri::v1::*;
use tonic::transport::Channel;
use tonic::{Code, Status};

const HOST: &str = "registry.example";

/// A daemon whose `registry.example` mirror is `registry`, and the folder with its hosts.toml.
/// Fields drop in order: the daemon first, then the registry.
struct Setup {
    daemon: Daemon,
    registry: FakeRegistry,
    certs: tempfile::TempDir,
}

impl Setup {
    /// `extra` is added to the daemon's `[registry]` table.
    async fn start(extra: &str) -> Setup {
        let registry = FakeRegistry::start().await;
        let certs = tempfile::tempdir().unwrap();
        write_hosts(certs.path(), HOST, &[registry.url()]);
        let daemon = Daemon::start(&format!(
            "[registry]\nconfig_dir = \"{}\"\n{extra}\n",
            certs.path().display()
        ));
        Setup {
            daemon,
            registry,
            certs,
        }
    }

    async fn client(&self) -> ImageServiceClient<Channel> {
        self.daemon.image().await
    }

    fn root(&self) -> PathBuf {
        self.daemon.root()
    }
}

fn name(repo_tag: &str) -> String {
    format!("{HOST}/{repo_tag}")
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

async fn pull(
    client: &mut ImageServiceClient<Channel>,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<String, Status> {
    client
        .pull_image(PullImageRequest {
            image: spec(image),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

async fn status(
    client: &mut ImageServiceClient<Channel>,
    image: &str,
) -> Option<ferrocri::cri::v1::Image> {
    client
        .image_status(ImageStatusRequest {
            image: spec(image),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
}

async fn list(client: &mut ImageServiceClient<Channel>) -> Vec<ferrocri::cri::v1::Image> {
    client
        .list_images(ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images
}

async fn remove(client: &mut ImageServiceClient<Channel>, image: &str) {
    client
        .remove_image(RemoveImageRequest { image: spec(image) })
        .await
        .unwrap();
}

/// The names in a directory (empty if it does not exist).
fn names_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn blobs_dir(root: &Path) -> PathBuf {
    root.join("content/blobs/sha256")
}

/// Polls `condition` until it holds, failing after `limit` with `what`.
async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_code(result: Result<String, Status>, code: Code, what: &str) -> Status {
    let err = result.expect_err(what);
    assert_eq!(err.code(), code, "{what}: {err:?}");
    err
}

/// The layers of test 1: files, a directory and a symlink with distinct modes and owners.
fn sample_image(user: &str) -> Image {
    Image::builder()
        .user(user)
        .layer(&[
            Entry::dir("etc/", 0o755),
            Entry::file("etc/hello", 0o640, b"hello world\n").owned_by(1234, 5678),
            Entry::dir("bin/", 0o711),
            Entry::file("bin/tool", 0o755, b"#!/bin/sh\necho tool\n"),
            Entry::symlink("etc/greeting", "hello"),
        ])
        .layer(&[
            Entry::file("etc/second", 0o600, b"second layer\n"),
            Entry::dir("var/data/", 0o750).owned_by(33, 33),
        ])
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_tag_through_the_mirror_then_status_list_remove_and_gc() {
    let s = Setup::start("").await;
    let image = sample_image("1002");
    s.registry.push("app", "1.0", &image);
    let mut client = s.client().await;

    let id = pull(&mut client, &name("app:1.0"), None).await.unwrap();
    assert_eq!(id, image.id());

    // The same image under every name, exactly as pulled.
    let by_id = status(&mut client, &id).await.expect("status by ID");
    let by_tag = status(&mut client, &name("app:1.0"))
        .await
        .expect("status by tag");
    let digest_ref = format!("{}@{}", name("app"), image.manifest_digest);
    let by_digest = status(&mut client, &digest_ref)
        .await
        .expect("status by digest");
    assert_eq!(by_id, by_tag);
    assert_eq!(by_id, by_digest);
    assert_eq!(by_id.id, image.id());
    assert_eq!(by_id.repo_tags, [name("app:1.0")]);
    assert_eq!(by_id.repo_digests, std::slice::from_ref(&digest_ref));
    assert_eq!(by_id.size, image.size());
    assert!(by_id.size > 0);
    assert_eq!(by_id.uid, Some(Int64Value { value: 1002 }));
    assert_eq!(by_id.username, "");
    assert_eq!(list(&mut client).await, std::slice::from_ref(&by_id));

    // Verbose status tells where the image came from.
    let verbose = client
        .image_status(ImageStatusRequest {
            image: spec(&id),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info = &verbose.info["info"];
    assert!(info.contains(&image.manifest_digest), "{info}");
    let info: serde_json::Value = serde_json::from_str(info).unwrap();
    assert_eq!(info["manifestDigest"], image.manifest_digest);

    // The unpacked layers hold the tar's files, modes and owners.
    let chain = image.chain_ids();
    let layer0 = s.root().join("layers/sha256").join(hex_of(&chain[0]));
    let layer1 = s.root().join("layers/sha256").join(hex_of(&chain[1]));
    let meta = |p: PathBuf| std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    assert_eq!(
        std::fs::read(layer0.join("etc/hello")).unwrap(),
        b"hello world\n"
    );
    let hello = meta(layer0.join("etc/hello"));
    assert_eq!(hello.permissions().mode() & 0o7777, 0o640);
    assert_eq!((hello.uid(), hello.gid()), (1234, 5678));
    assert_eq!(
        meta(layer0.join("bin")).permissions().mode() & 0o7777,
        0o711
    );
    assert_eq!(
        meta(layer0.join("bin/tool")).permissions().mode() & 0o7777,
        0o755
    );
    assert!(meta(layer0.join("etc/greeting")).file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(layer0.join("etc/greeting")).unwrap(),
        Path::new("hello")
    );
    assert!(
        !layer0.join("etc/second").exists(),
        "layers are unpacked separately"
    );
    assert_eq!(
        meta(layer1.join("etc/second")).permissions().mode() & 0o7777,
        0o600
    );
    let data = meta(layer1.join("var/data"));
    assert!(data.is_dir());
    assert_eq!(data.permissions().mode() & 0o7777, 0o750);
    assert_eq!((data.uid(), data.gid()), (33, 33));

    let fs = client
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let used = fs.image_filesystems[0].used_bytes.as_ref().unwrap().value;
    assert!(used > 0, "{fs:?}");
    assert_eq!(
        fs.image_filesystems[0].fs_id.as_ref().unwrap().mountpoint,
        s.root().display().to_string()
    );

    // Removing by tag removes the image under every name, and its data goes.
    remove(&mut client, &name("app:1.0")).await;
    assert_eq!(status(&mut client, &name("app:1.0")).await, None);
    assert_eq!(status(&mut client, &id).await, None);
    assert_eq!(status(&mut client, &digest_ref).await, None);
    assert!(list(&mut client).await.is_empty());
    let root = s.root();
    eventually("blobs garbage-collected", Duration::from_secs(10), || {
        names_in(&blobs_dir(&root)).is_empty()
    })
    .await;
    eventually("layers garbage-collected", Duration::from_secs(10), || {
        names_in(&root.join("layers/sha256")).is_empty()
    })
    .await;

    // Removing what is not there is fine.
    remove(&mut client, &name("never:pulled")).await;
    remove(&mut client, &id).await;
    remove(&mut client, &format!("sha256:{}", "0".repeat(64))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_name_comes_from_the_config_user() {
    let s = Setup::start("").await;
    let image = Image::builder()
        .user("www-data:33")
        .layer(&[Entry::file("x", 0o644, b"x")])
        .build();
    s.registry.push("web", "1", &image);
    let mut client = s.client().await;
    let id = pull(&mut client, &name("web:1"), None).await.unwrap();
    let found = status(&mut client, &id).await.unwrap();
    assert_eq!(found.uid, None);
    assert_eq!(found.username, "www-data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_arch_index_picks_this_platform_or_says_which_is_missing() {
    let s = Setup::start("").await;
    let native_marker = format!("marker-{}", host_arch());
    let foreign_marker = format!("marker-{}", other_arch());
    let native = Image::builder()
        .layer(&[Entry::file(&native_marker, 0o644, host_arch().as_bytes())])
        .build();
    let foreign = Image::builder()
        .platform("linux", other_arch())
        .layer(&[Entry::file(&foreign_marker, 0o644, other_arch().as_bytes())])
        .build();
    let index_digest = s.registry.push_index(
        "multi",
        "1",
        &[
            (&foreign, "linux", other_arch()),
            (&native, "linux", host_arch()),
            (&foreign, "plan9", "vax"),
        ],
    );
    let mut client = s.client().await;
    let id = pull(&mut client, &name("multi:1"), None).await.unwrap();
    assert_eq!(id, native.id());
    let found = status(&mut client, &id).await.unwrap();
    assert_eq!(found.repo_tags, [name("multi:1")]);
    // The digest reference is the one the tag resolved to: the index.
    assert_eq!(
        found.repo_digests,
        [format!("{}@{index_digest}", name("multi"))]
    );
    let layer = s
        .root()
        .join("layers/sha256")
        .join(hex_of(&native.chain_ids()[0]));
    assert_eq!(
        std::fs::read(layer.join(&native_marker)).unwrap(),
        host_arch().as_bytes()
    );
    assert!(!layer.join(&foreign_marker).exists());
    assert_eq!(s.registry.blob_gets(&foreign.layers[0].digest), 0);
    assert_eq!(s.registry.blob_gets(&foreign.config_digest), 0);
    let verbose = client
        .image_status(ImageStatusRequest {
            image: spec(&id),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    assert_eq!(info["manifestDigest"], native.manifest_digest);

    // An index without this platform: NotFound, naming the platform wanted.
    s.registry.push_index(
        "elsewhere",
        "1",
        &[
            (&foreign, "linux", other_arch()),
            (&foreign, "windows", host_arch()),
        ],
    );
    let err = assert_code(
        pull(&mut client, &name("elsewhere:1"), None).await,
        Code::NotFound,
        "no manifest for this platform",
    );
    let wanted = format!("linux/{}", host_arch());
    assert!(err.message().contains(&wanted), "{}", err.message());
    assert_eq!(status(&mut client, &name("elsewhere:1")).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_image_under_two_names_and_a_moved_tag() {
    let s = Setup::start("").await;
    let first = Image::builder()
        .docker()
        .label("first")
        .layer(&[Entry::file("v", 0o644, b"1")])
        .build();
    s.registry.push("one", "1", &first);
    s.registry.push("two", "2", &first);
    let mut client = s.client().await;
    let a = pull(&mut client, &name("one:1"), None).await.unwrap();
    let b = pull(&mut client, &name("two:2"), None).await.unwrap();
    assert_eq!(a, first.id());
    assert_eq!(b, first.id());
    let images = list(&mut client).await;
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].repo_tags, [name("one:1"), name("two:2")]);
    assert_eq!(
        images[0].repo_digests,
        [
            format!("{}@{}", name("one"), first.manifest_digest),
            format!("{}@{}", name("two"), first.manifest_digest),
        ]
    );

    // one:1 now points at new content: the tag moves, the old image keeps two:2.
    let second = Image::builder()
        .docker()
        .label("second")
        .layer(&[Entry::file("v", 0o644, b"2")])
        .build();
    s.registry.push("one", "1", &second);
    let moved = pull(&mut client, &name("one:1"), None).await.unwrap();
    assert_eq!(moved, second.id());
    assert_ne!(moved, first.id());
    let new = status(&mut client, &name("one:1")).await.unwrap();
    assert_eq!(new.id, second.id());
    assert_eq!(new.repo_tags, [name("one:1")]);
    let old = status(&mut client, &first.id()).await.unwrap();
    assert_eq!(old.repo_tags, [name("two:2")]);
    assert_eq!(
        status(&mut client, &name("two:2")).await.unwrap().id,
        first.id()
    );
    // A digest reference never moves.
    let old_digest = format!("{}@{}", name("one"), first.manifest_digest);
    assert_eq!(
        status(&mut client, &old_digest).await.unwrap().id,
        first.id()
    );
    assert_eq!(list(&mut client).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_image_share_each_download() {
    let s = Setup::start("").await;
    let image = Image::builder()
        .random_layer("a", 512 * 1024, 1)
        .random_layer("b", 512 * 1024, 2)
        .random_layer("c", 512 * 1024, 3)
        .build();
    // Slow blobs: every pull reaches the layers while their downloads are still running.
    for layer in &image.layers {
        s.registry.delay(&layer.digest, Duration::from_millis(500));
    }
    s.registry.push("shared", "1", &image);
    let channel = s.daemon.channel().await;
    let mut pulls = Vec::new();
    for _ in 0..5 {
        let mut client = ImageServiceClient::new(channel.clone());
        pulls.push(tokio::spawn(async move {
            pull(&mut client, &name("shared:1"), None).await
        }));
    }
    for p in pulls {
        assert_eq!(p.await.unwrap().unwrap(), image.id());
    }
    for layer in &image.layers {
        assert_eq!(
            s.registry.blob_gets(&layer.digest),
            1,
            "layer {} was downloaded more than once: {:?}",
            layer.digest,
            s.registry.all_requests()
        );
    }
    let mut client = s.client().await;
    let images = list(&mut client).await;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].repo_tags, [name("shared:1")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_blob_is_data_loss_and_leaves_nothing_behind() {
    let s = Setup::start("").await;
    let image = Image::builder()
        .layer(&[Entry::file("good", 0o644, b"good")])
        .random_layer("bad", 64 * 1024, 7)
        .build();
    let bad = image.layers[1].digest.clone();
    s.registry.corrupt(&bad);
    s.registry.push("corrupt", "1", &image);
    let mut client = s.client().await;
    let err = assert_code(
        pull(&mut client, &name("corrupt:1"), None).await,
        Code::DataLoss,
        "corrupt blob",
    );
    assert!(err.message().contains(&bad), "{}", err.message());
    let root = s.root();
    assert!(!blobs_dir(&root).join(hex_of(&bad)).exists());
    eventually("ingest emptied", Duration::from_secs(5), || {
        names_in(&root.join("content/ingest")).is_empty()
    })
    .await;
    assert_eq!(status(&mut client, &name("corrupt:1")).await, None);
    assert_eq!(status(&mut client, &image.id()).await, None);

    // Once the registry serves the right bytes, the same pull works.
    s.registry.uncorrupt(&bad);
    assert_eq!(
        pull(&mut client, &name("corrupt:1"), None).await.unwrap(),
        image.id()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_blob_gives_up_after_the_progress_timeout() {
    let s = Setup::start("progress_timeout = \"1s\"").await;
    let image = Image::builder()
        .layer(&[Entry::file("ok", 0o644, b"ok")])
        .random_layer("stuck", 256 * 1024, 9)
        .build();
    let stuck = image.layers[1].digest.clone();
    s.registry.stall(&stuck);
    s.registry.push("stall", "1", &image);
    let mut client = s.client().await;
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        pull(&mut client, &name("stall:1"), None),
    )
    .await
    .expect("the pull must give up on its own");
    let err = assert_code(result, Code::Unavailable, "stalled blob");
    assert!(err.message().contains(&stuck), "{}", err.message());
    assert!(
        err.message().contains(&s.registry.url()),
        "{}",
        err.message()
    );
    assert_eq!(status(&mut client, &name("stall:1")).await, None);
    let root = s.root();
    eventually("ingest emptied", Duration::from_secs(5), || {
        names_in(&root.join("content/ingest")).is_empty()
    })
    .await;
    s.registry.unstall(&stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_pull_leaves_only_whole_blobs_and_the_pull_works_after_restart() {
    let mut s = Setup::start("progress_timeout = \"10m\"").await;
    let image = Image::builder()
        .random_layer("l1", 128 * 1024, 11)
        .random_layer("l2", 128 * 1024, 12)
        .random_layer("l3", 1024 * 1024, 13)
        .random_layer("l4", 128 * 1024, 14)
        .build();
    let stuck = image.layers[2].digest.clone();
    s.registry.stall(&stuck);
    s.registry.push("killed", "1", &image);
    let mut client = s.client().await;
    let pulling = tokio::spawn(async move { pull(&mut client, &name("killed:1"), None).await });

    let root = s.root();
    let others: Vec<String> = image
        .layers
        .iter()
        .map(|l| l.digest.clone())
        .filter(|d| *d != stuck)
        .collect();
    eventually("the other layers stored", Duration::from_secs(60), || {
        others
            .iter()
            .all(|d| blobs_dir(&root).join(hex_of(d)).exists())
    })
    .await;
    assert_eq!(
        s.registry.blob_gets(&stuck),
        1,
        "the stalled blob is being downloaded"
    );
    s.daemon.kill9();
    assert!(pulling.await.unwrap().is_err(), "the daemon died mid-pull");
    s.daemon.restart();

    let mut client = s.client().await;
    assert_eq!(status(&mut client, &name("killed:1")).await, None);
    assert_eq!(status(&mut client, &image.id()).await, None);
    assert!(names_in(&root.join("content/ingest")).is_empty());
    assert!(names_in(&root.join("layers/tmp")).is_empty());
    for name in names_in(&blobs_dir(&root)) {
        // Start-up GC may delete what no image uses while we read.
        match std::fs::read(blobs_dir(&root).join(&name)) {
            Ok(bytes) => assert_eq!(sha256(&bytes), format!("sha256:{name}")),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{name}: {e}"),
        }
    }

    s.registry.unstall(&stuck);
    let id = pull(&mut client, &name("killed:1"), None).await.unwrap();
    assert_eq!(id, image.id());
    for chain_id in image.chain_ids() {
        assert!(
            root.join("layers/sha256").join(hex_of(&chain_id)).is_dir(),
            "layer {chain_id} unpacked"
        );
    }
    assert_eq!(
        std::fs::read(blobs_dir(&root).join(hex_of(&stuck))).unwrap(),
        image.layers[2].blob
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_and_bearer_authentication() {
    let s = Setup::start("").await;
    let basic = Image::builder()
        .label("basic")
        .layer(&[Entry::file("b", 0o644, b"basic")])
        .build();
    let bearer = Image::builder()
        .label("bearer")
        .layer(&[Entry::file("t", 0o644, b"bearer")])
        .build();
    s.registry.push("private/basic", "1", &basic);
    s.registry.push("private/bearer", "1", &bearer);
    s.registry.require_basic("private/basic", "alice", "s3cret");
    s.registry
        .require_bearer("private/bearer", "bob", "hunter2");
    let mut client = s.client().await;
    let user_pass = |user: &str, password: &str| {
        Some(AuthConfig {
            username: user.into(),
            password: password.into(),
            ..Default::default()
        })
    };
    let basic_name = name("private/basic:1");
    let bearer_name = name("private/bearer:1");

    // Basic.
    assert_code(
        pull(&mut client, &basic_name, None).await,
        Code::PermissionDenied,
        "basic without credentials",
    );
    assert_code(
        pull(&mut client, &basic_name, user_pass("alice", "wrong")).await,
        Code::PermissionDenied,
        "basic with a wrong password",
    );
    assert_eq!(status(&mut client, &basic_name).await, None);
    assert_eq!(
        pull(&mut client, &basic_name, user_pass("alice", "s3cret"))
            .await
            .unwrap(),
        basic.id()
    );
    remove(&mut client, &basic_name).await;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    let with_auth = Some(AuthConfig {
        auth,
        ..Default::default()
    });
    assert_eq!(
        pull(&mut client, &basic_name, with_auth).await.unwrap(),
        basic.id()
    );

    // Bearer, through the token endpoint.
    assert_code(
        pull(&mut client, &bearer_name, None).await,
        Code::PermissionDenied,
        "bearer without credentials",
    );
    assert_code(
        pull(&mut client, &bearer_name, user_pass("bob", "wrong")).await,
        Code::PermissionDenied,
        "bearer with a wrong password",
    );
    assert!(s.registry.tokens_issued().is_empty());
    assert_eq!(
        pull(&mut client, &bearer_name, user_pass("bob", "hunter2"))
            .await
            .unwrap(),
        bearer.id()
    );
    let issued = s.registry.tokens_issued();
    assert_eq!(issued.len(), 1, "{issued:?}");
    let seen = s.registry.bearer_tokens_seen();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|t| *t == issued[0]), "{seen:?}");
    assert!(s.registry.requests("GET", "/token") >= 1);
    // The layer itself came with the token.
    assert_eq!(s.registry.blob_gets(&bearer.layers[0].digest), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_are_tried_in_order_until_one_answers() {
    let s = Setup::start("").await;
    let mut client = s.client().await;

    // First mirror: nobody listens.
    let a = Image::builder()
        .label("a")
        .layer(&[Entry::file("a", 0o644, b"a")])
        .build();
    s.registry.push("fallback", "a", &a);
    write_hosts(s.certs.path(), HOST, &[closed_port_url(), s.registry.url()]);
    assert_eq!(
        pull(&mut client, &name("fallback:a"), None).await.unwrap(),
        a.id()
    );

    // First mirror: answers 500 to everything.
    let broken = FakeRegistry::start().await;
    broken.fail_everything(500);
    let b = Image::builder()
        .label("b")
        .layer(&[Entry::file("b", 0o644, b"b")])
        .build();
    s.registry.push("fallback", "b", &b);
    write_hosts(s.certs.path(), HOST, &[broken.url(), s.registry.url()]);
    assert_eq!(
        pull(&mut client, &name("fallback:b"), None).await.unwrap(),
        b.id()
    );
    assert_eq!(broken.requests("GET", "/v2/fallback/manifests/b"), 1);

    // First mirror: has the manifest but lacks a layer (404); the layer comes from the second.
    let partial = FakeRegistry::start().await;
    let c = Image::builder()
        .label("c")
        .layer(&[Entry::file("c", 0o644, b"c")])
        .build();
    partial.push("fallback", "c", &c);
    partial.fail(&format!("/v2/fallback/blobs/{}", c.layers[0].digest), 404);
    s.registry.push("fallback", "c", &c);
    write_hosts(s.certs.path(), HOST, &[partial.url(), s.registry.url()]);
    assert_eq!(
        pull(&mut client, &name("fallback:c"), None).await.unwrap(),
        c.id()
    );
    assert_eq!(partial.requests("GET", "/v2/fallback/manifests/c"), 1);
    assert_eq!(partial.blob_gets(&c.layers[0].digest), 1);
    assert_eq!(s.registry.blob_gets(&c.layers[0].digest), 1);
    assert_eq!(s.registry.requests("GET", "/v2/fallback/manifests/c"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_the_right_code() {
    let s = Setup::start("").await;
    let mut client = s.client().await;

    let err = assert_code(
        pull(&mut client, "", None).await,
        Code::InvalidArgument,
        "empty",
    );
    assert!(err.message().contains("image.image"), "{}", err.message());
    let err = client
        .pull_image(PullImageRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("image.image"), "{}", err.message());

    assert_code(
        pull(&mut client, "Not/Valid:ref", None).await,
        Code::InvalidArgument,
        "invalid reference",
    );
    let err = assert_code(
        pull(&mut client, &name("does/not-exist:1"), None).await,
        Code::NotFound,
        "unknown image",
    );
    assert!(
        err.message().contains("does/not-exist"),
        "{}",
        err.message()
    );

    // A deadline shorter than any pull.
    let image = Image::builder()
        .layer(&[Entry::file("slow", 0o644, b"slow")])
        .build();
    s.registry
        .delay(&image.layers[0].digest, Duration::from_secs(2));
    s.registry.push("slow", "1", &image);
    let mut request = tonic::Request::new(PullImageRequest {
        image: spec(&name("slow:1")),
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(1));
    // A tonic Channel would give up by itself at the deadline (and call that Cancelled);
    // this client waits for the daemon's answer.
    let mut bare = image_client_without_local_deadlines(&s.daemon.socket).await;
    let err = bare.pull_image(request).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
}

/// A layer that tries to write outside its directory fails the pull and writes nothing there.
async fn assert_escape_refused(s: &Setup, repo: &str, entries: &[Entry], aimed_at: &Path) {
    let image = Image::builder().layer(entries).build();
    s.registry.push(repo, "1", &image);
    let mut client = s.client().await;
    let image_name = name(&format!("{repo}:1"));
    let err = assert_code(
        pull(&mut client, &image_name, None).await,
        Code::FailedPrecondition,
        repo,
    );
    assert!(err.message().contains(&image_name), "{}", err.message());
    assert!(
        err.message().contains(&image.layers[0].digest),
        "{}",
        err.message()
    );
    assert!(!aimed_at.exists(), "{} was created", aimed_at.display());
    assert_eq!(status(&mut client, &image_name).await, None);
    let root = s.root();
    eventually("scratch directory removed", Duration::from_secs(5), || {
        names_in(&root.join("layers/tmp")).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_that_escape_their_directory_are_refused() {
    let s = Setup::start("").await;
    // Layers unpack in <tmp>/root/layers/tmp/unpack-XXXX: four `..` reach the daemon's
    // temporary directory.
    let base = s.daemon.dir.path().to_owned();
    let dotdot = base.join("escaped-by-dotdot");
    let mut raw = Entry::file("placeholder", 0o644, b"out");
    raw.name = b"../../../../escaped-by-dotdot".to_vec();
    assert_escape_refused(&s, "evil/dotdot", &[raw], &dotdot).await;

    // A symlink to / and then a file through it, aimed at the same directory.
    let through = base.join("escaped-by-symlink");
    let relative = through.strip_prefix("/").unwrap().display().to_string();
    assert_escape_refused(
        &s,
        "evil/symlink",
        &[
            Entry::symlink("evil", "/"),
            Entry::file(&format!("evil/{relative}"), 0o644, b"out"),
        ],
        &through,
    )
    .await;
}
