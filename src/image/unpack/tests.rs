//! These run as root: chown, mknod and `trusted.*` xattrs need it.

use super::header::{numeric, pax_time};
use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use tar::{EntryType, Header};

const MTIME: u64 = 1_500_000_000;

/// Builds a layer entry by entry. Names are written raw: the tar crate's setters refuse or
/// rewrite `..`, absolute and `./` names, which are exactly what these tests need.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn raw(
        &mut self,
        name: &str,
        kind: EntryType,
        link: &str,
        mode: u32,
        data: &[u8],
        tweak: impl FnOnce(&mut Header),
    ) -> &mut Layer {
        let mut header = Header::new_ustar();
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        header.set_size(data.len() as u64);
        tweak(&mut header);
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Layer {
        self.raw(name, EntryType::Directory, "", mode, b"", |_| {})
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Layer {
        self.raw(name, EntryType::Regular, "", mode, data, |_| {})
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Layer {
        self.raw(name, EntryType::Symlink, target, 0o777, b"", |_| {})
    }

    fn hard_link(&mut self, name: &str, target: &str) -> &mut Layer {
        self.raw(name, EntryType::Link, target, 0o644, b"", |_| {})
    }

    fn device(&mut self, name: &str, kind: EntryType, dev: (u32, u32)) -> &mut Layer {
        self.raw(name, kind, "", 0o666, b"", |h| {
            h.set_device_major(dev.0).unwrap();
            h.set_device_minor(dev.1).unwrap();
        })
    }

    /// PAX records for the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Layer {
        self.0
            .append_pax_extensions(records.iter().map(|&(k, v)| (k, v)))
            .unwrap();
        self
    }

    fn build(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A temporary directory holding layer directories (`layer*`) next to a sentinel directory
/// with one file; everything outside the layer directories must never change.
struct Sandbox {
    tmp: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("sentinel")).unwrap();
        std::fs::write(tmp.path().join("sentinel/keep.txt"), b"keep").unwrap();
        Sandbox { tmp }
    }

    fn sentinel(&self) -> PathBuf {
        self.tmp.path().join("sentinel")
    }

    fn sentinel_str(&self) -> String {
        self.sentinel().to_str().unwrap().to_owned()
    }

    fn layer_dir(&self, name: &str) -> PathBuf {
        assert!(name.starts_with("layer"));
        let dir = self.tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    /// Everything outside the layer directories, with the attributes an attack could change.
    fn outside(&self) -> BTreeMap<PathBuf, String> {
        let mut seen = BTreeMap::new();
        let mut todo = vec![self.tmp.path().to_owned()];
        while let Some(dir) = todo.pop() {
            for child in std::fs::read_dir(&dir).unwrap() {
                let path = child.unwrap().path();
                let top_level = path.parent() == Some(self.tmp.path());
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if top_level && name.starts_with("layer") {
                    continue;
                }
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let content = if meta.is_file() {
                    std::fs::read(&path).unwrap()
                } else {
                    Vec::new()
                };
                if meta.is_dir() {
                    todo.push(path.clone());
                }
                let description = format!(
                    "mode={:o} owner={}:{} nlink={} mtime={}.{} content={content:?}",
                    meta.mode(),
                    meta.uid(),
                    meta.gid(),
                    meta.nlink(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                );
                seen.insert(path, description);
            }
        }
        seen
    }
}

fn ctx() -> LayerContext {
    LayerContext {
        image: "example.com/test:1".into(),
        layer: "sha256:feed".into(),
    }
}

fn unpack(layer: &[u8], dir: &Path) -> Result<UnpackStats, UnpackError> {
    unpack_layer(layer, dir, &ctx(), LayerLimits::default())
}

/// Unpacks the layer `build` makes into a fresh sandbox, expecting a refusal for which
/// `expected` holds and no change outside the layer directory.
fn refused(
    build: impl FnOnce(&Sandbox) -> Vec<u8>,
    expected: impl Fn(&UnpackReason) -> bool,
) -> UnpackError {
    let sandbox = Sandbox::new();
    let layer = build(&sandbox);
    let before = sandbox.outside();
    let err = unpack(&layer, &sandbox.layer_dir("layer")).expect_err("must be refused");
    assert!(expected(&err.reason), "unexpected error: {err}");
    assert_eq!(
        before,
        sandbox.outside(),
        "changed outside the layer: {err}"
    );
    err
}

#[test]
fn refuses_a_layer_over_its_caps_before_writing_past_them() {
    let limits = LayerLimits {
        max_bytes: 1 << 20,
        max_files: 3,
    };
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let mut l = Layer::new();
    l.file("small", 0o644, b"ok")
        .file("zeros", 0o644, &vec![0u8; 8 << 20]);
    let err = unpack_layer(&l.build()[..], &dir, &ctx(), limits).expect_err("over max_bytes");
    assert!(
        matches!(err.reason, UnpackReason::TooManyBytes(n) if n == 1 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("image.max_layer_bytes"), "{err}");
    // Stopped at the cap: at most one copy buffer past it reached the file.
    assert!(
        meta(&dir.join("zeros")).len() <= 1 << 20,
        "wrote past the cap"
    );

    let dir = sandbox.layer_dir("layer2");
    let mut l = Layer::new();
    for i in 0..4 {
        l.file(&format!("f{i}"), 0o644, b"x");
    }
    let err = unpack_layer(&l.build()[..], &dir, &ctx(), limits).expect_err("over max_files");
    assert!(matches!(err.reason, UnpackReason::TooManyFiles(3)), "{err}");
    assert!(err.to_string().contains("image.max_layer_files"), "{err}");
    // At the caps exactly: accepted.
    let dir = sandbox.layer_dir("layer3");
    let mut l = Layer::new();
    l.file("a", 0o644, b"x")
        .file("b", 0o644, &vec![1u8; (1 << 20) - 1]);
    unpack_layer(&l.build()[..], &dir, &ctx(), limits).expect("at the caps");
}

fn meta(path: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(path).unwrap()
}

fn xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let len = rustix::fs::lgetxattr(path, key, &mut buf[..]).ok()?;
    buf.truncate(len);
    Some(buf)
}

fn assert_whiteout(path: &Path) {
    let m = meta(path);
    assert!(
        m.file_type().is_char_device(),
        "{path:?} is not a char device"
    );
    assert_eq!(m.rdev(), 0, "{path:?}");
    assert_eq!(m.mode() & 0o7777, 0, "{path:?}");
    assert_eq!((m.uid(), m.gid()), (0, 0), "{path:?}");
}

#[test]
fn normal_layer_keeps_types_modes_owners_times_and_xattrs() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let mut l = Layer::new();
    l.dir("bin/", 0o755)
        .raw(
            "bin/busybox",
            EntryType::Regular,
            "",
            0o755,
            b"busybox",
            |h| h.set_mtime(MTIME + 1),
        )
        .symlink("bin/sh", "/bin/busybox")
        .hard_link("bin/ls", "bin/busybox")
        .raw("bin/su", EntryType::Regular, "", 0o4755, b"su", |h| {
            h.set_uid(0);
            h.set_gid(0)
        })
        .raw("bin/wall", EntryType::Regular, "", 0o2755, b"w", |h| {
            h.set_gid(5)
        })
        .dir("etc/", 0o755)
        .pax(&[
            ("SCHILY.xattr.user.note", b"hello"),
            ("SCHILY.xattr.trusted.test", b"1"),
        ])
        .raw("etc/conf", EntryType::Regular, "", 0o644, b"conf", |h| {
            h.set_uid(1000);
            h.set_gid(1001)
        })
        .raw("tmp/", EntryType::Directory, "", 0o1777, b"", |h| {
            h.set_mtime(MTIME + 2)
        })
        .raw("run/fifo", EntryType::Fifo, "", 0o620, b"", |h| {
            h.set_uid(7)
        })
        .device("dev/null", EntryType::Char, (1, 3))
        .device("dev/loop0", EntryType::Block, (7, 0));
    let stats = unpack(&l.build(), &dir).unwrap();
    assert_eq!(stats.entries, 12);
    assert_eq!(stats.bytes, 7 + 2 + 1 + 4);

    let busybox = meta(&dir.join("bin/busybox"));
    assert!(busybox.is_file());
    assert_eq!(std::fs::read(dir.join("bin/busybox")).unwrap(), b"busybox");
    assert_eq!(busybox.mode() & 0o7777, 0o755);
    assert_eq!(
        (busybox.mtime(), busybox.mtime_nsec()),
        (MTIME as i64 + 1, 0)
    );
    assert_eq!(busybox.atime(), MTIME as i64 + 1);
    let ls = meta(&dir.join("bin/ls"));
    assert_eq!((ls.ino(), ls.nlink()), (busybox.ino(), 2));

    let sh = meta(&dir.join("bin/sh"));
    assert!(sh.file_type().is_symlink());
    assert_eq!(sh.mtime(), MTIME as i64);
    let target = std::fs::read_link(dir.join("bin/sh")).unwrap();
    assert_eq!(target, Path::new("/bin/busybox"));

    assert_eq!(meta(&dir.join("bin/su")).mode() & 0o7777, 0o4755);
    let wall = meta(&dir.join("bin/wall"));
    assert_eq!((wall.mode() & 0o7777, wall.gid()), (0o2755, 5));

    let conf = meta(&dir.join("etc/conf"));
    assert_eq!(
        (conf.uid(), conf.gid(), conf.mode() & 0o7777),
        (1000, 1001, 0o644)
    );
    let conf_path = dir.join("etc/conf");
    assert_eq!(
        xattr(&conf_path, "user.note").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        xattr(&conf_path, "trusted.test").as_deref(),
        Some(&b"1"[..])
    );

    // Directory times survive the children created after them.
    let tmp = meta(&dir.join("tmp"));
    assert_eq!(
        (tmp.mode() & 0o7777, tmp.mtime()),
        (0o1777, MTIME as i64 + 2)
    );
    assert_eq!(meta(&dir.join("bin")).mtime(), MTIME as i64);
    assert_eq!(meta(&dir.join("etc")).mtime(), MTIME as i64);

    // `run/` and `dev/` are not listed: created with 0755.
    assert_eq!(meta(&dir.join("run")).mode() & 0o7777, 0o755);
    let fifo = meta(&dir.join("run/fifo"));
    assert!(fifo.file_type().is_fifo());
    assert_eq!((fifo.mode() & 0o7777, fifo.uid()), (0o620, 7));
    let null = meta(&dir.join("dev/null"));
    assert!(null.file_type().is_char_device());
    let rdev = null.rdev();
    assert_eq!((rustix::fs::major(rdev), rustix::fs::minor(rdev)), (1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let lo = meta(&dir.join("dev/loop0"));
    assert!(lo.file_type().is_block_device());
    assert_eq!(
        (rustix::fs::major(lo.rdev()), rustix::fs::minor(lo.rdev())),
        (7, 0)
    );
}

#[test]
fn whiteouts_become_overlay_whiteouts_and_opaque_xattrs() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let mut l = Layer::new();
    l.dir("a/", 0o755)
        .file("a/.wh.gone", 0o644, b"")
        .file("a/.wh..wh..opq", 0o644, b"")
        .file("b/c/.wh..wh..opq", 0o644, b"")
        .file(".wh.top", 0o644, b"")
        .file("deep/x/.wh.y", 0o644, b"")
        .file("f", 0o644, b"replaced by a whiteout")
        .file(".wh.f", 0o644, b"");
    unpack(&l.build(), &dir).unwrap();

    assert_whiteout(&dir.join("a/gone"));
    assert_whiteout(&dir.join("top"));
    assert_whiteout(&dir.join("deep/x/y"));
    assert_whiteout(&dir.join("f"));
    assert_eq!(
        xattr(&dir.join("a"), OPAQUE_XATTR).as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        xattr(&dir.join("b/c"), OPAQUE_XATTR).as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(xattr(&dir.join("b"), OPAQUE_XATTR), None);
    assert_eq!(xattr(&dir.join("deep/x"), OPAQUE_XATTR), None);
    // No `.wh.` name survives.
    for sub in ["", "a", "b/c", "deep/x"] {
        for child in std::fs::read_dir(dir.join(sub)).unwrap() {
            let name = child.unwrap().file_name();
            assert!(!name.to_string_lossy().starts_with(".wh."), "{name:?}");
        }
    }
}

#[test]
fn dot_slash_names_and_the_root_entry() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let mut l = Layer::new();
    l.raw("./", EntryType::Directory, "", 0o750, b"", |h| {
        h.set_mtime(MTIME + 9)
    })
    .dir("./etc/", 0o755)
    .file("./etc/hosts", 0o644, b"127.0.0.1")
    .symlink("./etc/alias", "hosts")
    .hard_link("./etc/hard", "./etc/hosts")
    .file(".//a/./b//c", 0o600, b"c")
    .file("./x/../y", 0o600, b"y")
    .file("./old-style-dir/", 0o700, b"");
    unpack(&l.build(), &dir).unwrap();

    let root = meta(&dir);
    assert_eq!(
        (root.mode() & 0o7777, root.mtime()),
        (0o750, MTIME as i64 + 9)
    );
    assert_eq!(std::fs::read(dir.join("etc/hosts")).unwrap(), b"127.0.0.1");
    assert_eq!(std::fs::read(dir.join("etc/alias")).unwrap(), b"127.0.0.1");
    assert_eq!(meta(&dir.join("etc/hard")).nlink(), 2);
    assert_eq!(std::fs::read(dir.join("a/b/c")).unwrap(), b"c");
    assert_eq!(std::fs::read(dir.join("y")).unwrap(), b"y");
    let old_style = meta(&dir.join("old-style-dir"));
    assert!(old_style.is_dir());
    assert_eq!(old_style.mode() & 0o7777, 0o700);
}

#[test]
fn a_later_duplicate_entry_wins() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let mut l = Layer::new();
    l.file("a", 0o644, b"one")
        .file("a", 0o600, b"two")
        .dir("d/", 0o700)
        .file("d/child", 0o644, b"kept")
        .raw("d/", EntryType::Directory, "", 0o755, b"", |h| {
            h.set_uid(33)
        })
        .file("x", 0o644, b"file first")
        .dir("x/", 0o755)
        .file("x/inner", 0o644, b"inner")
        .dir("y/", 0o755)
        .file("y/deep/er/file", 0o644, b"gone")
        .symlink("y/deep/link", "/")
        .file("y", 0o644, b"now a file")
        .symlink("s", "t")
        .file("s", 0o644, b"real")
        .file("f", 0o644, b"old")
        .hard_link("h", "f")
        .file("f", 0o644, b"new");
    unpack(&l.build(), &dir).unwrap();

    assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"two");
    assert_eq!(meta(&dir.join("a")).mode() & 0o7777, 0o600);
    let d = meta(&dir.join("d"));
    assert_eq!((d.mode() & 0o7777, d.uid()), (0o755, 33));
    assert_eq!(std::fs::read(dir.join("d/child")).unwrap(), b"kept");
    assert_eq!(std::fs::read(dir.join("x/inner")).unwrap(), b"inner");
    assert_eq!(std::fs::read(dir.join("y")).unwrap(), b"now a file");
    assert!(meta(&dir.join("s")).is_file());
    assert_eq!(std::fs::read(dir.join("s")).unwrap(), b"real");
    assert_eq!(std::fs::read(dir.join("h")).unwrap(), b"old");
    assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"new");
    assert_eq!(meta(&dir.join("f")).nlink(), 1);
}

