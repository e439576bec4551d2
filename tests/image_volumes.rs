//! Image volumes (CRI `Mount.image`, KEP-4639) through the real daemon, with images another
//! builder wrote (hack/image-matrix.sh: `matrix/umoci`, five layers by umoci with a whiteout
//! and an opaque folder; `matrix/buildah-bud`, one layer by buildah) from the local
//! registry, mounted into a busybox container as kubelet asks for them: by image ID, read
//! only. From inside: the merged files, EROFS on write, noexec, nosuid, nodev, a sub path
//! alone. Refusals name the field; RemoveImage of a mounted image is deferred (the layers stay
//! while the container exists, also across a SIGKILL and restart of the daemon), and the
//! container's removal leaves no mount and no layer of it.

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::path::PathBuf;
use std::time::Duration;

use common::pods::*;
use ctr::*;
use ferrocri::cri::v1::*;
use tonic::Code;

type RuntimeServiceClient =
    ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>;

/// One test at a time (they share the slot's network).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Built by umoci: unpack/repack, an insert at `/`, a whiteout of /opt/matrix/owned, an
/// opaque /opt/umoci holding only `replaced`, the marker inserted last.
const UMOCI: &str = "docker.io/matrix/umoci:1";
/// Built by `buildah bud`: one layer.
const BUILDAH: &str = "docker.io/matrix/buildah-bud:1";
/// `crane flatten` of a GNU tar layer: one layer that keeps /opt/matrix/owned as 1000:1000.
const CRANE: &str = "docker.io/matrix/crane-flatten:1";

async fn pull(env: &PodEnv, image: &str) -> String {
    env.daemon
        .image()
        .await
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PullImage {image}: {e} (run hack/image-matrix.sh to push the matrix images)\n{}",
                log_tail(&env.daemon.log(), 30)
            )
        })
        .into_inner()
        .image_ref
}

/// The mount kubelet sends for an image volume: the pulled image's ID, no host path.
fn image_mount(container_path: &str, id: &str, named: &str, sub_path: &str) -> Mount {
    Mount {
        container_path: container_path.into(),
        image: Some(ImageSpec {
            image: id.into(),
            user_specified_image: named.into(),
            ..Default::default()
        }),
        image_sub_path: sub_path.into(),
        readonly: true,
        ..Default::default()
    }
}

/// The unpacked layer folders of an image, by its chain IDs (from verbose ImageStatus).
async fn layer_dirs(env: &PodEnv, image: &str) -> Vec<PathBuf> {
    let resp = env
        .daemon
        .image()
        .await
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await
        .expect("ImageStatus")
        .into_inner();
    let info: serde_json::Value =
        serde_json::from_str(resp.info.get("info").expect("verbose info")).expect("info json");
    let layers = info["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in {info}"));
    layers
        .iter()
        .map(|l| {
            let c = l["chain_id"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:");
            env.daemon.root().join("layers/sha256").join(c)
        })
        .collect()
}

/// Host mountinfo lines that mention any of `paths`.
fn host_mounts_of(paths: &[PathBuf]) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .filter(|l| paths.iter().any(|p| l.contains(&*p.to_string_lossy())))
        .map(str::to_owned)
        .collect()
}

async fn create_err(
    rt: &mut RuntimeServiceClient,
    pod_id: &str,
    pod: &PodSandboxConfig,
    config: ContainerConfig,
) -> tonic::Status {
    rt.create_container(CreateContainerRequest {
        pod_sandbox_id: pod_id.into(),
        config: Some(config),
        sandbox_config: Some(pod.clone()),
    })
    .await
    .expect_err("CreateContainer was accepted")
}

