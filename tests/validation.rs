//! Validation at the door, through the real daemon: the nasty requests of issue 13 are
//! answered InvalidArgument naming the field, and nothing was made for them — no pod folder
//! (so no netns pin), cgroup, CNI lease or cache entry, container folder, record or process.
//! The daemon's log shows the refusals as plain text.

mod common;

use common::pods::*;
use ferrocri::cri::v1::*;
use tonic::Code;

/// A cgroup parent of this test's own, so a cgroup made by mistake is easy to see.
fn parent() -> String {
    format!("/fcvalid{}", std::process::id())
}

fn good_pod(name: &str) -> PodSandboxConfig {
    let mut config = pod_config(name, "fcvalid-ns", &format!("uid-{name}"), 0);
    config.linux.as_mut().unwrap().cgroup_parent = parent();
    config
}

fn assert_refused(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    assert!(
        status.message().starts_with(field),
        "{what}: message {:?} does not name {field}",
        status.message()
    );
}

/// What a refused request could have left: the env's own checks plus our cgroup parent and
/// container folders.
async fn leftovers(env: &PodEnv, keep_pod: Option<&str>) -> Vec<String> {
    let mut found: Vec<String> = env
        .kernel_leftovers(&[])
        .into_iter()
        .filter(|f| keep_pod.is_none_or(|id| !f.contains(id)))
        .filter(|f| {
            keep_pod.is_none()
                || !f.starts_with("lease left")
                    && !f.starts_with("CNI cache")
                    && !f.starts_with("veth left")
        })
        .collect();
    for dir in cgroup_dirs(&parent()) {
        let children: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name())
                    .collect()
            })
            .unwrap_or_default();
        let unexpected = children
            .iter()
            .filter(|c| keep_pod.is_none_or(|id| c.to_string_lossy() != id))
            .count();
        if keep_pod.is_none() || unexpected > 0 {
            found.push(format!("cgroup left: {} ({children:?})", dir.display()));
        }
    }
    if let Ok(entries) = std::fs::read_dir(env.daemon.root().join("containers")) {
        for e in entries.flatten() {
            found.push(format!("container folder left: {:?}", e.file_name()));
        }
    }
    found
}

