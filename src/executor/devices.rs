//! /dev inside the container (a tmpfs of its own): the standard device nodes and links runc
//! makes, then the spec's devices — the CRI's, and for a privileged container a copy of
//! every host device. (/dev/console of a terminal is `terminal`'s.)

use rustix::fs::{FileType, Mode};
use rustix::io::Errno;

use super::error::{Context, Result};
use super::inroot::{Root, chown_at};
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
    for (path, major, minor) in DEFAULT_DEVICES {
        make_node(root, &char_device(path, major, minor))?;
    }
    for (path, target) in DEFAULT_LINKS {
        make_link(root, path, target)?;
    }
    // /dev/ptmx stays the link to the container's devpts (runc skips such a device too):
    // the host's ptmx would make ptys in the host's devpts.
    for device in spec.devices.iter().filter(|d| d.path != "/dev/ptmx") {
        make_node(root, device)?;
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
        // A fifo (CDI's type `p`): no numbers.
        'p' => FileType::Fifo,
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
