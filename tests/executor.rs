//! `ferrocri-monitor executor` against a real busybox root: the image is pulled once (in process,
//! with the crate's image service) from the local test registry, and each test runs the
//! real binary the way the monitor will, with the report pipe on fd 3 and the start pipe on
//! fd 4. Needs root and the registry on 127.0.0.1:5000 (hack/registry.sh start &&
//! hack/build-test-images.sh).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use ferrocri::executor::spec::{ContainerSpec, Mount, NamespaceMode, Rlimit, Rootfs, User};
use ferrocri::executor::sync::{Reports, START_BYTE, executor_args};

/// The executor is a mode of the monitor binary (the monitor runs it as /proc/self/exe).
const BIN: &str = env!("CARGO_BIN_EXE_ferrocri-monitor");
const BUSYBOX: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";

/// containerd's default capability set, and its mask in /proc/<pid>/status.
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];
const DEFAULT_CAPS_MASK: &str = "00000000a80425fb";

/// containerd's defaults for unprivileged containers.
const MASKED: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

// ---------------------------------------------------------------------------------------
// The image

struct Image {
    /// Top-most first.
    layers: Vec<PathBuf>,
    env: Vec<String>,
}

fn busybox() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(pull_busybox)
}

fn pull_busybox() -> Image {
    use ferrocri::image::service::Images;
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("executor-images");
    std::fs::create_dir_all(&root).unwrap();
    let mut config = ferrocri::config::Config {
        root_dir: root.clone(),
        ..Default::default()
    };
    config.registry.config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/certs.d");
    let store = ferrocri::store::Store::open(&root.join("metadata.db")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let images = Images::open(&config, store).unwrap();
        let record = images.pull(BUSYBOX, None).await.unwrap_or_else(|e| {
            panic!(
                "cannot pull {BUSYBOX} ({e}); start the local registry: \
                 hack/registry.sh start && hack/build-test-images.sh"
            )
        });
        // The record lists layers bottom first; overlayfs wants the top first.
        let mut layers: Vec<PathBuf> = record.chain_ids().map(|c| images.layer_path(c)).collect();
        layers.reverse();
        let env = record
            .config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default();
        Image { layers, env }
    })
}

// ---------------------------------------------------------------------------------------
// A container to run

/// A container's folder (spec, upper and work dirs, mount point, files to bind) and spec.
struct Container {
    dir: tempfile::TempDir,
    spec: ContainerSpec,
}

fn mount(source: &str, destination: &str, fstype: &str, options: &[&str]) -> Mount {
    Mount {
        source: source.into(),
        destination: destination.into(),
        fstype: fstype.into(),
        options: options.iter().map(|s| s.to_string()).collect(),
        image: None,
    }
}

fn bind(source: &Path, destination: &str, options: &[&str]) -> Mount {
    mount(&source.to_string_lossy(), destination, "bind", options)
}

impl Container {
    /// What the daemon will send for an unprivileged busybox container running `args`.
    fn new(args: &[&str]) -> Container {
        Container::new_in(&std::env::temp_dir(), args)
    }