#[tokio::test]
async fn nasty_requests_are_refused_at_the_door_and_leave_nothing() {
    let env = PodEnv::start(3, Chain::Standard);
    let mut rt = env.runtime().await;

    // RunPodSandbox: each case breaks one field of an otherwise good pod.
    let mut cases: Vec<(&str, &str, PodSandboxConfig)> = Vec::new();
    let mut c = good_pod("nul");
    c.metadata.as_mut().unwrap().name = "web\0evil".into();
    cases.push(("NUL in pod metadata", "config.metadata.name", c));
    let mut c = good_pod("nulns");
    c.metadata.as_mut().unwrap().namespace = "ns\0".into();
    cases.push(("NUL in pod namespace", "config.metadata.namespace", c));
    let mut c = good_pod("long-host");
    c.hostname = "h".repeat(65);
    cases.push(("over-long hostname", "config.hostname", c));
    let mut c = good_pod("sysctl");
    c.linux.as_mut().unwrap().sysctls = labels(&[("net.ipv4.ip_forward", "yes please")]);
    cases.push(("non-numeric sysctl value", "config.linux.sysctls", c));
    let mut c = good_pod("sysctl-host");
    c.linux.as_mut().unwrap().sysctls = labels(&[("kernel.panic", "1")]);
    cases.push(("sysctl that is not namespaced", "config.linux.sysctls", c));
    let mut c = good_pod("dns");
    c.dns_config = Some(DnsConfig {
        searches: vec!["a.example\nnameserver 6.6.6.6".into()],
        ..Default::default()
    });
    cases.push((
        "newline in a DNS search",
        "config.dns_config.searches[0]",
        c,
    ));
    let mut c = good_pod("logdir");
    c.log_directory = "relative/logs".into();
    cases.push(("relative log directory", "config.log_directory", c));
    let mut c = good_pod("label");
    c.labels = labels(&[("bad key", "v")]);
    cases.push(("label key with a space", "config.labels", c));
    let mut c = good_pod("port");
    c.port_mappings = vec![PortMapping {
        container_port: 70000,
        ..Default::default()
    }];
    cases.push((
        "port out of range",
        "config.port_mappings[0].container_port",
        c,
    ));
    for (what, field, config) in cases {
        assert_refused(rt.run_pod_sandbox(run_request(config)).await, field, what);
    }
    // Bytes that are not UTF-8 in a string field never reach a handler.
    let mut raw = vec![0x0a, 0x0a, 0x0a, 0x08, 0x0a, 0x06];
    raw.extend_from_slice(b"w\xffeb-0");
    let status = common::call_raw(
        env.daemon.channel().await,
        "/runtime.v1.RuntimeService/RunPodSandbox",
        raw,
    )
    .await
    .expect_err("invalid UTF-8");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let found = leftovers(&env, None).await;
    assert!(
        found.is_empty(),
        "left behind by refused pods:\n  {}",
        found.join("\n  ")
    );
    let listed = rt
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(listed.is_empty(), "{listed:?}");

    // CreateContainer in a real pod: no image is needed, the request never gets that far.
    let pod = rt
        .run_pod_sandbox(run_request(good_pod("web-0")))
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", log_tail(&env.daemon.log(), 40)))
        .into_inner()
        .pod_sandbox_id;
    env.note(&pod);
    let container = |f: &dyn Fn(&mut ContainerConfig)| {
        let mut c = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: "127.0.0.1:5000/busybox:never-pulled".into(),
                ..Default::default()
            }),
            command: vec!["/bin/true".into()],
            ..Default::default()
        };
        f(&mut c);
        c
    };
    let cases: Vec<(&str, &str, String, ContainerConfig)> = vec![
        (
            "relative mount source",
            "config.mounts[0].host_path",
            pod.clone(),
            container(&|c| {
                c.mounts = vec![Mount {
                    container_path: "/data".into(),
                    host_path: "data".into(),
                    ..Default::default()
                }]
            }),
        ),
        (
            "invalid working dir",
            "config.working_dir",
            pod.clone(),
            container(&|c| c.working_dir = "srv/app".into()),
        ),
        (
            "NUL in an argument",
            "config.args[0]",
            pod.clone(),
            container(&|c| c.args = vec!["a\0b".into()]),
        ),
        (
            "log path climbing out",
            "config.log_path",
            pod.clone(),
            container(&|c| c.log_path = "../../etc/cron.d/x".into()),
        ),
        (
            "negative memory limit",
            "config.linux.resources.memory_limit_in_bytes",
            pod.clone(),
            container(&|c| {
                c.linux = Some(LinuxContainerConfig {
                    resources: Some(LinuxContainerResources {
                        memory_limit_in_bytes: -1,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }),
        ),
        (
            "empty pod_sandbox_id",
            "pod_sandbox_id",
            String::new(),
            container(&|_| {}),
        ),
    ];
    for (what, field, pod_sandbox_id, config) in cases {
        let request = CreateContainerRequest {
            pod_sandbox_id,
            config: Some(config),
            sandbox_config: Some(good_pod("web-0")),
        };
        assert_refused(rt.create_container(request).await, field, what);
    }
    let containers = rt
        .list_containers(ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(containers.is_empty(), "{containers:?}");
    let found = leftovers(&env, Some(&pod)).await;
    assert!(
        found.is_empty(),
        "left behind by refused containers:\n  {}",
        found.join("\n  ")
    );

    // The daemon's log carries the refusals as plain text.
    let log = env.daemon.log();
    assert!(
        log.contains("config.working_dir: \"srv/app\" must be an absolute path"),
        "{}",
        log_tail(&log, 20)
    );
    for encoded in ["%20", "%22", "%3A"] {
        assert!(
            !log.contains(encoded),
            "percent-encoding {encoded} in the log"
        );
    }

    stop_and_remove_pod(&mut rt, &pod).await;
    env.assert_clean(std::slice::from_ref(&pod)).await;
}
