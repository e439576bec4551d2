//! Loading a device program and attaching it to a cgroup with the raw `bpf(2)` syscall: two
//! commands, a few fields each, so no BPF library is needed.
//!
//! The attachment belongs to the cgroup: it stays after our fds close and goes with the
//! cgroup's removal. `BPF_F_ALLOW_MULTI` lets programs of ancestors (systemd's, a kubelet
//! slice's) keep running too; an access must pass all of them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::device_filter::{Insn, encode};

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `expected_attach_type`. The kernel
/// takes a shorter attr than its own and zero-fills the rest.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] prefix of `union bpf_attr` for `cmd`
    // and its exact size is passed; pointers inside it point at buffers the caller keeps
    // alive across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Loads `insns` as a cgroup device program. When the verifier refuses it, the error
/// carries the verifier's log.
pub fn load_device_program(insns: &[Insn]) -> io::Result<OwnedFd> {
    let code = encode(insns);
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..15].copy_from_slice(b"ferrocri_device");
    let attr = |log: Option<&mut Vec<u8>>| ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: code.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: log.is_some() as u32,
        log_size: log.as_ref().map_or(0, |l| l.len() as u32),
        log_buf: log.map_or(0, |l| l.as_mut_ptr() as u64),
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    let fd = match bpf(BPF_PROG_LOAD, &mut attr(None)) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EACCES)) => {
            // Again with the verifier's log, to say why.
            let mut log = vec![0u8; 64 * 1024];
            let again = bpf(BPF_PROG_LOAD, &mut attr(Some(&mut log)));
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            match again {
                Ok(fd) => fd,
                Err(_) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("the kernel refused the device program: {e}: {text}"),
                    ));
                }
            }
        }
        Err(e) => return Err(e),
    };
    // SAFETY: BPF_PROG_LOAD returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Attaches `program` to the cgroup whose directory `cgroup_dir` is (an fd of the cgroup2
/// directory), next to any programs already there.
pub fn attach_device_program(cgroup_dir: &impl AsRawFd, program: &impl AsRawFd) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: cgroup_dir.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}