    /// The same, with the container's folder in `base`.
    fn new_in(base: &Path, args: &[&str]) -> Container {
        let image = busybox();
        let dir = tempfile::tempdir_in(base).unwrap();
        for sub in ["upper", "work", "rootfs"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let files = [
            ("hosts", "127.0.0.1 localhost\n"),
            ("resolv.conf", "nameserver 10.10.10.10\n"),
            ("hostname", "test-host\n"),
        ];
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let file = |name: &str| dir.path().join(name);
        let mounts = vec![
            mount("proc", "/proc", "proc", &["nosuid", "noexec", "nodev"]),
            mount(
                "tmpfs",
                "/dev",
                "tmpfs",
                &["nosuid", "strictatime", "mode=755", "size=65536k"],
            ),
            mount(
                "devpts",
                "/dev/pts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            ),
            mount(
                "shm",
                "/dev/shm",
                "tmpfs",
                &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            ),
            mount(
                "mqueue",
                "/dev/mqueue",
                "mqueue",
                &["nosuid", "noexec", "nodev"],
            ),
            mount(
                "sysfs",
                "/sys",
                "sysfs",
                &["nosuid", "noexec", "nodev", "ro"],
            ),
            mount(
                "cgroup",
                "/sys/fs/cgroup",
                "cgroup2",
                &["nosuid", "noexec", "nodev", "relatime", "ro"],
            ),
            bind(&file("hosts"), "/etc/hosts", &["rbind", "rprivate", "rw"]),
            bind(
                &file("resolv.conf"),
                "/etc/resolv.conf",
                &["rbind", "rprivate", "rw"],
            ),
            bind(
                &file("hostname"),
                "/etc/hostname",
                &["rbind", "rprivate", "rw"],
            ),
        ];
        let spec = ContainerSpec {
            id: "test".into(),
            rootfs: Rootfs {
                lower_dirs: image.layers.clone(),
                upper_dir: dir.path().join("upper"),
                work_dir: dir.path().join("work"),
                mount_point: dir.path().join("rootfs"),
                readonly: false,
            },
            args: args.iter().map(|s| s.to_string()).collect(),
            env: image.env.clone(),
            cwd: "/".into(),
            mounts,
            masked_paths: MASKED.iter().map(|s| s.to_string()).collect(),
            readonly_paths: READONLY.iter().map(|s| s.to_string()).collect(),
            capabilities: DEFAULT_CAPS.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Container { dir, spec }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self) -> Outcome {
        self.run_with(true, &[])
    }

    /// Runs the executor (under `wrapper`, e.g. `unshare --pid --fork`), sends the start
    /// byte if `start`, and collects everything. Checks that no mount of this container
    /// is left on the host.
    fn run_with(&self, start: bool, wrapper: &[&str]) -> Outcome {
        self.run_inner(start, wrapper, None)
    }

    /// Runs with `tty` set and a console socket on fd 5, as the monitor does: the outcome,
    /// and what the container wrote to the terminal the executor made and sent back.
    fn run_on_terminal(&mut self) -> (Outcome, String) {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        self.spec.tty = true;
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let outcome = self.run_inner(true, &[], Some(above_4(theirs)));
        let master = ferrocri::executor::terminal::receive_master(&ours)
            .unwrap_or_else(|e| panic!("{e}: {outcome:?}"));
        let mut text = Vec::new();
        // Every slave fd is closed now: the master reads what is buffered, then EIO.
        let _ = std::io::Read::read_to_end(&mut File::from(master), &mut text);
        (outcome, String::from_utf8_lossy(&text).into_owned())
    }

    fn run_inner(&self, start: bool, wrapper: &[&str], console: Option<OwnedFd>) -> Outcome {
        let spec_file = self.path("spec.json");
        std::fs::write(&spec_file, serde_json::to_vec(&self.spec).unwrap()).unwrap();
        let (report_read, report_write) = pipe();
        let (start_read, start_write) = pipe();
        let mut command = match wrapper.split_first() {
            None => Command::new(BIN),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
        };
        command.args(executor_args(&spec_file));
        command.stdin(Stdio::null());
        if console.is_none() {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        } else {
            // The executor puts the terminal it makes on 0-2.
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let (report_fd, start_fd) = (report_write.as_raw_fd(), start_read.as_raw_fd());
        let console_fd = console.as_ref().map(|fd| fd.as_raw_fd());
        // SAFETY: only dup2 between fork and exec (async-signal-safe). All fds are above
        // 5 (see `pipe`), so no dup2 overwrites another's source.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(report_fd, 3) < 0 || libc::dup2(start_fd, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = console_fd
                    && libc::dup2(fd, 5) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn the executor");
        drop((report_write, start_read));

        let mut reports = Reports::new(File::from(report_read));
        let ready = reports.wait_ready();
        let mut start_pipe = File::from(start_write);
        let exec = if ready.is_ok() && start {
            start_pipe.write_all(&[START_BYTE]).unwrap();
            Some(reports.wait_exec())
        } else {
            None
        };
        drop(start_pipe);
        let output = child.wait_with_output().unwrap();
        assert_no_mount_left(self.dir.path());
        Outcome {
            ready,
            exec,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (above_4(read), above_4(write))
}

fn above_4(fd: OwnedFd) -> OwnedFd {
    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))
        .map(|raw| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
        .unwrap()
}

fn assert_no_mount_left(dir: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_string_lossy();
    let left: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&*dir)).collect();
    assert!(left.is_empty(), "mounts left on the host: {left:#?}");
}

#[derive(Debug)]
struct Outcome {
    ready: Result<Vec<String>, String>,
    exec: Option<Result<(), String>>,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// The container ran and exited 0; its stdout.
    fn success(&self) -> &str {
        assert_eq!(self.ready, Ok(vec![]), "{self:#?}");
        assert_eq!(self.exec, Some(Ok(())), "{self:#?}");
        assert!(self.status.success(), "{self:#?}");
        &self.stdout
    }

    /// The container ran (the exec happened) and exited non-zero; its stderr.
    fn ran_and_failed(&self) -> &str {
        assert_eq!(self.exec, Some(Ok(())), "{self:#?}");
        assert!(!self.status.success(), "{self:#?}");
        &self.stderr
    }

    /// The executor failed before ready; its message.
    fn setup_error(&self) -> &str {
        assert_eq!(self.status.code(), Some(1), "{self:#?}");
        self.ready.as_ref().expect_err("the executor should fail")
    }
}

fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|v| v.strip_prefix(':')))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
}

