use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use serde::{Deserialize, Serialize};

use libseccomp::{ScmpArch, ScmpSyscall};

use super::enosys::{BPF_RET_K, native_audit_arch};
use super::profile::{from_json_for, runtime_default_for};
use super::program::NEW_SYSCALLS;
use super::target::Target;
use super::*;
use crate::executor::spec::{SeccompArg, SeccompProfile, SeccompRule};

const CHMOD_PROFILE: &str = r#"{
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
        { "names": ["chmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO" }
    ]
}"#;

const HOSTNAME_PROFILE: &str = r#"{
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
        { "names": ["sethostname"], "action": "SCMP_ACT_ERRNO" }
    ]
}"#;

fn amd64(kernel: (u32, u32, u32)) -> Target {
    Target {
        scmp_arch: "SCMP_ARCH_X86_64",
        aliases: &["amd64", "x86_64"],
        kernel: Some(kernel),
    }
}

fn arm64() -> Target {
    Target {
        scmp_arch: "SCMP_ARCH_AARCH64",
        aliases: &["arm64", "aarch64"],
        kernel: Some((6, 1, 0)),
    }
}

fn caps(list: &[&str]) -> Vec<String> {
    list.iter().map(|c| c.to_string()).collect()
}

/// The rules that allow `name` with no condition.
fn allows(profile: &SeccompProfile, name: &str) -> bool {
    profile.syscalls.iter().any(|r| {
        r.action == "SCMP_ACT_ALLOW" && r.args.is_empty() && r.names.iter().any(|n| n == name)
    })
}

fn mentions(profile: &SeccompProfile, name: &str) -> bool {
    profile
        .syscalls
        .iter()
        .any(|r| r.names.iter().any(|n| n == name))
}

#[test]
fn parses_the_critest_chmod_profile() {
    let profile = from_json(CHMOD_PROFILE.as_bytes(), &[]).unwrap();
    assert_eq!(profile.default_action, "SCMP_ACT_ALLOW");
    assert_eq!(profile.default_errno_ret, None);
    assert!(profile.architectures.is_empty());
    assert_eq!(
        profile.syscalls,
        vec![SeccompRule {
            names: caps(&["chmod", "fchmodat", "fchmodat2"]),
            action: "SCMP_ACT_ERRNO".into(),
            errno_ret: None,
            args: vec![],
        }]
    );
    compile(&profile).unwrap();
}

#[test]
fn parses_the_critest_sethostname_profile() {
    let profile = from_json(HOSTNAME_PROFILE.as_bytes(), &caps(&["SYS_ADMIN"])).unwrap();
    assert_eq!(profile.syscalls.len(), 1);
    assert_eq!(profile.syscalls[0].names, ["sethostname"]);
    assert_eq!(profile.syscalls[0].action, "SCMP_ACT_ERRNO");
}

#[test]
fn parses_every_field() {
    let json = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "listenerPath": "",
        "syscalls": [
            { "name": "read", "action": "SCMP_ACT_ALLOW", "comment": "legacy form" },
            { "names": ["write"], "action": "SCMP_ACT_LOG", "args": null, "includes": null },
            { "names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
                { "index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" }
            ]},
            { "names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [
                { "index": 1, "value": 9, "op": "SCMP_CMP_EQ" }
            ]},
            { "names": ["ptrace"], "action": "SCMP_ACT_TRACE", "errnoRet": 7 },
            { "names": ["reboot"], "action": "SCMP_ACT_KILL_PROCESS" },
            { "names": ["swapon"], "action": "SCMP_ACT_KILL" },
            { "names": ["iopl"], "action": "SCMP_ACT_TRAP" }
        ]
    }"#;
    let profile = from_json_for(json.as_bytes(), &[], &amd64((6, 1, 0))).unwrap();
    assert_eq!(profile.default_errno_ret, Some(38));
    assert_eq!(profile.architectures, ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    assert_eq!(profile.syscalls.len(), 8);
    assert_eq!(profile.syscalls[0].names, ["read"]);
    assert_eq!(
        profile.syscalls[2].args,
        [SeccompArg {
            index: 0,
            value: 2114060288,
            value_two: 0,
            op: "SCMP_CMP_MASKED_EQ".into()
        }]
    );
    assert_eq!(profile.syscalls[3].errno_ret, Some(13));
    let program = compile(&profile).unwrap();
    assert!(program.len() > 10);
}

