//! Stop signals through the real daemon (KEP-4960): StopContainer sends
//! `ContainerConfig.stop_signal`, else the image's `StopSignal`, else SIGTERM, and
//! ContainerStatus reports the one it will send. Each container traps every candidate
//! signal and writes the one it got into a host folder; the image with a StopSignal is made
//! by umoci + skopeo from the test busybox and pushed to the local registry.

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pods::*;
use ctr::*;
use ferrocri::cri::v1::*;
use tonic::Code;

/// Where the image with `StopSignal: SIGQUIT` goes (our own repository on the shared registry).
const QUIT_IMAGE_PUSH: &str = "127.0.0.1:5000/ferrocri-userns/stopsignal:quit";
/// The same image as the daemon pulls it (hack/certs.d sends registry.k8s.io to the registry).
const QUIT_IMAGE: &str = "registry.k8s.io/ferrocri-userns/stopsignal:quit";

/// Traps TERM, QUIT, USR1 and INT; the first one received is written to /marker/got.
const TRAPPER: &str = "for s in TERM QUIT USR1 INT; do trap \"echo $s > /marker/got; exit 0\" $s; done; \
                       touch /marker/ready; while true; do sleep 0.1; done";

fn run_tool(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// busybox with `StopSignal: SIGQUIT` in its config, written by umoci, pushed by skopeo.
fn push_quit_image(work: &Path) {
    let layout = work.join("layout");
    let base = format!("{}:base", layout.display());
    let tagged = format!("{}:quit", layout.display());
    let source = format!(
        "docker://127.0.0.1:5000/{}",
        BUSYBOX.trim_start_matches("registry.k8s.io/")
    );
    run_tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &source,
            &format!("oci:{base}"),
        ],
    );
    run_tool(
        "umoci",
        &[
            "config",
            "--image",
            &base,
            "--tag",
            "quit",
            "--config.stopsignal",
            "SIGQUIT",
        ],
    );
    run_tool(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{tagged}"),
            &format!("docker://{QUIT_IMAGE_PUSH}"),
        ],
    );
}

fn trapper(name: &str, image: &str, marker: &Path, signal: Signal) -> ContainerConfig {
    let mut config = busybox_config(name, &["sh", "-c", TRAPPER], false);
    config.image = Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    });
    config.mounts = vec![Mount {
        container_path: "/marker".into(),
        host_path: marker.display().to_string(),
        ..Default::default()
    }];
    config.stop_signal = signal as i32;
    config
}

#[tokio::test]
async fn stop_container_sends_the_configured_then_the_image_signal_and_status_reports_it() {
    let env = start_env(6);
    pull_busybox(&env).await;
    push_quit_image(env.daemon.dir.path());
    env.daemon
        .image()
        .await
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: QUIT_IMAGE.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("PullImage {QUIT_IMAGE}: {e}"));
    let mut rt = env.runtime().await;
    let pod = pod_with_logs(&env, "stopsig", "uid-stopsig");
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;

    // (name, image, CRI stop_signal, the signal the trap must see, what status reports)
    let cases = [
        ("usr1", BUSYBOX, Signal::Sigusr1, "USR1", Signal::Sigusr1),
        (
            "default",
            BUSYBOX,
            Signal::RuntimeDefault,
            "TERM",
            Signal::Sigterm,
        ),
        (
            "image",
            QUIT_IMAGE,
            Signal::RuntimeDefault,
            "QUIT",
            Signal::Sigquit,
        ),
        (
            "override",
            QUIT_IMAGE,
            Signal::Sigint,
            "INT",
            Signal::Sigint,
        ),
    ];
    for (name, image, signal, expect, reported) in cases {
        let marker = env.daemon.dir.path().join(format!("marker-{name}"));
        std::fs::create_dir_all(&marker).unwrap();
        let id = create(
            &env,
            &mut rt,
            &pod_id,
            &pod,
            trapper(name, image, &marker, signal),
        )
        .await;
        let (status, _) = container_status(&mut rt, &id).await;
        assert_eq!(
            status.stop_signal, reported as i32,
            "{name}: created status"
        );
        start(&env, &mut rt, &id).await;
        assert!(
            eventually(Duration::from_secs(10), || marker.join("ready").exists()).await,
            "{name}: the trap was never set"
        );
        let began = Instant::now();
        rt.stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 20,
        })
        .await
        .unwrap_or_else(|e| panic!("{name}: StopContainer: {e}"));
        // The trap exits at once: a wrong signal would have meant the 20 s SIGKILL.
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "{name}: StopContainer took {:?}",
            began.elapsed()
        );
        let got = std::fs::read_to_string(marker.join("got")).unwrap_or_default();
        assert_eq!(got.trim(), expect, "{name}: the signal the container got");
        let (status, _) = container_status(&mut rt, &id).await;
        assert_eq!(status.exit_code, 0, "{name}: exit code");
        assert_eq!(status.stop_signal, reported as i32, "{name}: exited status");
    }

    // A value outside the enum is refused, naming the field.
    let mut bad = busybox_config("bad", &["true"], false);
    bad.stop_signal = 4242;
    let err = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(bad),
            sandbox_config: Some(pod.clone()),
        })
        .await
        .expect_err("stop_signal 4242 accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("config.stop_signal"), "{err}");

    stop_and_remove_pod(&mut rt, &pod_id).await;
}
