//! Tests of the whole driver: on fake trees in a temporary directory (any user, any host),
//! and on this machine's real cgroups (root only; skipped otherwise).

use std::collections::HashMap;
use std::fs as stdfs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

const MIB: i64 = 1 << 20;

fn put(path: &Path, text: &str) {
    stdfs::create_dir_all(path.parent().unwrap()).unwrap();
    stdfs::write(path, text).unwrap();
}

fn get(path: &Path) -> String {
    stdfs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

// ---------------------------------------------------------------- fake trees

fn fake_v2() -> (tempfile::TempDir, Cgroups) {
    let tmp = tempfile::tempdir().unwrap();
    let mountinfo = format!(
        "30 1 0:26 / {} rw - cgroup2 cgroup2 rw,nsdelegate\n",
        tmp.path().display()
    );
    let cgroups = Cgroups::from_mountinfo(&mountinfo).unwrap();
    (tmp, cgroups)
}

fn fake_v1() -> (tempfile::TempDir, Cgroups) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().display();
    let mountinfo = format!(
        "\
31 23 0:28 / {t} rw - tmpfs tmpfs rw
32 31 0:29 / {t}/systemd rw - cgroup cgroup rw,xattr,name=systemd
33 31 0:30 / {t}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / {t}/cpuset rw - cgroup cgroup rw,cpuset
35 31 0:32 / {t}/memory rw - cgroup cgroup rw,memory
36 31 0:33 / {t}/pids rw - cgroup cgroup rw,pids
37 31 0:34 / {t}/freezer rw - cgroup cgroup rw,freezer
"
    );
    for h in [
        "systemd",
        "cpu,cpuacct",
        "cpuset",
        "memory",
        "pids",
        "freezer",
    ] {
        stdfs::create_dir_all(tmp.path().join(h)).unwrap();
    }
    let cgroups = Cgroups::from_mountinfo(&mountinfo).unwrap();
    (tmp, cgroups)
}

#[test]
fn fake_v2_create_enables_controllers_top_down() {
    let (tmp, cgroups) = fake_v2();
    let root = tmp.path();
    assert_eq!(cgroups.version(), Version::V2);
    assert_eq!(cgroups.layout(), Layout::Unified);
    put(
        &root.join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma\n",
    );
    put(&root.join("cgroup.subtree_control"), "cpu\n");
    // /pod exists already and offers only memory and pids to its children.
    put(&root.join("pod/cgroup.controllers"), "memory pids\n");
    put(&root.join("pod/cgroup.subtree_control"), "pids\n");
    cgroups.create("/pod/ctr").unwrap();
    assert_eq!(
        get(&root.join("cgroup.subtree_control")),
        "+cpuset +io +memory +pids +hugetlb"
    );
    assert_eq!(get(&root.join("pod/cgroup.subtree_control")), "+memory");
    assert!(root.join("pod/ctr").is_dir());
    assert!(!root.join("pod/ctr/cgroup.subtree_control").exists());
}

#[test]
fn fake_v2_apply_maps_every_resource() {
    let (tmp, cgroups) = fake_v2();
    let leaf = tmp.path().join("pod/ctr");
    for (file, value) in [
        ("cgroup.controllers", "cpu memory pids hugetlb"),
        ("cpu.weight", "100"),
        ("cpu.max", "max 100000"),
        ("cpuset.cpus", ""),
        ("cpuset.mems", ""),
        ("memory.max", "max"),
        ("memory.swap.max", "max"),
        ("memory.high", "max"),
        ("pids.max", "max"),
        ("hugetlb.2MB.max", "max"),
        ("hugetlb.2MB.rsvd.max", "max"),
    ] {
        put(&leaf.join(file), value);
    }
    let resources = Resources {
        cpu_shares: Some(1024),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        cpuset_cpus: Some("0-1".into()),
        cpuset_mems: Some("0".into()),
        memory_limit: Some(64 * MIB),
        memory_swap_limit: Some(96 * MIB),
        pids_limit: Some(0),
        hugepage_limits: vec![("2MB".into(), 4 << 20)],
        unified: HashMap::from([("memory.high".into(), "50000000".into())]),
    };
    cgroups.apply("/pod/ctr", &resources).unwrap();
    for (file, value) in [
        ("cpu.weight", "39"),
        ("cpu.max", "50000 100000"),
        ("cpuset.cpus", "0-1"),
        ("cpuset.mems", "0"),
        ("memory.max", "67108864"),
        ("memory.swap.max", "33554432"),
        ("memory.high", "50000000"),
        ("pids.max", "max"),
        ("hugetlb.2MB.max", "4194304"),
        ("hugetlb.2MB.rsvd.max", "4194304"),
    ] {
        assert_eq!(get(&leaf.join(file)), value, "{file}");
    }

    // A period alone keeps the quota in force; a lifted quota becomes "max".
    let period = Resources {
        cpu_period: Some(200_000),
        ..Default::default()
    };
    cgroups.apply("/pod/ctr", &period).unwrap();
    assert_eq!(get(&leaf.join("cpu.max")), "50000 200000");
    let unlimited = Resources {
        cpu_quota: Some(-1),
        memory_limit: Some(-1),
        memory_swap_limit: Some(-1),
        pids_limit: Some(100),
        ..Default::default()
    };
    cgroups.apply("/pod/ctr", &unlimited).unwrap();
    assert_eq!(get(&leaf.join("cpu.max")), "max");
    assert_eq!(get(&leaf.join("memory.max")), "max");
    assert_eq!(get(&leaf.join("memory.swap.max")), "max");
    assert_eq!(get(&leaf.join("pids.max")), "100");

    // A unified key the kernel does not have fails naming the file and the value.
    let bad = Resources {
        unified: HashMap::from([("memory.nonexistent".into(), "7".into())]),
        ..Default::default()
    };
    let err = cgroups.apply("/pod/ctr", &bad).unwrap_err().to_string();
    assert!(
        err.contains("/pod/ctr") && err.contains("memory.nonexistent") && err.contains("\"7\""),
        "{err}"
    );
}