#[test]
fn long_names_and_pax_records() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let gnu_long = format!("gnu/{}/file", "g".repeat(150));
    let pax_long = format!("pax/{}/file", "p".repeat(150));
    let long_target = format!("/{}", "t".repeat(200));
    let mut builder = tar::Builder::new(Vec::new());
    // GNU long name (an `L` entry), written by the tar crate itself.
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(3);
    header.set_mtime(MTIME);
    builder
        .append_data(&mut header, &gnu_long, &b"gnu"[..])
        .unwrap();
    // GNU long link name (a `K` entry) for a hard link to it.
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Link);
    header.set_mode(0o644);
    header.set_size(0);
    builder.append_link(&mut header, "hard", &gnu_long).unwrap();
    let mut l = Layer(builder);
    l.pax(&[
        ("path", pax_long.as_bytes()),
        ("mtime", b"1234567890.5"),
        ("atime", b"-1.25"),
        ("uid", b"3000000"),
        ("gid", b"3000001"),
    ])
    .file("placeholder", 0o640, b"pax")
    .pax(&[("linkpath", long_target.as_bytes())])
    .symlink("sym", "placeholder");
    unpack(&l.build(), &dir).unwrap();

    assert_eq!(std::fs::read(dir.join(&gnu_long)).unwrap(), b"gnu");
    assert_eq!(meta(&dir.join("hard")).nlink(), 2);
    let pax = meta(&dir.join(&pax_long));
    assert_eq!(std::fs::read(dir.join(&pax_long)).unwrap(), b"pax");
    assert_eq!((pax.uid(), pax.gid()), (3_000_000, 3_000_001));
    assert_eq!(
        (pax.mtime(), pax.mtime_nsec()),
        (1_234_567_890, 500_000_000)
    );
    assert_eq!((pax.atime(), pax.atime_nsec()), (-2, 750_000_000));
    assert!(!dir.join("placeholder").exists());
    let target = std::fs::read_link(dir.join("sym")).unwrap();
    assert_eq!(target, Path::new(&long_target));
}

