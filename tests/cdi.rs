//! CDI devices: the same spec folders resolved by ferrocri and by CDI's own Go library
//! (`hack/cdi-reference`, built from the Go module proxy: input we did not make), and a
//! container of the real daemon that gets fake devices, a mount, env, groups and hooks
//! from a spec folder the test writes.

mod common;
#[path = "common/ctr.rs"]
mod ctr;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pods::*;
use ctr::*;
use ferrocri::cdi::Registry;
use ferrocri::container::build::Built;
use ferrocri::cri::v1::*;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cdi");

// ---------------------------------------------------------------------------------------
// Differential check against CDI's Go library.

/// The reference binary, built once by `hack/build-cdi-reference.sh`; None (with a
/// message) when Go or the module proxy is not available.
fn reference() -> Option<PathBuf> {
    // Once per run: two tests use it, and the script must not build twice at once.
    static BUILT: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_reference).clone()
}

fn build_reference() -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/build-cdi-reference.sh");
    match std::process::Command::new(&script).output() {
        Ok(out) if out.status.success() => {
            Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        }
        Ok(out) => {
            eprintln!(
                "SKIPPED: cannot build CDI's Go reference: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("SKIPPED: cannot run {}: {e}", script.display());
            None
        }
    }
}

fn go_resolve(bin: &Path, dirs: &[&Path], devices: &[&str]) -> Value {
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let out = std::process::Command::new(bin)
        .arg(dirs.join(","))
        .args(devices)
        .output()
        .expect("run cdi-reference");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cdi-reference JSON")
}

/// A blank container for the edits to land in (root user, no devices or mounts).
fn blank() -> Built {
    Built {
        spec: Default::default(),
        device_rules: Vec::new(),
        identity: ferrocri::container::user::Identity {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
        },
    }
}

/// What both sides produce, in one comparable form.
#[derive(Debug, PartialEq)]
struct Outcome {
    env: Vec<String>,
    /// path type major:minor mode uid:gid (mode only where the reference knows one).
    nodes: Vec<String>,
    /// Device cgroup rules in the kernel's syntax.
    rules: Vec<String>,
    /// source destination type options.
    mounts: Vec<String>,
    /// kind path args env timeout.
    hooks: Vec<String>,
    gids: Vec<u32>,
}