#[test]
fn arch_map_picks_the_native_entry() {
    let json = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [
            { "architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"] },
            { "architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"] }
        ],
        "syscalls": []
    }"#;
    let x86 = from_json_for(json.as_bytes(), &[], &amd64((6, 1, 0))).unwrap();
    assert_eq!(x86.architectures, ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    let arm = from_json_for(json.as_bytes(), &[], &arm64()).unwrap();
    assert_eq!(arm.architectures, ["SCMP_ARCH_ARM"]);
}

#[test]
fn includes_and_excludes_follow_caps_arches_and_kernel() {
    let json = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            { "names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": { "caps": ["CAP_SYS_ADMIN"] } },
            { "names": ["both"], "action": "SCMP_ACT_ALLOW", "includes": { "caps": ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"] } },
            { "names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": { "caps": ["CAP_SYS_ADMIN"] } },
            { "names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": { "arches": ["amd64", "x32"] } },
            { "names": ["not_on_arm"], "action": "SCMP_ACT_ALLOW", "excludes": { "arches": ["arm64"] } },
            { "names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": { "minKernel": "4.8" } }
        ]
    }"#;
    let names = |profile: SeccompProfile| -> Vec<String> {
        profile.syscalls.into_iter().flat_map(|r| r.names).collect()
    };
    let new_kernel = amd64((6, 18, 44));
    let plain = from_json_for(json.as_bytes(), &[], &new_kernel).unwrap();
    assert_eq!(
        names(plain),
        ["clone", "arch_prctl", "not_on_arm", "ptrace"]
    );
    // Names with or without CAP_, any case.
    let admin = from_json_for(json.as_bytes(), &caps(&["sys_admin"]), &new_kernel).unwrap();
    assert_eq!(
        names(admin),
        ["mount", "arch_prctl", "not_on_arm", "ptrace"]
    );
    let two = caps(&["CAP_SYS_ADMIN", "NET_ADMIN"]);
    let admin = from_json_for(json.as_bytes(), &two, &new_kernel).unwrap();
    assert_eq!(
        names(admin),
        ["mount", "both", "arch_prctl", "not_on_arm", "ptrace"]
    );
    let all = from_json_for(json.as_bytes(), &caps(&["ALL"]), &new_kernel).unwrap();
    assert_eq!(names(all)[..2], ["mount", "both"]);
    let arm = from_json_for(json.as_bytes(), &[], &arm64()).unwrap();
    assert_eq!(names(arm), ["clone", "ptrace"]);
    let old_kernel = from_json_for(json.as_bytes(), &[], &amd64((4, 4, 0))).unwrap();
    assert_eq!(names(old_kernel), ["clone", "arch_prctl", "not_on_arm"]);
}