#[test]
fn fake_v2_stats_and_oom_kills() {
    let (tmp, cgroups) = fake_v2();
    let leaf = tmp.path().join("c");
    for (file, value) in [
        (
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 5\nnr_throttled 1\nthrottled_usec 7\n",
        ),
        ("memory.current", "1000000\n"),
        (
            "memory.stat",
            "anon 300000\nfile 400000\nkernel 9000\nfile_mapped 1000\nactive_file 200000\ninactive_file 200000\npgfault 42\npgmajfault 3\n",
        ),
        ("memory.peak", "1100000\n"),
        ("memory.max", "67108864\n"),
        ("memory.low", "0\n"),
        ("memory.swap.max", "max\n"),
        ("cpu.max", "25000 100000\n"),
        ("cpu.weight", "39\n"),
        ("memory.swap.current", "4096\n"),
        ("pids.current", "2\n"),
        ("pids.max", "max\n"),
        ("memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n"),
    ] {
        put(&leaf.join(file), value);
    }
    let stats = cgroups.stats("/c").unwrap();
    assert_eq!(
        stats,
        Stats {
            cpu_usage_ns: 1_500_000,
            memory_usage_bytes: 1_000_000,
            memory_working_set_bytes: 800_000,
            memory_rss_bytes: 300_000,
            page_faults: 42,
            major_page_faults: 3,
            pids: 2,
            swap_usage_bytes: 4096,
            cpu_user_ns: 1_000_000,
            cpu_system_ns: 500_000,
            cfs_periods: 5,
            cfs_throttled_periods: 1,
            cfs_throttled_ns: 7000,
            memory_cache_bytes: 400_000,
            memory_mapped_file_bytes: 1000,
            memory_active_file_bytes: 200_000,
            memory_inactive_file_bytes: 200_000,
            memory_kernel_bytes: 9000,
            memory_max_usage_bytes: 1_100_000,
            memory_failcnt: 0,
            limits: Limits {
                memory_bytes: 67_108_864,
                memory_reservation_bytes: 0,
                memory_swap_bytes: 0,
                cpu_period_us: 100_000,
                cpu_shares: 998,
                pids: 0,
            },
        }
    );
    assert_eq!(cgroups.oom_kills("/c").unwrap(), 2);
    assert!(matches!(
        cgroups.stats("/missing"),
        Err(CgroupError::NotFound { .. })
    ));
}

#[test]
fn fake_v1_create_copies_cpuset_from_the_parent_down() {
    let (tmp, cgroups) = fake_v1();
    let t = tmp.path();
    assert_eq!(cgroups.version(), Version::V1);
    assert_eq!(cgroups.layout(), Layout::Legacy);
    put(&t.join("cpuset/cpuset.cpus"), "0-3\n");
    put(&t.join("cpuset/cpuset.mems"), "0\n");
    // What the kernel shows in a new cpuset cgroup: the files exist, empty. /a already had
    // its own value.
    put(&t.join("cpuset/a/cpuset.cpus"), "1-2\n");
    put(&t.join("cpuset/a/cpuset.mems"), "\n");
    put(&t.join("cpuset/a/b/cpuset.cpus"), "\n");
    put(&t.join("cpuset/a/b/cpuset.mems"), "\n");
    cgroups.create("/a/b").unwrap();
    for h in ["systemd", "cpu,cpuacct", "memory", "pids", "freezer"] {
        assert!(t.join(h).join("a/b").is_dir(), "{h}");
    }
    assert_eq!(get(&t.join("cpuset/a/cpuset.cpus")), "1-2");
    assert_eq!(get(&t.join("cpuset/a/cpuset.mems")), "0");
    assert_eq!(get(&t.join("cpuset/a/b/cpuset.cpus")), "1-2");
    assert_eq!(get(&t.join("cpuset/a/b/cpuset.mems")), "0");
}