#[test]
fn refuses_dotdot_escapes() {
    for name in [
        "../escape",
        "a/../../escape",
        "./../escape",
        "a/b/../../../escape",
    ] {
        refused(
            |_| {
                let mut l = Layer::new();
                l.dir("a/", 0o755).file(name, 0o644, b"x");
                l.build()
            },
            |r| matches!(r, UnpackReason::PathEscapes),
        );
    }
}

/// An absolute name means "from the layer root" (containerd and Docker read it so);
/// it never reaches the host path of the same name.
#[test]
fn absolute_names_land_beneath_the_layer_root() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let before = sandbox.outside();
    let abs = format!("{}/abs", sandbox.sentinel_str());
    let mut l = Layer::new();
    l.raw("/", EntryType::Directory, "", 0o751, b"", |_| {})
        .dir("/etc/", 0o755)
        .file("//etc//hosts", 0o644, b"hosts")
        .file("/a/./b/../c", 0o600, b"c")
        .file(&abs, 0o644, b"x")
        .hard_link("/etc/hard", "/etc/hosts")
        .hard_link("/etc/hard2", "//etc/./hosts");
    unpack(&l.build(), &dir).unwrap();
    assert_eq!(meta(&dir).mode() & 0o7777, 0o751);
    assert_eq!(std::fs::read(dir.join("etc/hosts")).unwrap(), b"hosts");
    assert_eq!(std::fs::read(dir.join("a/c")).unwrap(), b"c");
    assert_eq!(
        std::fs::read(dir.join(abs.trim_start_matches('/'))).unwrap(),
        b"x"
    );
    assert_eq!(meta(&dir.join("etc/hosts")).nlink(), 3);
    assert_eq!(before, sandbox.outside());

    for name in ["/../escape", "/a/../../escape", "//.."] {
        refused(
            |_| {
                let mut l = Layer::new();
                l.file(name, 0o644, b"x");
                l.build()
            },
            |r| matches!(r, UnpackReason::PathEscapes),
        );
    }
}

#[test]
fn refuses_walking_through_an_absolute_symlink() {
    refused(
        |s| {
            let mut l = Layer::new();
            l.symlink("evil", "/")
                .file(&format!("evil{}/x", s.sentinel_str()), 0o644, b"x");
            l.build()
        },
        |r| matches!(r, UnpackReason::PathEscapes),
    );
    refused(
        |s| {
            let mut l = Layer::new();
            l.symlink("evil", &s.sentinel_str())
                .file("evil/x", 0o644, b"x");
            l.build()
        },
        |r| matches!(r, UnpackReason::PathEscapes),
    );
}

#[test]
fn refuses_walking_through_relative_symlinks_and_chains() {
    let unique = format!("ferrocri-unpack-test-{}", std::process::id());
    let err = refused(
        |_| {
            let mut l = Layer::new();
            l.symlink("evil", "../..")
                .file(&format!("evil/{unique}"), 0o644, b"x");
            l.build()
        },
        |r| matches!(r, UnpackReason::PathEscapes),
    );
    assert_eq!(err.entry.as_deref(), Some(&*format!("evil/{unique}")));
    assert!(!std::env::temp_dir().join(&unique).exists());
    refused(
        |_| {
            let mut l = Layer::new();
            l.symlink("evil", "..").file("evil/sentinel/x", 0o644, b"x");
            l.build()
        },
        |r| matches!(r, UnpackReason::PathEscapes),
    );
    refused(
        |_| {
            let mut l = Layer::new();
            l.symlink("a", "b")
                .symlink("b", "../../..")
                .file(&format!("a/{unique}"), 0o644, b"x");
            l.build()
        },
        |r| matches!(r, UnpackReason::PathEscapes),
    );
    refused(
        |_| {
            let mut l = Layer::new();
            l.dir("d/", 0o755)
                .symlink("d/a", "../b")
                .symlink("b", "c/../..")
                .dir("c/", 0o755)
                .file("d/a/sentinel/x", 0o644, b"x");
            l.build()
        },
        |r| matches!(r, UnpackReason::PathEscapes),
    );
}

