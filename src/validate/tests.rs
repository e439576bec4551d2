//! One table per RPC: a request kubelet would send passes, and each case breaks one rule of
//! it and must be refused naming the field (the message starts with the field path).

use std::collections::HashMap;

use super::{Invalid, Validate};
use crate::cri::v1::*;

/// A case: the field path the refusal must name, and how to break the request.
type Case<'a, T> = (&'a str, Box<dyn Fn(&mut T)>);

/// Runs every case on a fresh copy of `good`; returns how many ran.
fn table<T: Validate + Clone>(good: T, cases: Vec<Case<T>>) -> usize {
    assert_eq!(good.validate(), Ok(()), "the base request must pass");
    for (field, break_it) in &cases {
        let mut request = good.clone();
        break_it(&mut request);
        match request.validate() {
            Err(Invalid { field: got, rule }) => assert!(
                got.starts_with(field),
                "case {field}: refused as {got}: {rule}"
            ),
            Ok(()) => panic!("case {field}: was accepted"),
        }
    }
    cases.len()
}

macro_rules! cases {
    ($t:ty; $($field:expr => |$r:ident| $body:expr;)*) => {
        vec![$(($field, Box::new(|$r: &mut $t| { $body; }) as Box<dyn Fn(&mut $t)>)),*]
    };
}

