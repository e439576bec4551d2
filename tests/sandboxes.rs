//! Pod sandbox RPCs against the real daemon, as root: namespaces, network (bridge, host-local,
//! portmap from /usr/lib/cni), cgroups, monitor and pause, and everything they leave behind
//! (nothing). Each test has its own bridge (`fcpt<hex>`), a private /24 no other test uses
//! (10.230+slot.x.0/24), its own CNI conf and lease folders, and a guard that removes whatever
//! a failing test left. Traffic only ever goes to 127.0.0.1 or pod addresses.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::pods::*;
use ferrocri::cri::v1::*;
use futures::StreamExt;
use tonic::Code;

fn sysctls(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    labels(pairs)
}

fn read(path: impl AsRef<std::path::Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn assert_nothing(found: Vec<String>, env: &PodEnv) {
    assert!(
        found.is_empty(),
        "left behind:\n  {}\ndaemon log tail:\n{}",
        found.join("\n  "),
        log_tail(&env.daemon.log(), 60)
    );
}

#[tokio::test]
async fn lifecycle_run_inspect_list_stats_stop_remove() {
    let env = PodEnv::start(0, Chain::Standard);
    let mut rt = env.runtime().await;
    let host_port_start = read("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    let host_shm_rmid = read("/proc/sys/kernel/shm_rmid_forced");

    let mut config = pod_config("web-0", "fcpt-ns", "uid-lifecycle", 0);
    config.hostname = "fcpt-host-a".into();
    config.log_directory = env
        .daemon
        .dir
        .path()
        .join("logs/fcpt-ns_web-0")
        .display()
        .to_string();
    config.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into(), "10.96.0.11".into()],
        searches: vec![
            "fcpt-ns.svc.cluster.local".into(),
            "svc.cluster.local".into(),
        ],
        options: vec!["ndots:5".into(), "timeout:2".into()],
    });
    config.labels = labels(&[("app", "web"), ("tier", "front")]);
    config.annotations = labels(&[("fcpt.example/note", "hello"), ("other", "x")]);
    config.linux.as_mut().unwrap().sysctls = sysctls(&[
        ("net.ipv4.ip_unprivileged_port_start", "0"),
        ("kernel.shm_rmid_forced", "1"),
    ]);

    let id = rt
        .run_pod_sandbox(run_request(config.clone()))
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", log_tail(&env.daemon.log(), 40)))
        .into_inner()
        .pod_sandbox_id;
    env.note(&id);
    assert!(is_id(&id), "{id:?} is not 64 hex digits");

    // Status echoes the configuration and reports the pod up.
    let (st, info) = status(&mut rt, &id).await;
    assert_eq!(st.id, id);
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(st.metadata, config.metadata);
    assert_eq!(st.labels, config.labels);
    assert_eq!(st.annotations, config.annotations);
    assert!(st.created_at > 0);
    let ip = st.network.as_ref().unwrap().ip.clone();
    assert!(env.in_subnet(&ip), "pod IP {ip:?} not in {}/24", env.subnet);
    assert_eq!(info.ip, ip);
    assert_eq!(info.network, env.bridge);
    let options = config
        .linux
        .as_ref()
        .unwrap()
        .security_context
        .as_ref()
        .unwrap()
        .namespace_options
        .clone();
    assert_eq!(
        st.linux
            .as_ref()
            .unwrap()
            .namespaces
            .as_ref()
            .unwrap()
            .options,
        options
    );
    assert!(info.pid > 0 && info.monitor_pid > 0, "{:?}", info.raw);
    let pin = info.netns.clone().expect("a pod network has a netns pin");
    assert!(pin.starts_with(env.state_dir()), "{}", pin.display());
    assert!(
        info.dir.starts_with(env.pods_dir()),
        "{}",
        info.dir.display()
    );

    // The monitor runs from its own small binary, beside the daemon's.
    let monitor_exe = std::fs::read_link(format!("/proc/{}/exe", info.monitor_pid)).unwrap();
    let daemon_dir = std::path::Path::new(common::BIN).parent().unwrap();
    assert_eq!(monitor_exe, daemon_dir.join("ferrocri-monitor"));

    // What ps shows: the monitor names its pod, the pause its pod ID; never the pod dir.
    let short_id = &id[..13];
    assert_eq!(comm(info.monitor_pid), "ferrocri-monito");
    assert_eq!(
        cmdline_words(info.monitor_pid),
        ["ferrocri-monitor", "fcpt-ns/web-0", short_id]
    );
    assert_eq!(comm(info.pid), "pause");
    assert_eq!(cmdline_words(info.pid), ["ferrocri-pause", short_id]);
    for (pid, title) in [
        (
            info.monitor_pid,
            format!("ferrocri-monitor fcpt-ns/web-0 {short_id}"),
        ),
        (info.pid, format!("ferrocri-pause {short_id}")),
    ] {
        let pid = pid.to_string();
        assert_eq!(run_ok("ps", &["-o", "args=", "-p", &pid]).trim(), title);
        assert_eq!(
            run_ok("ps", &["-o", "comm=", "-p", &pid]).trim(),
            comm(pid.parse().unwrap())
        );
    }

    // The pause: its network namespace, its UTS and IPC namespaces.
    assert_eq!(ns_id(format!("/proc/{}/ns/net", info.pid)), ns_id(&pin));
    assert_ne!(ns_id(&pin), ns_id("/proc/self/ns/net"));
    assert!(mounts_under(&pin).contains(&pin.display().to_string()));
    let pid = info.pid.to_string();
    assert_eq!(
        run_ok("nsenter", &["-t", &pid, "-u", "hostname"]),
        "fcpt-host-a"
    );
    assert_eq!(
        run_ok(
            "nsenter",
            &[
                "-t",
                &pid,
                "-n",
                "cat",
                "/proc/sys/net/ipv4/ip_unprivileged_port_start"
            ]
        ),
        "0"
    );
    assert_eq!(
        run_ok(
            "nsenter",
            &["-t", &pid, "-i", "cat", "/proc/sys/kernel/shm_rmid_forced"]
        ),
        "1"
    );
    // ...and the host kept its own values.
    assert_eq!(
        read("/proc/sys/net/ipv4/ip_unprivileged_port_start"),
        host_port_start
    );
    assert_eq!(read("/proc/sys/kernel/shm_rmid_forced"), host_shm_rmid);

    // resolv.conf and hosts in the pod folder.
    let resolv = read(info.dir.join("resolv.conf"));
    for line in [
        "nameserver 10.96.0.10",
        "nameserver 10.96.0.11",
        "search fcpt-ns.svc.cluster.local svc.cluster.local",
        "options ndots:5 timeout:2",
    ] {
        assert!(
            resolv.lines().any(|l| l == line),
            "{line:?} not in:\n{resolv}"
        );
    }
    let hosts = read(info.dir.join("hosts"));
    assert!(
        hosts.contains(&format!("{ip}\tfcpt-host-a\n")),
        "hosts:\n{hosts}"
    );

    // The pod cgroup holds the pause (and the monitor).
    assert_eq!(info.cgroup, format!("/ferrocri/{id}"));
    let procs = read(memory_cgroup_dir(&info.cgroup).join("cgroup.procs"));
    let procs: Vec<i32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(procs.contains(&info.pid), "pause not in {procs:?}");
    assert!(
        procs.contains(&info.monitor_pid),
        "monitor not in {procs:?}"
    );
    assert!(!cgroup_dirs(&info.cgroup).is_empty());
    assert!(env.lease_dir().join(&ip).exists(), "no lease file for {ip}");
    // What the checks after Stop look for is really there now.
    let pod_procs: Vec<i32> = processes_in_cgroup(&info.cgroup)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(
        pod_procs.contains(&info.pid) && pod_procs.contains(&info.monitor_pid),
        "{pod_procs:?}"
    );
    assert_eq!(veths_on(&env.bridge).len(), 1);
    assert_eq!(env.cni_cache_entries().len(), 1);
    assert!(
        !mounts_under(&info.dir.join("shm")).is_empty(),
        "no /dev/shm"
    );

    // ListPodSandbox filters.
    let by_prefix = list(
        &mut rt,
        Some(PodSandboxFilter {
            id: id[..12].to_owned(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(by_prefix.len(), 1);
    let item = &by_prefix[0];
    assert_eq!(item.id, id);
    assert_eq!(item.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(item.metadata, config.metadata);
    assert_eq!(item.labels, config.labels);
    assert_eq!(item.annotations, config.annotations);
    let state_filter = |state: PodSandboxState| PodSandboxFilter {
        state: Some(PodSandboxStateValue {
            state: state as i32,
        }),
        ..Default::default()
    };
    let ready = list(&mut rt, Some(state_filter(PodSandboxState::SandboxReady))).await;
    assert_eq!(ready.iter().map(|p| &p.id).collect::<Vec<_>>(), [&id]);
    assert!(
        list(
            &mut rt,
            Some(state_filter(PodSandboxState::SandboxNotready))
        )
        .await
        .is_empty()
    );
    let selector = |pairs: &[(&str, &str)]| PodSandboxFilter {
        label_selector: labels(pairs),
        ..Default::default()
    };
    let matching = list(
        &mut rt,
        Some(selector(&[("app", "web"), ("tier", "front")])),
    )
    .await;
    assert_eq!(matching.iter().map(|p| &p.id).collect::<Vec<_>>(), [&id]);
    assert!(
        list(&mut rt, Some(selector(&[("app", "db")])))
            .await
            .is_empty()
    );
    assert!(
        list(&mut rt, Some(selector(&[("missing", "x")])))
            .await
            .is_empty()
    );

    // Stats.
    let check_stats = |stats: &PodSandboxStats| {
        assert_eq!(stats.attributes.as_ref().unwrap().id, id);
        assert_eq!(stats.attributes.as_ref().unwrap().labels, config.labels);
        let linux = stats.linux.as_ref().expect("linux stats");
        assert!(
            linux
                .cpu
                .as_ref()
                .and_then(|c| c.usage_core_nano_seconds)
                .is_some(),
            "{linux:?}"
        );
        assert!(
            linux
                .memory
                .as_ref()
                .and_then(|m| m.working_set_bytes)
                .is_some(),
            "{linux:?}"
        );
        let processes = linux
            .process
            .as_ref()
            .and_then(|p| p.process_count)
            .map(|c| c.value)
            .unwrap_or_default();
        assert!(processes >= 1, "{linux:?}");
        let network = linux.network.as_ref().expect("network stats");
        assert_eq!(
            network.default_interface.as_ref().map(|i| i.name.as_str()),
            Some("eth0")
        );
        assert!(network.interfaces.iter().any(|i| i.name == "eth0"));
    };
    let one = rt
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .expect("stats");
    check_stats(&one);
    let all = rt
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest {
            filter: Some(PodSandboxStatsFilter {
                id: id.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(all.len(), 1);
    check_stats(&all[0]);
    let none = rt
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest {
            filter: Some(PodSandboxStatsFilter {
                label_selector: labels(&[("app", "db")]),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert!(none.is_empty());
    let err = rt
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: "0".repeat(64),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");

    // Stop: NOTREADY, and the pod holds nothing any more.
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    let (st, _) = status(&mut rt, &id).await;
    assert_eq!(st.state, PodSandboxState::SandboxNotready as i32);
    assert_nothing(stopped_pod_leftovers(&env, &id, &info).await, &env);
    assert!(!mounts_under(&pin).contains(&pin.display().to_string()));
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .expect("a second stop is fine");
    let (st, _) = status(&mut rt, &id).await;
    assert_eq!(st.state, PodSandboxState::SandboxNotready as i32);
    let notready = list(
        &mut rt,
        Some(state_filter(PodSandboxState::SandboxNotready)),
    )
    .await;
    assert_eq!(notready.iter().map(|p| &p.id).collect::<Vec<_>>(), [&id]);

    // Remove: gone from everywhere.
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    assert!(list(&mut rt, None).await.is_empty());
    let err = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(!info.dir.exists(), "{} still exists", info.dir.display());
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .expect("a second remove is fine");
    for unknown in ["0".repeat(64), "fcpt-unknown".to_owned()] {
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: unknown.clone(),
        })
        .await
        .expect("stopping an unknown sandbox is fine");
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: unknown,
        })
        .await
        .expect("removing an unknown sandbox is fine");
    }
    env.assert_clean(std::slice::from_ref(&id)).await;
}

#[tokio::test]
async fn host_network_pod_shares_the_host_netns_and_cleans_up() {
    let env = PodEnv::start(1, Chain::Standard);
    let mut rt = env.runtime().await;
    let mut config = pod_config("hostnet", "fcpt-ns", "uid-hostnet", 0);
    let options = config
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap();
    options.network = NamespaceMode::Node as i32;
    let id = rt
        .run_pod_sandbox(run_request(config.clone()))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    env.note(&id);
    let (st, info) = status(&mut rt, &id).await;
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(st.network.as_ref().unwrap().ip, "");
    assert!(st.network.as_ref().unwrap().additional_ips.is_empty());
    assert_eq!(
        st.linux
            .as_ref()
            .unwrap()
            .namespaces
            .as_ref()
            .unwrap()
            .options
            .as_ref()
            .unwrap()
            .network,
        NamespaceMode::Node as i32
    );
    assert_eq!(info.netns, None, "{:?}", info.raw);
    assert!(!info.dir.join("ns").join("net").exists());
    assert_eq!(comm(info.pid), "pause");
    // This test runs in the host's network namespace (as the daemon does); /proc/1 may not be
    // readable in a VM whose init is not dumpable.
    assert_eq!(
        ns_id(format!("/proc/{}/ns/net", info.pid)),
        ns_id("/proc/self/ns/net")
    );
    if let Ok(init) = std::fs::metadata("/proc/1/ns/net") {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            ns_id(format!("/proc/{}/ns/net", info.pid)),
            (init.dev(), init.ino())
        );
    }
    // The host's UTS namespace too, so the host's name.
    let host = nix::unistd::gethostname().unwrap();
    assert_eq!(
        run_ok("nsenter", &["-t", &info.pid.to_string(), "-u", "hostname"]),
        host.to_string_lossy()
    );
    assert!(env.leased_ips().is_empty(), "{:?}", env.leased_ips());
    assert!(env.cni_cache_entries().is_empty());

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    let (st, _) = status(&mut rt, &id).await;
    assert_eq!(st.state, PodSandboxState::SandboxNotready as i32);
    assert_nothing(stopped_pod_leftovers(&env, &id, &info).await, &env);
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    env.assert_clean(&[id]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_share_one_sandbox_and_later_ones_are_already_exists() {
    let env = PodEnv::start(2, Chain::Standard);
    let rt = env.runtime().await;
    let config = pod_config("retry", "fcpt-ns", "uid-retry", 0);
    let calls = (0..5).map(|_| {
        let mut rt = rt.clone();
        let config = config.clone();
        async move {
            rt.run_pod_sandbox(run_request(config))
                .await
                .map(|r| r.into_inner().pod_sandbox_id)
        }
    });
    let results = futures::future::join_all(calls).await;
    let ids: Vec<String> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("a concurrent RunPodSandbox failed: {e}")))
        .collect();
    for id in &ids {
        env.note(id);
    }
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        1,
        "{:?}",
        tally(&ids)
    );
    let id = ids[0].clone();
    let mut rt = rt.clone();
    let listed = list(&mut rt, None).await;
    assert_eq!(listed.iter().map(|p| &p.id).collect::<Vec<_>>(), [&id]);
    assert_eq!(env.pod_dirs(), std::slice::from_ref(&id));
    assert_eq!(env.leased_ips().len(), 1);

    let err = rt
        .run_pod_sandbox(run_request(config.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    assert!(err.message().contains(&id), "{err}");
    assert_eq!(list(&mut rt, None).await.len(), 1);

    let mut next = config.clone();
    next.metadata.as_mut().unwrap().attempt = 1;
    let second = rt
        .run_pod_sandbox(run_request(next))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    env.note(&second);
    assert_ne!(second, id);
    let listed: BTreeSet<String> = list(&mut rt, None)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(listed, BTreeSet::from([id.clone(), second.clone()]));

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    // Remove without Stop tears down too.
    for pod in [&id, &second] {
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    }
    env.assert_clean(&[id, second]).await;
}

#[tokio::test]
async fn bad_requests_are_invalid_arguments_naming_the_field_and_leave_nothing() {
    let env = PodEnv::start(3, Chain::Standard);
    let mut rt = env.runtime().await;
    let good = pod_config("bad", "fcpt-ns", "uid-bad", 0);
    let with = |f: &dyn Fn(&mut PodSandboxConfig)| {
        let mut c = good.clone();
        f(&mut c);
        run_request(c)
    };
    let cases: Vec<(&str, RunPodSandboxRequest, &str)> = vec![
        (
            "no config",
            RunPodSandboxRequest {
                config: None,
                runtime_handler: String::new(),
            },
            "config",
        ),
        (
            "no metadata",
            with(&|c| c.metadata = None),
            "config.metadata",
        ),
        (
            "empty name",
            with(&|c| c.metadata.as_mut().unwrap().name.clear()),
            "config.metadata.name",
        ),
        (
            "empty namespace",
            with(&|c| c.metadata.as_mut().unwrap().namespace.clear()),
            "config.metadata.namespace",
        ),
        (
            "empty uid",
            with(&|c| c.metadata.as_mut().unwrap().uid.clear()),
            "config.metadata.uid",
        ),
        (
            "unknown runtime handler",
            RunPodSandboxRequest {
                config: Some(good.clone()),
                runtime_handler: "fcpt-no-such-handler".into(),
            },
            "runtime_handler",
        ),
        (
            "sysctl climbing out of /proc/sys",
            with(&|c| {
                c.linux.as_mut().unwrap().sysctls = sysctls(&[("net/../../etc/passwd", "1")])
            }),
            "config.linux.sysctls",
        ),
        (
            "sysctl with an empty component",
            with(&|c| c.linux.as_mut().unwrap().sysctls = sysctls(&[("net.ipv4..x", "1")])),
            "config.linux.sysctls",
        ),
        (
            "sysctl with a space",
            with(&|c| c.linux.as_mut().unwrap().sysctls = sysctls(&[("kernel shm", "1")])),
            "config.linux.sysctls",
        ),
        (
            "relative cgroup parent",
            with(&|c| c.linux.as_mut().unwrap().cgroup_parent = "kubepods/burstable".into()),
            "config.linux.cgroup_parent",
        ),
        (
            "cgroup parent with ..",
            with(&|c| c.linux.as_mut().unwrap().cgroup_parent = "/kubepods/../../etc".into()),
            "config.linux.cgroup_parent",
        ),
    ];
    for (what, request, field) in cases {
        let err = rt.run_pod_sandbox(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err}");
        // `field: rule`, or `field["key"]: rule` for an entry of a map.
        assert!(
            err.message().starts_with(&format!("{field}:"))
                || err.message().starts_with(&format!("{field}[")),
            "{what}: the message does not name {field}: {err}"
        );
    }
    assert!(list(&mut rt, None).await.is_empty());
    assert!(env.pod_dirs().is_empty(), "{:?}", env.pod_dirs());
    let ids: Vec<String> = ids_in(&env.daemon.log()).into_iter().collect();
    assert!(ids.is_empty(), "the daemon created sandboxes: {ids:?}");
    env.assert_clean(&[]).await;
}

#[tokio::test]
async fn failed_run_is_undone_completely() {
    let env = PodEnv::start(4, Chain::FailSecond);
    let mut rt = env.runtime().await;

    // The second plugin of the chain fails its ADD: the bridge's work is undone too.
    let err = rt
        .run_pod_sandbox(run_request(pod_config("fail", "fcpt-ns", "uid-fail", 0)))
        .await
        .unwrap_err();
    assert!(err.message().contains("CNI ADD"), "no step named: {err}");
    assert!(err.message().contains("boom from test"), "{err}");
    assert!(err.message().contains(FAIL_PLUGIN), "{err}");
    let ids: Vec<String> = ids_in(&env.daemon.log()).into_iter().collect();
    assert_eq!(ids.len(), 1, "log names {ids:?}");
    assert!(list(&mut rt, None).await.is_empty());
    assert!(env.pod_dirs().is_empty(), "{:?}", env.pod_dirs());
    assert!(
        mounts_under(env.daemon.dir.path()).is_empty(),
        "{:?}",
        mounts_under(env.daemon.dir.path())
    );
    assert!(env.leased_ips().is_empty(), "{:?}", env.leased_ips());
    assert!(env.pod_processes(&ids).is_empty(), "a monitor is left");
    for id in &ids {
        assert!(cgroup_dirs(&format!("/ferrocri/{id}")).is_empty());
    }
    env.assert_clean(&ids).await;

    // The name was released: the same pod, retried once the network works, is created.
    env.write_chain(Chain::Standard);
    let retried = rt
        .run_pod_sandbox(run_request(pod_config("fail", "fcpt-ns", "uid-fail", 0)))
        .await
        .unwrap_or_else(|e| panic!("retry after a failure: {e}"))
        .into_inner()
        .pod_sandbox_id;
    env.note(&retried);
    assert!(!ids.contains(&retried));
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: retried.clone(),
    })
    .await
    .unwrap();
    env.assert_clean(std::slice::from_ref(&retried)).await;

    // A failure at the last step (the pause cannot set a sysctl that does not exist), with a
    // host port so that portmap's rules have to go too.
    let mut config = pod_config("fail-late", "fcpt-ns", "uid-fail-late", 0);
    config.linux.as_mut().unwrap().sysctls = sysctls(&[("net.ipv4.fcpt_no_such_sysctl", "1")]);
    config.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 80,
        host_port: free_port() as i32,
        host_ip: String::new(),
    }];
    let err = rt.run_pod_sandbox(run_request(config)).await.unwrap_err();
    assert!(err.message().contains("monitor"), "no step named: {err}");
    assert!(err.message().contains("fcpt_no_such_sysctl"), "{err}");
    let ids: Vec<String> = ids_in(&env.daemon.log()).into_iter().collect();
    assert_eq!(ids.len(), 3, "log names {ids:?}");
    assert!(list(&mut rt, None).await.is_empty());
    env.assert_clean(&ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_pods_created_and_removed_leave_nothing_behind() {
    const PODS: usize = 200;
    let env = PodEnv::start(5, Chain::Standard);
    let veths_before = all_veths();
    let rt = env.runtime().await;
    let started = Instant::now();
    let env_ref = &env;
    let results: Vec<Result<String, String>> = futures::stream::iter(0..PODS)
        .map(|i| {
            let mut rt = rt.clone();
            async move {
                let mut config = pod_config(
                    &format!("churn-{i}"),
                    "fcpt-churn",
                    &format!("uid-churn-{i}"),
                    0,
                );
                let mapped = i % 4 == 0;
                if mapped {
                    config.port_mappings = vec![PortMapping {
                        protocol: Protocol::Tcp as i32,
                        container_port: 8080,
                        host_port: free_port() as i32,
                        host_ip: String::new(),
                    }];
                }
                let id = rt
                    .run_pod_sandbox(run_request(config))
                    .await
                    .map_err(|e| format!("pod {i}: RunPodSandbox: {e}"))?
                    .into_inner()
                    .pod_sandbox_id;
                env_ref.note(&id);
                let resp = rt
                    .pod_sandbox_status(PodSandboxStatusRequest {
                        pod_sandbox_id: id.clone(),
                        verbose: false,
                    })
                    .await
                    .map_err(|e| format!("pod {i}: PodSandboxStatus: {e}"))?
                    .into_inner();
                let st = resp.status.unwrap_or_default();
                let ip = st.network.map(|n| n.ip).unwrap_or_default();
                if st.state != PodSandboxState::SandboxReady as i32 || !env_ref.in_subnet(&ip) {
                    return Err(format!("pod {i}: state {} ip {ip:?}", st.state));
                }
                if mapped && iptables_lines_mentioning(std::slice::from_ref(&id)).is_empty() {
                    return Err(format!("pod {i}: no portmap rule for {id}"));
                }
                rt.stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await
                .map_err(|e| format!("pod {i}: StopPodSandbox: {e}"))?;
                rt.remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await
                .map_err(|e| format!("pod {i}: RemovePodSandbox: {e}"))?;
                Ok(id)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let elapsed = started.elapsed();
    println!("{PODS} pod sandboxes created and removed (4 at a time) in {elapsed:.1?}");
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        errors.is_empty(),
        "{} failures, first ones:\n{}\n{}",
        errors.len(),
        errors
            .iter()
            .take(10)
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        log_tail(&env.daemon.log(), 40)
    );
    let ids: Vec<String> = results.into_iter().filter_map(Result::ok).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), PODS);

    let mut found = env.leftovers(&ids).await;
    // Veths that appeared meanwhile and still hang on this test's bridge (others' are not ours).
    for veth in all_veths().difference(&veths_before) {
        if veth_master(veth).as_deref() == Some(env.bridge.as_str()) {
            found.push(format!("veth created by this test left: {veth}"));
        }
    }
    assert_nothing(found, &env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_cni_add_and_the_end_of_run_is_undone_at_restart() {
    let mut env = PodEnv::start(6, Chain::SlowSecond);
    let config = pod_config("slow", "fcpt-ns", "uid-slow", 0);
    let mut rt = env.runtime().await;
    let request = run_request(config.clone());
    let call = tokio::spawn(async move { rt.run_pod_sandbox(request).await });

    // The bridge has leased an address and the slow plugin runs: ADD is half done.
    let slow = env.bin_dir.join(SLOW_PLUGIN).display().to_string();
    let halfway = eventually(Duration::from_secs(30), || {
        !env.leased_ips().is_empty() && !processes_mentioning(&slow, None).is_empty()
    })
    .await;
    assert!(
        halfway,
        "never saw a lease and the slow plugin; log:\n{}",
        log_tail(&env.daemon.log(), 40)
    );
    let pods = env.pod_dirs();
    assert_eq!(pods.len(), 1, "{pods:?}");
    let id = pods[0].clone();
    env.note(&id);
    let pin = env.pods_dir().join(&id).join("ns").join("net");
    assert!(
        !mounts_under(&pin).is_empty(),
        "the netns is not pinned yet"
    );
    assert!(!env.cni_cache_entries().is_empty());

    env.daemon.kill9();
    assert!(call.await.unwrap().is_err(), "the RPC outlived the daemon");
    // The cached configuration is what DEL uses; the next pods get a fast chain.
    env.write_chain(Chain::Standard);
    env.daemon.restart();

    let mut rt = env.runtime().await;
    assert!(list(&mut rt, None).await.is_empty());
    assert!(env.leased_ips().is_empty(), "{:?}", env.leased_ips());
    assert!(mounts_under(&env.state_dir()).is_empty());
    assert!(
        env.pod_processes(std::slice::from_ref(&id)).is_empty(),
        "a monitor is left"
    );
    assert!(env.pod_dirs().is_empty(), "{:?}", env.pod_dirs());
    assert!(
        env.cni_cache_entries().is_empty(),
        "{:?}",
        env.cni_cache_entries()
    );
    assert!(veths_on(&env.bridge).is_empty());
    assert!(cgroup_dirs(&format!("/ferrocri/{id}")).is_empty());

    // The orphaned slow plugin finishes on its own (its output goes nowhere).
    assert!(
        eventually(Duration::from_secs(30), || processes_mentioning(
            &slow, None
        )
        .is_empty())
        .await
    );

    let second = rt
        .run_pod_sandbox(run_request(config))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&env.daemon.log(), 40)))
        .into_inner()
        .pod_sandbox_id;
    env.note(&second);
    assert_ne!(second, id);
    let (st, info) = status(&mut rt, &second).await;
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
    assert!(env.in_subnet(&st.network.unwrap().ip));
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: second.clone(),
    })
    .await
    .unwrap();
    assert_nothing(stopped_pod_leftovers(&env, &second, &info).await, &env);
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: second.clone(),
    })
    .await
    .unwrap();
    env.assert_clean(&[id, second]).await;
}

