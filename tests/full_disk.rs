//! A full disk: the daemon's root on a small tmpfs. Pulls, pod and container creation fail
//! with RESOURCE_EXHAUSTED, leave no half image, layer or record, and work again once space
//! is back; a decompression bomb (1 GiB of zeros in a ~1 MiB gzip'd tar, written by Python's
//! tarfile and gzip, not by us) is refused by the layer cap before it fills the disk.

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Daemon;
use common::pods::*;
use common::registry::{FakeRegistry, Image, write_hosts};
use ctr::*;
use ferrocri::cri::v1::image_service_client::ImageServiceClient;
use ferrocri::cri::v1::*;
use tonic::Code;
use tonic::transport::Channel;

const HOST: &str = "fulldisk.test";

/// A tmpfs of `mib` MiB mounted at `path`; unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        run_ok(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m"),
                "tmpfs",
                path.to_str().unwrap(),
            ],
        );
        Tmpfs(path.to_owned())
    }

    fn used(&self) -> u64 {
        let st = rustix::fs::statvfs(&self.0).unwrap();
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }

    /// Fills the file system with `filler` until it is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0xa5u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        // Whatever small space is left goes too.
        while file.write_all(&block[..512]).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The gzip bomb, made by Python: a tar holding one file of 1 GiB of zeros, gzip'd (level 9)
/// to about 1 MiB. Returns the blob and the sha256 of the tar (the diff ID).
fn python_gzip_bomb(dir: &Path) -> (Vec<u8>, String) {
    let out = dir.join("bomb.tar.gz");
    let script = r#"
import gzip, hashlib, io, sys, tarfile
class Zeros(io.RawIOBase):
    def __init__(self, n): self.left = n
    def readable(self): return True
    def readinto(self, b):
        n = min(len(b), self.left); b[:n] = bytes(n); self.left -= n; return n
class Hashing:
    def __init__(self, f): self.f, self.h = f, hashlib.sha256()
    def write(self, b): self.h.update(b); return self.f.write(b)
    def flush(self): self.f.flush()
size = 1 << 30
with gzip.open(sys.argv[1], "wb", compresslevel=9) as gz:
    sink = Hashing(gz)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("zeros"); info.size = size
        tar.addfile(info, io.BufferedReader(Zeros(size), 1 << 20))
print("sha256:" + sink.h.hexdigest())
"#;
    let diff_id = run_ok("python3", &["-c", script, out.to_str().unwrap()])
        .trim()
        .to_owned();
    let blob = std::fs::read(&out).unwrap();
    assert!(blob.len() < 4 << 20, "bomb is {} bytes", blob.len());
    (blob, diff_id)
}

async fn pull(
    client: &mut ImageServiceClient<Channel>,
    image: &str,
) -> Result<String, tonic::Status> {
    client
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

/// Files under `dir` (recursively), for "nothing half-made is left".
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            found.push(entry.path());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                found.extend(files_under(&entry.path()));
            }
        }
    }
    found
}