// ---------------------------------------------------------------------------------------
// Process

#[test]
fn echo_hello() {
    let out = Container::new(&["echo", "hello"]).run();
    assert_eq!(out.success(), "hello\n");
    assert_eq!(out.stderr, "");
}

#[test]
fn argv0_is_found_through_the_image_path_inside_the_root() {
    let mut c = Container::new(&["hello-from-path", "arg"]);
    // A top layer of our own with a program the host does not have.
    let layer = c.path("layer");
    std::fs::create_dir_all(layer.join("custom/bin")).unwrap();
    let script = layer.join("custom/bin/hello-from-path");
    std::fs::write(&script, "#!/bin/sh\necho \"resolved $1\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    c.spec.rootfs.lower_dirs.insert(0, layer);
    c.spec.env = vec!["PATH=/nowhere:/custom/bin:/bin".into()];
    assert_eq!(c.run().success(), "resolved arg\n");
}

#[test]
fn env_is_exactly_the_spec_plus_home() {
    let mut c = Container::new(&["env"]);
    c.spec.env = vec!["PATH=/bin".into(), "FOO=bar baz".into()];
    let out = c.run();
    let mut lines: Vec<&str> = out.success().lines().collect();
    lines.sort();
    assert_eq!(lines, ["FOO=bar baz", "HOME=/root", "PATH=/bin"]);
}

#[test]
fn cwd_is_created_for_the_user() {
    let mut c = Container::new(&["sh", "-c", "pwd; stat -c %u:%g .; touch f && echo wrote"]);
    c.spec.cwd = "/home/app/work".into();
    c.spec.user = User {
        uid: 1001,
        gid: 1002,
        additional_gids: vec![],
    };
    assert_eq!(c.run().success(), "/home/app/work\n1001:1002\nwrote\n");
}

#[test]
fn user_group_and_additional_groups() {
    let mut c = Container::new(&["id"]);
    c.spec.user = User {
        uid: 1001,
        gid: 1002,
        additional_gids: vec![1234],
    };
    let out = c.run();
    assert_eq!(out.success(), "uid=1001 gid=1002 groups=1234\n");
}

#[test]
fn default_capabilities() {
    let out = Container::new(&["grep", "Cap", "/proc/self/status"]).run();
    let status = out.success();
    for set in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(status_field(status, set), DEFAULT_CAPS_MASK, "{set}");
    }
    assert_eq!(status_field(status, "CapInh"), "0000000000000000");
    assert_eq!(status_field(status, "CapAmb"), "0000000000000000");
}