#[test]
fn refuses_hard_links_that_escape() {
    for target in ["../../outside-file", "../sentinel/keep.txt", "a/../../x"] {
        refused(
            |_| {
                let mut l = Layer::new();
                l.hard_link("h", target);
                l.build()
            },
            |r| matches!(r, UnpackReason::LinkEscapes(t) if t == target),
        );
    }
    refused(
        |_| {
            let mut l = Layer::new();
            l.hard_link("h", "/../sentinel/keep.txt");
            l.build()
        },
        |r| matches!(r, UnpackReason::LinkEscapes(_)),
    );
    // Absolute targets are looked up in the layer, never on the host.
    refused(
        |s| {
            let mut l = Layer::new();
            l.hard_link("h", &format!("{}/keep.txt", s.sentinel_str()));
            l.build()
        },
        |r| matches!(r, UnpackReason::LinkTargetMissing(_)),
    );
    let passwd_links = meta(Path::new("/etc/passwd")).nlink();
    refused(
        |_| {
            let mut l = Layer::new();
            l.hard_link("h", "/etc/passwd");
            l.build()
        },
        |r| matches!(r, UnpackReason::LinkTargetMissing(t) if t == "/etc/passwd"),
    );
    assert_eq!(meta(Path::new("/etc/passwd")).nlink(), passwd_links);
}

#[test]
fn refuses_hard_links_through_a_symlinked_directory() {
    let passwd_links = meta(Path::new("/etc/passwd")).nlink();
    refused(
        |_| {
            let mut l = Layer::new();
            l.symlink("s", "/etc").hard_link("h", "s/passwd");
            l.build()
        },
        |r| matches!(r, UnpackReason::LinkEscapes(t) if t == "s/passwd"),
    );
    assert_eq!(meta(Path::new("/etc/passwd")).nlink(), passwd_links);
    refused(
        |s| {
            let mut l = Layer::new();
            l.symlink("s", &s.sentinel_str())
                .hard_link("h", "s/keep.txt");
            l.build()
        },
        |r| matches!(r, UnpackReason::LinkEscapes(_)),
    );
    refused(
        |_| {
            let mut l = Layer::new();
            l.symlink("s", "../sentinel").hard_link("h", "s/keep.txt");
            l.build()
        },
        |r| matches!(r, UnpackReason::LinkEscapes(_)),
    );
}

#[test]
fn refuses_hard_links_to_directories_and_missing_targets() {
    refused(
        |_| {
            let mut l = Layer::new();
            l.dir("d/", 0o755).hard_link("h", "d");
            l.build()
        },
        |r| matches!(r, UnpackReason::LinkToDirectory(_)),
    );
    refused(
        |_| {
            let mut l = Layer::new();
            l.hard_link("h", "./");
            l.build()
        },
        |r| matches!(r, UnpackReason::LinkToDirectory(_)),
    );
    refused(
        |_| {
            let mut l = Layer::new();
            l.hard_link("h", "nowhere/f");
            l.build()
        },
        |r| matches!(r, UnpackReason::LinkTargetMissing(_)),
    );
}

#[test]
fn a_hard_link_to_an_inside_symlink_links_the_symlink_itself() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let before = sandbox.outside();
    let mut l = Layer::new();
    l.symlink("s", &format!("{}/keep.txt", sandbox.sentinel_str()))
        .hard_link("h", "s");
    unpack(&l.build(), &dir).unwrap();
    assert!(meta(&dir.join("h")).file_type().is_symlink());
    assert_eq!(meta(&dir.join("h")).nlink(), 2);
    assert_eq!(before, sandbox.outside());
}

#[test]
fn refuses_malformed_whiteouts() {
    for name in [
        ".wh...",
        "dir/.wh..",
        ".wh.",
        ".wh..wh.plnk",
        ".wh..wh.",
        ".wh.x/y",
    ] {
        refused(
            |_| {
                let mut l = Layer::new();
                l.dir("dir/", 0o755).file(name, 0o644, b"");
                l.build()
            },
            |r| matches!(r, UnpackReason::BadWhiteout(_)),
        );
    }
    refused(
        |_| {
            let mut l = Layer::new();
            l.dir(".wh.d/", 0o755);
            l.build()
        },
        |r| matches!(r, UnpackReason::BadWhiteout(_)),
    );
}

#[test]
fn replacing_a_symlink_never_writes_through_it() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let before = sandbox.outside();
    let sentinel = sandbox.sentinel_str();
    let unique = format!("ferrocri-unpack-test-{}-x", std::process::id());
    let mut l = Layer::new();
    l.symlink("x", &format!("/tmp/{unique}"))
        .file("x", 0o644, b"in the layer")
        .symlink("y", &format!("{sentinel}/keep.txt"))
        .file("y", 0o644, b"not in keep.txt")
        .symlink("z", &format!("{sentinel}/new"))
        .device("z", EntryType::Char, (1, 3))
        .symlink("w", &sentinel)
        .dir("w/", 0o755)
        .file("w/f", 0o644, b"f")
        .symlink("v", &format!("{sentinel}/keep.txt"))
        .symlink("v", "elsewhere");
    unpack(&l.build(), &dir).unwrap();

    assert_eq!(std::fs::read(dir.join("x")).unwrap(), b"in the layer");
    assert!(!Path::new("/tmp").join(&unique).exists());
    assert_eq!(std::fs::read(dir.join("y")).unwrap(), b"not in keep.txt");
    assert!(meta(&dir.join("z")).file_type().is_char_device());
    assert!(meta(&dir.join("w")).is_dir());
    assert_eq!(std::fs::read(dir.join("w/f")).unwrap(), b"f");
    assert_eq!(
        std::fs::read_link(dir.join("v")).unwrap(),
        Path::new("elsewhere")
    );
    assert_eq!(before, sandbox.outside());
}

#[test]
fn refuses_a_device_through_a_symlinked_parent() {
    refused(
        |s| {
            let mut l = Layer::new();
            l.symlink("s", &s.sentinel_str())
                .device("s/null", EntryType::Char, (1, 3));
            l.build()
        },
        |r| matches!(r, UnpackReason::PathEscapes),
    );
    refused(
        |_| {
            let mut l = Layer::new();
            l.symlink("s", "../sentinel")
                .raw("s/fifo", EntryType::Fifo, "", 0o644, b"", |_| {});
            l.build()
        },
        |r| matches!(r, UnpackReason::PathEscapes),
    );
}