fn ours(dirs: &[&Path], devices: &[&str]) -> Result<(Outcome, Vec<String>), String> {
    let dirs: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    let registry = Registry::load(&dirs);
    let requested: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    let injection = registry.inject(&requested).map_err(|e| e.to_string())?;
    let mut built = blank();
    ferrocri::container::cdi::apply(&injection, &mut built).map_err(|e| e.to_string())?;
    let spec = &built.spec;
    let hook_lines = |kind: &str, hooks: &[ferrocri::executor::spec::Hook]| {
        hooks
            .iter()
            .map(|h| format!("{kind} {} {:?} {:?} {:?}", h.path, h.args, h.env, h.timeout))
            .collect::<Vec<_>>()
    };
    let h = &spec.hooks;
    let outcome = Outcome {
        env: spec.env.clone(),
        nodes: spec
            .devices
            .iter()
            .map(|d| {
                format!(
                    "{} {} {}:{} {:o} {}:{}",
                    d.path, d.kind, d.major, d.minor, d.mode, d.uid, d.gid
                )
            })
            .collect(),
        rules: built.device_rules.iter().map(|r| r.to_string()).collect(),
        mounts: spec
            .mounts
            .iter()
            .map(|m| {
                format!(
                    "{} {} {} {:?}",
                    m.source, m.destination, m.fstype, m.options
                )
            })
            .collect(),
        hooks: [
            hook_lines("createRuntime", &h.create_runtime),
            hook_lines("createContainer", &h.create_container),
            hook_lines("startContainer", &h.start_container),
            hook_lines("poststart", &h.poststart),
            hook_lines("poststop", &h.poststop),
        ]
        .concat(),
        gids: spec.user.additional_gids.clone(),
    };
    Ok((outcome, registry.device_names()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The reference's OCI spec in the same form. Where ferrocri differs on purpose it is
/// applied here, each with its reason: a node without a mode gets 0666 (runc's default
/// too), and a CDI mount without a type is a bind with `bind` in its options (runc
/// would refuse it otherwise).
fn theirs(spec: &Value) -> Outcome {
    let mode = |d: &Value| d["fileMode"].as_u64().unwrap_or(0o666) & 0o7777;
    let nodes = spec["linux"]["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{} {} {}:{} {:o} {}:{}",
                d["path"].as_str().unwrap(),
                d["type"].as_str().unwrap(),
                d["major"].as_u64().unwrap_or(0),
                d["minor"].as_u64().unwrap_or(0),
                mode(d),
                d["uid"].as_u64().unwrap_or(0),
                d["gid"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let rules = spec["linux"]["resources"]["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| !r["access"].as_str().unwrap_or_default().is_empty())
        .map(|r| {
            let access = r["access"].as_str().unwrap();
            // The kernel's order, as DeviceRule prints it.
            let access: String = "rwm".chars().filter(|c| access.contains(*c)).collect();
            format!(
                "{} {}:{} {access}",
                r["type"].as_str().unwrap(),
                r["major"].as_u64().unwrap(),
                r["minor"].as_u64().unwrap()
            )
        })
        .collect();
    let mounts = spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let mut options = strings(&m["options"]);
            let kind = m["type"].as_str().unwrap_or_default();
            let kind = if kind.is_empty() { "bind" } else { kind };
            if kind == "bind" && !options.iter().any(|o| o == "bind" || o == "rbind") {
                options.insert(0, "bind".into());
            }
            format!(
                "{} {} {kind} {options:?}",
                m["source"].as_str().unwrap(),
                m["destination"].as_str().unwrap()
            )
        })
        .collect();
    let mut hooks = Vec::new();
    for (kind, keys) in [
        ("createRuntime", &["prestart", "createRuntime"][..]),
        ("createContainer", &["createContainer"][..]),
        ("startContainer", &["startContainer"][..]),
        ("poststart", &["poststart"][..]),
        ("poststop", &["poststop"][..]),
    ] {
        for key in keys {
            for h in spec["hooks"][key].as_array().into_iter().flatten() {
                let timeout = h["timeout"].as_u64();
                hooks.push(format!(
                    "{kind} {} {:?} {:?} {timeout:?}",
                    h["path"].as_str().unwrap(),
                    strings(&h["args"]),
                    strings(&h["env"])
                ));
            }
        }
    }
    Outcome {
        env: strings(&spec["process"]["env"]),
        nodes,
        rules,
        mounts,
        hooks,
        gids: spec["process"]["user"]["additionalGids"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| g.as_u64().unwrap() as u32)
            .collect(),
    }
}

/// A spec folder with one file.
fn folder(name: &str, text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), text).unwrap();
    dir
}

fn fixture(name: &str) -> tempfile::TempDir {
    folder(
        name,
        &std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap(),
    )
}

/// Resolves `devices` on both sides and compares; returns ferrocri's outcome or error.
fn compare(bin: &Path, dirs: &[&Path], devices: &[&str]) -> Result<Outcome, String> {
    let go = go_resolve(bin, dirs, devices);
    let go_devices = strings(&go["devices"]);
    let mine = ours(dirs, devices);
    match (&mine, go["spec"].is_object()) {
        (Ok((outcome, names)), true) => {
            assert_eq!(names, &go_devices, "device lists of {dirs:?}");
            assert_eq!(outcome, &theirs(&go["spec"]), "{devices:?} in {dirs:?}");
        }
        (Err(e), false) => {
            // Both refuse; both messages name the first device or path at fault.
            let reason = go["injectError"].as_str().unwrap_or_default();
            eprintln!("both refuse {devices:?}:\n  ferrocri: {e}\n  CDI: {reason}");
        }
        (Ok(_), false) => panic!("CDI refuses {devices:?} in {dirs:?}, ferrocri does not: {go}"),
        (Err(e), true) => panic!("ferrocri refuses {devices:?} in {dirs:?} ({e}), CDI does not"),
    }
    mine.map(|(o, _)| o)
}

/// The spec of the daemon test: fake nodes aliasing /dev/null and /dev/loop-control, a
/// read-only bind, env, a group and one hook of every kind, each writing its state into
/// `out` (the startContainer hook runs inside the container and writes into its /tmp).
fn fake_spec(lib: &Path, out: &Path) -> String {
    let hook = |kind: &str, name: &str| {
        format!(
            "  - hookName: {kind}\n    path: /bin/sh\n    args: [sh, -c, 'cat > {out}/{name}.json; readlink /proc/self/ns/net > {out}/{name}.netns; readlink /proc/self/ns/mnt > {out}/{name}.mntns']\n    env: [HOOK={name}]\n    timeout: 20\n",
            out = out.display()
        )
    };
    format!(
        "# Written by tests/cdi.rs.\ncdiVersion: 0.7.0\nkind: ferrocri.test/fake\ncontainerEdits:\n  env: [FAKE_SPEC=1]\n  mounts:\n  - hostPath: {lib}\n    containerPath: /opt/fake/lib\n    options: [ro, nosuid, nodev, bind]\n  hooks:\n{runtime}{container}{poststart}{poststop}devices:\n- name: fake0\n  containerEdits:\n    env: [FAKE_DEVICE=fake0]\n    deviceNodes:\n    - path: /dev/fake0\n      hostPath: /dev/null\n      permissions: rw\n    additionalGids: [4242]\n- name: ctl\n  containerEdits:\n    deviceNodes:\n    - path: /dev/fakedir/loopctl\n      hostPath: /dev/loop-control\n      fileMode: 0640\n    hooks:\n    - hookName: startContainer\n      path: /bin/sh\n      args: [sh, -c, 'cat > /tmp/start-container.json; echo >> /tmp/start-container.json; id -u >> /tmp/start-container.json']\n",
        lib = lib.display(),
        runtime = hook("createRuntime", "create-runtime"),
        container = hook("createContainer", "create-container"),
        poststart = hook("poststart", "poststart"),
        poststop = hook("poststop", "poststop"),
    )
}

#[test]
fn the_same_specs_resolve_as_with_cdis_go_library() {
    // What reading the folders costs each CreateContainer that asks for a device (a figure).
    let nvidia = fixture("nvidia-ctk-0.5.0.yaml");
    let started = std::time::Instant::now();
    for _ in 0..200 {
        let registry = Registry::load(&[nvidia.path().to_owned(), PathBuf::from(FIXTURES)]);
        assert!(registry.device_names().len() >= 5);
    }
    eprintln!(
        "load of 4 spec files in 2 folders: {:?} each",
        started.elapsed() / 200
    );
    let Some(bin) = reference() else { return };
    let intel = fixture("intel-gpu.json");
    let o = compare(
        &bin,
        &[intel.path()],
        &["intel.com/gpu=card1", "intel.com/gpu=card0"],
    )
    .unwrap();
    assert_eq!(o.nodes.len(), 4);
    assert_eq!(o.env, ["INTEL_GPU_PLUGIN=card1"]);

    // nvidia-ctk's specs name nodes this host does not have: both refuse, naming them.
    for (file, device) in [
        ("nvidia-ctk-0.5.0.yaml", "nvidia.com/gpu=all"),
        (
            "nvidia-ctk-0.5.0.yaml",
            "nvidia.com/gpu=GPU-4cf8db2d-06c0-7d70-1a51-e59b25b2c16c",
        ),
        ("nvidia-ctk-0.6.0.yaml", "nvidia.com/gpu=0:1"),
    ] {
        let dir = fixture(file);
        let err = compare(&bin, &[dir.path()], &[device]).unwrap_err();
        assert!(err.contains("/dev/nvidia"), "{err}");
    }
    // Unknown devices.
    let err = compare(&bin, &[intel.path()], &["intel.com/gpu=card9"]).unwrap_err();
    assert!(err.contains("intel.com/gpu=card9"), "{err}");

    // The daemon test's spec: nodes from the host, mounts, hooks of every kind, a YAML
    // octal file mode, groups.
    let work = tempfile::tempdir().unwrap();
    let fake = folder("fake.yaml", &fake_spec(work.path(), work.path()));
    let o = compare(
        &bin,
        &[fake.path()],
        &["ferrocri.test/fake=fake0", "ferrocri.test/fake=ctl"],
    )
    .unwrap();
    assert_eq!(o.gids, [4242]);
    assert!(
        o.nodes
            .contains(&"/dev/fakedir/loopctl c 10:237 640 0:0".to_owned()),
        "{:?}",
        o.nodes
    );
    assert_eq!(o.hooks.len(), 5);

    // Priorities: the later folder wins; two files of one folder hide the device.
    let spec = |env: &str| {
        format!(
            r#"{{"cdiVersion":"0.3.0","kind":"vendor.com/dev","devices":[{{"name":"a","containerEdits":{{"env":["{env}"],"deviceNodes":[{{"path":"/dev/a","type":"c","major":1,"minor":3}}]}}}}]}}"#
        )
    };
    let low = folder("a.json", &spec("FROM=low"));
    let high = folder("a.json", &spec("FROM=high"));
    let o = compare(&bin, &[low.path(), high.path()], &["vendor.com/dev=a"]).unwrap();
    assert_eq!(o.env, ["FROM=high"]);
    std::fs::write(low.path().join("b.json"), spec("FROM=other")).unwrap();
    compare(&bin, &[low.path()], &["vendor.com/dev=a"]).unwrap_err();

    // Files both sides must refuse or accept alike (each alone in its folder).
    let cases = [
        (
            "unknown-field.yaml",
            "cdiVersion: 0.3.0\nkind: vendor.com/dev\ndevices:\n- name: a\n  containerEdits:\n    env: [A=1]\n    colour: red\n",
        ),
        (
            "newer.json",
            r#"{"cdiVersion":"9.0.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"env":["A=1"]}}]}"#,
        ),
        (
            "hostpath-too-old.json",
            r#"{"cdiVersion":"0.4.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"deviceNodes":[{"path":"/dev/a","hostPath":"/dev/null"}]}}]}"#,
        ),
        (
            "gids-too-old.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"additionalGids":[5]}}]}"#,
        ),
        (
            "digit-too-old.json",
            r#"{"cdiVersion":"0.4.0","kind":"vendor.com/dev","devices":[{"name":"0","containerEdits":{"env":["A=1"]}}]}"#,
        ),
        (
            "no-edits.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a"}]}"#,
        ),
        (
            "bad-name.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a-","containerEdits":{"env":["A=1"]}}]}"#,
        ),
        (
            "bad-env.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"env":["=1"]}}]}"#,
        ),
        (
            "bad-hook.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"hooks":[{"hookName":"preStart","path":"/x"}]}}]}"#,
        ),
        (
            "bad-perms.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"deviceNodes":[{"path":"/dev/a","permissions":"rwx"}]}}]}"#,
        ),
        (
            "dotted-class.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev.v2","devices":[{"name":"a","containerEdits":{"env":["A=1"]}}]}"#,
        ),
        (
            "dotted-class-old.json",
            r#"{"cdiVersion":"0.5.0","kind":"vendor.com/dev.v2","devices":[{"name":"a","containerEdits":{"env":["A=1"]}}]}"#,
        ),
        (
            "v-prefix.json",
            r#"{"cdiVersion":"v0.6.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"env":["A=1"]}}]}"#,
        ),
        (
            "latest.json",
            r#"{"cdiVersion":"1.1.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"env":["A=1"]}}]}"#,
        ),
        (
            "nulls.yaml",
            "cdiVersion: 0.6.0\nkind: vendor.com/dev\ncontainerEdits:\n  env: ~\ndevices:\n- name: a\n  containerEdits:\n    env: [A=1]\n    mounts: ~\n",
        ),
        (
            "octal.yaml",
            "cdiVersion: 0.5.0\nkind: vendor.com/dev\ndevices:\n- name: a\n  containerEdits:\n    deviceNodes:\n    - path: /dev/a\n      type: c\n      major: 1\n      minor: 3\n      fileMode: 0600\n",
        ),
    ];
    for (name, text) in cases {
        let dir = folder(name, text);
        let go = go_resolve(&bin, &[dir.path()], &[]);
        let go_ok = go["errors"].as_object().is_none_or(|e| e.is_empty());
        let registry = Registry::load(&[dir.path().to_owned()]);
        let ok = registry.problems().is_empty();
        assert_eq!(
            ok,
            go_ok,
            "{name}: ferrocri {:?}, CDI {}",
            registry.problems(),
            go["errors"]
        );
        if ok {
            let names = registry.device_names();
            compare(&bin, &[dir.path()], &[names[0].as_str()]).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Through the real daemon.

/// A [`PodEnv`] (its own CNI network) that pulls from the local test registry and reads
/// CDI specs from `spec_dirs`.
fn cdi_env(slot: u8, spec_dirs: &[&Path]) -> PodEnv {
    let mut env = PodEnv::start(slot, Chain::Standard);
    env.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    env.daemon.wait(Duration::from_secs(30));
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/certs.d");
    let dirs: Vec<String> = spec_dirs
        .iter()
        .map(|d| format!("{:?}", d.display().to_string()))
        .collect();
    let mut text = std::fs::read_to_string(&env.daemon.config_path).expect("read config");
    text.push_str(&format!(
        "\n[registry]\nconfig_dir = \"{}\"\n[cdi]\nspec_dirs = [{}]\n",
        certs.display(),
        dirs.join(", ")
    ));
    std::fs::write(&env.daemon.config_path, text).expect("write config");
    env.daemon.restart();
    env
}

/// One change to a good container config.
type ConfigChange = Box<dyn Fn(&mut ContainerConfig)>;

/// `sh -c script` in the container, its output trimmed (the checks here compare whole lines).
async fn sh(
    rt: &mut ferrocri::cri::v1::runtime_service_client::RuntimeServiceClient<
        tonic::transport::Channel,
    >,
    id: &str,
    script: &str,
) -> (i32, String) {
    let (code, text) = ctr::sh(rt, id, script).await;
    (code, text.trim().to_owned())
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn cdi_devices_reach_the_container_and_their_hooks_run_where_they_belong() {
    let work = tempfile::tempdir().unwrap();
    let (lib, out, low, high) = (
        work.path().join("lib"),
        work.path().join("out"),
        work.path().join("cdi-low"),
        work.path().join("cdi-high"),
    );
    for d in [&lib, &out, &low, &high] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(lib.join("libfake.so"), "fake library\n").unwrap();
    std::fs::write(high.join("fake.yaml"), fake_spec(&lib, &out)).unwrap();
    // The same device in the lower folder, replaced by the higher one; and a device whose
    // node is not on this host.
    std::fs::write(
        low.join("fake.json"),
        r#"{"cdiVersion":"0.3.0","kind":"ferrocri.test/fake","devices":[{"name":"fake0","containerEdits":{"env":["FAKE_DEVICE=from-low"]}}]}"#,
    )
    .unwrap();
    std::fs::write(
        low.join("gone.json"),
        r#"{"cdiVersion":"0.3.0","kind":"ferrocri.test/gone","devices":[{"name":"x","containerEdits":{"deviceNodes":[{"path":"/dev/ferrocri-gone"}]}}]}"#,
    )
    .unwrap();
    let env = cdi_env(5, &[&low, &high]);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let pod = pod_with_logs(&env, "cdi", "uid-cdi");
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    let host_ns = |kind: &str| {
        std::fs::read_link(format!("/proc/self/ns/{kind}"))
            .unwrap()
            .display()
            .to_string()
    };

    let mut config = busybox_config(
        "devices",
        &[
            "sh",
            "-c",
            "cp /tmp/start-container.json /tmp/seen-at-start; exec sleep 3600",
        ],
        false,
    );
    config.cdi_devices = vec![CdiDevice {
        name: "ferrocri.test/fake=fake0".into(),
    }];
    config
        .annotations
        .insert("cdi.k8s.io/test".into(), "ferrocri.test/fake=ctl".into());
    let id = create(&env, &mut rt, &pod_id, &pod, config.clone()).await;

    // The process is made by StartContainer (as containerd runs `runc create` there): no
    // hook has run yet.
    assert_eq!(entries(&out), Vec::<String>::new());
    start(&env, &mut rt, &id).await;

    // createRuntime: the host's namespaces; createContainer: the container's (pod network,
    // its own mount namespace). Both before the process started.
    let runtime_state = read_json(&out.join("create-runtime.json"));
    let container_state = read_json(&out.join("create-container.json"));
    assert_eq!(runtime_state["status"], "creating");
    assert_eq!(container_state["status"], "creating");
    assert_eq!(runtime_state["id"], id.as_str());
    assert_eq!(
        read_trimmed(&out.join("create-runtime.netns")),
        host_ns("net")
    );
    assert_eq!(
        read_trimmed(&out.join("create-runtime.mntns")),
        host_ns("mnt")
    );
    assert_ne!(
        read_trimmed(&out.join("create-container.netns")),
        host_ns("net")
    );
    assert_ne!(
        read_trimmed(&out.join("create-container.mntns")),
        host_ns("mnt")
    );
    // The bundle holds a config.json naming the rootfs, for hooks that read it.
    let bundle = PathBuf::from(container_state["bundle"].as_str().unwrap());
    let bundle_config = read_json(&bundle.join("config.json"));
    assert!(
        bundle_config["root"]["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{id}/rootfs")),
        "{bundle_config}"
    );

    let (_, info) = container_status(&mut rt, &id).await;
    let pid = info["pid"].as_i64().expect("pid");
    // createRuntime got the container's host pid; poststart ran before StartContainer
    // answered, with the same pid.
    assert_eq!(runtime_state["pid"].as_i64(), Some(pid));
    let poststart = read_json(&out.join("poststart.json"));
    assert_eq!(
        (poststart["status"].as_str(), poststart["pid"].as_i64()),
        (Some("running"), Some(pid))
    );
    assert_eq!(read_trimmed(&out.join("poststart.netns")), host_ns("net"));

    // Inside: the nodes with the host's numbers (and the spec's mode), usable because the
    // device cgroup allows them, while a node the spec does not name stays closed.
    let (code, text) = sh(
        &mut rt,
        &id,
        "stat -c '%F %t:%T %a' /dev/fake0 /dev/fakedir/loopctl",
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (
            0,
            "character special file 1:3 666\ncharacter special file a:ed 640"
        )
    );
    assert_eq!(
        sh(
            &mut rt,
            &id,
            "echo hi > /dev/fake0 && head -c0 /dev/fakedir/loopctl && echo ok"
        )
        .await,
        (0, "ok".into())
    );
    let (code, text) = sh(&mut rt, &id, "mknod /tmp/kmsg c 1 11 && head -c0 /tmp/kmsg").await;
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("Operation not permitted"), "{text}");
    // Env (spec, then the higher folder's device), the read-only mount, the extra group.
    assert_eq!(
        sh(&mut rt, &id, "echo \"$FAKE_SPEC-$FAKE_DEVICE\"").await,
        (0, "1-fake0".into())
    );
    assert_eq!(
        sh(&mut rt, &id, "cat /opt/fake/lib/libfake.so").await,
        (0, "fake library".into())
    );
    let (code, text) = sh(&mut rt, &id, "touch /opt/fake/lib/x").await;
    assert!(code != 0 && text.contains("Read-only"), "{text}");
    let (code, groups) = sh(&mut rt, &id, "id -G").await;
    assert!(
        code == 0 && groups.split_whitespace().any(|g| g == "4242"),
        "{groups}"
    );
    // startContainer ran inside the container, as its user, before the command.
    let (code, seen) = sh(&mut rt, &id, "cat /tmp/seen-at-start").await;
    assert_eq!(code, 0, "{seen}");
    let (state, uid) = seen.rsplit_once('\n').expect("state then uid");
    let state: Value = serde_json::from_str(state).expect("startContainer state");
    assert_eq!((state["status"].as_str(), uid), (Some("created"), "0"));

    // poststop once the exit is recorded.
    rt.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await
    .expect("StopContainer");
    assert!(
        eventually(Duration::from_secs(10), || out
            .join("poststop.json")
            .exists())
        .await,
        "no poststop hook\n{}",
        log_tail(&env.daemon.log(), 30)
    );
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read(
            out.join("poststop.netns")
        )
        .is_ok_and(|b| !b.is_empty()))
        .await
    );
    assert_eq!(read_json(&out.join("poststop.json"))["status"], "stopped");
    rt.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("RemoveContainer");

    // Refusals: unknown devices (by field and by annotation) and a node missing on the
    // host are FailedPrecondition naming them, a malformed name InvalidArgument naming
    // the annotation; none leaves a record, a folder, a cgroup or a hook run.
    let hook_files = entries(&out);
    let containers_dir = env.daemon.root().join("containers");
    let pod_containers = env.pods_dir().join(&pod_id).join("containers");
    let (records_before, pod_before) = (entries(&containers_dir), entries(&pod_containers));
    let cases: [(&str, ConfigChange, tonic::Code, &str); 4] = [
        (
            "field",
            Box::new(|c| c.cdi_devices[0].name = "ferrocri.test/fake=missing".into()),
            tonic::Code::FailedPrecondition,
            "ferrocri.test/fake=missing",
        ),
        (
            "annotation",
            Box::new(|c| {
                c.annotations
                    .insert("cdi.k8s.io/more".into(), "ferrocri.test/other=gpu9".into());
            }),
            tonic::Code::FailedPrecondition,
            "ferrocri.test/other=gpu9",
        ),
        (
            "host node",
            Box::new(|c| c.cdi_devices[0].name = "ferrocri.test/gone=x".into()),
            tonic::Code::FailedPrecondition,
            "/dev/ferrocri-gone",
        ),
        (
            "name",
            Box::new(|c| {
                c.annotations.insert("cdi.k8s.io/bad".into(), "gpu0".into());
            }),
            tonic::Code::InvalidArgument,
            "config.annotations[\"cdi.k8s.io/bad\"]",
        ),
    ];
    for (what, change, code, named) in cases {
        let mut bad = config.clone();
        bad.metadata = Some(ContainerMetadata {
            name: format!("bad-{}", what.replace(' ', "-")),
            attempt: 0,
        });
        change(&mut bad);
        let err = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(bad),
                sandbox_config: Some(pod.clone()),
            })
            .await
            .expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(err.message().contains(named), "{what}: {}", err.message());
    }
    let listed = rt
        .list_containers(ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(listed.is_empty(), "{listed:?}");
    assert_eq!(entries(&containers_dir), records_before);
    assert_eq!(entries(&pod_containers), pod_before);
    assert_eq!(entries(&out), hook_files);

    stop_and_remove_pod(&mut rt, &pod_id).await;
    env.assert_clean(&[pod_id]).await;
}

