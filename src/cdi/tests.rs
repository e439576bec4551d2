//! The parser and the merging on spec files in the forms real producers write (fixtures in
//! `tests/data/cdi/`, modelled on `nvidia-ctk cdi generate` and an Intel GPU plugin), and
//! the refusals `cdi validate` makes. `tests/cdi.rs` compares the same files with CDI's own
//! Go library.

use std::path::{Path, PathBuf};

use super::*;

const NVIDIA_05: &str = include_str!("../../tests/data/cdi/nvidia-ctk-0.5.0.yaml");
const NVIDIA_06: &str = include_str!("../../tests/data/cdi/nvidia-ctk-0.6.0.yaml");
const INTEL: &str = include_str!("../../tests/data/cdi/intel-gpu.json");

fn parse(name: &str, text: &str) -> Result<Spec, String> {
    Spec::parse(Path::new(name), text.as_bytes())
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn nvidia_ctk_yaml_parses_field_by_field() {
    let spec = parse("nvidia.yaml", NVIDIA_05).unwrap();
    assert_eq!(
        (spec.cdi_version.as_str(), spec.kind.as_str()),
        ("0.5.0", "nvidia.com/gpu")
    );
    let names: Vec<&str> = spec.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["0", "GPU-4cf8db2d-06c0-7d70-1a51-e59b25b2c16c", "all"]
    );
    let edits = &spec.container_edits;
    assert_eq!(edits.env, ["NVIDIA_VISIBLE_DEVICES=void"]);
    assert_eq!(edits.device_nodes.len(), 4);
    assert_eq!(edits.device_nodes[3].path, "/dev/nvidiactl");
    assert_eq!(edits.device_nodes[3].kind, "");
    assert_eq!(edits.hooks[1].hook_name, "createContainer");
    assert_eq!(edits.hooks[1].path, "/usr/bin/nvidia-ctk");
    assert_eq!(edits.hooks[1].args[2], "update-ldcache");
    assert_eq!(
        edits.mounts[1].container_path,
        "/run/nvidia-persistenced/socket"
    );
    assert_eq!(
        edits.mounts[1].options,
        ["ro", "nosuid", "nodev", "bind", "noexec"]
    );
    // A quoted YAML number stays a string: the chmod mode.
    assert_eq!(spec.devices[0].container_edits.hooks[1].args[4], "755");

    let spec = parse("nvidia.yaml", NVIDIA_06).unwrap();
    assert_eq!(spec.annotations["cdi.nvidia.com/generator"], "nvidia-ctk");
    assert_eq!(spec.devices[0].name, "0:1");
    assert_eq!(
        spec.devices[0].container_edits.device_nodes[1].host_path,
        "/dev/nvidia-caps/nvidia-cap21"
    );
    let start = &spec.container_edits.hooks[2];
    assert_eq!(
        (start.hook_name.as_str(), start.timeout),
        ("startContainer", Some(10))
    );
    assert_eq!(
        spec.container_edits.hooks[1].env,
        ["NVIDIA_CTK_DEBUG=false"]
    );
}

#[test]
fn intel_json_parses_with_numbers_modes_and_owners() {
    let spec = parse("intel.json", INTEL).unwrap();
    let node = &spec.devices[0].container_edits.device_nodes[1];
    assert_eq!(
        (
            node.kind.as_str(),
            node.major,
            node.minor,
            node.file_mode,
            node.gid
        ),
        ("c", 226, 128, Some(0o660), Some(44))
    );
    assert_eq!(
        spec.devices[0].container_edits.device_nodes[0].permissions,
        "rw"
    );
}

#[test]
fn spec_edits_come_once_before_each_devices_own() {
    let dir = dir_with(&[("intel.json", INTEL), ("nvidia.yaml", NVIDIA_05)]);
    let registry = Registry::load(&[dir.path().to_owned()]);
    assert!(registry.problems().is_empty(), "{:?}", registry.problems());
    assert_eq!(registry.device_names().len(), 5);
    let injection = registry
        .inject(&["intel.com/gpu=card1".into(), "intel.com/gpu=card0".into()])
        .unwrap();
    // The spec's env once, then card1's (which sets the same key again), then card0's nodes.
    assert_eq!(
        injection.edits.env,
        ["INTEL_GPU_PLUGIN=cdi", "INTEL_GPU_PLUGIN=card1"]
    );
    let paths: Vec<&str> = injection
        .edits
        .device_nodes
        .iter()
        .map(|n| n.path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "/dev/dri/card1",
            "/dev/dri/renderD129",
            "/dev/dri/card0",
            "/dev/dri/renderD128"
        ]
    );
    assert_eq!(injection.specs, [dir.path().join("intel.json")]);

    let injection = registry
        .inject(&["nvidia.com/gpu=all".into(), "intel.com/gpu=card0".into()])
        .unwrap();
    assert_eq!(injection.edits.device_nodes.len(), 4 + 3 + 2);
    assert_eq!(injection.edits.hooks.len(), 2);
    assert_eq!(injection.edits.mounts.len(), 3);
    assert_eq!(injection.specs.len(), 2);
}