#[test]
fn fake_v1_apply_maps_every_resource() {
    let (tmp, cgroups) = fake_v1();
    let t = tmp.path();
    let unlimited = "9223372036854771712";
    for (file, value) in [
        ("cpu,cpuacct/c/cpu.shares", "1024"),
        ("cpu,cpuacct/c/cpu.cfs_quota_us", "-1"),
        ("cpu,cpuacct/c/cpu.cfs_period_us", "100000"),
        ("cpuset/c/cpuset.cpus", "0-3"),
        ("cpuset/c/cpuset.mems", "0"),
        ("memory/c/memory.limit_in_bytes", unlimited),
        ("memory/c/memory.memsw.limit_in_bytes", unlimited),
        ("pids/c/pids.max", "max"),
    ] {
        put(&t.join(file), value);
    }
    let resources = Resources {
        cpu_shares: Some(512),
        cpu_quota: Some(25_000),
        cpu_period: Some(50_000),
        cpuset_cpus: Some("1".into()),
        cpuset_mems: Some("0".into()),
        memory_limit: Some(64 * MIB),
        memory_swap_limit: Some(96 * MIB),
        pids_limit: Some(-1),
        // No hugetlb hierarchy: skipped, not an error.
        hugepage_limits: vec![("2MB".into(), 4 << 20)],
        unified: HashMap::new(),
    };
    cgroups.apply("/c", &resources).unwrap();
    for (file, value) in [
        ("cpu,cpuacct/c/cpu.shares", "512"),
        ("cpu,cpuacct/c/cpu.cfs_quota_us", "25000"),
        ("cpu,cpuacct/c/cpu.cfs_period_us", "50000"),
        ("cpuset/c/cpuset.cpus", "1"),
        ("memory/c/memory.limit_in_bytes", "67108864"),
        ("memory/c/memory.memsw.limit_in_bytes", "100663296"),
        ("pids/c/pids.max", "max"),
    ] {
        assert_eq!(get(&t.join(file)), value, "{file}");
    }
    // Lifting the memory limit lifts memory+swap too.
    let lift = Resources {
        memory_limit: Some(0),
        ..Default::default()
    };
    cgroups.apply("/c", &lift).unwrap();
    assert_eq!(get(&t.join("memory/c/memory.limit_in_bytes")), "-1");
    assert_eq!(get(&t.join("memory/c/memory.memsw.limit_in_bytes")), "-1");

    // Unified settings are refused on v1 before anything is written.
    let unified = Resources {
        cpu_shares: Some(2),
        unified: HashMap::from([("memory.high".into(), "1".into())]),
        ..Default::default()
    };
    let err = cgroups.apply("/c", &unified).unwrap_err();
    assert!(matches!(&err, CgroupError::UnifiedOnV1 { key, .. } if key == "memory.high"));
    assert_eq!(get(&t.join("cpu,cpuacct/c/cpu.shares")), "512");
}

#[test]
fn fake_v1_missing_controller_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mountinfo = format!(
        "1 0 0:1 / {}/memory rw - cgroup cgroup rw,memory\n",
        tmp.path().display()
    );
    stdfs::create_dir_all(tmp.path().join("memory/c")).unwrap();
    let cgroups = Cgroups::from_mountinfo(&mountinfo).unwrap();
    let err = cgroups
        .apply(
            "/c",
            &Resources {
                pids_limit: Some(5),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            &err,
            CgroupError::ControllerMissing {
                controller: "pids",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn fake_v1_stats_and_oom_kills() {
    let (tmp, cgroups) = fake_v1();
    let t = tmp.path();
    for (file, value) in [
        ("cpu,cpuacct/c/cpuacct.usage", "123456789\n"),
        ("cpu,cpuacct/c/cpuacct.usage_user", "100000000\n"),
        ("cpu,cpuacct/c/cpuacct.usage_sys", "23456789\n"),
        (
            "cpu,cpuacct/c/cpu.stat",
            "nr_periods 10\nnr_throttled 2\nthrottled_time 3000\nnr_bursts 0\nburst_time 0\n",
        ),
        ("cpu,cpuacct/c/cpu.cfs_period_us", "100000\n"),
        ("cpu,cpuacct/c/cpu.shares", "256\n"),
        ("memory/c/memory.usage_in_bytes", "1000000\n"),
        (
            "memory/c/memory.stat",
            "rss 1\ninactive_file 2\ntotal_cache 500000\ntotal_rss 300000\ntotal_mapped_file 100\ntotal_active_file 250000\ntotal_inactive_file 250000\ntotal_pgfault 9\ntotal_pgmajfault 1\n",
        ),
        ("memory/c/memory.max_usage_in_bytes", "1500000\n"),
        ("memory/c/memory.failcnt", "6\n"),
        ("memory/c/memory.limit_in_bytes", "67108864\n"),
        (
            "memory/c/memory.soft_limit_in_bytes",
            "9223372036854771712\n",
        ),
        ("memory/c/memory.memsw.limit_in_bytes", "134217728\n"),
        ("pids/c/pids.max", "100\n"),
        ("memory/c/memory.memsw.usage_in_bytes", "1200000\n"),
        (
            "memory/c/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        ),
        ("pids/c/pids.current", "4\n"),
    ] {
        put(&t.join(file), value);
    }
    let stats = cgroups.stats("/c").unwrap();
    assert_eq!(
        stats,
        Stats {
            cpu_usage_ns: 123_456_789,
            memory_usage_bytes: 1_000_000,
            memory_working_set_bytes: 750_000,
            memory_rss_bytes: 300_000,
            page_faults: 9,
            major_page_faults: 1,
            pids: 4,
            swap_usage_bytes: 200_000,
            cpu_user_ns: 100_000_000,
            cpu_system_ns: 23_456_789,
            cfs_periods: 10,
            cfs_throttled_periods: 2,
            cfs_throttled_ns: 3000,
            memory_cache_bytes: 500_000,
            memory_mapped_file_bytes: 100,
            memory_active_file_bytes: 250_000,
            memory_inactive_file_bytes: 250_000,
            // No memory.kmem.usage_in_bytes (removed from recent kernels): 0.
            memory_kernel_bytes: 0,
            memory_max_usage_bytes: 1_500_000,
            memory_failcnt: 6,
            limits: Limits {
                memory_bytes: 67_108_864,
                memory_reservation_bytes: 0,
                memory_swap_bytes: 134_217_728,
                cpu_period_us: 100_000,
                cpu_shares: 256,
                pids: 100,
            },
        }
    );
    assert_eq!(cgroups.oom_kills("/c").unwrap(), 1);
}

#[test]
fn refuses_bad_paths_and_pids_before_touching_anything() {
    let (_tmp, cgroups) = fake_v1();
    for bad in ["relative", "/a/../b", "/a/./b", ""] {
        assert!(
            matches!(cgroups.create(bad), Err(CgroupError::InvalidPath { .. })),
            "{bad:?}"
        );
        assert!(
            matches!(cgroups.remove(bad), Err(CgroupError::InvalidPath { .. })),
            "{bad:?}"
        );
    }
    assert!(matches!(
        cgroups.remove("/"),
        Err(CgroupError::InvalidPath { .. })
    ));
    assert!(matches!(
        cgroups.kill_all("//"),
        Err(CgroupError::InvalidPath { .. })
    ));
    assert!(matches!(
        cgroups.remove_if_empty("/"),
        Err(CgroupError::InvalidPath { .. })
    ));
    assert!(matches!(
        cgroups.apply("/", &Resources::default()),
        Err(CgroupError::InvalidPath { .. })
    ));
    assert!(matches!(
        cgroups.add_process("/a", 0),
        Err(CgroupError::InvalidValue { .. })
    ));
    // A missing cgroup: nothing to kill, nothing to remove, no processes.
    cgroups.kill_all("/missing").unwrap();
    cgroups.remove("/missing").unwrap();
    assert!(cgroups.processes("/missing").unwrap().is_empty());
    assert!(matches!(
        cgroups.add_process("/missing", 1),
        Err(CgroupError::NotFound { .. })
    ));
}

// ---------------------------------------------------------------- this machine

/// The driver for this machine, or None (test skipped) when not root.
fn real() -> Option<Cgroups> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: real cgroup tests need root");
        return None;
    }
    Some(Cgroups::detect().expect("detecting the cgroup layout"))
}

fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("/ferrocri-test-{name}-{}-{nanos:x}", std::process::id())
}

/// Every cgroup mount point of this machine, read independently of the code under test.
fn all_cgroup_mounts() -> Vec<PathBuf> {
    let text = stdfs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fstype = after.split(' ').next()?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| PathBuf::from(before.split(' ').nth(4).unwrap()))
        })
        .collect()
}