#[tokio::test]
async fn image_volumes_mount_read_only_noexec_with_sub_paths_and_outlive_a_removed_image() {
    let _serial = SERIAL.lock().await;
    let mut env = start_env(8);
    pull_busybox(&env).await;
    let umoci = pull(&env, UMOCI).await;
    let buildah = pull(&env, BUILDAH).await;
    let umoci_layers = layer_dirs(&env, &umoci).await;
    let buildah_layers = layer_dirs(&env, &buildah).await;
    assert_eq!((umoci_layers.len(), buildah_layers.len()), (5, 1));
    let mut rt = env.runtime().await;
    let pod = pod_with_logs(&env, "imgvol", "uid-imgvol");
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;

    // Refusals first: each names its field and leaves no container behind.
    let containers_dir = env.daemon.root().join("containers");
    let mut bad = busybox_config("bad", &["sleep", "3600"], false);
    for (sub_path, why) in [
        ("opt/none", "does not exist"),
        ("matrix-marker", "not a directory"),
    ] {
        bad.mounts = vec![image_mount("/vol", &umoci, UMOCI, sub_path)];
        let err = create_err(&mut rt, &pod_id, &pod, bad.clone()).await;
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(
            err.message().contains("config.mounts[0].image_sub_path")
                && err.message().contains(why),
            "{err}"
        );
    }
    bad.mounts = vec![image_mount(
        "/vol",
        "docker.io/matrix/never-pulled:1",
        "",
        "",
    )];
    let err = create_err(&mut rt, &pod_id, &pod, bad.clone()).await;
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(
        err.message().contains("config.mounts[0].image.image"),
        "{err}"
    );
    bad.mounts = vec![image_mount("/vol", &umoci, UMOCI, "../etc")];
    let err = create_err(&mut rt, &pod_id, &pod, bad.clone()).await;
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(
        err.message().contains("config.mounts[0].image_sub_path"),
        "{err}"
    );
    let mut with_host_path = image_mount("/vol", &umoci, UMOCI, "");
    with_host_path.host_path = "/tmp".into();
    bad.mounts = vec![with_host_path];
    let err = create_err(&mut rt, &pod_id, &pod, bad).await;
    assert!(
        err.message().contains("config.mounts[0].host_path"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&containers_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "refused creates left {left:?}");

    let mut config = busybox_config("reader", &["sleep", "3600"], false);
    config.mounts = vec![
        image_mount("/vol", &umoci, UMOCI, ""),
        // By name this time, as `crictl` users write it.
        image_mount("/sub", UMOCI, UMOCI, "opt/umoci"),
        image_mount("/one", &buildah, BUILDAH, ""),
    ];
    let id = create(&env, &mut rt, &pod_id, &pod, config).await;
    start(&env, &mut rt, &id).await;

    let (code, out) = sh(
        &mut rt,
        &id,
        "cat /vol/matrix-marker /one/matrix-marker; ls /vol/opt/matrix; echo --; \
         ls -A /vol/opt/umoci; echo --; ls -A /sub",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out, "matrix umoci\nmatrix buildah-bud\nsetuid\nxattr\n--\nreplaced\n--\nreplaced\n",
        "merged layers: the whiteout and the opaque folder hide what they hide"
    );
    for dir in ["/vol", "/sub", "/one"] {
        let (code, out) = sh(&mut rt, &id, &format!("touch {dir}/new 2>&1")).await;
        assert_ne!(code, 0, "{dir} is writable");
        assert!(out.contains("Read-only file system"), "{dir}: {out}");
        let (code, out) = sh(
            &mut rt,
            &id,
            &format!("grep ' {dir} ' /proc/self/mountinfo"),
        )
        .await;
        assert_eq!(code, 0, "{dir} not mounted:\n{out}");
        let options = out.split(' ').nth(5).unwrap_or_default();
        for flag in ["ro", "nosuid", "nodev", "noexec"] {
            assert!(
                options.split(',').any(|o| o == flag),
                "{dir} lacks {flag}: {out}"
            );
        }
        assert!(
            out.contains(" - overlay "),
            "{dir} is not the overlay: {out}"
        );
    }
    // noexec: the image's own busybox cannot run from the volume.
    let (code, out) = sh(&mut rt, &id, "/vol/bin/busybox true 2>&1; echo rc=$?").await;
    assert_eq!(code, 0);
    assert!(
        out.contains("Permission denied") && out.contains("rc=126"),
        "ran a binary from a noexec volume: {out}"
    );

    // ContainerStatus echoes the mounts as kubelet sent them.
    let (status, _) = container_status(&mut rt, &id).await;
    let echoed: Vec<_> = status
        .mounts
        .iter()
        .map(|m| {
            (
                m.container_path.as_str(),
                m.image.as_ref().map(|i| i.image.as_str()),
                m.image_sub_path.as_str(),
            )
        })
        .collect();
    assert_eq!(
        echoed,
        [
            ("/vol", Some(umoci.as_str()), ""),
            ("/sub", Some(UMOCI), "opt/umoci"),
            ("/one", Some(buildah.as_str()), ""),
        ]
    );

    // Nothing of the volumes is mounted on the host: they live in the container's namespace.
    let all_layers: Vec<PathBuf> = umoci_layers
        .iter()
        .chain(&buildah_layers)
        .cloned()
        .collect();
    assert_eq!(host_mounts_of(&all_layers), Vec::<String>::new());

    // RemoveImage of a mounted image is deferred: the name goes, the layers stay.
    let mut images = env.daemon.image().await;
    images
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: umoci.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("RemoveImage of a mounted image");
    // The daemon crashes and starts again (its GC at start runs): the layers stay too.
    env.daemon.kill9();
    env.daemon.restart();
    let mut rt = env.runtime().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for dir in &umoci_layers {
        assert!(dir.is_dir(), "{} went while mounted", dir.display());
    }
    let (code, out) = sh(&mut rt, &id, "cat /vol/matrix-marker; ls /sub").await;
    assert_eq!((code, out.as_str()), (0, "matrix umoci\nreplaced\n"));

    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("RemoveContainer");
    assert!(
        eventually(Duration::from_secs(10), || umoci_layers
            .iter()
            .all(|d| !d.exists()))
        .await,
        "the removed image's layers stayed after its last container"
    );
    for dir in &buildah_layers {
        assert!(dir.is_dir(), "a layer of a present image went");
    }
    assert_eq!(host_mounts_of(&all_layers), Vec::<String>::new());
    let mut images = env.daemon.image().await;
    images
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: buildah.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("RemoveImage");
    assert!(
        eventually(Duration::from_secs(10), || buildah_layers
            .iter()
            .all(|d| !d.exists()))
        .await,
        "an unused image's layers stayed"
    );
    stop_and_remove_pod(&mut rt, &pod_id).await;
    env.assert_clean(&[pod_id]).await;
}

#[tokio::test]
async fn in_a_user_namespace_pod_image_volumes_are_idmapped() {
    let _serial = SERIAL.lock().await;
    let env = start_env(8);
    pull_busybox(&env).await;
    let crane = pull(&env, CRANE).await;
    let umoci = pull(&env, UMOCI).await;
    let mut rt = env.runtime().await;
    // Container ids 0..65536 are host ids 300000..365536.
    let mut pod = pod_with_logs(&env, "imgvol-userns", "uid-imgvol-userns");
    let mapping = vec![IdMapping {
        container_id: 0,
        host_id: 300_000,
        length: 65_536,
    }];
    pod.linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options
        .get_or_insert_with(Default::default)
        .userns_options = Some(UserNamespace {
        mode: NamespaceMode::Pod as i32,
        uids: mapping.clone(),
        gids: mapping,
    });
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    let mut config = busybox_config("reader", &["sleep", "3600"], false);
    config.mounts = vec![
        image_mount("/one", &crane, CRANE, ""),
        image_mount("/sub", &umoci, UMOCI, "opt/umoci"),
    ];
    let id = create(&env, &mut rt, &pod_id, &pod, config).await;
    start(&env, &mut rt, &id).await;
    // On disk the files are owned by 0 and 1000: through the idmapped layers the container
    // sees the same ids (without the idmap, host ids outside the pod's range, they would be
    // nobody, 65534).
    let (code, out) = sh(
        &mut rt,
        &id,
        "awk '{print $2}' /proc/self/uid_map; stat -c '%u %n' /one/bin/busybox \
         /one/opt/matrix/owned /sub/replaced; cat /sub/replaced; touch /one/x 2>&1",
    )
    .await;
    assert_ne!(code, 0, "touch on a read-only volume succeeded: {out}");
    assert_eq!(
        out,
        "300000\n0 /one/bin/busybox\n1000 /one/opt/matrix/owned\n0 /sub/replaced\nreplaced\n\
         touch: /one/x: Read-only file system\n"
    );
    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("RemoveContainer");
    stop_and_remove_pod(&mut rt, &pod_id).await;
    env.assert_clean(&[pod_id]).await;
}

/// Written by ORAS (hack/push-test-artifact.sh): greeting.txt and conf/app.ini, empty config.
const ORAS_ARTIFACT: &str = "docker.io/ferrocri-imgvol/artifact:1";
/// A Helm chart artifact (hack/images/corner_cases.py): one untitled tar+gzip blob.
const HELM_ARTIFACT: &str = "docker.io/ferrocri-corner/artifact-helm:1";

#[tokio::test]
async fn oci_artifacts_mount_as_their_files_and_never_run() {
    let _serial = SERIAL.lock().await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/push-test-artifact.sh");
    let pushed = std::process::Command::new(&script)
        .status()
        .expect("run hack/push-test-artifact.sh");
    assert!(pushed.success(), "hack/push-test-artifact.sh failed");
    let env = start_env(8);
    pull_busybox(&env).await;
    let artifact = pull(&env, ORAS_ARTIFACT).await;
    let helm = pull(&env, HELM_ARTIFACT).await;
    // An artifact's ID is its manifest digest (they share the empty config).
    assert_ne!(
        artifact,
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    let mut rt = env.runtime().await;
    let pod = pod_with_logs(&env, "imgvol-art", "uid-imgvol-art");
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;

    let mut runs_it = busybox_config("runs-it", &["sh"], false);
    runs_it.image = Some(ImageSpec {
        image: ORAS_ARTIFACT.into(),
        ..Default::default()
    });
    let err = create_err(&mut rt, &pod_id, &pod, runs_it).await;
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(
        err.message().contains("config.image.image") && err.message().contains("artifact"),
        "{err}"
    );

    let mut config = busybox_config("reader", &["sleep", "3600"], false);
    config.mounts = vec![
        image_mount("/art", &artifact, ORAS_ARTIFACT, ""),
        image_mount("/conf", &artifact, ORAS_ARTIFACT, "conf"),
        image_mount("/helm", &helm, HELM_ARTIFACT, ""),
    ];
    let id = create(&env, &mut rt, &pod_id, &pod, config).await;
    start(&env, &mut rt, &id).await;
    let (code, out) = sh(
        &mut rt,
        &id,
        "cat /art/greeting.txt /art/conf/app.ini; ls -A /conf; ls /helm | sed 's/-[0-9a-f]*$/-hex/'; \
         stat -c '%a %u' /art/greeting.txt; echo x > /art/new 2>&1",
    )
    .await;
    assert_ne!(code, 0, "wrote into an artifact: {out}");
    assert_eq!(
        out,
        "hello from oras\na=1\napp.ini\nsha256-hex\n644 0\nsh: can't create /art/new: Read-only file system\n"
    );
    let (code, out) = sh(&mut rt, &id, "gzip -dc /helm/sha256-* | tar -tf -").await;
    assert_eq!(
        (code, out.as_str()),
        (0, "chart/Chart.yaml\n"),
        "the chart is the blob as pushed"
    );
    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("RemoveContainer");
    stop_and_remove_pod(&mut rt, &pod_id).await;
    env.assert_clean(&[pod_id]).await;
}