#[test]
fn errors_name_what_is_wrong() {
    let op = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_ALMOST"}]}
    ]}"#;
    let err = from_json(op.as_bytes(), &[]).unwrap_err();
    assert!(matches!(err, SeccompError::UnknownOp { .. }), "{err:?}");
    assert_eq!(
        err.describe(),
        "unknown seccomp argument operator \"SCMP_CMP_ALMOST\" in the rule for chmod"
    );

    let act = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["chmod", "fchmod"], "action": "SCMP_ACT_MAYBE"}
    ]}"#;
    let err = from_json(act.as_bytes(), &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown seccomp action \"SCMP_ACT_MAYBE\" in the rule for chmod, fchmod"
    );

    let default = r#"{"defaultAction": "SCMP_ACT_NOPE"}"#;
    let err = from_json(default.as_bytes(), &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown seccomp action \"SCMP_ACT_NOPE\" as the default action"
    );

    let notify = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}
    ]}"#;
    let err = from_json(notify.as_bytes(), &[]).unwrap_err().to_string();
    assert!(
        err.contains("SCMP_ACT_NOTIFY in the rule for mount is not supported"),
        "{err}"
    );

    let index = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}
    ]}"#;
    let err = from_json(index.as_bytes(), &[]).unwrap_err().to_string();
    assert!(err.contains("index 6 in the rule for mount"), "{err}");

    let arch = r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}"#;
    let err = from_json(arch.as_bytes(), &[]).unwrap_err().to_string();
    assert_eq!(err, "unknown seccomp architecture \"SCMP_ARCH_Z80\"");

    let nameless =
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}"#;
    assert!(matches!(
        from_json(nameless.as_bytes(), &[]),
        Err(SeccompError::NoNames(0))
    ));

    let kernel = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "four"}}
    ]}"#;
    let err = from_json(kernel.as_bytes(), &[]).unwrap_err().to_string();
    assert!(err.contains("invalid minKernel \"four\""), "{err}");

    let errno = r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#;
    let err = from_json(errno.as_bytes(), &[]).unwrap_err().to_string();
    assert!(err.contains("errno 70000"), "{err}");

    assert!(matches!(
        from_json(b"{\"syscalls\": []}", &[]),
        Err(SeccompError::Json(_))
    ));
}

/// What busybox's sh, ls, echo, top, sleep, ping, httpd, nc and a glibc-dynamic program
/// call (from strace of each), all allowed without a condition.
const BUSYBOX_NEEDS: &[&str] = &[
    "execve",
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "arch_prctl",
    "set_tid_address",
    "set_robust_list",
    "rseq",
    "prlimit64",
    "getrandom",
    "openat",
    "open",
    "read",
    "write",
    "writev",
    "close",
    "fstat",
    "newfstatat",
    "statx",
    "lseek",
    "pread64",
    "access",
    "faccessat2",
    "readlink",
    "getdents64",
    "ioctl",
    "fcntl",
    "dup2",
    "pipe2",
    "wait4",
    "vfork",
    "fork",
    "exit_group",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "getpid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "uname",
    "getcwd",
    "chdir",
    "nanosleep",
    "clock_nanosleep",
    "clock_gettime",
    "sysinfo",
    "poll",
    "ppoll",
    "pselect6",
    "select",
    "bind",
    "listen",
    "accept",
    "accept4",
    "connect",
    "sendto",
    "recvfrom",
    "recvmsg",
    "sendmsg",
    "setsockopt",
    "getsockopt",
    "getsockname",
    "getpeername",
    "shutdown",
    "setsid",
    "setpgid",
    "kill",
    "alarm",
    "umask",
    "futex",
    "sched_getaffinity",
    "getdents",
    "setitimer",
    "setuid",
    "setgid",
    "setgroups",
    "chmod",
    "fchmodat",
    "fchown",
    "mkdir",
    "unlink",
    "rename",
    "sendfile",
    "socketpair",
];

