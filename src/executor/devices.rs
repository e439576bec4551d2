//! /dev inside the container: the standard device nodes and links of an unprivileged
//! container, the spec's devices, and /dev/console for a terminal. (A privileged container
//! gets the host's /dev as a bind mount from the daemon instead.)

use rustix::fs::{FileType, Mode};
use rustix::io::Errno;

use super::error::{Context, Result};
use super::inroot::{Root, chown_at, fd_path};
use super::spec::{ContainerSpec, Device};

/// What runc and crun create in every unprivileged container.
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

const DEFAULT_LINKS: [(&str, &str); 6] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/ptmx", "pts/ptmx"),
    ("/dev/core", "/proc/kcore"),
];

pub fn create(root: &Root, spec: &ContainerSpec) -> Result<()> {
    if !spec.privileged {
        for (path, major, minor) in DEFAULT_DEVICES {
            make_node(root, &char_device(path, major, minor))?;
        }
        for (path, target) in DEFAULT_LINKS {
            make_link(root, path, target)?;
        }
    }
    for device in &spec.devices {
        make_node(root, device)?;
    }
    if spec.tty {
        bind_console(root)?;
    }
    Ok(())
}

fn char_device(path: &str, major: u64, minor: u64) -> Device {
    Device {
        path: path.to_owned(),
        kind: 'c',
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    }
}

/// mknod, replacing whatever the image had at that path (a leftover regular file would
/// otherwise swallow writes meant for the device).
fn make_node(root: &Root, device: &Device) -> Result<()> {
    let kind = match device.kind {
        'c' | 'u' => FileType::CharacterDevice,
        'b' => FileType::BlockDevice,
        other => {
            return Err(format!("device {}: unknown type {other:?}", device.path).into());
        }
    };
    let (dir, name) = root.parent_of(&device.path)?;
    match rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(e).context(|| format!("replace {}", device.path)),
    }
    // The umask is 0 in the executor, so the mode is exact.
    let mode = Mode::from_raw_mode(device.mode & 0o7777);
    let dev = rustix::fs::makedev(device.major as u32, device.minor as u32);
    rustix::fs::mknodat(&dir, name, kind, mode, dev)
        .context(|| format!("mknod {}", device.path))?;
    chown_at(&dir, name, device.uid, device.gid).context(|| format!("chown {}", device.path))
}

fn make_link(root: &Root, path: &str, target: &str) -> Result<()> {
    let (dir, name) = root.parent_of(path)?;
    match rustix::fs::symlinkat(target, &dir, name) {
        // Already there (from the image or a mount): leave it.
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(e).context(|| format!("symlink {path}")),
    }
}

/// The terminal on fd 0 (a pty slave the monitor made) is also the container's console.
/// It is bound by its path, not through /proc/self/fd/0: the kernel refuses to bind from a
/// mount of another namespace, and the fd's devpts mount is the monitor's; its copy in this
/// namespace (a copy of the monitor's) is the same device at the same path.
fn bind_console(root: &Root) -> Result<()> {
    let tty = std::fs::read_link("/proc/self/fd/0").context(|| "find the terminal on fd 0")?;
    let same_device = match (rustix::fs::fstat(std::io::stdin()), rustix::fs::stat(&tty)) {
        (Ok(fd), Ok(path)) => fd.st_rdev == path.st_rdev && fd.st_ino == path.st_ino,
        _ => false,
    };
    if !same_device {
        return Err(format!("the terminal on fd 0 is not {} here", tty.display()).into());
    }
    let console = root.ensure_file("/dev/console")?;
    nix::mount::mount(
        Some(&tty),
        fd_path(&console).as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .context(|| format!("bind {} on /dev/console", tty.display()))
}