#[test]
fn dropped_net_raw() {
    let mut c = Container::new(&["grep", "Cap", "/proc/self/status"]);
    c.spec.capabilities.retain(|c| c != "CAP_NET_RAW");
    let out = c.run();
    assert_eq!(status_field(out.success(), "CapBnd"), "00000000a80405fb");
    assert_eq!(status_field(out.success(), "CapEff"), "00000000a80405fb");
}

#[test]
fn non_root_user_has_no_effective_capabilities() {
    let mut c = Container::new(&["grep", "Cap", "/proc/self/status"]);
    c.spec.user.uid = 1000;
    let out = c.run();
    assert_eq!(status_field(out.success(), "CapEff"), "0000000000000000");
    assert_eq!(status_field(out.success(), "CapBnd"), DEFAULT_CAPS_MASK);
}

#[test]
fn no_new_privileges() {
    for (flag, expected) in [(true, "1"), (false, "0")] {
        let mut c = Container::new(&["grep", "NoNewPrivs", "/proc/self/status"]);
        c.spec.no_new_privileges = flag;
        assert_eq!(status_field(c.run().success(), "NoNewPrivs"), expected);
    }
}

#[test]
fn rlimits_and_oom_score_adj() {
    let mut c = Container::new(&["sh", "-c", "ulimit -n; cat /proc/self/oom_score_adj"]);
    c.spec.rlimits = vec![Rlimit {
        kind: "RLIMIT_NOFILE".into(),
        soft: 1000,
        hard: 2000,
    }];
    c.spec.oom_score_adj = Some(500);
    assert_eq!(c.run().success(), "1000\n500\n");
}

/// Lowering the score needs CAP_SYS_RESOURCE: without it the value is kept, with a warning.
#[test]
fn oom_score_adj_below_what_is_allowed_is_clamped() {
    let mut c = Container::new(&["cat", "/proc/self/oom_score_adj"]);
    c.spec.oom_score_adj = Some(-999);
    let out = c.run();
    assert_eq!(out.exec, Some(Ok(())), "{out:#?}");
    match out.ready.as_deref().unwrap() {
        [] => assert_eq!(out.stdout, "-999\n"),
        [warning] => {
            assert!(
                warning.starts_with("oom_score_adj -999 is not allowed"),
                "{warning}"
            );
            assert_ne!(out.stdout, "-999\n");
        }
        more => panic!("{more:?}"),
    }
}

#[test]
fn joins_its_cgroup() {
    let cgroups = ferrocri::cgroup::Cgroups::detect().unwrap();
    let path = format!("/ferrocri-executor-test-{}", std::process::id());
    cgroups.create(&path).unwrap();
    let mut c = Container::new(&["cat", "/proc/self/cgroup"]);
    c.spec.cgroup = path.clone();
    let out = c.run();
    let _ = cgroups.remove(&path);
    let text = out.success();
    assert!(
        text.lines()
            .any(|l| l.contains("memory") && l.ends_with(&path)),
        "{text}"
    );
}

#[test]
fn terminal_is_the_controlling_tty_and_the_console() {
    let mut c = Container::new(&[
        "sh",
        "-c",
        "test -t 0 && echo tty; test -c /dev/console && echo console; echo x > /dev/tty && echo ctty; \
         tty; ls -1 /dev/pts; stat -c %t:%T /dev/console /dev/pts/0",
    ]);
    let (out, text) = c.run_on_terminal();
    out.success();
    // The terminal is the first pty of the container's own devpts, and its console.
    assert_eq!(
        text.replace("\r\n", "\n"),
        "tty\nconsole\nx\nctty\n/dev/pts/0\n0\nptmx\n88:0\n88:0\n"
    );
}

/// As runc: the terminal (and pipes) on fds 0-2 belong to a non-root user, who can open
/// them again by name; the devpts's `tty` group stays.
#[test]
fn a_non_root_user_owns_its_terminal_and_pipes() {
    let mut c = Container::new(&[
        "sh",
        "-c",
        "stat -c %u:%g $(tty); echo again > $(tty) && echo reopened",
    ]);
    c.spec.user = User {
        uid: 1001,
        gid: 1002,
        additional_gids: vec![],
    };
    let (out, text) = c.run_on_terminal();
    out.success();
    assert_eq!(text.replace("\r\n", "\n"), "1001:5\nagain\nreopened\n");

    let mut c = Container::new(&[
        "sh",
        "-c",
        "echo piped > /dev/stdout; stat -L -c %u /dev/stderr",
    ]);
    c.spec.user = User {
        uid: 1001,
        gid: 1002,
        additional_gids: vec![],
    };
    assert_eq!(c.run().success(), "piped\n1001\n");
}

