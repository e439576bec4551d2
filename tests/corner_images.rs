//! The corner-case image set (`hack/images/corner_cases.py`) through the real daemon: the
//! script writes each case to the local registry (127.0.0.1:5000, reached as `docker.io/...`
//! through hack/certs.d) together with what it must give, and this test pulls every case over
//! the CRI socket and checks exactly that — the tree of the case's top layer as the daemon
//! unpacked it (`<root>/layers/sha256/<chain ID>`: paths, types, modes, owners, times, link
//! targets, xattrs, content), the refusal (gRPC code and message), or what its containers print.
//! Needs root, python3 and the local registry (hack/registry.sh start && hack/build-test-images.sh).

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pods::{PodEnv, log_tail, stop_and_remove_pod};
use ctr::*;
use ferrocri::cri::v1::*;
use serde_json::Value;
use sha2::Digest as _;

/// Runs the script; returns its cases.
fn write_cases(dir: &Path) -> Vec<Value> {
    let out = dir.join("cases.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/images/corner_cases.py");
    let status = std::process::Command::new("python3")
        .arg(&script)
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run python3");
    assert!(status.success(), "{} failed: {status}", script.display());
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    doc["cases"].as_array().expect("cases").clone()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every path below `dir` ("" is `dir` itself), without following symlinks.
fn walk(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::from([String::new()]);
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for child in std::fs::read_dir(dir.join(&rel)).unwrap() {
            let child = child.unwrap();
            let rel = rel.join(child.file_name());
            if child.file_type().unwrap().is_dir() {
                todo.push(rel.clone());
            }
            found.insert(rel.to_str().unwrap().to_owned());
        }
    }
    found
}

fn xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let len = rustix::fs::lgetxattr(path, key, &mut buf[..]).ok()?;
    buf.truncate(len);
    Some(buf)
}

/// Differences between the layer directory and the recorded tree, one line each.
fn compare_tree(layer: &Path, tree: &serde_json::Map<String, Value>, exact: bool) -> Vec<String> {
    let mut wrong = Vec::new();
    if !layer.is_dir() {
        return vec![format!("layer directory {} is missing", layer.display())];
    }
    let found = walk(layer);
    if exact {
        let expected: BTreeSet<String> = tree.keys().cloned().chain([String::new()]).collect();
        for extra in found.difference(&expected) {
            wrong.push(format!("unexpected path {extra:?}"));
        }
    }
    for (rel, spec) in tree {
        let path = layer.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            wrong.push(format!("{rel:?} is missing"));
            continue;
        };
        let mut check = |what: &str, ok: bool, actual: String| {
            if !ok {
                wrong.push(format!("{rel:?}: {what} is {actual}, expected {spec}"));
            }
        };
        let kind = spec["type"].as_str().unwrap();
        let actual_kind = match meta.file_type() {
            t if t.is_dir() => "dir",
            t if t.is_symlink() => "symlink",
            t if t.is_file() => "file",
            _ => "other",
        };
        check("type", actual_kind == kind, actual_kind.into());
        if let Some(mode) = spec["mode"].as_u64() {
            let actual = u64::from(meta.mode() & 0o7777);
            check("mode", actual == mode, format!("{actual:o}"));
        }
        let owner = (
            spec["uid"].as_u64().unwrap_or(0),
            spec["gid"].as_u64().unwrap_or(0),
        );
        let actual = (u64::from(meta.uid()), u64::from(meta.gid()));
        check("owner", actual == owner, format!("{actual:?}"));
        if let Some(mtime) = spec["mtime"].as_i64() {
            check("mtime", meta.mtime() == mtime, meta.mtime().to_string());
        }
        if let Some(nlink) = spec["nlink"].as_u64() {
            check("nlink", meta.nlink() == nlink, meta.nlink().to_string());
        }
        if let Some(target) = spec["target"].as_str() {
            let actual = std::fs::read_link(&path).unwrap_or_default();
            check("target", actual == Path::new(target), format!("{actual:?}"));
        }
        if kind == "file" && actual_kind == "file" {
            let content = std::fs::read(&path).unwrap();
            if let Some(text) = spec["content"].as_str() {
                check(
                    "content",
                    content == text.as_bytes(),
                    format!("{:?}", String::from_utf8_lossy(&content)),
                );
            }
            if let Some(digest) = spec["sha256"].as_str() {
                let actual = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&content)));
                check("sha256", actual == digest, actual.clone());
            }
            if let Some(size) = spec["size"].as_u64() {
                check("size", meta.len() == size, meta.len().to_string());
            }
        }
        if let Some(xattrs) = spec["xattrs"].as_object() {
            for (key, value) in xattrs {
                let actual = xattr(&path, key);
                check(
                    &format!("xattr {key}"),
                    actual.as_deref() == Some(value.as_str().unwrap().as_bytes()),
                    format!("{actual:?}"),
                );
            }
        }
    }
    wrong
}