#[test]
fn runtime_default_allows_what_programs_need() {
    let target = amd64((6, 18, 0));
    let profile = runtime_default_for(&caps(&["CAP_NET_RAW", "CAP_CHOWN"]), &target);
    assert_eq!(profile.default_action, "SCMP_ACT_ERRNO");
    assert_eq!(profile.default_errno_ret, Some(1));
    assert_eq!(profile.architectures, ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    for name in BUSYBOX_NEEDS {
        assert!(allows(&profile, name), "{name} is not allowed");
    }
    // ptrace is allowed on kernels from 4.8, as Docker does.
    assert!(allows(&profile, "ptrace"));
    // socket: every family but AF_VSOCK; personality: only safe values; clone: no
    // namespaces; clone3: ENOSYS so libc falls back to clone.
    let rules = |name: &str| -> Vec<&SeccompRule> {
        profile
            .syscalls
            .iter()
            .filter(|r| r.names.iter().any(|n| n == name))
            .collect()
    };
    let socket = rules("socket");
    assert_eq!(socket.len(), 1);
    assert_eq!(socket[0].args[0].op, "SCMP_CMP_NE");
    assert_eq!(socket[0].args[0].value, 40);
    let personality: Vec<u64> = rules("personality")
        .iter()
        .map(|r| r.args[0].value)
        .collect();
    assert_eq!(personality, [0, 8, 0x20000, 0x20008, 0xffff_ffff]);
    let clone = rules("clone");
    assert_eq!(clone.len(), 1);
    assert_eq!(clone[0].args[0].op, "SCMP_CMP_MASKED_EQ");
    assert_eq!(clone[0].args[0].value, 0x7E02_0000);
    let clone3 = rules("clone3");
    assert_eq!(clone3.len(), 1);
    assert_eq!(clone3[0].action, "SCMP_ACT_ERRNO");
    assert_eq!(clone3[0].errno_ret, Some(38));
    assert!(!mentions(&profile, "io_uring_setup"));
    compile(&profile).unwrap();
    // On an older kernel ptrace needs CAP_SYS_PTRACE.
    let old = runtime_default_for(&[], &amd64((4, 4, 0)));
    assert!(!mentions(&old, "ptrace"));
    let old = runtime_default_for(&caps(&["SYS_PTRACE"]), &amd64((4, 4, 0)));
    assert!(allows(&old, "ptrace"));
    // aarch64: no x86 syscalls, ARM as the sub-architecture.
    let arm = runtime_default_for(&[], &arm64());
    assert!(!mentions(&arm, "arch_prctl"));
    assert!(allows(&arm, "set_tls"));
    assert_eq!(arm.architectures, ["SCMP_ARCH_ARM"]);
}

const PRIVILEGED_SYSCALLS: &[(&str, &str)] = &[
    ("mount", "CAP_SYS_ADMIN"),
    ("umount2", "CAP_SYS_ADMIN"),
    ("unshare", "CAP_SYS_ADMIN"),
    ("setns", "CAP_SYS_ADMIN"),
    ("sethostname", "CAP_SYS_ADMIN"),
    ("setdomainname", "CAP_SYS_ADMIN"),
    ("swapon", "CAP_SYS_ADMIN"),
    ("bpf", "CAP_BPF"),
    ("perf_event_open", "CAP_PERFMON"),
    ("reboot", "CAP_SYS_BOOT"),
    ("init_module", "CAP_SYS_MODULE"),
    ("open_by_handle_at", "CAP_DAC_READ_SEARCH"),
    ("chroot", "CAP_SYS_CHROOT"),
    ("settimeofday", "CAP_SYS_TIME"),
    ("acct", "CAP_SYS_PACCT"),
    ("iopl", "CAP_SYS_RAWIO"),
    ("vhangup", "CAP_SYS_TTY_CONFIG"),
    ("mbind", "CAP_SYS_NICE"),
    ("syslog", "CAP_SYSLOG"),
];

#[test]
fn runtime_default_blocks_privileged_syscalls_without_their_capability() {
    let target = amd64((6, 18, 0));
    let plain = runtime_default_for(&caps(&["CAP_CHOWN", "CAP_NET_RAW"]), &target);
    for (name, cap) in PRIVILEGED_SYSCALLS {
        assert!(!mentions(&plain, name), "{name} is allowed without {cap}");
        let with = runtime_default_for(&caps(&[cap]), &target);
        assert!(allows(&with, name), "{name} is not allowed with {cap}");
    }
    // Never allowed, whatever the capabilities (Docker's choice).
    let all = runtime_default_for(&caps(&["ALL"]), &target);
    for name in [
        "keyctl",
        "add_key",
        "request_key",
        "kexec_load",
        "kexec_file_load",
        "userfaultfd",
        "io_uring_setup",
    ] {
        assert!(!mentions(&all, name), "{name} is allowed");
    }
    // With CAP_SYS_ADMIN, clone and clone3 are allowed without conditions.
    let admin = runtime_default_for(&caps(&["SYS_ADMIN"]), &target);
    assert!(allows(&admin, "clone") && allows(&admin, "clone3"));
    assert_eq!(
        admin
            .syscalls
            .iter()
            .filter(|r| r.names.iter().any(|n| n == "clone"))
            .count(),
        1
    );
    compile(&all).unwrap();
}

#[test]
fn the_built_in_profile_names_only_known_syscalls() {
    // Every name is a syscall of some architecture libseccomp knows, or one of the new
    // ones listed here: a typo would silently allow nothing.
    let doc: serde_json::Value = serde_json::from_str(DEFAULT_PROFILE).unwrap();
    let mut unknown = Vec::new();
    for rule in doc["syscalls"].as_array().unwrap() {
        for name in rule["names"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            let known = [
                ScmpArch::X8664,
                ScmpArch::X86,
                ScmpArch::X32,
                ScmpArch::Aarch64,
                ScmpArch::Arm,
            ]
            .iter()
            .any(|arch| ScmpSyscall::from_name_by_arch(name, *arch).is_ok());
            if !known && !NEW_SYSCALLS.iter().any(|(n, _)| *n == name) {
                unknown.push(name.to_string());
            }
        }
    }
    assert!(unknown.is_empty(), "unknown syscalls: {unknown:?}");
}

#[test]
fn compiled_programs_start_with_the_enosys_stub() {
    let Some(audit_arch) = native_audit_arch() else {
        return;
    };
    let program = compile(&runtime_default(&[])).unwrap();
    assert!(program.len() < MAX_INSTRUCTIONS);
    let first = &program.instructions[..6];
    assert_eq!(first[1].k, audit_arch);
    assert_eq!(first[5].code, BPF_RET_K);
    assert_eq!(first[5].k, libc::SECCOMP_RET_ERRNO | ENOSYS);
    // The highest number the profile names (e.g. file_setattr, 469) is its limit.
    assert!(first[4].k >= 452, "limit {}", first[4].k);
    // An allow-by-default profile needs no stub.
    let chmod = compile(&from_json(CHMOD_PROFILE.as_bytes(), &[]).unwrap()).unwrap();
    let enosys =
        |i: &libc::sock_filter| i.code == BPF_RET_K && i.k == libc::SECCOMP_RET_ERRNO | ENOSYS;
    assert!(!chmod.instructions.iter().any(enosys));
}

#[test]
fn compiling_skips_what_this_machine_does_not_know() {
    let profile = SeccompProfile {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: None,
        architectures: vec!["SCMP_ARCH_X86".into()],
        syscalls: vec![
            SeccompRule {
                names: caps(&["read", "no_such_syscall", "mseal", "socketcall"]),
                action: "SCMP_ACT_ALLOW".into(),
                ..Default::default()
            },
            // Repeats the default action: skipped.
            SeccompRule {
                names: caps(&["write"]),
                action: "SCMP_ACT_ERRNO".into(),
                errno_ret: Some(1),
                ..Default::default()
            },
            // Two conditions on one argument: two rules.
            SeccompRule {
                names: caps(&["personality"]),
                action: "SCMP_ACT_ALLOW".into(),
                errno_ret: None,
                args: vec![
                    SeccompArg {
                        index: 0,
                        value: 0,
                        value_two: 0,
                        op: "SCMP_CMP_EQ".into(),
                    },
                    SeccompArg {
                        index: 0,
                        value: 8,
                        value_two: 0,
                        op: "SCMP_CMP_EQ".into(),
                    },
                ],
            },
        ],
    };
    compile(&profile).unwrap();
}

// ---- Real processes ------------------------------------------------------------------

const CHILD_ENV: &str = "FERROCRI_SECCOMP_TEST_CHILD";
const CHILD_TEST: &str = "executor::seccomp::tests::child_entry";

/// What a re-executed test binary does: optionally enter a new UTS namespace, set
/// no_new_privs, load the profile, then exec `argv` or run the probes.
#[derive(Serialize, Deserialize)]
struct Plan {
    profile: SeccompProfile,
    new_uts: bool,
    argv: Vec<String>,
}

/// Not a test: the body of the child process the tests below start. It loads a filter
/// into its own thread, so it must never run in the test process itself.
#[test]
fn child_entry() {
    let Ok(plan) = std::env::var(CHILD_ENV) else {
        return;
    };
    let plan: Plan = serde_json::from_str(&plan).expect("plan");
    if plan.new_uts {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS).expect("unshare UTS");
    }
    // SAFETY: plain prctl.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
        0
    );
    let program = compile(&plan.profile).expect("compile");
    if let Err(e) = program.load() {
        eprintln!("load: {e}");
        std::process::exit(120);
    }
    if plan.argv == ["probe"] {
        probe();
    }
    let err = Command::new(&plan.argv[0]).args(&plan.argv[1..]).exec();
    eprintln!("exec {:?}: {err}", plan.argv);
    std::process::exit(121);
}