#[test]
fn refuses_whiteouts_and_opaque_markers_through_a_symlink() {
    for name in ["s/.wh.keep.txt", "s/.wh..wh..opq"] {
        refused(
            |s| {
                let mut l = Layer::new();
                l.symlink("s", &s.sentinel_str()).file(name, 0o644, b"");
                l.build()
            },
            |r| matches!(r, UnpackReason::PathEscapes),
        );
    }
}

/// Layers are unpacked each into its own directory, so a symlink in one layer cannot
/// redirect a later layer's directory.
#[test]
fn a_directory_over_a_lower_layers_symlink_writes_nothing_outside() {
    let sandbox = Sandbox::new();
    let before = sandbox.outside();
    let lower = sandbox.layer_dir("layer1");
    let upper = sandbox.layer_dir("layer2");
    let mut l1 = Layer::new();
    l1.symlink("x", &sandbox.sentinel_str());
    unpack(&l1.build(), &lower).unwrap();
    let mut l2 = Layer::new();
    l2.dir("x/", 0o755).file("x/f", 0o644, b"f");
    unpack(&l2.build(), &upper).unwrap();

    assert!(meta(&lower.join("x")).file_type().is_symlink());
    assert_eq!(std::fs::read(upper.join("x/f")).unwrap(), b"f");
    assert_eq!(before, sandbox.outside());
}

#[test]
fn errors_name_the_image_layer_entry_and_reason() {
    let err = refused(
        |_| {
            let mut l = Layer::new();
            l.file("ok", 0o644, b"").file("../escape", 0o644, b"x");
            l.build()
        },
        |r| matches!(r, UnpackReason::PathEscapes),
    );
    assert_eq!(
        err.to_string(),
        "cannot unpack layer sha256:feed of image example.com/test:1, \
         entry \"../escape\": path escapes the layer directory"
    );
    let err = refused(
        |_| {
            let mut l = Layer::new();
            l.hard_link("h", "/../etc/passwd");
            l.build()
        },
        |_| true,
    );
    assert!(
        err.to_string().ends_with(
            "entry \"h\": hard link target \"/../etc/passwd\" escapes the layer directory"
        ),
        "{err}"
    );
}

#[test]
fn refuses_a_non_empty_target_and_unsupported_entries() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    std::fs::write(dir.join("leftover"), b"").unwrap();
    let err = unpack(&Layer::new().build(), &dir).unwrap_err();
    assert!(matches!(err.reason, UnpackReason::TargetNotEmpty), "{err}");
    assert_eq!(err.entry, None);

    refused(
        |_| {
            let mut l = Layer::new();
            l.raw("vol", EntryType::new(b'V'), "", 0o644, b"", |_| {});
            l.build()
        },
        |r| matches!(r, UnpackReason::UnsupportedType('V')),
    );
    refused(
        |_| {
            let mut l = Layer::new();
            l.raw("f", EntryType::Regular, "", 0o644, b"", |h| {
                h.set_uid(u32::MAX.into())
            });
            l.build()
        },
        |r| matches!(r, UnpackReason::Owner { which: "uid", value } if *value == i64::from(u32::MAX)),
    );
}

#[test]
fn overlayfs_xattrs_from_the_tar_are_ignored() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let mut l = Layer::new();
    l.pax(&[
        ("SCHILY.xattr.trusted.overlay.redirect", b"/elsewhere"),
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
    ])
    .dir("d/", 0o755);
    unpack(&l.build(), &dir).unwrap();
    assert_eq!(xattr(&dir.join("d"), "trusted.overlay.redirect"), None);
    assert_eq!(xattr(&dir.join("d"), OPAQUE_XATTR), None);
}

#[test]
fn path_rules() {
    let parts = |raw: &str| {
        clean_path(raw.as_bytes())
            .map(|p| p.iter().map(|c| lossy(c)).collect::<Vec<_>>().join("/"))
            .map_err(|r| r.to_string())
    };
    assert_eq!(parts("./a//b/./c/").unwrap(), "a/b/c");
    assert_eq!(parts("a/../b").unwrap(), "b");
    assert_eq!(parts("./").unwrap(), "");
    assert!(parts("a/../..").is_err());
    assert_eq!(parts("/a").unwrap(), "a");
    assert_eq!(parts("//a/../b/").unwrap(), "b");
    assert_eq!(parts("/").unwrap(), "");
    assert_eq!(parts(".").unwrap(), "");
    assert!(parts("/..").is_err());
    assert!(clean_path(b"a\0b").is_err());

    assert_eq!(role(&[b"d", b".wh.x"]).unwrap(), Role::Whiteout(b"x"));
    assert_eq!(role(&[b".wh..wh..opq"]).unwrap(), Role::Opaque);
    assert_eq!(role(&[b".wh..whx"]).unwrap(), Role::Whiteout(b".whx"));
    assert_eq!(role(&[b"plain.wh.x"]).unwrap(), Role::Plain);

    let t = |s: &str| pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
    assert_eq!(t("12"), Some((12, 0)));
    assert_eq!(t("12.000000001999"), Some((12, 1)));
    assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
    assert_eq!(t("-3"), Some((-3, 0)));
    for bad in ["", ".5", "1e3", "+1", "1.2.3", "99999999999999999999"] {
        assert_eq!(t(bad), None, "{bad}");
    }
}

/// The bytes of a layer with one file `name` holding `data`, cut right after the data: no
/// padding to 512 and no end-of-archive blocks, as `umoci insert` writes.
fn unpadded(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, (name, data)) in entries.iter().enumerate() {
        let mut l = Layer::new();
        l.file(name, 0o644, data);
        let one = l.build();
        let len = 512 + data.len();
        let len = if i + 1 == entries.len() {
            len
        } else {
            len.div_ceil(512) * 512
        };
        bytes.extend_from_slice(&one[..len]);
    }
    bytes
}

#[test]
fn an_archive_may_end_right_after_the_last_entrys_data() {
    let sandbox = Sandbox::new();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "no padding, no end blocks",
            unpadded(&[("a", b"first"), ("b", b"last")]),
        ),
        (
            "a data size of exactly 512",
            unpadded(&[("a", &[b'x'; 512])]),
        ),
        ("part of the padding", {
            let mut b = unpadded(&[("a", b"first"), ("b", b"last")]);
            b.extend_from_slice(&[0; 100]);
            b
        }),
        ("padding, no end blocks", {
            let mut b = unpadded(&[("a", b"first"), ("b", b"last")]);
            b.resize(b.len().div_ceil(512) * 512, 0);
            b
        }),
        ("one end block", {
            let mut b = unpadded(&[("a", b"first"), ("b", b"last")]);
            b.resize(b.len().div_ceil(512) * 512 + 512, 0);
            b
        }),
    ];
    for (i, (what, bytes)) in cases.iter().enumerate() {
        let dir = sandbox.layer_dir(&format!("layer{i}"));
        let stats = unpack(bytes, &dir).unwrap_or_else(|e| panic!("{what}: {e}"));
        if i == 1 {
            assert_eq!(std::fs::read(dir.join("a")).unwrap(), [b'x'; 512], "{what}");
            continue;
        }
        assert_eq!(stats.entries, 2, "{what}");
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"first", "{what}");
        assert_eq!(std::fs::read(dir.join("b")).unwrap(), b"last", "{what}");
    }
}