// ---------------------------------------------------------------------------------------
// Root filesystem and mounts

#[test]
fn readonly_rootfs() {
    let mut c = Container::new(&["touch", "/x"]);
    c.spec.rootfs.readonly = true;
    let out = c.run();
    assert!(
        out.ran_and_failed().contains("Read-only file system"),
        "{out:#?}"
    );
}

#[test]
fn writable_rootfs_writes_to_the_upper_dir() {
    let c = Container::new(&["sh", "-c", "echo hi > /x"]);
    c.run().success();
    assert_eq!(std::fs::read_to_string(c.path("upper/x")).unwrap(), "hi\n");
}

#[test]
fn masked_path() {
    let mut c = Container::new(&["/bin/sh", "-c", "ls"]);
    c.spec.masked_paths.push("/bin/ls".into());
    let out = c.run();
    assert_eq!(out.ran_and_failed(), "/bin/sh: ls: Permission denied\n");
}

#[test]
fn masked_proc_files_and_dirs() {
    // (/proc/kcore, also masked, is missing on some kernels: skipped without an error.)
    let script = "wc -c < /proc/timer_list; ls -A /proc/acpi; ls -A /sys/firmware; echo end";
    let c = Container::new(&["sh", "-c", script]);
    let out = c.run();
    assert_eq!(out.success(), "0\nend\n", "{out:#?}");
}

#[test]
fn readonly_path() {
    let mut c = Container::new(&["touch", "/tmp/test"]);
    c.spec.readonly_paths.push("/tmp".into());
    let out = c.run();
    assert_eq!(
        out.ran_and_failed(),
        "touch: /tmp/test: Read-only file system\n"
    );
}

#[test]
fn standard_mounts_and_devices() {
    let script = "\
        for d in null zero full random urandom tty; do test -c /dev/$d && echo $d; done; \
        ls -l /dev/null | cut -c1-10; \
        echo x > /dev/null && echo wrote-null; \
        test -d /dev/pts && test -c /dev/pts/ptmx && echo pts; \
        for l in ptmx fd stdin; do readlink /dev/$l; done; \
        test -d /dev/shm && test -d /dev/mqueue && echo shm-mqueue; \
        cat /etc/hosts /etc/resolv.conf /etc/hostname; \
        touch /sys/x 2>&1 | grep -q Read-only && echo sys-ro; \
        test -f /sys/fs/cgroup/cgroup.controllers && echo cgroup2";
    let out = Container::new(&["sh", "-c", script]).run();
    assert_eq!(
        out.success(),
        "null\nzero\nfull\nrandom\nurandom\ntty\ncrw-rw-rw-\nwrote-null\npts\n\
         pts/ptmx\n/proc/self/fd\n/proc/self/fd/0\nshm-mqueue\n\
         127.0.0.1 localhost\nnameserver 10.10.10.10\ntest-host\nsys-ro\ncgroup2\n"
    );
}

#[test]
fn extra_device() {
    let mut c = Container::new(&["sh", "-c", "ls -ln /dev/net/tun | cut -c1-10"]);
    c.spec.devices.push(ferrocri::executor::spec::Device {
        path: "/dev/net/tun".into(),
        kind: 'c',
        major: 10,
        minor: 200,
        mode: 0o620,
        uid: 0,
        gid: 0,
    });
    assert_eq!(c.run().success(), "crw--w----\n");
}