/// Raw syscalls under the filter, each reported as `name=<result or errno>`.
fn probe() -> ! {
    fn errno(rc: libc::c_long) -> String {
        if rc < 0 {
            format!(
                "errno{}",
                std::io::Error::last_os_error().raw_os_error().unwrap()
            )
        } else {
            "ok".to_string()
        }
    }
    let mut out = String::new();
    // SAFETY (all): raw syscalls with harmless arguments; failures are the point.
    let beyond = unsafe { libc::syscall(1000) };
    out += &format!("beyond={} ", errno(beyond));
    let clone3 = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
    out += &format!("clone3={} ", errno(clone3));
    let unshare = unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNET) };
    out += &format!("unshare={} ", errno(unshare));
    let query = unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffu64) };
    out += &format!("personality_query={} ", errno(query));
    let norandom = unsafe { libc::syscall(libc::SYS_personality, 0x0040000u64) };
    out += &format!("personality_norandom={} ", errno(norandom));
    let vsock = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) };
    out += &format!("vsock={} ", errno(vsock as libc::c_long));
    let keyctl = unsafe { libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0) };
    out += &format!("keyctl={} ", errno(keyctl));
    // pthread_create tries clone3 first and falls back to clone on ENOSYS.
    let thread = std::thread::spawn(|| 7).join().map(|v| v == 7);
    out += &format!(
        "thread={}",
        if matches!(thread, Ok(true)) {
            "ok"
        } else {
            "failed"
        }
    );
    println!("PROBE {out}");
    std::process::exit(0);
}