#[test]
fn a_stream_cut_inside_an_entry_is_refused() {
    let whole = unpadded(&[("a", b"first"), ("b", &[b'd'; 1000])]);
    // Cut inside the last entry's data, off and on a block boundary.
    for cut in [whole.len() - 1, whole.len() - 300, 1024 + 512 + 512] {
        let sandbox = Sandbox::new();
        let err = unpack(&whole[..cut], &sandbox.layer_dir("layer")).unwrap_err();
        assert_eq!(err.entry.as_deref(), Some("b"), "cut at {cut}: {err}");
        assert!(
            matches!(err.reason, UnpackReason::TruncatedData),
            "cut at {cut}: {err}"
        );
    }
    let sandbox = Sandbox::new();
    let err = unpack(&whole[..1024 + 512 + 512 - 1], &sandbox.layer_dir("layer")).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("entry \"b\": the stream ends inside this entry's data"),
        "{err}"
    );
    // Cut inside the second header.
    for cut in [1024 + 1, 1024 + 100, 1024 + 511] {
        let sandbox = Sandbox::new();
        let err = unpack(&whole[..cut], &sandbox.layer_dir("layer")).unwrap_err();
        // A header cut in its unused tail still reads; then its data is missing.
        assert!(
            matches!(
                err.reason,
                UnpackReason::Corrupt(_) | UnpackReason::TruncatedData
            ),
            "cut at {cut}: {err}"
        );
    }
    // Cut inside a PAX header's records: the entry it describes never comes.
    let mut l = Layer::new();
    l.pax(&[("path", b"long/name")]).file("x", 0o644, b"x");
    let pax = l.build();
    let sandbox = Sandbox::new();
    let err = unpack(&pax[..512 + 10], &sandbox.layer_dir("layer")).unwrap_err();
    assert!(matches!(err.reason, UnpackReason::Corrupt(_)), "{err}");
}

#[test]
fn what_follows_the_end_of_archive_marker_is_ignored() {
    let sandbox = Sandbox::new();
    let mut l = Layer::new();
    l.file("a", 0o644, b"a");
    let base = l.build();
    let mut zeros = base.clone();
    zeros.extend_from_slice(&[0; 512 * 20]);
    let mut garbage = base.clone();
    garbage.extend_from_slice(b"this is not a tar header, and it does not end on a block");
    let mut another = base.clone();
    let mut l2 = Layer::new();
    l2.file("after-the-end", 0o644, b"b");
    another.extend_from_slice(&l2.build());
    for (i, bytes) in [zeros, garbage, another].iter().enumerate() {
        let dir = sandbox.layer_dir(&format!("layer{i}"));
        let stats = unpack(bytes, &dir).unwrap();
        assert_eq!(stats.entries, 1);
        assert!(!dir.join("after-the-end").exists());
    }
}