fn pod_config() -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web-0".into(),
            uid: "0b5c3c4e-8a2d-4b8e-9d0c-6b9f3a0e1d2f".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web-0".into(),
        log_directory: "/var/log/pods/default_web-0_0b5c".into(),
        dns_config: Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        port_mappings: vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: 80,
            host_port: 8080,
            host_ip: "127.0.0.1".into(),
        }],
        labels: HashMap::from([
            ("app".into(), "web".into()),
            ("io.kubernetes.pod.name".into(), "web-0".into()),
        ]),
        annotations: HashMap::from([(
            "kubernetes.io/config.source".into(),
            "api\nwith a second line".into(),
        )]),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/burstable/pod0b5c".into(),
            sysctls: HashMap::from([
                ("kernel.shm_rmid_forced".into(), "1".into()),
                ("net.ipv4.ip_local_port_range".into(), "1024 65000".into()),
                ("net.ipv4.tcp_congestion_control".into(), "cubic".into()),
                ("fs/mqueue/msg_max".into(), "100".into()),
            ]),
            security_context: Some(LinuxSandboxSecurityContext {
                run_as_user: Some(Int64Value { value: 1000 }),
                supplemental_groups: vec![2000],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn run_pod() -> RunPodSandboxRequest {
    RunPodSandboxRequest {
        config: Some(pod_config()),
        runtime_handler: String::new(),
    }
}

fn linux_pod(r: &mut RunPodSandboxRequest) -> &mut LinuxPodSandboxConfig {
    r.config.as_mut().unwrap().linux.as_mut().unwrap()
}

fn meta(r: &mut RunPodSandboxRequest) -> &mut PodSandboxMetadata {
    r.config.as_mut().unwrap().metadata.as_mut().unwrap()
}

fn config(r: &mut RunPodSandboxRequest) -> &mut PodSandboxConfig {
    r.config.as_mut().unwrap()
}

#[test]
fn run_pod_sandbox() {
    let n = table(
        run_pod(),
        cases![RunPodSandboxRequest;
            "config" => |r| r.config = None;
            "config.metadata" => |r| config(r).metadata = None;
            "config.metadata.name" => |r| meta(r).name.clear();
            "config.metadata.name" => |r| meta(r).name = "web\0".into();
            "config.metadata.name" => |r| meta(r).name = "a".repeat(254);
            "config.metadata.namespace" => |r| meta(r).namespace = "def\nault".into();
            "config.metadata.namespace" => |r| meta(r).namespace = "n".repeat(64);
            "config.metadata.uid" => |r| meta(r).uid.clear();
            "config.hostname" => |r| config(r).hostname = "h".repeat(65);
            "config.hostname" => |r| config(r).hostname = "under_score".into();
            "config.hostname" => |r| config(r).hostname = "-leading".into();
            "config.hostname" => |r| config(r).hostname = "a..b".into();
            "config.log_directory" => |r| config(r).log_directory = "var/log/pods".into();
            "config.dns_config.servers[0]" => |r| config(r).dns_config.as_mut().unwrap().servers[0] = "dns".into();
            "config.dns_config.searches[0]" => |r| config(r).dns_config.as_mut().unwrap().searches[0] = "a\nnameserver 6.6.6.6".into();
            "config.dns_config.searches[0]" => |r| config(r).dns_config.as_mut().unwrap().searches[0] = "s".repeat(254);
            "config.dns_config.options[0]" => |r| config(r).dns_config.as_mut().unwrap().options[0] = "nd ots".into();
            "config.port_mappings[0].protocol" => |r| config(r).port_mappings[0].protocol = 7;
            "config.port_mappings[0].container_port" => |r| config(r).port_mappings[0].container_port = 65536;
            "config.port_mappings[0].host_port" => |r| config(r).port_mappings[0].host_port = -1;
            "config.port_mappings[0].host_ip" => |r| config(r).port_mappings[0].host_ip = "localhost".into();
            "config.labels" => |r| { config(r).labels.insert("bad key".into(), "v".into()); };
            "config.labels" => |r| { config(r).labels.insert("Bad.Prefix/k".into(), "v".into()); };
            "config.labels" => |r| { config(r).labels.insert("k".repeat(64), "v".into()); };
            "config.labels[" => |r| { config(r).labels.insert("k".into(), "a\0b".into()); };
            "config.labels[" => |r| { config(r).labels.insert("k".into(), "v".repeat(254)); };
            "config.labels" => |r| {
                for i in 0..2000 {
                    config(r).labels.insert(format!("key-{i}"), "v".repeat(200));
                }
            };
            "config.annotations" => |r| { config(r).annotations.insert("-k".into(), "v".into()); };
            "config.annotations[" => |r| { config(r).annotations.insert("k".into(), "\0".into()); };
            "config.annotations" => |r| { config(r).annotations.insert("big".into(), "v".repeat(256 * 1024)); };
            "config.linux.cgroup_parent" => |r| linux_pod(r).cgroup_parent = "kubepods".into();
            "config.linux.cgroup_parent" => |r| linux_pod(r).cgroup_parent = "/kubepods/../..".into();
            "config.linux.cgroup_parent" => |r| linux_pod(r).cgroup_parent = "/kube\npods".into();
            "config.linux.sysctls[" => |r| { linux_pod(r).sysctls.insert("net..ipv4".into(), "1".into()); };
            "config.linux.sysctls[" => |r| { linux_pod(r).sysctls.insert("kernel.panic".into(), "1".into()); };
            "config.linux.sysctls[" => |r| { linux_pod(r).sysctls.insert("kernel.shmmax".into(), "lots".into()); };
            "config.linux.sysctls[" => |r| { linux_pod(r).sysctls.insert("net.ipv4.ip_forward".into(), "1\n0".into()); };
            "config.linux.sysctls[" => |r| { linux_pod(r).sysctls.insert("net.ipv4.ip_forward".into(), String::new()); };
            "config.linux.sysctls[" => |r| { linux_pod(r).sysctls.insert("net.ipv4.tcp_congestion_control".into(), "cu\0bic".into()); };
            "config.linux.sysctls[" => |r| {
                let l = linux_pod(r);
                l.security_context.as_mut().unwrap().namespace_options =
                    Some(NamespaceOption { network: NamespaceMode::Node as i32, ..Default::default() });
            };
            "config.linux.overhead.cpu_shares" => |r| linux_pod(r).overhead = Some(LinuxContainerResources { cpu_shares: 1, ..Default::default() });
            "config.linux.resources.memory_limit_in_bytes" => |r| linux_pod(r).resources = Some(LinuxContainerResources { memory_limit_in_bytes: -5, ..Default::default() });
            "config.linux.security_context.run_as_user.value" => |r| linux_pod(r).security_context.as_mut().unwrap().run_as_user = Some(Int64Value { value: -1 });
            "config.linux.security_context.run_as_group.value" => |r| linux_pod(r).security_context.as_mut().unwrap().run_as_group = Some(Int64Value { value: 1 << 32 });
            "config.linux.security_context.supplemental_groups[0]" => |r| linux_pod(r).security_context.as_mut().unwrap().supplemental_groups[0] = -3;
            "config.linux.security_context.supplemental_groups_policy" => |r| linux_pod(r).security_context.as_mut().unwrap().supplemental_groups_policy = 9;
            "config.linux.security_context.namespace_options.pid" => |r| linux_pod(r).security_context.as_mut().unwrap().namespace_options = Some(NamespaceOption { pid: 12, ..Default::default() });
            "config.linux.security_context.selinux_options.level" => |r| linux_pod(r).security_context.as_mut().unwrap().selinux_options = Some(SeLinuxOption { level: "s0\n".into(), ..Default::default() });
            "config.linux.security_context.seccomp.profile_type" => |r| linux_pod(r).security_context.as_mut().unwrap().seccomp = Some(SecurityProfile { profile_type: 5, ..Default::default() });
            "config.linux.security_context.apparmor.localhost_ref" => |r| linux_pod(r).security_context.as_mut().unwrap().apparmor = Some(SecurityProfile { profile_type: 2, localhost_ref: "p\0".into() });
            "runtime_handler" => |r| r.runtime_handler = "kata".into();
        ],
    );
    assert!(n > 40);
}

fn container_config() -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 1,
        }),
        image: Some(ImageSpec {
            image: "sha256:0123456789abcdef".into(),
            ..Default::default()
        }),
        command: vec!["/bin/sh".into()],
        args: vec!["-c".into(), "echo a\nb".into()],
        working_dir: "/srv".into(),
        envs: vec![KeyValue {
            key: "PATH".into(),
            value: b"/bin:/usr/bin".to_vec(),
        }],
        mounts: vec![
            Mount {
                container_path: "/data".into(),
                host_path: "/var/lib/kubelet/pods/x/volumes/data".into(),
                readonly: true,
                recursive_read_only: true,
                ..Default::default()
            },
            // An image volume, as kubelet sends it: no host path, the pulled image's ID.
            Mount {
                container_path: "/plugins".into(),
                image: Some(ImageSpec {
                    image: "sha256:0123456789abcdef".into(),
                    user_specified_image: "example.com/plugins:1".into(),
                    ..Default::default()
                }),
                image_sub_path: "bin/x".into(),
                readonly: true,
                ..Default::default()
            },
        ],
        devices: vec![Device {
            container_path: "/dev/fuse".into(),
            host_path: "/dev/fuse".into(),
            permissions: "rwm".into(),
        }],
        labels: HashMap::from([("io.kubernetes.container.name".into(), "app".into())]),
        annotations: HashMap::from([("io.kubernetes.container.hash".into(), "1a2b".into())]),
        log_path: "app/1.log".into(),
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 256 << 20,
                oom_score_adj: 1000,
                ..Default::default()
            }),
            security_context: Some(LinuxContainerSecurityContext {
                capabilities: Some(Capability {
                    add_capabilities: vec!["NET_ADMIN".into()],
                    drop_capabilities: vec!["ALL".into()],
                    ..Default::default()
                }),
                masked_paths: vec!["/proc/kcore".into()],
                readonly_paths: vec!["/proc/sys".into()],
                run_as_username: "nobody".into(),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

fn create() -> CreateContainerRequest {
    CreateContainerRequest {
        pod_sandbox_id: "a".repeat(64),
        config: Some(container_config()),
        sandbox_config: Some(pod_config()),
    }
}

fn cc(r: &mut CreateContainerRequest) -> &mut ContainerConfig {
    r.config.as_mut().unwrap()
}

fn security(r: &mut CreateContainerRequest) -> &mut LinuxContainerSecurityContext {
    cc(r)
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
}

fn resources(r: &mut CreateContainerRequest) -> &mut LinuxContainerResources {
    cc(r).linux.as_mut().unwrap().resources.as_mut().unwrap()
}

#[test]
fn create_container() {
    let n = table(
        create(),
        cases![CreateContainerRequest;
            "pod_sandbox_id" => |r| r.pod_sandbox_id.clear();
            "pod_sandbox_id" => |r| r.pod_sandbox_id = "../etc".into();
            "config" => |r| r.config = None;
            "config.metadata" => |r| cc(r).metadata = None;
            "config.metadata.name" => |r| cc(r).metadata.as_mut().unwrap().name.clear();
            "config.metadata.name" => |r| cc(r).metadata.as_mut().unwrap().name = "a\u{7f}".into();
            "config.image" => |r| cc(r).image = None;
            "config.image.image" => |r| cc(r).image.as_mut().unwrap().image = "  ".into();
            "config.image.image" => |r| cc(r).image.as_mut().unwrap().image = "busybox\0".into();
            "config.image.runtime_handler" => |r| cc(r).image.as_mut().unwrap().runtime_handler = "kata".into();
            "config.command[0]" => |r| cc(r).command[0] = "/bin/sh\0".into();
            "config.args[1]" => |r| cc(r).args[1] = "x\0".into();
            "config.working_dir" => |r| cc(r).working_dir = "srv".into();
            "config.envs[0].key" => |r| cc(r).envs[0].key.clear();
            "config.envs[0].key" => |r| cc(r).envs[0].key = "A=B".into();
            "config.envs[0].key" => |r| cc(r).envs[0].key = "A\0".into();
            "config.envs[0].value" => |r| cc(r).envs[0].value = b"a\0b".to_vec();
            "config.envs[0]" => |r| cc(r).envs[0].value = vec![b'v'; 128 << 10];
            "config.args[0]" => |r| cc(r).args = vec!["a".repeat(128 << 10)];
            "config.envs" => |r| cc(r).envs = (0..40).map(|i| KeyValue {
                key: format!("K{i}"),
                value: vec![b'v'; 64 << 10],
            }).collect();
            "config.mounts[0].container_path" => |r| cc(r).mounts[0].container_path = "data".into();
            "config.mounts[0].host_path" => |r| cc(r).mounts[0].host_path = "relative/dir".into();
            "config.mounts[0].host_path" => |r| cc(r).mounts[0].host_path.clear();
            "config.mounts[0].host_path" => |r| cc(r).mounts[0].host_path = format!("/{}", "p".repeat(4096));
            "config.mounts[0].propagation" => |r| cc(r).mounts[0].propagation = 3;
            "config.mounts[0].recursive_read_only" => |r| cc(r).mounts[0].readonly = false;
            "config.mounts[0].recursive_read_only" => |r| cc(r).mounts[0].propagation = MountPropagation::PropagationBidirectional as i32;
            "config.mounts[0].mount_options[0]" => |r| cc(r).mounts[0].mount_options = vec!["no exec".into()];
            "config.mounts[0].image_sub_path" => |r| cc(r).mounts[0].image_sub_path = "../../etc".into();
            "config.mounts[1].image_sub_path" => |r| cc(r).mounts[1].image_sub_path = "../../etc".into();
            "config.mounts[1].image_sub_path" => |r| cc(r).mounts[1].image_sub_path = "/etc".into();
            "config.mounts[1].image_sub_path" => |r| cc(r).mounts[1].image_sub_path = "a/../../b".into();
            "config.mounts[1].host_path" => |r| cc(r).mounts[1].host_path = "/var/lib/x".into();
            "config.mounts[1].image.image" => |r| cc(r).mounts[1].image.as_mut().unwrap().image.clear();
            "config.mounts[1].image.image" => |r| cc(r).mounts[1].image.as_mut().unwrap().image = "a\nb".into();
            "config.mounts[1].image.runtime_handler" => |r| cc(r).mounts[1].image.as_mut().unwrap().runtime_handler = "kata".into();
            "config.devices[0].container_path" => |r| cc(r).devices[0].container_path = "dev/fuse".into();
            "config.devices[0].host_path" => |r| cc(r).devices[0].host_path = "fuse".into();
            "config.CDI_devices[0].name" => |r| cc(r).cdi_devices = vec![CdiDevice { name: "v/g=0\n".into() }];
            "config.CDI_devices[0].name" => |r| cc(r).cdi_devices = vec![CdiDevice { name: "gpu0".into() }];
            "config.CDI_devices[0].name" => |r| cc(r).cdi_devices = vec![CdiDevice { name: "vendor.com/gpu=-0".into() }];
            "config.annotations[\"cdi.k8s.io/gpu\"]" => |r| { cc(r).annotations.insert("cdi.k8s.io/gpu".into(), "vendor.com/gpu=0,gpu1".into()); };
            "config.labels" => |r| { cc(r).labels.insert("a/b/c".into(), "v".into()); };
            "config.annotations" => |r| { cc(r).annotations.insert(String::new(), "v".into()); };
            "config.log_path" => |r| cc(r).log_path = "/etc/passwd".into();
            "config.log_path" => |r| cc(r).log_path = "app/../../../etc/x".into();
            "config.stop_signal" => |r| cc(r).stop_signal = 66;
            "config.linux.resources.cpu_period" => |r| resources(r).cpu_period = 999;
            "config.linux.resources.cpu_quota" => |r| resources(r).cpu_quota = 10;
            "config.linux.resources.cpu_shares" => |r| resources(r).cpu_shares = 262_145;
            "config.linux.resources.memory_limit_in_bytes" => |r| resources(r).memory_limit_in_bytes = -1;
            "config.linux.resources.memory_swap_limit_in_bytes" => |r| resources(r).memory_swap_limit_in_bytes = -2;
            "config.linux.resources.oom_score_adj" => |r| resources(r).oom_score_adj = -1001;
            "config.linux.resources.cpuset_cpus" => |r| resources(r).cpuset_cpus = "3-1".into();
            "config.linux.resources.cpuset_mems" => |r| resources(r).cpuset_mems = "0,,1".into();
            "config.linux.resources.hugepage_limits" => |r| resources(r).hugepage_limits = vec![HugepageLimit { page_size: "2XB".into(), limit: 1 }];
            "config.linux.resources.unified" => |r| { resources(r).unified.insert("../memory.max".into(), "1".into()); };
            "config.linux.resources.unified[" => |r| { resources(r).unified.insert("memory.max".into(), "1\n2".into()); };
            "config.linux.security_context.capabilities.add_capabilities[0]" => |r| security(r).capabilities.as_mut().unwrap().add_capabilities[0] = "NET ADMIN".into();
            "config.linux.security_context.run_as_user.value" => |r| security(r).run_as_user = Some(Int64Value { value: -7 });
            "config.linux.security_context.run_as_username" => |r| security(r).run_as_username = "no\0body".into();
            "config.linux.security_context.masked_paths[0]" => |r| security(r).masked_paths[0] = "proc/kcore".into();
            "config.linux.security_context.readonly_paths[0]" => |r| security(r).readonly_paths[0] = String::new();
            "config.linux.security_context.namespace_options.target_id" => |r| security(r).namespace_options = Some(NamespaceOption { pid: 3, target_id: "x y".into(), ..Default::default() });
            "config.linux.security_context.seccomp.localhost_ref" => |r| security(r).seccomp = Some(SecurityProfile { profile_type: 2, localhost_ref: "/p\0".into() });
            "sandbox_config.metadata.name" => |r| r.sandbox_config.as_mut().unwrap().metadata.as_mut().unwrap().name = "a\0".into();
        ],
    );
    assert!(n > 45);
}

#[test]
fn ids_of_the_one_id_requests() {
    let good = "0123abcd".to_owned();
    for bad in ["", "a\0", "../x", &"f".repeat(129)] {
        let bad = bad.to_owned();
        let checks: Vec<(&str, Result<(), Invalid>)> = vec![
            (
                "pod_sandbox_id",
                StopPodSandboxRequest {
                    pod_sandbox_id: bad.clone(),
                }
                .validate(),
            ),
            (
                "pod_sandbox_id",
                RemovePodSandboxRequest {
                    pod_sandbox_id: bad.clone(),
                }
                .validate(),
            ),
            (
                "pod_sandbox_id",
                PodSandboxStatusRequest {
                    pod_sandbox_id: bad.clone(),
                    verbose: true,
                }
                .validate(),
            ),
            (
                "pod_sandbox_id",
                PodSandboxStatsRequest {
                    pod_sandbox_id: bad.clone(),
                }
                .validate(),
            ),
            (
                "container_id",
                StartContainerRequest {
                    container_id: bad.clone(),
                }
                .validate(),
            ),
            (
                "container_id",
                StopContainerRequest {
                    container_id: bad.clone(),
                    timeout: 0,
                }
                .validate(),
            ),
            (
                "container_id",
                RemoveContainerRequest {
                    container_id: bad.clone(),
                }
                .validate(),
            ),
            (
                "container_id",
                ContainerStatusRequest {
                    container_id: bad.clone(),
                    verbose: false,
                }
                .validate(),
            ),
            (
                "container_id",
                ReopenContainerLogRequest {
                    container_id: bad.clone(),
                }
                .validate(),
            ),
            (
                "container_id",
                ContainerStatsRequest {
                    container_id: bad.clone(),
                }
                .validate(),
            ),
            (
                "container_id",
                AttachRequest {
                    container_id: bad.clone(),
                    stdout: true,
                    ..Default::default()
                }
                .validate(),
            ),
        ];
        for (field, result) in checks {
            assert_eq!(
                result.map_err(|e| e.field),
                Err(field.to_owned()),
                "{bad:?}"
            );
        }
    }
    assert_eq!(
        RemoveContainerRequest {
            container_id: good.clone()
        }
        .validate(),
        Ok(())
    );
    assert_eq!(
        StopContainerRequest {
            container_id: good,
            timeout: -1
        }
        .validate()
        .unwrap_err()
        .field,
        "timeout"
    );
}

#[test]
fn exec_port_forward_and_updates() {
    let exec = ExecSyncRequest {
        container_id: "abc".into(),
        cmd: vec!["echo".into(), "hi".into()],
        timeout: 5,
    };
    let n = table(
        exec,
        cases![ExecSyncRequest;
            "container_id" => |r| r.container_id.clear();
            "cmd" => |r| r.cmd.clear();
            "cmd[1]" => |r| r.cmd[1] = "h\0i".into();
            "timeout" => |r| r.timeout = -1;
        ],
    );
    let exec = ExecRequest {
        container_id: "abc".into(),
        cmd: vec!["sh".into()],
        stdout: true,
        ..Default::default()
    };
    let n = n + table(
        exec,
        cases![ExecRequest;
            "container_id" => |r| r.container_id = "a b".into();
            "cmd" => |r| r.cmd.clear();
            "cmd[0]" => |r| r.cmd[0] = "\0".into();
        ],
    );
    let forward = PortForwardRequest {
        pod_sandbox_id: "abc".into(),
        port: vec![80, 65535],
    };
    let n = n + table(
        forward,
        cases![PortForwardRequest;
            "pod_sandbox_id" => |r| r.pod_sandbox_id.clear();
            "port[1]" => |r| r.port[1] = 65536;
            "port[0]" => |r| r.port[0] = 0;
        ],
    );
    let update = UpdateContainerResourcesRequest {
        container_id: "abc".into(),
        linux: Some(LinuxContainerResources {
            cpu_shares: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    let n = n + table(
        update,
        cases![UpdateContainerResourcesRequest;
            "container_id" => |r| r.container_id.clear();
            "linux.cpu_shares" => |r| r.linux.as_mut().unwrap().cpu_shares = 1;
            "annotations" => |r| { r.annotations.insert("$".into(), "v".into()); };
        ],
    );
    let pod = UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: "abc".into(),
        overhead: Some(LinuxContainerResources::default()),
        resources: Some(LinuxContainerResources {
            memory_swap_limit_in_bytes: -1,
            ..Default::default()
        }),
    };
    let n = n + table(
        pod,
        cases![UpdatePodSandboxResourcesRequest;
            "pod_sandbox_id" => |r| r.pod_sandbox_id.clear();
            "overhead.cpu_shares" => |r| r.overhead.as_mut().unwrap().cpu_shares = -3;
            "resources.cpu_period" => |r| r.resources.as_mut().unwrap().cpu_period = 10;
        ],
    );
    let runtime = UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig {
            network_config: Some(NetworkConfig {
                pod_cidr: "10.88.0.0/16,fd00::/64".into(),
            }),
        }),
    };
    let n = n
        + table(
            runtime,
            cases![UpdateRuntimeConfigRequest;
                "runtime_config.network_config.pod_cidr" => |r| r.runtime_config.as_mut().unwrap().network_config.as_mut().unwrap().pod_cidr = "10.88.0.0".into();
            ],
        );
    assert_eq!(n, 17);
}

#[test]
fn list_filters() {
    let pods = ListPodSandboxRequest {
        filter: Some(PodSandboxFilter {
            id: "ab".into(),
            state: Some(PodSandboxStateValue { state: 1 }),
            label_selector: HashMap::from([("app".into(), "web".into())]),
        }),
    };
    table(
        pods,
        cases![ListPodSandboxRequest;
            "filter.id" => |r| r.filter.as_mut().unwrap().id = "a\0".into();
            "filter.state.state" => |r| r.filter.as_mut().unwrap().state = Some(PodSandboxStateValue { state: 2 });
            "filter.label_selector" => |r| { r.filter.as_mut().unwrap().label_selector.insert("a\nb".into(), "v".into()); };
        ],
    );
    let containers = ListContainersRequest {
        filter: Some(ContainerFilter {
            pod_sandbox_id: "ab".into(),
            state: Some(ContainerStateValue { state: 3 }),
            ..Default::default()
        }),
    };
    table(
        containers,
        cases![ListContainersRequest;
            "filter.pod_sandbox_id" => |r| r.filter.as_mut().unwrap().pod_sandbox_id = "a/b".into();
            "filter.state.state" => |r| r.filter.as_mut().unwrap().state = Some(ContainerStateValue { state: 4 });
        ],
    );
    let stats = ListContainerStatsRequest {
        filter: Some(ContainerStatsFilter::default()),
    };
    table(
        stats,
        cases![ListContainerStatsRequest; "filter.id" => |r| r.filter.as_mut().unwrap().id = "é".into();],
    );
}

#[test]
fn image_requests() {
    let pull = PullImageRequest {
        image: Some(ImageSpec {
            image: "127.0.0.1:5000/busybox:1.36".into(),
            ..Default::default()
        }),
        auth: Some(AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        }),
        sandbox_config: Some(pod_config()),
    };
    let empty_copy = PullImageRequest {
        sandbox_config: Some(PodSandboxConfig::default()),
        ..pull.clone()
    };
    assert_eq!(
        empty_copy.validate(),
        Ok(()),
        "critest sends an empty sandbox_config"
    );
    let n = table(
        pull,
        cases![PullImageRequest;
            "image" => |r| r.image = None;
            "image.image" => |r| r.image.as_mut().unwrap().image.clear();
            "image.image" => |r| r.image.as_mut().unwrap().image = "busybox\nlatest".into();
            "image.image" => |r| r.image.as_mut().unwrap().image = "b".repeat(4097);
            "image.user_specified_image" => |r| r.image.as_mut().unwrap().user_specified_image = "\0".into();
            "image.annotations" => |r| { r.image.as_mut().unwrap().annotations.insert("/".into(), "v".into()); };
            "auth.password" => |r| r.auth.as_mut().unwrap().password = "p\r\nX-Evil: 1".into();
            "sandbox_config.hostname" => |r| r.sandbox_config.as_mut().unwrap().hostname = "x".repeat(70);
        ],
    );
    let status = ImageStatusRequest {
        image: Some(ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        verbose: true,
    };
    let n = n + table(
        status,
        cases![ImageStatusRequest; "image" => |r| r.image = None;],
    );
    let remove = RemoveImageRequest {
        image: Some(ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
    };
    let n = n
        + table(
            remove,
            cases![RemoveImageRequest; "image.image" => |r| r.image.as_mut().unwrap().image = "\0".into();],
        );
    let list = ListImagesRequest {
        filter: Some(ImageFilter {
            image: Some(ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
        }),
    };
    let n = n
        + table(
            list,
            cases![ListImagesRequest; "filter.image.image" => |r| r.filter.as_mut().unwrap().image.as_mut().unwrap().image = "a\nb".into();],
        );
    assert_eq!(n, 11);
}

#[test]
fn messages_stay_short_and_escaped() {
    let mut r = run_pod();
    config(&mut r)
        .labels
        .insert(format!("{}\0", "k".repeat(1 << 20)), "v".into());
    let message = r.validate().unwrap_err().to_string();
    assert!(message.len() < 400, "{} bytes", message.len());
    assert!(!message.contains('\0'));
    let status: tonic::Status = r.validate().unwrap_err().into();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[test]
fn sysctl_values_by_kind() {
    use super::rules::sysctl;
    let ok = [
        ("net.ipv4.ip_local_reserved_ports", "8080,9000-9100"),
        ("net.ipv4.ping_group_range", "0\t2147483647"),
        ("kernel.sem", "250 32000 100 128"),
        ("net.ipv6.conf.eth0.stable_secret", "2001:db8::1"),
        ("net/ipv4/conf/eth0.100/forwarding", "1"),
        ("kernel.msgmax", "-1"),
    ];
    for (name, value) in ok {
        assert_eq!(sysctl("s", name, value, false), Ok(()), "{name}={value}");
    }
    let bad = [
        ("kernel.hostname", "x"),
        ("vm.swappiness", "1"),
        ("net.ipv4.ip_forward", "yes"),
        ("net.ipv4.ip_forward", "-"),
        ("kernel.shmall", "1;reboot"),
        ("net.ipv4.tcp_congestion_control", "cu bic\n"),
    ];
    for (name, value) in bad {
        assert!(sysctl("s", name, value, false).is_err(), "{name}={value}");
    }
}