/// The folder with NVIDIA's nvidia-ctk and nvidia-cdi-hook (`hack/build-nvidia-ctk.sh`);
/// None (with a message) when they cannot be built here.
fn nvidia_tools() -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/build-nvidia-ctk.sh");
    match std::process::Command::new(&script).output() {
        Ok(out) if out.status.success() => {
            Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        }
        other => {
            eprintln!("SKIPPED: cannot build nvidia-ctk: {other:?}");
            None
        }
    }
}

/// A Tegra-style driver root (nvidia-ctk's CSV mode needs no GPU): two device nodes with
/// the numbers of /dev/null and /dev/zero, a library and its symlink; then the spec
/// `nvidia-ctk cdi generate` writes for it into `spec_dir`.
fn nvidia_generated_spec(tools: &Path, root: &Path, spec_dir: &Path) {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let lib_dir = root.join("usr/lib/aarch64-linux-gnu/tegra");
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::fs::create_dir_all(&lib_dir).unwrap();
    for (name, minor) in [("nvhost-ctrl", 3), ("nvmap", 5)] {
        mknod(
            &root.join("dev").join(name),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(1, minor),
        )
        .unwrap();
    }
    std::fs::write(lib_dir.join("libcuda.so.1.1"), "not really libcuda\n").unwrap();
    std::os::unix::fs::symlink("libcuda.so.1.1", lib_dir.join("libcuda.so")).unwrap();
    let csv = root.join("devices.csv");
    std::fs::write(
        &csv,
        "dev, /dev/nvhost-ctrl\ndev, /dev/nvmap\nlib, /usr/lib/aarch64-linux-gnu/tegra/libcuda.so.1.1\nsym, /usr/lib/aarch64-linux-gnu/tegra/libcuda.so\n",
    )
    .unwrap();
    let out = std::process::Command::new(tools.join("nvidia-ctk"))
        .args(["cdi", "generate", "--mode=csv"])
        .arg(format!("--csv.file={}", csv.display()))
        .arg(format!("--driver-root={}", root.display()))
        .arg(format!("--dev-root={}", root.display()))
        .arg(format!(
            "--nvidia-cdi-hook-path={}",
            tools.join("nvidia-cdi-hook").display()
        ))
        .arg(format!(
            "--output={}",
            spec_dir.join("nvidia.yaml").display()
        ))
        .output()
        .expect("run nvidia-ctk");
    assert!(
        out.status.success(),
        "nvidia-ctk cdi generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_spec_written_by_nvidia_ctk_runs_with_nvidias_own_hooks() {
    let Some(tools) = nvidia_tools() else { return };
    let work = tempfile::tempdir().unwrap();
    let (root, specs) = (work.path().join("driver"), work.path().join("cdi"));
    std::fs::create_dir_all(&specs).unwrap();
    nvidia_generated_spec(&tools, &root, &specs);
    let text = std::fs::read_to_string(specs.join("nvidia.yaml")).unwrap();
    assert!(text.contains("hookName: createContainer"), "{text}");
    // The same resolution as CDI's Go library, when it is available.
    if let Some(bin) = reference() {
        let o = compare(&bin, &[&specs], &["nvidia.com/gpu=all"]).unwrap();
        assert_eq!(o.nodes.len(), 2, "{o:?}");
    }

    let env = cdi_env(6, &[&specs]);
    pull_busybox(&env).await;
    let mut rt = env.runtime().await;
    let pod = pod_with_logs(&env, "nvidia", "uid-nvidia");
    let pod_id = run_pod(&env, &mut rt, pod.clone()).await;
    let mut config = busybox_config("cuda", &["sleep", "3600"], false);
    config.cdi_devices = vec![CdiDevice {
        name: "nvidia.com/gpu=all".into(),
    }];
    let id = create(&env, &mut rt, &pod_id, &pod, config).await;
    start(&env, &mut rt, &id).await;
    let (code, text) = sh(
        &mut rt,
        &id,
        "stat -c '%n %t:%T' /dev/nvhost-ctrl /dev/nvmap && cat /usr/lib/aarch64-linux-gnu/tegra/libcuda.so.1.1 && echo \"$NVIDIA_VISIBLE_DEVICES\"",
    )
    .await;
    assert_eq!(
        (code, text.as_str()),
        (
            0,
            "/dev/nvhost-ctrl 1:3\n/dev/nvmap 1:5\nnot really libcuda\nvoid"
        )
    );
    // nvidia-cdi-hook create-symlinks found the rootfs through the bundle's config.json.
    let (code, link) = sh(
        &mut rt,
        &id,
        "readlink /usr/lib/aarch64-linux-gnu/tegra/libcuda.so",
    )
    .await;
    assert_eq!(code, 0, "{link}\n{}", log_tail(&env.daemon.log(), 30));
    assert!(link.starts_with("libcuda.so.1"), "{link}");
    stop_and_remove_pod(&mut rt, &pod_id).await;
    env.assert_clean(&[pod_id]).await;
}
