//! `ferrocri import containerd` against a real containerd (Debian's package), started here with
//! its own root, state and socket and its CRI plugin on. containerd pulls an image from the
//! local registry (127.0.0.1:5000) with `ctr` and again through its CRI plugin with crictl, so
//! its store holds what containerd wrote — an index with only this platform's manifest, and
//! the names its CRI plugin gives (tag, digest, ID). ferrocri imports it with its daemon
//! stopped, then runs a pod from it with the registry unreachable.

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::pods::*;
use common::run_cli;
use ctr::*;
use ferrocri::cri::v1::*;

const IMAGE: &str = "127.0.0.1:5000/e2e-test-images/busybox:1.29-2";

/// A containerd of this test; dropping it stops it and checks it left no mount.
struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Containerd {
    fn start() -> Containerd {
        assert!(
            Path::new("/usr/bin/containerd").exists(),
            "containerd is missing: apt-get install -y containerd (hack/install-deps.sh)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let hosts = d.join("certs.d/127.0.0.1:5000");
        std::fs::create_dir_all(&hosts).unwrap();
        std::fs::write(
            hosts.join("hosts.toml"),
            "server = \"http://127.0.0.1:5000\"\n[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        )
        .unwrap();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "{d}/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d}/certs.d"
"#,
            d = d.display()
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let this = Containerd {
            dir,
            child: Some(child),
        };
        for _ in 0..100 {
            if this.ctr(&["version"]).0 {
                return this;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("containerd did not start:\n{}", this.log());
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn log(&self) -> String {
        log_tail(
            &std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default(),
            20,
        )
    }

    /// `ctr -a <socket> -n k8s.io <args>`: (success, stdout + stderr).
    fn ctr(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("run ctr");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// crictl against containerd's CRI plugin.
    fn crictl(&self, args: &[&str]) -> String {
        let endpoint = format!("unix://{}", self.socket().display());
        let out = Command::new("crictl")
            .args(["-r", &endpoint, "-i", &endpoint, "-t", "60s"])
            .args(args)
            .output()
            .expect("run crictl");
        assert!(
            out.status.success(),
            "crictl {args:?} on containerd: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..100 {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for mount in mounts_under(self.dir.path()).iter().rev() {
            let _ = nix::mount::umount2(mount.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let left = processes_mentioning(&self.dir.path().to_string_lossy(), None);
        for (pid, _) in &left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if !std::thread::panicking() {
            assert!(left.is_empty(), "containerd left processes: {left:?}");
        }
    }
}

/// `ferrocri --config <cfg> import containerd --address <socket> <images>`.
fn import(config: &Path, containerd: &Containerd, images: &[&str]) -> (i32, String, String) {
    let socket = containerd.socket();
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "import",
        "containerd",
        "--address",
        socket.to_str().unwrap(),
    ];
    args.extend_from_slice(images);
    run_cli(&args)
}

/// ImageStatus of `image` as containerd's CRI plugin reports it: (id, repo tags, repo digests).
fn containerd_view(containerd: &Containerd, image: &str) -> (String, Vec<String>, Vec<String>) {
    let json: serde_json::Value =
        serde_json::from_str(&containerd.crictl(&["inspecti", "-o", "json", image]))
            .expect("crictl inspecti json");
    let strings = |key: &str| -> Vec<String> {
        let mut v: Vec<String> = json["status"][key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    (
        json["status"]["id"].as_str().unwrap_or_default().to_owned(),
        strings("repoTags"),
        strings("repoDigests"),
    )
}

#[tokio::test]
async fn images_containerd_pulled_run_here_without_a_registry() {
    let containerd = Containerd::start();
    let (ok, out) = containerd.ctr(&["images", "pull", "--plain-http", IMAGE]);
    assert!(
        ok,
        "ctr pull {IMAGE}: {out}\n(is the local registry up? hack/registry.sh start && hack/build-test-images.sh)"
    );
    // kubelet's images come through the CRI plugin, which adds a digest and an ID name.
    containerd.crictl(&["pull", IMAGE]);
    let (names_ok, names) = containerd.ctr(&["images", "ls", "-q"]);
    assert!(names_ok, "{names}");
    assert_eq!(
        names.lines().count(),
        3,
        "tag, digest and ID names: {names}"
    );
    let (id, tags, digests) = containerd_view(&containerd, IMAGE);

    let mut env = PodEnv::start(5, Chain::Standard);
    let config = env.daemon.config_path.clone();

    // While the daemon runs, the import refuses and says why.
    let (code, _, err) = import(&config, &containerd, &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("daemon is running") && err.contains("ferrocri.lock"),
        "{err}"
    );
    env.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    env.daemon.wait(Duration::from_secs(30));

    // An image containerd does not have: nothing is copied, the name is in the message.
    let (code, _, err) = import(&config, &containerd, &["busybox:1.29-2", IMAGE]);
    assert_ne!(code, 0);
    assert!(
        err.contains("has no image named busybox:1.29-2") && !err.contains(IMAGE),
        "{err}"
    );

    let (code, out, err) = import(&config, &containerd, &[]);
    assert_eq!(code, 0, "import: {out}\n{err}");
    assert!(out.contains(&format!("imported {IMAGE} ({id})")), "{out}");
    assert!(out.contains(&format!("skipped {id}")), "{out}");
    // index, this platform's manifest, config, one layer
    assert!(
        out.contains("2 imported, 0 failed; 4 blobs copied"),
        "{out}"
    );
    assert!(out.contains("1 layers unpacked"), "{out}");
    // A second import copies nothing.
    let (code, out, err) = import(&config, &containerd, &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("0 blobs copied (0 bytes), 0 layers unpacked"),
        "{out}"
    );
    // containerd holds one lease per import only while it runs.
    let (_, leases) = containerd.ctr(&["leases", "ls", "-q"]);
    assert!(!leases.contains("ferrocri"), "lease left: {leases}");

    // The registry is unreachable now: the image must come from the import.
    let port = free_port();
    let certs = env.daemon.dir.path().join("certs.d/127.0.0.1:5000");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(
        certs.join("hosts.toml"),
        format!(
            "server = \"http://127.0.0.1:{port}\"\n[host.\"http://127.0.0.1:{port}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )
    .unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[registry]\nconfig_dir = \"{}\"\n",
        certs.parent().unwrap().display()
    ));
    std::fs::write(&config, text).unwrap();
    env.daemon.restart();

    let mut images = env.daemon.image().await;
    let pull = images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await;
    assert!(
        pull.is_err(),
        "the registry should be unreachable: {pull:?}"
    );
    let status = images
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .expect("ImageStatus")
        .into_inner()
        .image
        .expect("the imported image is known");
    let (mut our_tags, mut our_digests) = (status.repo_tags.clone(), status.repo_digests.clone());
    our_tags.sort();
    our_digests.sort();
    assert_eq!(
        (status.id.as_str(), &our_tags, &our_digests),
        (id.as_str(), &tags, &digests),
        "ferrocri's ImageStatus differs from containerd's"
    );

    let mut rt = env.runtime().await;
    let pod = pod_with_logs(&env, "imported", "import-uid");
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    let mut config = busybox_config("from-containerd", &["sleep", "60"], false);
    config.image = Some(ImageSpec {
        image: IMAGE.into(),
        ..Default::default()
    });
    let ctr_id = create(&env, &mut rt, &pod_id, &pod, config).await;
    start(&env, &mut rt, &ctr_id).await;
    let out = exec(&mut rt, &ctr_id, &["sh", "-c", "busybox | head -1"], 10)
        .await
        .expect("ExecSync");
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("BusyBox v"),
        "{out:?}"
    );
    stop_and_remove_pod(&mut rt, &pod_id).await;
}