fn in_mount(mount: &Path, path: &str) -> PathBuf {
    mount.join(path.trim_start_matches('/'))
}

/// Kills what the test started and removes its cgroups, even when an assertion failed.
struct Guard<'a> {
    cgroups: &'a Cgroups,
    top: String,
    children: Vec<Child>,
}

impl<'a> Guard<'a> {
    fn new(cgroups: &'a Cgroups, top: &str) -> Guard<'a> {
        Guard {
            cgroups,
            top: top.to_owned(),
            children: Vec::new(),
        }
    }

    /// Starts `sh` that waits for a line on stdin, then runs `script`; returns its PID.
    fn spawn(&mut self, script: &str) -> i32 {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("read go; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        self.children.push(child);
        pid
    }

    fn release(&mut self, index: usize) {
        let mut stdin = self.children[index].stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
    }

    fn wait(&mut self, index: usize) -> std::process::ExitStatus {
        self.children[index].wait().unwrap()
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.cgroups.kill_all(&self.top);
        let _ = self.cgroups.remove(&self.top);
    }
}

fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The file holding `setting` for `path`: v1 in the controller's hierarchy, v2 in the tree.
fn setting_file(cgroups: &Cgroups, controller: &str, path: &str, file: &str) -> PathBuf {
    let mount = match cgroups.version() {
        Version::V2 => cgroups.unified.clone().unwrap(),
        Version::V1 => cgroups
            .v1
            .iter()
            .find(|h| h.has(controller))
            .unwrap_or_else(|| panic!("no {controller} hierarchy"))
            .mount_point
            .clone(),
    };
    in_mount(&mount, path).join(file)
}

fn check_memory(cgroups: &Cgroups, path: &str, memory: i64, memsw: i64) {
    match cgroups.version() {
        Version::V1 => {
            let read = |file| get(&setting_file(cgroups, "memory", path, file));
            assert_eq!(read("memory.limit_in_bytes"), memory.to_string());
            if setting_file(cgroups, "memory", path, "memory.memsw.limit_in_bytes").exists() {
                assert_eq!(read("memory.memsw.limit_in_bytes"), memsw.to_string());
            }
        }
        Version::V2 => {
            let read = |file| get(&setting_file(cgroups, "memory", path, file));
            assert_eq!(read("memory.max"), memory.to_string());
            if setting_file(cgroups, "memory", path, "memory.swap.max").exists() {
                assert_eq!(read("memory.swap.max"), (memsw - memory).to_string());
            }
        }
    }
}

#[test]
fn real_lifecycle_create_add_apply_stats_kill_remove() {
    let Some(cgroups) = real() else { return };
    let top = unique("life");
    let path = format!("{top}/ctr");
    let mut guard = Guard::new(&cgroups, &top);
    let mounts = all_cgroup_mounts();
    assert!(!mounts.is_empty());

    cgroups.create(&path).unwrap();
    for mount in &mounts {
        assert!(in_mount(mount, &path).is_dir(), "{}", mount.display());
    }
    cgroups.create(&path).unwrap(); // existing is fine

    let pid = guard.spawn("exec sleep 60");
    cgroups.add_process(&path, pid).unwrap();
    // Now in the cgroup: exec and touch memory there, so usage is charged to it.
    guard.release(0);
    assert_eq!(cgroups.processes(&path).unwrap(), [pid]);
    assert_eq!(cgroups.processes(&top).unwrap(), [pid]);
    let own = stdfs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in own.lines() {
        assert!(line.ends_with(&format!(":{path}")), "{line}");
    }

    let resources = Resources {
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        cpuset_cpus: Some("0".into()),
        memory_limit: Some(64 * MIB),
        memory_swap_limit: Some(96 * MIB),
        pids_limit: Some(10),
        hugepage_limits: vec![("2MB".into(), 4 << 20)],
        ..Default::default()
    };
    cgroups.apply(&path, &resources).unwrap();
    let read = |controller, file| get(&setting_file(&cgroups, controller, &path, file));
    match cgroups.version() {
        Version::V1 => {
            assert_eq!(read("cpu", "cpu.shares"), "512");
            assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
            assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
        }
        Version::V2 => {
            assert_eq!(read("cpu", "cpu.weight"), "20");
            assert_eq!(read("cpu", "cpu.max"), "50000 100000");
        }
    }
    assert_eq!(read("cpuset", "cpuset.cpus"), "0");
    assert_eq!(read("pids", "pids.max"), "10");
    check_memory(&cgroups, &path, 64 * MIB, 96 * MIB);
    let hugetlb = cgroups
        .v1
        .iter()
        .find(|h| h.has("hugetlb"))
        .map(|h| in_mount(&h.mount_point, &path).join("hugetlb.2MB.limit_in_bytes"))
        .or_else(|| {
            let dir = in_mount(cgroups.unified.as_ref()?, &path);
            Some(dir.join("hugetlb.2MB.max")).filter(|f| f.exists())
        });
    match hugetlb {
        Some(file) => assert_eq!(get(&file), "4194304", "{}", file.display()),
        None => eprintln!("no hugetlb controller here; hugepage limit not checked"),
    }

    // Lowering memory+swap below the memory limit in force, then raising memory above the
    // memory+swap in force: each needs its own write order on v1.
    let memory = |memory, swap| Resources {
        memory_limit: Some(memory),
        memory_swap_limit: Some(swap),
        ..Default::default()
    };
    cgroups.apply(&path, &memory(32 * MIB, 48 * MIB)).unwrap();
    check_memory(&cgroups, &path, 32 * MIB, 48 * MIB);
    cgroups.apply(&path, &memory(256 * MIB, 512 * MIB)).unwrap();
    check_memory(&cgroups, &path, 256 * MIB, 512 * MIB);

    // On v1 hosts, unified settings are refused with the key named.
    if cgroups.version() == Version::V1 {
        let unified = Resources {
            unified: HashMap::from([("memory.high".into(), "1M".into())]),
            ..Default::default()
        };
        let err = cgroups.apply(&path, &unified).unwrap_err();
        assert!(err.to_string().contains("memory.high"), "{err}");
    }

    // memory.stat counters are flushed lazily (every 2 s at worst on Linux 6.x).
    let stats = poll("memory, CPU and page faults to be charged", || {
        let stats = cgroups.stats(&path).unwrap();
        (stats.memory_usage_bytes > 0 && stats.cpu_usage_ns > 0 && stats.page_faults > 0)
            .then_some(stats)
    });
    assert_eq!(stats.pids, 1, "{stats:?}");
    assert!(stats.memory_working_set_bytes <= stats.memory_usage_bytes);
    assert!(stats.page_faults > 0, "{stats:?}");
    assert_eq!(cgroups.oom_kills(&path).unwrap(), 0);
    // Stats of the parent include the child's.
    assert_eq!(cgroups.stats(&top).unwrap().pids, 1);

    cgroups.kill_all(&top).unwrap();
    assert!(cgroups.processes(&top).unwrap().is_empty());
    assert_eq!(guard.wait(0).signal(), Some(libc::SIGKILL));

    cgroups.remove(&top).unwrap();
    for mount in &mounts {
        assert!(!in_mount(mount, &top).exists(), "{} left", mount.display());
    }
    cgroups.remove(&top).unwrap();
}

#[test]
fn real_remove_of_a_nested_path_leaves_the_parent_alone() {
    let Some(cgroups) = real() else { return };
    let parent = unique("nest");
    let _guard = Guard::new(&cgroups, &parent);
    let mounts = all_cgroup_mounts();
    // The parent exists before (as kubelet's pod cgroup would).
    cgroups.create(&parent).unwrap();
    let child = format!("{parent}/a");
    cgroups.create(&format!("{child}/b/c")).unwrap();
    cgroups.create(&format!("{child}/d")).unwrap();
    assert!(!cgroups.remove_if_empty(&parent).unwrap());

    cgroups.remove(&child).unwrap();
    for mount in &mounts {
        assert!(in_mount(mount, &parent).is_dir(), "{}", mount.display());
        assert!(!in_mount(mount, &child).exists(), "{}", mount.display());
    }
    cgroups.remove(&child).unwrap();

    assert!(cgroups.remove_if_empty(&parent).unwrap());
    for mount in &mounts {
        assert!(!in_mount(mount, &parent).exists(), "{}", mount.display());
    }
    assert!(cgroups.remove_if_empty(&parent).unwrap());
}

#[test]
fn real_remove_if_empty_keeps_a_cgroup_with_processes() {
    let Some(cgroups) = real() else { return };
    let top = unique("busy");
    let mut guard = Guard::new(&cgroups, &top);
    cgroups.create(&top).unwrap();
    let pid = guard.spawn("exec sleep 60");
    cgroups.add_process(&top, pid).unwrap();
    assert!(!cgroups.remove_if_empty(&top).unwrap());
    for mount in all_cgroup_mounts() {
        assert!(in_mount(&mount, &top).is_dir(), "{}", mount.display());
    }
    // A busy cgroup cannot be removed; the error names it.
    let err = cgroups.remove(&top).unwrap_err();
    assert!(err.to_string().contains(&top), "{err}");
    cgroups.kill_all(&top).unwrap();
    cgroups.remove(&top).unwrap();
}

#[test]
fn real_kill_all_gets_forked_children_in_nested_cgroups() {
    let Some(cgroups) = real() else { return };
    let top = unique("fork");
    let mut guard = Guard::new(&cgroups, &top);
    let a = format!("{top}/a");
    cgroups.create(&a).unwrap();
    let pid = guard.spawn("sleep 60 & sleep 60 & exec sleep 60");
    cgroups.add_process(&a, pid).unwrap();
    guard.release(0);
    poll("three processes", || {
        (cgroups.processes(&top).unwrap().len() == 3).then_some(())
    });
    cgroups.kill_all(&top).unwrap();
    assert!(cgroups.processes(&top).unwrap().is_empty());
    assert_eq!(guard.wait(0).signal(), Some(libc::SIGKILL));
    cgroups.remove(&top).unwrap();
}

/// The signalling loop that v1 and pre-5.14 kernels rely on, with each freezer this machine
/// offers and without one (cgroup.kill left out on purpose).
#[test]
fn real_kill_loop_without_cgroup_kill() {
    let Some(cgroups) = real() else { return };
    let mut freezers: Vec<(&str, Option<PathBuf>, bool)> = vec![("none", None, false)];
    if let Some(h) = cgroups.v1.iter().find(|h| h.has("freezer")) {
        freezers.push(("v1 freezer", Some(h.mount_point.clone()), false));
    }
    if let Some(mount) = &cgroups.unified {
        freezers.push(("cgroup.freeze", Some(mount.clone()), true));
    }
    for (name, mount, v2) in freezers {
        let top = unique("loop");
        let mut guard = Guard::new(&cgroups, &top);
        cgroups.create(&top).unwrap();
        let pid = guard.spawn("sleep 60 & sleep 60 & exec sleep 60");
        cgroups.add_process(&top, pid).unwrap();
        guard.release(0);
        poll("three processes", || {
            (cgroups.processes(&top).unwrap().len() == 3).then_some(())
        });
        let cg = CgroupPath::parse(&top).unwrap();
        let freezer = mount.map(|m| {
            let dir = cg.dir_in(&m);
            if v2 {
                kill::Freezer::V2(dir)
            } else {
                kill::Freezer::V1(dir)
            }
        });
        let target = kill::Target {
            cg: &cg,
            dirs: cgroups.dirs(&cg),
            unified: None,
            freezer,
        };
        kill::kill_all(&target, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(cgroups.processes(&top).unwrap().is_empty(), "{name}");
        assert_eq!(guard.wait(0).signal(), Some(libc::SIGKILL), "{name}");
        cgroups.remove(&top).unwrap();
    }
}

/// The v2 driver on this machine's real cgroup2 tree, driven as if the host were pure v2
/// (on a hybrid host that tree has no cpu/memory/pids, but it has cgroup.kill, cpu.stat and
/// whatever controllers v1 does not hold, such as hugetlb).
#[test]
fn real_cgroup2_tree_driven_as_pure_v2() {
    if real().is_none() {
        return;
    }
    let Some(mount) = detect::detect().unwrap().unified else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let mountinfo = format!("1 0 0:1 / {} rw - cgroup2 cgroup2 rw\n", mount.display());
    let cgroups = Cgroups::from_mountinfo(&mountinfo).unwrap();
    assert_eq!(cgroups.version(), Version::V2);
    let top = unique("v2");
    let path = format!("{top}/ctr");
    let mut guard = Guard::new(&cgroups, &top);
    cgroups.create(&path).unwrap();

    let words = |file: PathBuf| -> Vec<String> {
        get(&file).split_whitespace().map(str::to_owned).collect()
    };
    let offered: Vec<String> = words(mount.join("cgroup.controllers"))
        .into_iter()
        .filter(|c| v2::CONTROLLERS.contains(&c.as_str()))
        .collect();
    let top_dir = in_mount(&mount, &top);
    let leaf = in_mount(&mount, &path);
    for controller in &offered {
        assert!(words(top_dir.join("cgroup.subtree_control")).contains(controller));
        assert!(words(leaf.join("cgroup.controllers")).contains(controller));
    }
    assert!(words(leaf.join("cgroup.subtree_control")).is_empty());

    let pid = guard.spawn("sleep 60 & sleep 60 & exec sleep 60");
    cgroups.add_process(&path, pid).unwrap();
    guard.release(0);
    poll("three processes", || {
        (cgroups.processes(&top).unwrap().len() == 3).then_some(())
    });
    let stats = poll("CPU time", || {
        let stats = cgroups.stats(&path).unwrap();
        (stats.cpu_usage_ns > 0).then_some(stats)
    });
    assert_eq!(stats.pids, 3, "{stats:?}");
    assert_eq!(cgroups.oom_kills(&path).unwrap(), 0);

    if offered.iter().any(|c| c == "hugetlb") {
        let huge = Resources {
            hugepage_limits: vec![("2MB".into(), 8 << 20)],
            ..Default::default()
        };
        cgroups.apply(&path, &huge).unwrap();
        assert_eq!(get(&leaf.join("hugetlb.2MB.max")), "8388608");
    }
    if !offered.iter().any(|c| c == "pids") {
        let pids = Resources {
            pids_limit: Some(5),
            ..Default::default()
        };
        let err = cgroups.apply(&path, &pids).unwrap_err().to_string();
        assert!(err.contains("pids.max") && err.contains(&path), "{err}");
    }

    cgroups.kill_all(&top).unwrap();
    assert!(cgroups.processes(&top).unwrap().is_empty());
    assert_eq!(guard.wait(0).signal(), Some(libc::SIGKILL));
    cgroups.remove(&top).unwrap();
    assert!(!top_dir.exists());
}

// ---------------------------------------------------------------- device rules, for real

/// Moves a shell into `path` and has it open device nodes; returns what it printed: one
/// `<name>=ok` or `<name>=<error>` line per node.
fn probe_devices(cgroups: &Cgroups, path: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let script = "read go; cd \"$1\"
        mknod mem c 1 1 || echo mknod-mem-failed
        mknod loop b 7 0 || echo mknod-loop-failed
        for node in /dev/null /dev/zero ./mem ./loop; do
            if err=$(head -c1 $node 2>&1 >/dev/null); then echo $node=ok; else echo $node=$err; fi
        done
        if err=$(: 2>&1 >/dev/null </dev/null); then echo write-null=ok; fi";
    let mut child = Command::new("sh")
        .args(["-c", script, "probe"])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let moved = cgroups.add_process(path, child.id() as i32);
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    moved.unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_default_devices_hold(out: &str) {
    assert!(!out.contains("mknod"), "mknod must stay allowed: {out}");
    assert!(out.contains("/dev/null=ok"), "{out}");
    assert!(out.contains("/dev/zero=ok"), "{out}");
    for node in ["./mem", "./loop"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{node}=")))
            .unwrap_or_else(|| panic!("no line for {node}: {out}"));
        assert!(line.contains("Operation not permitted"), "{line}\n{out}");
    }
}

#[test]
fn real_v1_devices_allowlist_holds_and_survives_updates() {
    let Some(cgroups) = real() else { return };
    if cgroups.version() != Version::V1 {
        eprintln!("skipped: not a v1 host");
        return;
    }
    let top = unique("dev1");
    let path = format!("{top}/ctr");
    let _guard = Guard::new(&cgroups, &top);
    cgroups.create(&path).unwrap();
    cgroups
        .set_devices(&path, &devices::DEFAULT_ALLOWED)
        .unwrap();
    let list = setting_file(&cgroups, "devices", &path, "devices.list");
    let mut lines: Vec<String> = get(&list).lines().map(str::to_owned).collect();
    lines.sort();
    let mut expected: Vec<String> = devices::DEFAULT_ALLOWED
        .iter()
        .map(|r| r.to_string())
        .collect();
    expected.sort();
    assert_eq!(lines, expected);

    let before = get(&list);
    let update = Resources {
        memory_limit: Some(64 * MIB),
        cpu_shares: Some(512),
        ..Default::default()
    };
    cgroups.apply(&path, &update).unwrap();
    assert_eq!(get(&list), before, "an update changed the device list");
    assert_default_devices_hold(&probe_devices(&cgroups, &path));

    // Privileged: everything.
    let open = format!("{top}/privileged");
    cgroups.create(&open).unwrap();
    cgroups
        .set_devices(&open, &[devices::DeviceRule::ALL_DEVICES])
        .unwrap();
    let list = setting_file(&cgroups, "devices", &open, "devices.list");
    assert_eq!(get(&list), "a *:* rwm");
    let out = probe_devices(&cgroups, &open);
    assert!(!out.contains("Operation not permitted"), "{out}");
}

/// The device program on this machine's cgroup2 tree, driven as a pure v2 host: the kernel
/// runs cgroup2 device programs whatever else is mounted, with no controller enabled.
#[test]
fn real_device_program_on_cgroup2_denies_what_the_list_does_not_allow() {
    if real().is_none() {
        return;
    }
    let Some(mount) = detect::detect().unwrap().unified else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let mountinfo = format!("1 0 0:1 / {} rw - cgroup2 cgroup2 rw\n", mount.display());
    let cgroups = Cgroups::from_mountinfo(&mountinfo).unwrap();
    let top = unique("dev2");
    let path = format!("{top}/ctr");
    let _guard = Guard::new(&cgroups, &top);
    cgroups.create(&path).unwrap();
    cgroups
        .set_devices(&path, &devices::DEFAULT_ALLOWED)
        .unwrap();
    assert_default_devices_hold(&probe_devices(&cgroups, &path));

    // A read-only rule: reading works, writing does not.
    let ro = format!("{top}/readonly");
    cgroups.create(&ro).unwrap();
    let rule = devices::DeviceRule {
        access: devices::Access::parse("r").unwrap(),
        ..devices::DeviceRule::char(1, 5)
    };
    cgroups.set_devices(&ro, &[rule]).unwrap();
    let mut child = Command::new("sh")
        .args([
            "-c",
            "read go; [ $(head -c1 /dev/zero | wc -c) = 1 ] && echo read=ok; echo x >/dev/zero",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cgroups.add_process(&ro, child.id() as i32).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("read=ok"), "{text}");
    assert!(
        text.contains("cannot create /dev/zero: Operation not permitted"),
        "{text}"
    );

    let open = format!("{top}/privileged");
    cgroups.create(&open).unwrap();
    cgroups
        .set_devices(&open, &[devices::DeviceRule::ALL_DEVICES])
        .unwrap();
    let out = probe_devices(&cgroups, &open);
    assert!(!out.contains("Operation not permitted"), "{out}");
}

/// The executor skips the cgroup2 move when clone3 already put it there: the check reads the
/// `0::` line of the process's own cgroup file.
#[test]
fn in_unified_cgroup_reads_the_processs_own_line() {
    let text = stdfs::read_to_string("/proc/self/cgroup").unwrap();
    let Some(own) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
        eprintln!("skipped: no cgroup2 tree here");
        return;
    };
    let own = CgroupPath::parse(own).unwrap();
    let me = std::process::id() as i32;
    assert!(in_unified_cgroup(me, &own));
    let elsewhere = CgroupPath::parse("/ferrocri-not-here/x").unwrap();
    assert!(!in_unified_cgroup(me, &elsewhere));
    // A pid that does not exist is never "already there" (so the write happens).
    assert!(!in_unified_cgroup(i32::MAX, &own));
}

/// `usage` agrees with `stats` on every field ContainerStats reports, in both layouts.
fn assert_usage_matches(cgroups: &Cgroups) {
    let (stats, usage) = (cgroups.stats("/c").unwrap(), cgroups.usage("/c").unwrap());
    assert_ne!(usage.cpu_usage_ns, 0);
    assert_eq!(usage.cpu_usage_ns, stats.cpu_usage_ns);
    assert_eq!(usage.memory_usage_bytes, stats.memory_usage_bytes);
    assert_eq!(
        usage.memory_working_set_bytes,
        stats.memory_working_set_bytes
    );
    assert_eq!(usage.memory_rss_bytes, stats.memory_rss_bytes);
    assert_eq!(usage.page_faults, stats.page_faults);
    assert_eq!(usage.major_page_faults, stats.major_page_faults);
    assert_eq!(usage.swap_usage_bytes, stats.swap_usage_bytes);
    assert_eq!(usage.limits.memory_bytes, stats.limits.memory_bytes);
    // PodSandboxStats: the same, with the process count.
    let pod = cgroups.usage_and_pids("/c").unwrap();
    assert_eq!(pod.pids, 7);
    assert_eq!(pod.pids, stats.pids);
    assert_eq!(
        (pod.cpu_usage_ns, pod.memory_working_set_bytes),
        (usage.cpu_usage_ns, usage.memory_working_set_bytes)
    );
}

#[test]
fn fake_usage_is_the_container_part_of_stats() {
    let (tmp, v2) = fake_v2();
    for (file, value) in [
        ("cpu.stat", "usage_usec 1500\n"),
        ("memory.current", "1000000\n"),
        (
            "memory.stat",
            "anon 300000\ninactive_file 200000\npgfault 42\npgmajfault 3\n",
        ),
        ("memory.swap.current", "4096\n"),
        ("memory.max", "67108864\n"),
        ("pids.current", "7\n"),
    ] {
        put(&tmp.path().join("c").join(file), value);
    }
    assert_usage_matches(&v2);
    let (tmp, v1) = fake_v1();
    for (file, value) in [
        ("cpu,cpuacct/c/cpuacct.usage", "123456789\n"),
        ("memory/c/memory.usage_in_bytes", "1000000\n"),
        (
            "memory/c/memory.stat",
            "total_rss 300000\ntotal_inactive_file 250000\ntotal_pgfault 9\ntotal_pgmajfault 1\n",
        ),
        ("memory/c/memory.memsw.usage_in_bytes", "1200000\n"),
        ("memory/c/memory.limit_in_bytes", "67108864\n"),
        ("pids/c/pids.current", "7\n"),
    ] {
        put(&tmp.path().join(file), value);
    }
    assert_usage_matches(&v1);
}