/// The image store holds no half-made state: no ingest file, no scratch layer, no layer
/// directory outside `keep`.
fn assert_no_half_image(root: &Path, keep_layers: usize) {
    let ingest = files_under(&root.join("content/ingest"));
    assert!(ingest.is_empty(), "ingest left: {ingest:?}");
    let scratch = files_under(&root.join("layers/tmp"));
    assert!(scratch.is_empty(), "scratch layers left: {scratch:?}");
    let layers: Vec<_> = std::fs::read_dir(root.join("layers/sha256"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(layers.len(), keep_layers, "layer directories: {layers:?}");
}

struct ImageSetup {
    registry: FakeRegistry,
    daemon: Daemon,
    _certs: tempfile::TempDir,
}

/// A daemon whose root is a `mib` MiB tmpfs, pulling from a fake registry.
async fn image_setup(mib: u64, extra: &str) -> (ImageSetup, Tmpfs) {
    let registry = FakeRegistry::start().await;
    let certs = tempfile::tempdir().unwrap();
    write_hosts(certs.path(), HOST, &[registry.url()]);
    let dir = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(&dir.path().join("root"), mib);
    let daemon = Daemon::start_in(
        dir,
        &format!(
            "[registry]\nconfig_dir = \"{}\"\n{extra}\n",
            certs.path().display()
        ),
    );
    (
        ImageSetup {
            registry,
            daemon,
            _certs: certs,
        },
        tmpfs,
    )
}

#[tokio::test]
async fn a_gzip_bomb_stops_at_the_layer_cap() {
    let (s, tmpfs) = image_setup(96, "[image]\nmax_layer_bytes = 16777216\n").await;
    let work = tempfile::tempdir().unwrap();
    let (blob, diff_id) = python_gzip_bomb(work.path());
    s.registry.push(
        "bomb",
        "1",
        &Image::builder().raw_layer(blob, &diff_id).build(),
    );
    let mut client = s.daemon.image().await;
    let before = tmpfs.used();
    let err = pull(&mut client, &format!("{HOST}/bomb:1"))
        .await
        .expect_err("the bomb must be refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("image.max_layer_bytes"),
        "{}",
        err.message()
    );
    // The blob (1 MiB, complete and verified) may stay for GC; nothing of the 1 GiB did.
    assert!(
        tmpfs.used() < before + (4 << 20),
        "{} bytes used after the refusal",
        tmpfs.used() - before
    );
    assert_no_half_image(&s.daemon.root(), 0);
    let images = client
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(images.is_empty(), "{images:?}");
}

#[tokio::test]
async fn pulls_on_a_full_disk_fail_cleanly_and_work_again() {
    // Default caps (64 GiB): the bomb meets the end of the 64 MiB disk instead.
    let (s, tmpfs) = image_setup(64, "").await;
    let work = tempfile::tempdir().unwrap();
    let (blob, diff_id) = python_gzip_bomb(work.path());
    s.registry.push(
        "bomb",
        "1",
        &Image::builder().raw_layer(blob, &diff_id).build(),
    );
    let small = Image::builder().random_layer("data", 256 * 1024, 7).build();
    s.registry.push("small", "1", &small);
    let mut client = s.daemon.image().await;

    let err = pull(&mut client, &format!("{HOST}/bomb:1"))
        .await
        .expect_err("no room for the bomb");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("os error 28") && err.message().contains(&diff_id)
            || err.message().contains("No space left"),
        "{}",
        err.message()
    );
    assert_no_half_image(&s.daemon.root(), 0);

    // Space is back (the half layer went): a pull works.
    pull(&mut client, &format!("{HOST}/small:1"))
        .await
        .expect("pull after the failed one");
    assert_no_half_image(&s.daemon.root(), 1);

    // A full disk, then space again.
    let filler = tmpfs.fill();
    let other = Image::builder().random_layer("data", 256 * 1024, 8).build();
    s.registry.push("other", "1", &other);
    let err = pull(&mut client, &format!("{HOST}/other:1"))
        .await
        .expect_err("the disk is full");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains(&*tmpfs.0.to_string_lossy()),
        "the message names no path: {}",
        err.message()
    );
    assert_no_half_image(&s.daemon.root(), 1);
    let listed = client
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(listed.len(), 1, "{listed:?}");
    std::fs::remove_file(filler).unwrap();
    pull(&mut client, &format!("{HOST}/other:1"))
        .await
        .expect("pull once space is back");
    assert_no_half_image(&s.daemon.root(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_and_containers_on_a_full_disk() {
    // Declared first, dropped last: the pods are swept before the file systems go.
    let root_fs: Tmpfs;
    let state_fs: Tmpfs;
    let log_fs: Tmpfs;
    let mut env = start_env(3);
    pull_busybox(&env).await;
    // Stop, put root and state on small file systems (the store starts afresh), start again.
    env.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    env.daemon.wait(Duration::from_secs(30));
    root_fs = Tmpfs::mount(&env.daemon.root(), 64);
    state_fs = Tmpfs::mount(&env.daemon.state(), 16);
    env.daemon.restart();
    pull_busybox(&env).await;
    let mut rt = env.daemon.runtime().await;

    let pod_a = pod_with_logs(&env, "full-a", "full-a");
    log_fs = Tmpfs::mount(&log_dir(&env, "full-a"), 1);
    let a = run_pod(&env, &mut rt, pod_a.clone()).await;

    let fillers = [root_fs.fill(), state_fs.fill()];
    let err = rt
        .run_pod_sandbox(run_request(pod_config("full-b", "fcct-ns", "full-b", 0)))
        .await
        .expect_err("no room for a pod");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("metadata.db")
            || err.message().contains(&*root_fs.0.to_string_lossy()),
        "RunPodSandbox: the message names no path: {}",
        err.message()
    );
    let pods = rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(
        pods.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        [a.as_str()],
        "only the first pod is listed"
    );
    assert_eq!(env.pod_dirs(), std::slice::from_ref(&a), "pod folders");

    let err = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: a.clone(),
            config: Some(busybox_config("c", &["sleep", "3600"], true)),
            sandbox_config: Some(pod_a.clone()),
        })
        .await
        .expect_err("no room for a container");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("metadata.db")
            || err.message().contains(&*root_fs.0.to_string_lossy()),
        "CreateContainer: the message names no path: {}",
        err.message()
    );
    let containers = rt
        .list_containers(ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(containers.is_empty(), "{containers:?}");

    for filler in fillers {
        std::fs::remove_file(filler).unwrap();
    }
    let b = run_pod(&env, &mut rt, pod_config("full-b", "fcct-ns", "full-b", 0)).await;
    let c = create(
        &env,
        &mut rt,
        &a,
        &pod_a,
        busybox_config(
            "c",
            &[
                "sh",
                "-c",
                "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.01; done",
            ],
            true,
        ),
    )
    .await;
    start(&env, &mut rt, &c).await;

    // The log's disk fills up: the monitor drops records, the container goes on, and once
    // space is back the log says how many records were lost, then goes on too.
    let log = log_fs.0.join("c.log");
    let numbers = |text: &str| -> Vec<u64> {
        parse_cri_log(text)
            .iter()
            .filter_map(|r| r.message.strip_prefix("line ")?.parse().ok())
            .collect()
    };
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || numbers(&read()).len() >= 5).await,
        "no log lines: {}",
        read()
    );
    let filler = log_fs.fill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let last_before = *numbers(&read()).last().unwrap();
    std::fs::remove_file(filler).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || numbers(&read())
            .last()
            .is_some_and(|n| *n > last_before + 50))
        .await,
        "the container's output did not go on after the disk was full:\n{}",
        read()
    );
    let text = read();
    let marker = parse_cri_log(&text)
        .into_iter()
        .find(|r| r.message.starts_with("[ferrocri] ") && r.message.contains("dropped"))
        .unwrap_or_else(|| panic!("no marker of the dropped records:\n{text}"));
    assert_eq!(marker.stream, "stderr", "{marker:?}");
    assert!(marker.message.contains("No space left"), "{marker:?}");
    stop_and_remove_pod(&mut rt, &a).await;
    stop_and_remove_pod(&mut rt, &b).await;
    // Our own tmpfs mounts are the only mounts left.
    let ours = [
        root_fs.0.display().to_string(),
        state_fs.0.display().to_string(),
        log_fs.0.display().to_string(),
    ];
    let left: Vec<String> = env
        .leftovers(&[a, b])
        .await
        .into_iter()
        .filter(|l| !ours.iter().any(|m| l == &format!("mount left: {m}")))
        .collect();
    assert!(left.is_empty(), "left behind: {left:#?}");
}