#[test]
fn read_write_and_read_only_binds() {
    let host = tempfile::tempdir().unwrap();
    let mut c = Container::new(&[
        "sh",
        "-c",
        "echo rw > /rw/file && echo wrote; echo ro > /ro/file",
    ]);
    c.spec
        .mounts
        .push(bind(host.path(), "/rw", &["rbind", "rprivate"]));
    c.spec
        .mounts
        .push(bind(host.path(), "/ro", &["rbind", "ro", "rprivate"]));
    let out = c.run();
    assert_eq!(out.stdout, "wrote\n");
    assert!(
        out.ran_and_failed().contains("Read-only file system"),
        "{out:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("file")).unwrap(),
        "rw\n"
    );
}

#[test]
fn bind_source_symlink_is_followed() {
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir(host.path().join("real")).unwrap();
    std::fs::write(host.path().join("real/marker"), "found\n").unwrap();
    std::os::unix::fs::symlink(host.path().join("real"), host.path().join("link")).unwrap();
    let mut c = Container::new(&["cat", "/vol/marker"]);
    c.spec
        .mounts
        .push(bind(&host.path().join("link"), "/vol", &["rbind"]));
    assert_eq!(c.run().success(), "found\n");
}

#[test]
fn bind_destination_symlink_stays_in_the_root() {
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("marker"), "inside\n").unwrap();
    let mut c = Container::new(&["cat", "/target-in-root/marker"]);
    // The image's /escape climbs above / on purpose: resolved in the root it is
    // /target-in-root of the image; resolved on the host it would not exist.
    let layer = c.path("layer");
    std::fs::create_dir_all(layer.join("target-in-root")).unwrap();
    std::os::unix::fs::symlink("/../../target-in-root", layer.join("escape")).unwrap();
    c.spec.rootfs.lower_dirs.insert(0, layer);
    c.spec.mounts.push(bind(host.path(), "/escape", &["rbind"]));
    assert_eq!(c.run().success(), "inside\n");
    assert!(!Path::new("/target-in-root").exists(), "reached the host");
}

#[test]
fn missing_bind_source_is_an_error_naming_it() {
    let mut c = Container::new(&["true"]);
    c.spec.mounts.push(mount(
        "/nonexistent-ferrocri-source",
        "/data",
        "bind",
        &["rbind"],
    ));
    assert_eq!(
        c.run().setup_error(),
        "mount /data: bind source /nonexistent-ferrocri-source: No such file or directory"
    );
}

/// A host mount under a bound directory: `ro` leaves it writable, `rro` does not.
#[test]
fn recursive_read_only() {
    let host = tempfile::tempdir().unwrap();
    let sub = host.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let _unmount = Unmount(sub.clone());
    let script = "touch /vol/sub/f && echo sub-writable; touch /vol/f";
    for (option, expected) in [("ro", "sub-writable\n"), ("rro", "")] {
        let mut c = Container::new(&["sh", "-c", script]);
        c.spec
            .mounts
            .push(bind(host.path(), "/vol", &["rbind", option, "rprivate"]));
        let out = c.run();
        assert_eq!(out.stdout, expected, "{option}: {out:#?}");
        assert!(out.ran_and_failed().contains("Read-only file system"));
    }
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A privileged container mounts under a volume: with rshared it shows on the host, with
/// rslave it does not.
#[test]
fn mount_propagation_to_the_host() {
    for (propagation, reaches_host) in [("rshared", true), ("rslave", false)] {
        let host = tempfile::tempdir().unwrap();
        let vol = host.path().join("vol");
        std::fs::create_dir_all(vol.join("sub")).unwrap();
        // Bidirectional volumes must be on a shared mount on the host.
        let flags = nix::mount::MsFlags::MS_BIND;
        nix::mount::mount(Some(&vol), &vol, None::<&str>, flags, None::<&str>).unwrap();
        let _unmount_vol = Unmount(vol.clone());
        let shared = nix::mount::MsFlags::MS_SHARED;
        nix::mount::mount(None::<&str>, &vol, None::<&str>, shared, None::<&str>).unwrap();

        let mut c = Container::new(&["mount", "-t", "tmpfs", "tmpfs", "/vol/sub"]);
        c.spec.privileged = true;
        c.spec.masked_paths.clear();
        c.spec.readonly_paths.clear();
        c.spec
            .mounts
            .push(bind(&vol, "/vol", &["rbind", propagation]));
        c.run().success();

        let sub = vol.join("sub");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mounted = mountinfo
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&*sub.to_string_lossy()));
        let _ = nix::mount::umount2(&sub, nix::mount::MntFlags::MNT_DETACH);
        assert_eq!(mounted, reaches_host, "{propagation}");
    }
}