#[test]
fn unknown_devices_are_named_with_the_folders_and_broken_files() {
    let dir = dir_with(&[
        ("intel.json", INTEL),
        (
            "broken.yaml",
            "cdiVersion: 0.6.0\nkind: x.com/y\ndevices: [\n",
        ),
        ("ignored.txt", "not a spec"),
    ]);
    let registry = Registry::load(&[dir.path().to_owned(), PathBuf::from("/nonexistent/cdi")]);
    let err = registry
        .inject(&["intel.com/gpu=card0".into(), "intel.com/gpu=card7".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("unresolvable CDI devices intel.com/gpu=card7: "),
        "{err}"
    );
    assert!(err.contains("/nonexistent/cdi"), "{err}");
    assert!(err.contains("broken.yaml"), "{err}");
    assert!(!err.contains("ignored.txt"), "{err}");
}

#[test]
fn a_later_folder_wins_and_a_conflict_in_one_folder_hides_the_device() {
    let spec = |env: &str| {
        format!(
            r#"{{"cdiVersion":"0.3.0","kind":"vendor.com/dev","devices":[{{"name":"a","containerEdits":{{"env":["{env}"]}}}}]}}"#
        )
    };
    let low = dir_with(&[("a.json", &spec("FROM=low"))]);
    let high = dir_with(&[("a.json", &spec("FROM=high"))]);
    let registry = Registry::load(&[low.path().to_owned(), high.path().to_owned()]);
    let injection = registry.inject(&["vendor.com/dev=a".into()]).unwrap();
    assert_eq!(injection.edits.env, ["FROM=high"]);
    assert!(registry.problems().is_empty());

    let both = dir_with(&[("a.json", &spec("X=1")), ("b.json", &spec("X=2"))]);
    let registry = Registry::load(&[both.path().to_owned()]);
    let err = registry
        .inject(&["vendor.com/dev=a".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("defined in both"), "{err}");
}

#[test]
fn yaml_octal_modes_read_as_go_reads_them() {
    let node = |mode: &str| {
        let text = format!(
            "cdiVersion: 0.5.0\nkind: vendor.com/dev\ndevices:\n- name: a\n  containerEdits:\n    deviceNodes:\n    - path: /dev/a\n      fileMode: {mode}\n      major: 010\n"
        );
        parse("x.yaml", &text).map(|s| s.devices[0].container_edits.device_nodes[0].clone())
    };
    assert_eq!(node("0640").unwrap().file_mode, Some(0o640));
    assert_eq!(node("0640").unwrap().major, 8);
    assert_eq!(node("0o600").unwrap().file_mode, Some(0o600));
    assert_eq!(node("416").unwrap().file_mode, Some(0o640));
    assert!(node("rw-r-----").unwrap_err().contains("not an integer"));
    assert!(node("-1").is_err());
}

#[test]
fn versions() {
    for ok in [
        "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.0.1", "1.1.0", "v0.6.0",
    ] {
        assert!(spec::parse_version(ok).is_ok(), "{ok}");
    }
    let newer = spec::parse_version("2.0.0").unwrap_err();
    assert!(
        newer.contains("newer") && newer.contains("1.1.0"),
        "{newer}"
    );
    assert!(spec::parse_version("1.2.0").unwrap_err().contains("newer"));
    assert!(spec::parse_version("0.2.0").unwrap_err().contains("0.3.0"));
    assert!(spec::parse_version("1.0").is_err());
    assert!(spec::parse_version("latest").is_err());
}

/// Each refused for the reason `cdi validate` gives; the message says which.
#[test]
fn refusals() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "x.yaml",
            "cdiVersion: 0.3.0\nkind: vendor.com/dev\ndevices:\n- name: a\n  containerEdits:\n    env: [A=1]\n    colour: red\n",
            "colour",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"9.0.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"env":["A=1"]}}]}"#,
            "newer",
        ),
        // hostPath needs 0.5.0, mount type 0.4.0, annotations 0.6.0, additionalGids 0.7.0.
        (
            "x.json",
            r#"{"cdiVersion":"0.4.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"deviceNodes":[{"path":"/dev/a","hostPath":"/dev/null"}]}}]}"#,
            "0.5.0",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.3.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"mounts":[{"hostPath":"/a","containerPath":"/a","type":"bind"}]}}]}"#,
            "0.4.0",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.5.0","kind":"vendor.com/dev","annotations":{"a":"b"},"devices":[{"name":"a","containerEdits":{"env":["A=1"]}}]}"#,
            "0.6.0",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"additionalGids":[5]}}]}"#,
            "0.7.0",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.4.0","kind":"vendor.com/dev","devices":[{"name":"0","containerEdits":{"env":["A=1"]}}]}"#,
            "0.5.0",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor","devices":[{"name":"a","containerEdits":{"env":["A=1"]}}]}"#,
            "kind",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[]}"#,
            "no devices",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a"}]}"#,
            "no containerEdits",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a-","containerEdits":{"env":["A=1"]}}]}"#,
            "end with",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"env":["A=1"]}},{"name":"a","containerEdits":{"env":["A=1"]}}]}"#,
            "twice",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"env":["=1"]}}]}"#,
            "KEY=VALUE",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"hooks":[{"hookName":"preStart","path":"/x"}]}}]}"#,
            "hook name",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"deviceNodes":[{"path":"/dev/a","type":"x"}]}}]}"#,
            "type",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"deviceNodes":[{"path":"/dev/a","permissions":"rwx"}]}}]}"#,
            "permissions",
        ),
        (
            "x.json",
            r#"{"cdiVersion":"0.6.0","kind":"vendor.com/dev","devices":[{"name":"a","containerEdits":{"mounts":[{"hostPath":"","containerPath":"/a"}]}}]}"#,
            "mount",
        ),
        ("x.json", "[1, 2]", "invalid type"),
        ("x.yaml", "", "cdiVersion"),
    ];
    for (name, text, expected) in cases {
        let err = parse(name, text).expect_err(text);
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn nulls_and_newer_fields_read() {
    let spec = parse(
        "x.yaml",
        "cdiVersion: 1.1.0\nkind: vendor.com/net\ncontainerEdits:\n  env: ~\ndevices:\n- name: eth\n  containerEdits:\n    netDevices:\n    - hostInterfaceName: eth9\n      name: net1\n    intelRdt:\n      closID: c1\n      enableMonitoring: true\n",
    )
    .unwrap();
    assert!(spec.container_edits.env.is_empty());
    assert_eq!(spec.devices[0].container_edits.net_devices[0].name, "net1");
    // netDevices would move a host interface into the pod: refused at injection.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("n.yaml"),
        "cdiVersion: 1.1.0\nkind: vendor.com/net\ndevices:\n- name: eth\n  containerEdits:\n    netDevices:\n    - hostInterfaceName: eth9\n      name: net1\n",
    )
    .unwrap();
    let err = Registry::load(&[dir.path().to_owned()])
        .inject(&["vendor.com/net=eth".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("vendor.com/net=eth") && err.contains("netDevices"),
        "{err}"
    );
}

#[test]
fn requested_devices_from_the_field_then_annotations_once_each() {
    let config = crate::cri::v1::ContainerConfig {
        cdi_devices: vec![crate::cri::v1::CdiDevice {
            name: "vendor.com/dev=a".into(),
        }],
        annotations: [
            ("cdi.k8s.io/z".to_owned(), "vendor.com/dev=c".to_owned()),
            (
                "cdi.k8s.io/b".to_owned(),
                "vendor.com/dev=b,vendor.com/dev=a".to_owned(),
            ),
            ("other".to_owned(), "vendor.com/dev=x".to_owned()),
        ]
        .into(),
        ..Default::default()
    };
    assert_eq!(
        requested(&config),
        ["vendor.com/dev=a", "vendor.com/dev=b", "vendor.com/dev=c"]
    );
}