async fn pull(env: &PodEnv, image: &str) -> Result<String, tonic::Status> {
    env.daemon
        .image()
        .await
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

/// Creates and starts one container of `image` in the pod and returns its stdout once it exits.
async fn run_once(
    env: &PodEnv,
    rt: &mut runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    pod: (&str, &PodSandboxConfig),
    name: &str,
    image: &str,
    run: &Value,
) -> Result<String, String> {
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: strings(&run["command"]),
        args: strings(&run["args"]),
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    };
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.0.to_owned(),
            config: Some(config),
            sandbox_config: Some(pod.1.clone()),
        })
        .await
        .map_err(|e| format!("CreateContainer: {e}"))?
        .into_inner()
        .container_id;
    env.note(&id);
    rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .map_err(|e| format!("StartContainer: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = container_status(rt, &id).await;
        if status.state == ContainerState::ContainerExited as i32 {
            if status.exit_code != 0 {
                return Err(format!("exit code {}", status.exit_code));
            }
            break;
        }
        if Instant::now() > deadline {
            return Err("did not exit within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = log_dir(env, "corner").join(format!("{name}.log"));
    let text = std::fs::read_to_string(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    Ok(parse_cri_log(&text)
        .into_iter()
        .filter(|r| r.stream == "stdout")
        .map(|r| r.message)
        .collect::<Vec<_>>()
        .join("\n"))
}

#[tokio::test]
async fn corner_case_images_give_what_each_case_records() {
    let scratch = tempfile::tempdir().unwrap();
    let cases = write_cases(scratch.path());
    assert!(cases.len() > 40, "only {} cases", cases.len());
    let env = start_env(1);
    let layers = env.daemon.root().join("layers/sha256");
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut fail = |case: &str, what: String| {
        failures.entry(case.to_owned()).or_default().push(what);
    };

    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let image = case["ref"].as_str().unwrap();
        let pulled = pull(&env, image).await;
        match (case["refused"].as_str(), pulled) {
            (Some(message), Ok(_)) => fail(name, format!("pulled, expected a refusal: {message}")),
            (Some(message), Err(status)) => {
                let code = format!("{:?}", status.code());
                if code != case["code"].as_str().unwrap() || !status.message().contains(message) {
                    fail(
                        name,
                        format!(
                            "refused with {code} {:?}, expected {message:?}",
                            status.message()
                        ),
                    );
                }
            }
            (None, Err(status)) => fail(name, format!("pull failed: {status}")),
            (None, Ok(_)) => {}
        }
        if let Some(tree) = case["tree"].as_object() {
            let chain = case["top_chain_id"].as_str().unwrap();
            let dir = layers.join(chain.trim_start_matches("sha256:"));
            let exact = case["exact"].as_bool().unwrap_or(false);
            for wrong in compare_tree(&dir, tree, exact) {
                fail(name, wrong);
            }
        }
    }

    // Containers of the cases that say what they print, all in one pod.
    let mut rt = env.runtime().await;
    let pod = pod_with_logs(&env, "corner", "uid-corner");
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    let mut ran = 0;
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let image = case["ref"].as_str().unwrap();
        for (i, run) in case["runs"].as_array().into_iter().flatten().enumerate() {
            ran += 1;
            let container = format!("{name}-{i}");
            let expected = run["stdout"].as_str().unwrap();
            match run_once(&env, &mut rt, (&pod_id, &pod), &container, image, run).await {
                Ok(stdout) if stdout == expected => {}
                Ok(stdout) => fail(name, format!("run {run}: printed {stdout:?}")),
                Err(e) => fail(name, format!("run {run}: {e}")),
            }
        }
    }
    assert!(ran >= 15, "only {ran} containers ran");
    stop_and_remove_pod(&mut rt, &pod_id).await;

    let report: Vec<String> = failures
        .iter()
        .map(|(case, wrong)| format!("{case}:\n    {}", wrong.join("\n    ")))
        .collect();
    assert!(
        report.is_empty(),
        "{} of {} cases differ from what they record:\n{}\ndaemon log tail:\n{}",
        report.len(),
        cases.len(),
        report.join("\n"),
        log_tail(&env.daemon.log(), 30)
    );
}
