//! Invocation logic with shell-script plugins (no root, no real networking).

use super::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

/// A bin dir of fake plugins that log every call (stdin, environment) into `log/`.
struct Fixture {
    dir: tempfile::TempDir,
}

const RECORDER: &str = r#"#!/bin/sh
d=$(dirname "$0"); t=$(basename "$0")
cat > "$d/log/$t-$CNI_COMMAND.stdin"
env > "$d/log/$t-$CNI_COMMAND.env"
echo "$t $CNI_COMMAND" >> "$d/log/calls"
if [ "$CNI_COMMAND" = ADD ] && [ -f "$0.result" ]; then cat "$0.result"; fi
exit 0
"#;

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::create_dir(dir.path().join("bin/log")).unwrap();
        Fixture { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn plugin(&self, name: &str, script: &str, result: Option<Value>) {
        let p = self.bin().join(name);
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        if let Some(r) = result {
            std::fs::write(self.bin().join(format!("{name}.result")), r.to_string()).unwrap();
        }
    }

    fn cni(&self) -> Cni {
        Cni::new(
            vec![self.dir.path().join("nothing-here"), self.bin()],
            self.dir.path().join("cache/results"),
        )
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.bin().join("log/calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn stdin(&self, plugin: &str, command: &str) -> Value {
        let text =
            std::fs::read_to_string(self.bin().join(format!("log/{plugin}-{command}.stdin")))
                .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn env(&self, plugin: &str, command: &str) -> BTreeMap<String, String> {
        std::fs::read_to_string(self.bin().join(format!("log/{plugin}-{command}.env")))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn cache_files(&self) -> Vec<String> {
        match std::fs::read_dir(self.dir.path().join("cache/results")) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect(),
            Err(_) => vec![],
        }
    }
}

fn list(version: &str, plugins: Value) -> NetworkList {
    NetworkList {
        file: "/etc/cni/net.d/10-test.conflist".into(),
        name: "testnet".into(),
        cni_version: version.into(),
        plugins: plugins.as_array().unwrap().clone(),
    }
}

fn attachment(netns: &Path) -> Attachment {
    Attachment {
        container_id: "c0ffee".into(),
        netns: netns.to_owned(),
        ifname: "eth0".into(),
        args: vec![
            ("K8S_POD_NAMESPACE".into(), "default".into()),
            ("K8S_POD_NAME".into(), "web".into()),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), "c0ffee".into()),
            ("K8S_POD_UID".into(), "uid-1".into()),
        ],
        port_mappings: vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: String::new(),
        }],
    }
}

fn ip_result(ip: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "br0"}, {"name": "eth0", "sandbox": "/x"}],
        "ips": [{"address": ip, "gateway": "10.231.0.1", "interface": 1}]
    })
}