#[tokio::test]
async fn a_ready_pod_survives_a_daemon_sigkill() {
    let mut env = PodEnv::start(7, Chain::Standard);
    let mut rt = env.runtime().await;
    let id = rt
        .run_pod_sandbox(run_request(pod_config(
            "survivor", "fcpt-ns", "uid-surv", 0,
        )))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    env.note(&id);
    let (_, before) = status(&mut rt, &id).await;

    env.daemon.kill9();
    env.daemon.restart();
    let mut rt = env.runtime().await;
    let (st, after) = status(&mut rt, &id).await;
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(after.pid, before.pid);
    assert_eq!(after.monitor_pid, before.monitor_pid);
    assert_eq!(after.ip, before.ip);
    assert!(!process_gone(before.pid));
    assert_eq!(comm(before.pid), "pause");
    assert_eq!(
        ns_id(format!("/proc/{}/ns/net", before.pid)),
        ns_id(before.netns.as_ref().unwrap())
    );
    let listed = list(&mut rt, None).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].state, PodSandboxState::SandboxReady as i32);
    assert!(env.lease_dir().join(&before.ip).exists());

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    assert_nothing(stopped_pod_leftovers(&env, &id, &before).await, &env);
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    env.assert_clean(&[id]).await;
}

#[tokio::test]
async fn a_pod_whose_monitor_died_is_notready_and_stopped_at_restart() {
    let mut env = PodEnv::start(8, Chain::Standard);
    let mut rt = env.runtime().await;
    let id = rt
        .run_pod_sandbox(run_request(pod_config("orphan", "fcpt-ns", "uid-orph", 0)))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    env.note(&id);
    let (_, info) = status(&mut rt, &id).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(info.monitor_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(10), || process_gone(info.monitor_pid)).await);
    // Without its monitor the pod is not ready, even before the daemon restarts.
    let (st, _) = status(&mut rt, &id).await;
    assert_eq!(st.state, PodSandboxState::SandboxNotready as i32);

    env.daemon.kill9();
    env.daemon.restart();
    let mut rt = env.runtime().await;
    let (st, _) = status(&mut rt, &id).await;
    assert_eq!(st.state, PodSandboxState::SandboxNotready as i32);
    let listed = list(&mut rt, None).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, PodSandboxState::SandboxNotready as i32);
    // The restart stopped it: pause, network, cgroup are gone.
    assert_nothing(stopped_pod_leftovers(&env, &id, &info).await, &env);

    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    env.assert_clean(&[id]).await;
}