fn run_child(profile: &SeccompProfile, new_uts: bool, argv: &[&str]) -> Output {
    let plan = Plan {
        profile: profile.clone(),
        new_uts,
        argv: argv.iter().map(|a| a.to_string()).collect(),
    };
    Command::new("/proc/self/exe")
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, serde_json::to_string(&plan).unwrap())
        .output()
        .expect("run the test binary")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The capabilities a container gets by default.
fn default_caps() -> Vec<String> {
    caps(crate::executor::capabilities::DEFAULT_CAPABILITIES)
}

#[test]
fn chmod_profile_makes_chmod_fail() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let path = file.to_str().unwrap();
    let profile = from_json(CHMOD_PROFILE.as_bytes(), &[]).unwrap();
    let output = run_child(&profile, false, &["/bin/chmod", "400", path]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success(), "chmod succeeded: {stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    let mode = std::fs::metadata(&file).unwrap().permissions();
    assert_ne!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o400
    );
    // Without the profile the same command works (the test itself is sound).
    let unconfined = SeccompProfile {
        default_action: "SCMP_ACT_ALLOW".into(),
        ..Default::default()
    };
    let output = run_child(&unconfined, false, &["/bin/chmod", "400", path]);
    assert!(output.status.success(), "{:?}", text(&output));
}

#[test]
fn runtime_default_runs_a_shell_in_filter_mode() {
    let profile = runtime_default(&default_caps());
    let output = run_child(
        &profile,
        false,
        &[
            "/bin/sh",
            "-c",
            "echo ok; grep Seccomp: /proc/self/status; ls / >/dev/null && echo listed",
        ],
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("ok\n"), "{stdout}");
    assert!(stdout.contains("Seccomp:\t2\n"), "{stdout}");
    assert!(stdout.contains("listed\n"), "{stdout}");
}