#[tokio::test]
async fn add_chains_results_and_passes_capabilities_only_to_declaring_plugins() {
    let fx = Fixture::new();
    fx.plugin("ipam-ish", RECORDER, Some(ip_result("10.231.0.5/24")));
    let mut second = ip_result("10.231.0.5/24");
    second["dns"] = json!({"nameservers": ["10.231.0.1"]});
    fx.plugin("portmap-ish", RECORDER, Some(second.clone()));
    fx.plugin("other", RECORDER, Some(second.clone()));
    let net = list(
        "1.0.0",
        json!([
            {"type": "ipam-ish", "bridge": "x", "runtimeConfig": {"keep": 1}},
            {"type": "portmap-ish", "capabilities": {"portMappings": true}, "snat": true},
            {"type": "other", "capabilities": {"portMappings": false, "bandwidth": true}}
        ]),
    );
    let netns = fx.dir.path().join("not-a-netns");
    let att = attachment(&netns);
    let added = fx.cni().add(&net, &att).await.unwrap();

    assert_eq!(fx.calls(), ["ipam-ish ADD", "portmap-ish ADD", "other ADD"]);
    assert_eq!(added.raw, second);
    assert_eq!(
        added.pod_ips("eth0").collect::<Vec<_>>(),
        ["10.231.0.5".parse::<IpAddr>().unwrap()]
    );

    let first = fx.stdin("ipam-ish", "ADD");
    assert_eq!(first["name"], "testnet");
    assert_eq!(first["cniVersion"], "1.0.0");
    assert_eq!(first["bridge"], "x");
    assert!(first.get("prevResult").is_none());
    // Nothing declared: the file's own runtimeConfig is left alone.
    assert_eq!(first["runtimeConfig"], json!({"keep": 1}));

    let pm = fx.stdin("portmap-ish", "ADD");
    assert_eq!(pm["prevResult"], ip_result("10.231.0.5/24"));
    assert_eq!(
        pm["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
    let other = fx.stdin("other", "ADD");
    assert_eq!(other["prevResult"], second);
    assert!(other.get("runtimeConfig").is_none());

    let env = fx.env("ipam-ish", "ADD");
    assert_eq!(env["CNI_COMMAND"], "ADD");
    assert_eq!(env["CNI_CONTAINERID"], "c0ffee");
    assert_eq!(env["CNI_IFNAME"], "eth0");
    assert_eq!(env["CNI_NETNS"], netns.display().to_string());
    assert_eq!(
        env["CNI_ARGS"],
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=uid-1"
    );
    assert_eq!(
        env["CNI_PATH"],
        format!(
            "{}:{}",
            fx.dir.path().join("nothing-here").display(),
            fx.bin().display()
        )
    );
    assert!(env.contains_key("PATH"));
    // The daemon's own environment is not passed on.
    assert!(
        !env.keys().any(|k| k.starts_with("CARGO") || k == "HOME"),
        "{env:?}"
    );

    assert_eq!(fx.cache_files(), ["testnet-c0ffee-eth0.json"]);
    let cached = fx.cni().cached_attachments("c0ffee").await.unwrap();
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0].network, "testnet");
    assert_eq!(cached[0].attachment, att);
    assert_eq!(cached[0].result.as_ref(), Some(&second));
    assert_eq!(cached[0].ips()[0].prefix, 24);
    assert!(
        fx.cni()
            .cached_attachments("other")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn del_after_restart_uses_the_cached_config_result_and_runtime_config() {
    let fx = Fixture::new();
    fx.plugin("a", RECORDER, Some(ip_result("10.231.0.6/24")));
    fx.plugin("b", RECORDER, Some(ip_result("10.231.0.6/24")));
    let net = list(
        "1.0.0",
        json!([{"type": "a"}, {"type": "b", "capabilities": {"portMappings": true}}]),
    );
    let att = attachment(&fx.dir.path().join("ns"));
    fx.cni().add(&net, &att).await.unwrap();

    // A new daemon, with only the container ID and interface, and a config that changed.
    let cni = fx.cni();
    let cached = cni.cached_attachments("c0ffee").await.unwrap();
    let restart_att = Attachment {
        container_id: "c0ffee".into(),
        ifname: "eth0".into(),
        ..Default::default()
    };
    assert_eq!(cached[0].attachment.ifname, restart_att.ifname);
    cni.del(cached[0].network.as_str(), &restart_att)
        .await
        .unwrap();
    assert_eq!(fx.calls()[2..], ["b DEL", "a DEL"]);
    let b = fx.stdin("b", "DEL");
    assert_eq!(b["prevResult"], ip_result("10.231.0.6/24"));
    assert_eq!(b["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    let env = fx.env("b", "DEL");
    assert_eq!(env["CNI_COMMAND"], "DEL");
    // The recorded netns is not a network namespace (any more): DEL gets it empty.
    assert_eq!(env["CNI_NETNS"], "");
    assert!(env["CNI_ARGS"].contains("K8S_POD_NAME=web"), "{env:?}");
    assert!(fx.cache_files().is_empty());

    // Again: nothing cached, only a name → nothing to run, success.
    cni.del("testnet", &restart_att).await.unwrap();
    assert_eq!(fx.calls().len(), 4);
    // With the current list and no cache, DEL runs without prevResult.
    cni.del(&net, &att).await.unwrap();
    assert_eq!(fx.calls()[4..], ["b DEL", "a DEL"]);
    assert!(fx.stdin("b", "DEL").get("prevResult").is_none());
}

#[tokio::test]
async fn del_of_a_pre_0_4_0_list_sends_no_prev_result() {
    let fx = Fixture::new();
    fx.plugin("a", RECORDER, Some(ip_result("10.231.0.7/24")));
    let net = list("0.3.1", json!([{"type": "a"}]));
    let att = attachment(&fx.dir.path().join("ns"));
    fx.cni().add(&net, &att).await.unwrap();
    fx.cni().del(&net, &att).await.unwrap();
    assert!(fx.stdin("a", "DEL").get("prevResult").is_none());
    assert!(fx.cache_files().is_empty());
}

#[tokio::test]
async fn a_failing_plugin_is_named_with_its_message_and_add_is_undone() {
    let fx = Fixture::new();
    fx.plugin("good", RECORDER, Some(ip_result("10.231.0.8/24")));
    fx.plugin(
        "broken",
        r#"#!/bin/sh
echo "$(basename "$0") $CNI_COMMAND" >> "$(dirname "$0")/log/calls"
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","code":7,"msg":"bridge is on fire","details":"try turning it off"}'
  exit 1
fi
"#,
        None,
    );
    let net = list("1.0.0", json!([{"type": "good"}, {"type": "broken"}]));
    let err = fx
        .cni()
        .add(&net, &attachment(&fx.dir.path().join("ns")))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            &err,
            CniError::Plugin {
                code: 7,
                command: Command::Add,
                ..
            }
        ),
        "{err:?}"
    );
    for needle in [
        "\"broken\"",
        "ADD",
        "bridge is on fire",
        "try turning it off",
        "testnet",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    // Undone: DEL of every plugin in reverse order, and no cache entry left.
    assert_eq!(
        fx.calls(),
        ["good ADD", "broken ADD", "broken DEL", "good DEL"]
    );
    assert!(fx.cache_files().is_empty());
}

#[tokio::test]
async fn a_plugin_failing_without_cni_error_shows_its_output() {
    let fx = Fixture::new();
    fx.plugin(
        "crashy",
        "#!/bin/sh\necho 'panic: nil map' >&2\nexit 2\n",
        None,
    );
    let net = list("1.0.0", json!([{"type": "crashy"}]));
    let err = fx
        .cni()
        .add(&net, &attachment(&fx.dir.path().join("ns")))
        .await
        .unwrap_err();
    assert!(matches!(err, CniError::PluginExit { .. }), "{err:?}");
    assert!(err.to_string().contains("panic: nil map"), "{err}");
    // Its DEL failed too, so the entry stays for a later DEL to retry.
    assert_eq!(fx.cache_files(), ["testnet-c0ffee-eth0.json"]);
}

#[tokio::test]
async fn a_missing_plugin_is_reported_before_anything_runs() {
    let fx = Fixture::new();
    fx.plugin("good", RECORDER, Some(ip_result("10.231.0.9/24")));
    let net = list("1.0.0", json!([{"type": "good"}, {"type": "notinstalled"}]));
    let err = fx
        .cni()
        .add(&net, &attachment(&fx.dir.path().join("ns")))
        .await
        .unwrap_err();
    assert!(matches!(err, CniError::PluginNotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("\"notinstalled\""), "{text}");
    assert!(text.contains(&fx.bin().display().to_string()), "{text}");
    assert!(fx.calls().is_empty());
    assert!(fx.cache_files().is_empty());
}

#[tokio::test]
async fn a_hanging_plugin_is_killed() {
    let fx = Fixture::new();
    fx.plugin(
        "slow",
        "#!/bin/sh\nsleep 30 &\necho $! > \"$(dirname \"$0\")/log/slow.pid\"\nwait\n",
        None,
    );
    let net = list("1.0.0", json!([{"type": "slow"}]));
    let mut cni = fx.cni();
    cni.plugin_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = cni
        .add(&net, &attachment(&fx.dir.path().join("ns")))
        .await
        .unwrap_err();
    // ADD and the clean-up DEL each time out.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, CniError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("\"slow\""), "{err}");
    // What the plugin started was killed with it (its process group).
    let pid = std::fs::read_to_string(fx.bin().join("log/slow.pid")).unwrap();
    let stat = PathBuf::from(format!("/proc/{}/stat", pid.trim()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(Instant::now() < deadline, "the plugin's child survived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn check_needs_0_4_0_and_a_cached_result() {
    let fx = Fixture::new();
    fx.plugin("a", RECORDER, Some(ip_result("10.231.0.10/24")));
    let att = attachment(&fx.dir.path().join("ns"));
    let old = list("0.3.1", json!([{"type": "a"}]));
    assert!(matches!(
        fx.cni().check(&old, &att).await,
        Err(CniError::CheckUnsupported { .. })
    ));
    let net = list(
        "1.0.0",
        json!([{"type": "a", "capabilities": {"portMappings": true}}]),
    );
    let err = fx.cni().check(&net, &att).await.unwrap_err();
    assert!(matches!(err, CniError::NotAdded { .. }), "{err:?}");
    fx.cni().add(&net, &att).await.unwrap();
    let bare = Attachment {
        container_id: att.container_id.clone(),
        ifname: att.ifname.clone(),
        ..Default::default()
    };
    fx.cni().check(&net, &bare).await.unwrap();
    let check = fx.stdin("a", "CHECK");
    assert_eq!(check["prevResult"], ip_result("10.231.0.10/24"));
    assert_eq!(
        check["runtimeConfig"]["portMappings"][0]["containerPort"],
        80
    );
}

#[tokio::test]
async fn bad_attachments_are_refused() {
    let fx = Fixture::new();
    let net = list("1.0.0", json!([{"type": "a"}]));
    let good = attachment(&fx.dir.path().join("ns"));
    let cases = [
        Attachment {
            container_id: "../../etc".into(),
            ..good.clone()
        },
        Attachment {
            container_id: String::new(),
            ..good.clone()
        },
        Attachment {
            ifname: "a-very-long-ifname0".into(),
            ..good.clone()
        },
        Attachment {
            ifname: "et/h0".into(),
            ..good.clone()
        },
        Attachment {
            args: vec![("K".into(), "a;b".into())],
            ..good.clone()
        },
    ];
    for att in cases {
        let err = fx.cni().add(&net, &att).await.unwrap_err();
        assert!(matches!(err, CniError::InvalidAttachment(_)), "{err:?}");
        let err = fx.cni().del(&net, &att).await.unwrap_err();
        assert!(matches!(err, CniError::InvalidAttachment(_)), "{err:?}");
    }
    let err = fx.cni().del("../x", &good).await.unwrap_err();
    assert!(matches!(err, CniError::InvalidAttachment(_)), "{err:?}");
    assert!(fx.cache_files().is_empty());
}

#[test]
fn versions_compare_numerically() {
    assert!(version_at_least("0.4.0", (0, 4, 0)));
    assert!(version_at_least("1.0.0", (0, 4, 0)));
    assert!(version_at_least("0.10.0", (0, 4, 0)));
    assert!(!version_at_least("0.3.1", (0, 4, 0)));
    assert!(!version_at_least("bogus", (0, 4, 0)));
}

#[test]
fn port_mappings_serialise_as_cni_spells_them() {
    let pm = PortMapping {
        host_port: 80,
        container_port: 8080,
        protocol: "udp".into(),
        host_ip: "127.0.0.1".into(),
    };
    assert_eq!(
        serde_json::to_value(&pm).unwrap(),
        json!({"hostPort": 80, "containerPort": 8080, "protocol": "udp", "hostIP": "127.0.0.1"})
    );
    let back: PortMapping =
        serde_json::from_value(json!({"hostPort": 80, "containerPort": 8080, "protocol": "udp"}))
            .unwrap();
    assert_eq!(back.host_ip, "");
}
