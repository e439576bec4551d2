//! A few BPF instructions in front of libseccomp's program so that syscalls newer than any
//! the profile names answer ENOSYS (libc then falls back) instead of the default action.

use libseccomp::ScmpAction;

use super::ENOSYS;

/// `AUDIT_ARCH_*` of the native architecture, for the architectures that get the stub.
pub(super) fn native_audit_arch() -> Option<u32> {
    if cfg!(target_arch = "x86_64") {
        Some(0xC000_003E) // AUDIT_ARCH_X86_64
    } else if cfg!(target_arch = "aarch64") {
        Some(0xC000_00B7) // AUDIT_ARCH_AARCH64
    } else {
        None
    }
}

/// With a deny-by-default profile, a syscall newer than any the profile names should look
/// missing (ENOSYS, so libc falls back) rather than forbidden. Not when the default already
/// lets everything through or is itself ENOSYS.
pub(super) fn wants_enosys_stub(default: ScmpAction) -> bool {
    match default {
        ScmpAction::Errno(errno) => errno != libc::ENOSYS,
        ScmpAction::KillThread | ScmpAction::KillProcess | ScmpAction::Trap => true,
        _ => false,
    }
}

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
pub(super) const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
/// Offsets in `struct seccomp_data`.
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
/// x32 syscalls are x86_64 ones with this bit set; libseccomp's program handles them.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Runs before libseccomp's program: on the native architecture, a syscall number above
/// `highest` returns ENOSYS. Every other case continues into libseccomp's program, which
/// starts right after (jumps are relative, so prepending moves nothing in it).
pub(super) fn enosys_stub(audit_arch: u32, highest: u32) -> Vec<libc::sock_filter> {
    let insn = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    vec![
        /* 0 */ insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_ARCH),
        /* 1 */ insn(BPF_JEQ_K, 0, 4, audit_arch), // another arch → 6
        /* 2 */ insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR),
        /* 3 */ insn(BPF_JGE_K, 2, 0, X32_SYSCALL_BIT), // x32 (or negative) → 6
        /* 4 */ insn(BPF_JGT_K, 0, 1, highest), // known → 6
        /* 5 */ insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | ENOSYS),
    ]
}