#[test]
fn empty_layers() {
    let sandbox = Sandbox::new();
    for (i, bytes) in [Vec::new(), vec![0; 1024], vec![0; 512], vec![0; 10240]]
        .iter()
        .enumerate()
    {
        let dir = sandbox.layer_dir(&format!("layer{i}"));
        assert_eq!(unpack(bytes, &dir).unwrap().entries, 0, "case {i}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}

/// Sets a numeric header field to raw bytes (octal text or base-256).
fn set_field(h: &mut Header, field: fn(&mut tar::OldHeader) -> &mut [u8], raw: &[u8]) {
    let slot = field(h.as_old_mut());
    slot.fill(0);
    let start = slot.len() - raw.len();
    slot[start..].copy_from_slice(raw);
}

/// A base-256 field of `len` bytes holding `value` (two's complement).
fn base256(value: i64, len: usize) -> Vec<u8> {
    let mut raw: Vec<u8> = (0..len)
        .rev()
        .map(|i| {
            if i >= 8 {
                if value < 0 { 0xff } else { 0 }
            } else {
                (value >> (8 * i)) as u8
            }
        })
        .collect();
    raw[0] |= 0x80;
    raw
}

#[test]
fn times_before_1970_and_after_2038_and_large_owners() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let before_1970 = -86_400 * 365 * 10;
    let after_2038 = 1i64 << 33; // year 2242: past 32-bit time and past 11 octal digits
    let mut l = Layer::new();
    l.raw("old", EntryType::Regular, "", 0o644, b"o", |h| {
        set_field(h, |o| &mut o.mtime, &base256(before_1970, 12))
    })
    .raw("future", EntryType::Regular, "", 0o644, b"f", |h| {
        set_field(h, |o| &mut o.mtime, &base256(after_2038, 12))
    })
    .raw("octal-2100", EntryType::Regular, "", 0o644, b"f", |h| {
        // Octal text after a leading NUL, as some writers pad.
        set_field(h, |o| &mut o.mtime, b"\x0036441453400")
    })
    .raw("big-owner", EntryType::Regular, "", 0o644, b"b", |h| {
        set_field(h, |o| &mut o.uid, &base256(4_294_967_294, 8));
        set_field(h, |o| &mut o.gid, &base256(4_000_000_000, 8));
    })
    .pax(&[
        ("uid", b"4294967294"),
        ("gid", b"2147483648"),
        ("mtime", b"-1.5"),
    ])
    .file("pax-owner", 0o644, b"p")
    .raw("empty-fields", EntryType::Regular, "", 0o644, b"e", |h| {
        set_field(h, |o| &mut o.uid, b"");
        set_field(h, |o| &mut o.gid, b"       ");
    });
    unpack(&l.build(), &dir).unwrap();
    assert_eq!(meta(&dir.join("old")).mtime(), before_1970);
    assert_eq!(meta(&dir.join("future")).mtime(), after_2038);
    assert_eq!(meta(&dir.join("octal-2100")).mtime(), 4_102_444_800);
    let big = meta(&dir.join("big-owner"));
    assert_eq!((big.uid(), big.gid()), (4_294_967_294, 4_000_000_000));
    let pax = meta(&dir.join("pax-owner"));
    assert_eq!((pax.uid(), pax.gid()), (4_294_967_294, 2_147_483_648));
    assert_eq!((pax.mtime(), pax.mtime_nsec()), (-2, 500_000_000));
    let empty = meta(&dir.join("empty-fields"));
    assert_eq!((empty.uid(), empty.gid()), (0, 0));

    for (uid, shown) in [
        (base256(1 << 32, 8), "uid 4294967296 cannot be a Linux uid"),
        (base256(-1, 8), "uid -1 cannot be a Linux uid"),
        (
            base256(u32::MAX.into(), 8),
            "uid 4294967295 cannot be a Linux uid",
        ),
    ] {
        let err = refused(
            |_| {
                let mut l = Layer::new();
                l.raw("f", EntryType::Regular, "", 0o644, b"", |h| {
                    set_field(h, |o| &mut o.uid, &uid)
                });
                l.build()
            },
            |r| matches!(r, UnpackReason::Owner { .. }),
        );
        assert!(err.to_string().contains(shown), "{err}");
    }
    refused(
        |_| {
            let mut l = Layer::new();
            l.pax(&[("gid", b"-5")]).file("f", 0o644, b"");
            l.build()
        },
        |r| {
            matches!(
                r,
                UnpackReason::Owner {
                    which: "gid",
                    value: -5
                }
            )
        },
    );
    refused(
        |_| {
            let mut l = Layer::new();
            l.pax(&[("uid", b"12abc")]).file("f", 0o644, b"");
            l.build()
        },
        |r| matches!(r, UnpackReason::Invalid("bad PAX uid")),
    );
}

#[test]
fn numeric_fields() {
    assert_eq!(numeric(b"0000644\0"), Some(0o644));
    assert_eq!(numeric(b"\0\0\0\x00644 "), Some(0o644));
    assert_eq!(numeric(b"   644\0\0"), Some(0o644));
    assert_eq!(numeric(b"\0\0\0\0\0\0\0\0"), Some(0));
    assert_eq!(numeric(b"        "), Some(0));
    assert_eq!(numeric(b"0000999\0"), None);
    assert_eq!(numeric(&base256(-1, 12)), Some(-1));
    assert_eq!(numeric(&base256(i64::MIN, 12)), Some(i64::MIN));
    assert_eq!(numeric(&base256(i64::MAX, 12)), Some(i64::MAX));
    assert_eq!(numeric(&base256(1 << 40, 8)), Some(1 << 40));
    // More than 63 bits of magnitude.
    assert_eq!(numeric(&[0x80, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    assert_eq!(
        numeric(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        None
    );
}

/// A GNU old-style sparse entry (type `S`): the map in the header, the data chunks after.
#[test]
fn gnu_sparse_files_are_expanded() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let mut header = Header::new_gnu();
    header.set_path("sparse").unwrap();
    header.set_entry_type(EntryType::GNUSparse);
    header.set_mode(0o640);
    header.set_mtime(MTIME);
    header.set_size(1024);
    {
        let gnu = header.as_gnu_mut().unwrap();
        let octal = |field: &mut [u8], v: u64| {
            let text = format!("{v:0width$o}\0", width = field.len() - 1);
            field.copy_from_slice(text.as_bytes());
        };
        octal(&mut gnu.sparse[0].offset, 0);
        octal(&mut gnu.sparse[0].numbytes, 512);
        octal(&mut gnu.sparse[1].offset, 9488);
        octal(&mut gnu.sparse[1].numbytes, 512);
        octal(&mut gnu.realsize, 10_000);
    }
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(&[b'A'; 512]);
    bytes.extend_from_slice(&[b'B'; 512]);
    let mut l = Layer::new();
    l.file("after", 0o644, b"after");
    bytes.extend_from_slice(&l.build());
    unpack(&bytes, &dir).unwrap();
    let content = std::fs::read(dir.join("sparse")).unwrap();
    assert_eq!(content.len(), 10_000);
    assert!(content[..512].iter().all(|&b| b == b'A'));
    assert!(content[512..9488].iter().all(|&b| b == 0));
    assert!(content[9488..].iter().all(|&b| b == b'B'));
    assert_eq!(meta(&dir.join("sparse")).mode() & 0o7777, 0o640);
    assert_eq!(std::fs::read(dir.join("after")).unwrap(), b"after");
}

/// GNU sparse files in PAX form, all three formats: the real name from the records, data
/// at its offsets, holes left as holes, the real size.
#[test]
fn pax_sparse_files_in_every_format() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let mut map_10 = b"2\n0\n512\n9488\n512\n".to_vec();
    map_10.resize(512, 0);
    let data: Vec<u8> = [[b'A'; 512], [b'B'; 512]].concat();
    let mut l = Layer::new();
    l.pax(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"dir/v10"),
        ("GNU.sparse.realsize", b"10000"),
    ])
    .file(
        "GNUSparseFile.0/v10",
        0o640,
        &[map_10, data.clone()].concat(),
    )
    .pax(&[
        ("GNU.sparse.major", b"0"),
        ("GNU.sparse.minor", b"1"),
        ("GNU.sparse.name", b"v01"),
        ("GNU.sparse.size", b"10000"),
        ("GNU.sparse.map", b"0,512,9488,512"),
    ])
    .file("GNUSparseFile.0/v01", 0o644, &data)
    .pax(&[
        ("GNU.sparse.size", b"10000"),
        ("GNU.sparse.offset", b"0"),
        ("GNU.sparse.numbytes", b"512"),
        ("GNU.sparse.offset", b"9488"),
        ("GNU.sparse.numbytes", b"512"),
        ("GNU.sparse.name", b"v00"),
    ])
    .file("GNUSparseFile.0/v00", 0o644, &data)
    .pax(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"all-hole"),
        ("GNU.sparse.realsize", b"1048576"),
    ])
    .file(
        "GNUSparseFile.0/all-hole",
        0o644,
        &[&b"0\n"[..], &[0; 510]].concat(),
    )
    .file("after", 0o644, b"after");
    unpack(&l.build(), &dir).unwrap();
    for name in ["dir/v10", "v01", "v00"] {
        let content = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(content.len(), 10_000, "{name}");
        assert!(content[..512].iter().all(|&b| b == b'A'), "{name}");
        assert!(content[512..9488].iter().all(|&b| b == 0), "{name}");
        assert!(content[9488..].iter().all(|&b| b == b'B'), "{name}");
    }
    assert_eq!(meta(&dir.join("dir/v10")).mode() & 0o7777, 0o640);
    assert!(!dir.join("GNUSparseFile.0").exists());
    let hole = meta(&dir.join("all-hole"));
    assert_eq!(hole.len(), 1_048_576);
    assert_eq!(hole.blocks(), 0, "a hole takes no blocks");
    assert_eq!(std::fs::read(dir.join("after")).unwrap(), b"after");

    for (records, data) in [
        // The map lists more data than is stored.
        (
            &[
                ("GNU.sparse.size", &b"100"[..]),
                ("GNU.sparse.map", b"0,50"),
            ][..],
            &b"short"[..],
        ),
        // A chunk past the real size.
        (
            &[("GNU.sparse.size", b"10"), ("GNU.sparse.map", b"8,5")],
            b"12345",
        ),
        // An unknown version.
        (
            &[("GNU.sparse.major", b"2"), ("GNU.sparse.realsize", b"1")],
            b"",
        ),
    ] {
        let err = refused(
            |_| {
                let mut l = Layer::new();
                l.pax(records).file("f", 0o644, data);
                l.build()
            },
            |r| matches!(r, UnpackReason::BadSparse(_)),
        );
        assert!(err.to_string().contains("invalid GNU sparse file"), "{err}");
    }
    // A placeholder whose real name escapes is refused like any name.
    refused(
        |_| {
            let mut l = Layer::new();
            l.pax(&[
                ("GNU.sparse.name", b"../x"),
                ("GNU.sparse.size", b"0"),
                ("GNU.sparse.map", b""),
            ])
            .file("GNUSparseFile.0/x", 0o644, b"");
            l.build()
        },
        |r| matches!(r, UnpackReason::PathEscapes),
    );
}