/// The state dir on a shared mount (/run on systemd hosts) with a shared volume: nothing of
/// the container may show on the host.
#[test]
fn rootfs_on_a_shared_mount_stays_in_the_container() {
    let state = tempfile::tempdir().unwrap();
    let none = None::<&str>;
    let tmpfs = Some("tmpfs");
    nix::mount::mount(
        tmpfs,
        state.path(),
        tmpfs,
        nix::mount::MsFlags::empty(),
        none,
    )
    .unwrap();
    let _unmount = Unmount(state.path().to_owned());
    let shared = nix::mount::MsFlags::MS_SHARED;
    nix::mount::mount(none, state.path(), none, shared, none).unwrap();
    std::fs::create_dir(state.path().join("vol")).unwrap();

    let mut c = Container::new_in(state.path(), &["cat", "/etc/hostname"]);
    c.spec.mounts.push(bind(
        &state.path().join("vol"),
        "/vol",
        &["rbind", "rshared"],
    ));
    assert_eq!(c.run().success(), "test-host\n");
    assert_no_mount_left(c.dir.path());
}

// ---------------------------------------------------------------------------------------
// Many layers (the one-page limit on mount options)

/// `count` empty layers, each at `make_path(i)`, on top of busybox.
fn with_empty_layers(c: &mut Container, count: usize, make_path: impl Fn(usize) -> PathBuf) {
    let mut lowers: Vec<PathBuf> = (0..count).map(make_path).collect();
    for l in &lowers {
        std::fs::create_dir_all(l).unwrap();
    }
    lowers.extend(c.spec.rootfs.lower_dirs.iter().cloned());
    c.spec.rootfs.lower_dirs = lowers;
}

#[test]
fn many_layers_in_one_deep_dir() {
    let mut c = Container::new(&["echo", "ok"]);
    let deep = c.path(&format!("{}/{}", "d".repeat(120), "e".repeat(120)));
    // Busybox's layers are reached through links next to the others, so all share a parent.
    let busybox: Vec<PathBuf> = std::mem::take(&mut c.spec.rootfs.lower_dirs);
    with_empty_layers(&mut c, 40, |i| deep.join(format!("l{i}")));
    for (i, layer) in busybox.iter().enumerate() {
        let link = deep.join(format!("b{i}"));
        std::os::unix::fs::symlink(layer, &link).unwrap();
        c.spec.rootfs.lower_dirs.push(link);
    }
    let options: usize = c
        .spec
        .rootfs
        .lower_dirs
        .iter()
        .map(|l| l.as_os_str().len() + 1)
        .sum();
    assert!(options > 4096, "the test needs a lowerdir list over a page");
    assert_eq!(c.run().success(), "ok\n");
}

#[test]
fn many_layers_in_scattered_dirs() {
    let mut c = Container::new(&["echo", "ok"]);
    let base = c.path("layers");
    with_empty_layers(&mut c, 40, |i| {
        base.join(format!("{i}-{}", "x".repeat(120))).join("layer")
    });
    assert_eq!(c.run().success(), "ok\n");
}

// ---------------------------------------------------------------------------------------
// Namespaces

#[test]
fn pid_namespace_from_the_parent() {
    // Builtins only, so the shell is the one process: PID 1.
    let script = "echo pid=$$; for p in /proc/[0-9]*; do echo ${p#/proc/}; done";
    let c = Container::new(&["sh", "-c", script]);
    let out = c.run_with(true, &["unshare", "--pid", "--fork"]);
    assert_eq!(out.success(), "pid=1\n1\n");
}