#[test]
fn runtime_default_refuses_unshare_without_sys_admin() {
    let output = run_child(
        &runtime_default(&default_caps()),
        false,
        &["/usr/bin/unshare", "-n", "true"],
    );
    let (_, stderr) = text(&output);
    assert!(!output.status.success(), "unshare succeeded");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    // With CAP_SYS_ADMIN in the list the filter lets it through (the test runs as root).
    let mut admin = default_caps();
    admin.push("CAP_SYS_ADMIN".into());
    let output = run_child(
        &runtime_default(&admin),
        false,
        &["/usr/bin/unshare", "-n", "true"],
    );
    assert!(output.status.success(), "{:?}", text(&output));
}

#[test]
fn runtime_default_answers_raw_syscalls_as_docker_does() {
    let output = run_child(&runtime_default(&default_caps()), false, &["probe"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("PROBE ").map(|(_, probes)| probes))
        .unwrap_or_else(|| panic!("no probe line: {stdout}\n{stderr}"));
    let enosys = format!("errno{}", libc::ENOSYS);
    let eperm = format!("errno{}", libc::EPERM);
    for (key, want) in [
        ("beyond", enosys.as_str()),
        ("clone3", enosys.as_str()),
        ("unshare", eperm.as_str()),
        ("personality_query", "ok"),
        ("personality_norandom", eperm.as_str()),
        ("vsock", eperm.as_str()),
        ("keyctl", eperm.as_str()),
        ("thread", "ok"),
    ] {
        assert!(
            line.split(' ').any(|f| f == format!("{key}={want}")),
            "{key} should be {want}: {line}"
        );
    }
}

#[test]
fn hostname_profile_blocks_sethostname_even_with_sys_admin() {
    let profile = from_json(HOSTNAME_PROFILE.as_bytes(), &caps(&["SYS_ADMIN"])).unwrap();
    // In a UTS namespace of its own, so the host's name is never at stake.
    let output = run_child(&profile, true, &["/bin/hostname", "ANewHostName"]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success(), "hostname succeeded");
    // Debian's hostname reports EPERM as "you must be root to change the host name".
    assert!(
        stderr.contains("Operation not permitted") || stderr.contains("must be root"),
        "{stderr}"
    );
    let unconfined = SeccompProfile {
        default_action: "SCMP_ACT_ALLOW".into(),
        ..Default::default()
    };
    let output = run_child(
        &unconfined,
        true,
        &["/bin/sh", "-c", "hostname ANewHostName && hostname"],
    );
    let (stdout, _) = text(&output);
    assert!(stdout.contains("ANewHostName"), "{:?}", text(&output));
}

/// Busybox as the critest images have it (Debian's dynamic busybox, unpacked by
/// hack/build-test-images.sh); skipped when it is not there.
#[test]
fn runtime_default_runs_busybox_applets() {
    let busybox = std::env::var("FERROCRI_TEST_BUSYBOX")
        .unwrap_or_else(|_| "/var/cache/ferrocri-test-images/busybox-root/bin/busybox".to_string());
    if !std::path::Path::new(&busybox).exists() {
        eprintln!("skipped: no busybox at {busybox}");
        return;
    }
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "served\n").unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let script = format!(
        r#"set -e
bb={bb}
$bb echo echoed
$bb ls / >/dev/null && $bb echo listed
$bb sleep 0.1 && $bb echo slept
$bb top -b -n 1 >/dev/null && $bb echo topped
$bb ping -c 1 -W 2 127.0.0.1 >/dev/null && $bb echo pinged
$bb httpd -f -p 127.0.0.1:{port} -h {www} &
pid=$!
$bb sleep 0.3
printf 'GET /index.html HTTP/1.0\r\n\r\n' | $bb nc 127.0.0.1 {port} | $bb grep -q served && $bb echo fetched
$bb kill $pid
$bb grep Seccomp: /proc/self/status
"#,
        bb = busybox,
        port = port,
        www = www.path().display()
    );
    let output = run_child(
        &runtime_default(&default_caps()),
        false,
        &[&busybox, "sh", "-c", &script],
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for word in [
        "echoed",
        "listed",
        "slept",
        "topped",
        "pinged",
        "fetched",
        "Seccomp:\t2",
    ] {
        assert!(stdout.contains(word), "{word} missing:\n{stdout}\n{stderr}");
    }
}