#[test]
fn root_entries_that_are_not_directories_are_skipped() {
    let sandbox = Sandbox::new();
    let dir = sandbox.layer_dir("layer");
    let mut l = Layer::new();
    l.raw(".", EntryType::Directory, "", 0o700, b"", |_| {})
        .file(".", 0o644, b"data of a file named dot")
        .symlink("./", "/")
        .hard_link("/", "x")
        .file("x", 0o644, b"x");
    unpack(&l.build(), &dir).unwrap();
    let root = meta(&dir);
    assert!(root.is_dir());
    assert_eq!(root.mode() & 0o7777, 0o700);
    assert_eq!(std::fs::read(dir.join("x")).unwrap(), b"x");
}

/// A tiny deterministic PRNG, so the garbling test needs no dependency and is reproducible.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Rewrites the checksum of the 512-byte block holding `offset`, so a garbled header gets
/// past the checksum test and reaches the deeper parsing.
fn fix_checksum(bytes: &mut [u8], offset: usize) {
    let start = offset / 512 * 512;
    let Some(block) = bytes.get_mut(start..start + 512) else {
        return;
    };
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// Offsets of the blocks of `tar` that are headers (their checksum holds).
fn header_offsets(tar: &[u8]) -> Vec<usize> {
    (0..tar.len() / 512)
        .map(|block| block * 512)
        .filter(|&at| {
            let block = &tar[at..at + 512];
            let sum: u32 = block.iter().map(|&b| u32::from(b)).sum::<u32>()
                - block[148..156].iter().map(|&b| u32::from(b)).sum::<u32>()
                + 8 * u32::from(b' ');
            let field = String::from_utf8_lossy(&block[148..156]).into_owned();
            let field = field.trim_matches(|c| c == '\0' || c == ' ');
            block[0] != 0 && u32::from_str_radix(field, 8) == Ok(sum)
        })
        .collect()
}

/// Pieces that make names interesting: separators, dot-dots, whiteout prefixes, NULs.
const NAME_PIECES: [&[u8]; 8] = [
    b"/",
    b"../",
    b"..",
    b".wh.",
    b".wh..wh.",
    b"\0",
    b"./",
    b"up/",
];

#[test]
fn garbled_input_gives_errors_not_panics() {
    let sandbox = Sandbox::new();
    let before = sandbox.outside();
    let mut l = Layer::new();
    l.dir("./", 0o755)
        .dir("etc/", 0o755)
        .pax(&[("SCHILY.xattr.user.a", b"b"), ("mtime", b"1.5")])
        .file("etc/f", 0o644, &[7; 700])
        .symlink("etc/s", &sandbox.sentinel_str())
        .symlink("up", "..")
        .hard_link("etc/h", "etc/f")
        .device("dev/null", EntryType::Char, (1, 3))
        .file("etc/.wh.gone", 0o644, b"")
        .file("etc/.wh..wh..opq", 0o644, b"");
    let mut header = Header::new_gnu();
    header.set_size(1);
    header.set_entry_type(EntryType::Regular);
    let long_name = format!("long/{}", "n".repeat(120));
    l.0.append_data(&mut header, long_name, &b"n"[..]).unwrap();
    let base = l.build();
    unpack(&base, &sandbox.layer_dir("layer-base")).unwrap();
    let headers = header_offsets(&base);
    assert!(headers.len() > 10, "{headers:?}");

    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut outcomes = [0usize; 2];
    for round in 0..500 {
        let mut bytes = base.clone();
        match round % 5 {
            // Random bytes anywhere; most fail the checksum.
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.next() as u8;
                }
            }
            // One random byte in a header that still passes the checksum.
            1 => {
                let at = headers[rng.below(headers.len())] + rng.below(512);
                bytes[at] = rng.next() as u8;
                fix_checksum(&mut bytes, at);
            }
            // A hostile piece spliced into a name or link name.
            2 => {
                let header = headers[rng.below(headers.len())];
                let field = if rng.below(2) == 0 { 0 } else { 157 };
                let piece = NAME_PIECES[rng.below(NAME_PIECES.len())];
                let start = header + field;
                let used = bytes[start..start + 100].iter().position(|&b| b == 0);
                let at = start + rng.below(used.unwrap_or(100).min(100 - piece.len()) + 1);
                bytes[at..at + piece.len()].copy_from_slice(piece);
                fix_checksum(&mut bytes, header);
            }
            3 => bytes.truncate(rng.below(bytes.len())),
            _ => {
                bytes = (0..rng.below(4096)).map(|_| rng.next() as u8).collect();
                fix_checksum(&mut bytes, 0);
            }
        }
        let dir = sandbox.layer_dir(&format!("layer{round}"));
        outcomes[usize::from(unpack(&bytes, &dir).is_ok())] += 1;
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert_eq!(before, sandbox.outside());
    // Both outcomes happen, so the garbling reaches past the first header.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

/// The proof that the directory is an overlayfs layer: mount two of them and look.
#[test]
fn overlayfs_honours_the_whiteouts() {
    let sandbox = Sandbox::new();
    let lower = sandbox.layer_dir("layer1");
    let upper = sandbox.layer_dir("layer2");
    let merged = sandbox.layer_dir("layer-merged");
    let mut l1 = Layer::new();
    l1.file("a", 0o644, b"a")
        .file("keep", 0o644, b"keep")
        .dir("d/", 0o755)
        .file("d/old", 0o644, b"old");
    unpack(&l1.build(), &lower).unwrap();
    let mut l2 = Layer::new();
    l2.file(".wh.a", 0o644, b"")
        .dir("d/", 0o755)
        .file("d/.wh..wh..opq", 0o644, b"")
        .file("d/new", 0o644, b"new");
    unpack(&l2.build(), &upper).unwrap();

    let options = format!("lowerdir={}:{}", upper.display(), lower.display());
    let mounted = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(&merged)
        .status();
    if !matches!(mounted, Ok(status) if status.success()) {
        eprintln!("skipping: cannot mount overlayfs here ({mounted:?})");
        return;
    }
    let seen_a = merged.join("a").exists();
    let keep = std::fs::read(merged.join("keep")).ok();
    let d: Vec<_> = std::fs::read_dir(merged.join("d"))
        .map(|it| it.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    let unmounted = std::process::Command::new("umount").arg(&merged).status();
    assert!(matches!(unmounted, Ok(status) if status.success()));
    assert!(!seen_a, "the whiteout did not hide `a`");
    assert_eq!(keep.as_deref(), Some(&b"keep"[..]));
    assert_eq!(
        d,
        vec![std::ffi::OsString::from("new")],
        "opaque `d` shows lower entries"
    );
}