#[test]
fn joins_a_pinned_network_namespace() {
    let name = format!("ferrocri-exec-{}", std::process::id());
    let added = Command::new("ip").args(["netns", "add", &name]).status();
    assert!(added.unwrap().success());
    let _delete = NetnsGuard(name.clone());
    let mut c = Container::new(&["cat", "/proc/net/dev"]);
    c.spec.namespaces.network = NamespaceMode::Join(format!("/run/netns/{name}").into());
    assert_eq!(interfaces(c.run().success()), ["lo"]);
}

#[test]
fn new_network_namespace() {
    let mut c = Container::new(&["cat", "/proc/net/dev"]);
    c.spec.namespaces.network = NamespaceMode::New;
    c.spec.namespaces.uts = NamespaceMode::New;
    c.spec.namespaces.ipc = NamespaceMode::New;
    assert_eq!(interfaces(c.run().success()), ["lo"]);
}

fn interfaces(proc_net_dev: &str) -> Vec<&str> {
    proc_net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect()
}

struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

// ---------------------------------------------------------------------------------------
// The protocol

#[test]
fn closing_the_start_pipe_runs_nothing() {
    let c = Container::new(&["touch", "/started"]);
    let out = c.run_with(false, &[]);
    assert_eq!(out.ready, Ok(vec![]));
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
    assert!(!c.path("upper/started").exists());
}

#[test]
fn a_failing_step_is_reported_with_its_name() {
    let mut c = Container::new(&["true"]);
    c.spec.namespaces.network = NamespaceMode::Join("/nonexistent/netns".into());
    assert_eq!(
        c.run().setup_error(),
        "namespaces: open network namespace /nonexistent/netns: No such file or directory"
    );
}

#[test]
fn an_overlay_failure_names_the_rootfs() {
    let mut c = Container::new(&["true"]);
    c.spec.rootfs.upper_dir = c.path("no-such-upper");
    let error = c.run().setup_error().to_owned();
    assert!(error.starts_with("rootfs: mount overlay at "), "{error}");
    assert!(error.contains("no-such-upper"), "{error}");
}

#[test]
fn a_missing_binary_fails_the_exec() {
    let out = Container::new(&["no-such-binary"]).run();
    assert_eq!(out.ready, Ok(vec![]));
    assert_eq!(
        out.exec,
        Some(Err(
            "exec no-such-binary: No such file or directory".to_owned()
        ))
    );
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn the_runtime_default_seccomp_filter_applies_with_and_without_no_new_privs() {
    for no_new_privs in [true, false] {
        let mut c = Container::new(&["grep", "Seccomp:", "/proc/self/status"]);
        c.spec.no_new_privileges = no_new_privs;
        c.spec.seccomp = Some(ferrocri::executor::seccomp::runtime_default(
            &c.spec.capabilities,
        ));
        let out = c.run();
        assert_eq!(out.exec, Some(Ok(())), "{out:?}");
        assert!(out.stdout.contains("Seccomp:\t2"), "{}", out.stdout);
    }
}

#[test]
fn a_seccomp_profile_that_fails_to_compile_is_a_setup_error() {
    let mut c = Container::new(&["true"]);
    c.spec.seccomp = Some(ferrocri::executor::spec::SeccompProfile {
        default_action: "SCMP_ACT_NONSENSE".into(),
        ..Default::default()
    });
    assert!(c.run().setup_error().starts_with("seccomp"), "refused");
}

#[test]
fn exit_status_passes_through() {
    let out = Container::new(&["sh", "-c", "exit 7"]).run();
    assert_eq!(out.exec, Some(Ok(())));
    assert_eq!(out.status.code(), Some(7));
    let killed = Container::new(&["sh", "-c", "kill -9 $$"]).run();
    assert_eq!(killed.status.signal(), Some(9));
}

#[test]
fn without_the_pipes_it_refuses_to_run() {
    let mut command = Command::new(BIN);
    command.args(["executor", "--spec", "/nonexistent"]);
    // SAFETY: only close between fork and exec. (cargo may hand down jobserver fds.)
    unsafe {
        command.pre_exec(|| {
            libc::close(3);
            libc::close(4);
            Ok(())
        });
    }
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fd 3"));
}