#[tokio::test]
async fn host_port_answers_on_localhost_until_the_pod_stops() {
    let env = PodEnv::start(9, Chain::Standard);
    let mut rt = env.runtime().await;
    let host_port = free_port();
    let mut config = pod_config("web", "fcpt-ns", "uid-hostport", 0);
    config.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port: host_port as i32,
        host_ip: String::new(),
    }];
    let id = rt
        .run_pod_sandbox(run_request(config))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    env.note(&id);
    let (_, info) = status(&mut rt, &id).await;
    let pin = info.netns.clone().unwrap();
    assert!(
        !iptables_lines_mentioning(std::slice::from_ref(&id)).is_empty(),
        "portmap made no rule for {id}"
    );

    let www = env.daemon.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from fcpt pod\n").unwrap();
    let server = KillOnDrop(
        std::process::Command::new("nsenter")
            .arg(format!("--net={}", pin.display()))
            .args([
                "/usr/bin/python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                "0.0.0.0",
            ])
            .current_dir(&www)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the HTTP server in the pod"),
    );
    let pod_addr = SocketAddr::new(info.ip.parse().unwrap(), 8080);
    let mut last = None;
    let direct = eventually(Duration::from_secs(30), || {
        let r = http_get_from(pod_addr);
        let ok = matches!(&r, Ok((200, _)));
        last = Some(r);
        ok
    })
    .await;
    assert!(
        direct,
        "the server in the pod never answered on {pod_addr}: {last:?}"
    );
    let through_port = http_get(host_port);
    match &through_port {
        Ok((200, body)) => assert!(body.contains("hello from fcpt pod"), "{body:?}"),
        other => panic!(
            "127.0.0.1:{host_port} did not answer 200: {other:?}\n{}",
            iptables_lines_mentioning(std::slice::from_ref(&id)).join("\n")
        ),
    }

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    match http_get(host_port) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
            ) => {}
        other => panic!("127.0.0.1:{host_port} still answers after stop: {other:?}"),
    }
    assert!(iptables_lines_mentioning(std::slice::from_ref(&id)).is_empty());
    drop(server);
    assert_nothing(stopped_pod_leftovers(&env, &id, &info).await, &env);
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    env.assert_clean(&[id]).await;
}
