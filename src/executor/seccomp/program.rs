//! Building the kernel filter with libseccomp and installing it.

use std::collections::HashSet;
use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

use super::actions::{action, compare_op};
use super::enosys::{enosys_stub, native_audit_arch, wants_enosys_stub};
use super::profile::rule_label;
use super::{MAX_INSTRUCTIONS, SeccompError};
use crate::executor::spec::{SeccompProfile, SeccompRule};

/// A compiled filter: the classic BPF program the kernel takes.
pub struct Program {
    pub(super) instructions: Vec<libc::sock_filter>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Program({} instructions)", self.instructions.len())
    }
}

impl Program {
    pub fn len(&self) -> usize {
        self.instructions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instructions.is_empty()
    }

    /// Installs the filter on the calling thread (and what it execs). No allocation: safe
    /// in a forked child of a multi-threaded process.
    pub fn load(&self) -> Result<(), SeccompError> {
        if self.instructions.len() > MAX_INSTRUCTIONS {
            return Err(SeccompError::TooLong(self.instructions.len()));
        }
        let program = libc::sock_fprog {
            len: self.instructions.len() as u16,
            filter: self.instructions.as_ptr().cast_mut(),
        };
        // SAFETY: `program` points at `len` valid instructions that outlive the call; the
        // kernel copies them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0u32,
                &program as *const libc::sock_fprog,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let mut error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ENOSYS) {
            // Kernels before 3.17 only have the prctl.
            // SAFETY: as above.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                    0,
                    0,
                )
            };
            if rc == 0 {
                return Ok(());
            }
            error = std::io::Error::last_os_error();
        }
        let hint = match error.raw_os_error() {
            Some(libc::EACCES) => " (the thread needs no_new_privs or CAP_SYS_ADMIN)",
            Some(libc::EINVAL) => " (a malformed program, or seccomp not built into the kernel)",
            _ => "",
        };
        Err(SeccompError::Load {
            source: error,
            hint,
        })
    }
}

/// Compiles and installs `profile` on the calling thread: [`compile`] then
/// [`Program::load`]. Compiling allocates; in a forked child of a multi-threaded process,
/// compile before the fork and only [`Program::load`] after it.
pub fn load(profile: &SeccompProfile) -> Result<(), SeccompError> {
    compile(profile)?.load()
}

/// Builds the kernel filter for `profile` with libseccomp.
pub fn compile(profile: &SeccompProfile) -> Result<Program, SeccompError> {
    let default = action(
        &profile.default_action,
        profile.default_errno_ret,
        None::<&str>,
    )?;
    // The native architecture's filter, and one for the others: a syscall libseccomp does
    // not know by name is added by number to the native filter only, which a filter
    // spanning several architectures refuses. The two are merged at the end.
    let mut native = new_context(default)?;
    let mut others = other_arches_context(profile, default)?;
    let highest = add_rules(profile, default, &mut native, others.as_mut())?;
    if let Some(ctx) = others {
        native.merge(ctx).map_err(|source| SeccompError::Build {
            what: "cannot merge the architectures' filters".to_string(),
            source,
        })?;
    }

    let mut instructions = export(&native)?;
    if let (Some(highest), Some(audit_arch)) = (highest, native_audit_arch())
        && wants_enosys_stub(default)
    {
        let mut stub = enosys_stub(audit_arch, highest as u32);
        stub.append(&mut instructions);
        instructions = stub;
    }
    if instructions.len() > MAX_INSTRUCTIONS {
        return Err(SeccompError::TooLong(instructions.len()));
    }
    Ok(Program { instructions })
}

/// The filter for the profile's architectures other than the native one; `None` when it
/// lists none.
fn other_arches_context(
    profile: &SeccompProfile,
    default: ScmpAction,
) -> Result<Option<ScmpFilterContext>, SeccompError> {
    let native_arch = ScmpArch::native();
    let mut other_arches = Vec::new();
    for name in &profile.architectures {
        let arch: ScmpArch = name
            .parse()
            .map_err(|_| SeccompError::UnknownArch(name.clone()))?;
        if arch != native_arch && arch != ScmpArch::Native && !other_arches.contains(&arch) {
            other_arches.push(arch);
        }
    }
    if other_arches.is_empty() {
        return Ok(None);
    }
    let build = |what: String| move |source| SeccompError::Build { what, source };
    let mut ctx = new_context(default)?;
    for arch in &other_arches {
        ctx.add_arch(*arch)
            .map_err(build(format!("cannot add architecture {arch:?}")))?;
    }
    ctx.remove_arch(ScmpArch::Native)
        .map_err(build("cannot drop the native architecture".to_string()))?;
    Ok(Some(ctx))
}

/// Adds the profile's rules to both filters; the highest native syscall number the profile
/// names, for the ENOSYS stub.
fn add_rules(
    profile: &SeccompProfile,
    default: ScmpAction,
    native: &mut ScmpFilterContext,
    mut others: Option<&mut ScmpFilterContext>,
) -> Result<Option<i32>, SeccompError> {
    let mut highest: Option<i32> = None;
    for rule in &profile.syscalls {
        let label = rule_label(&rule.names);
        let act = action(&rule.action, rule.errno_ret, Some(&label))?;
        let conditions = conditions(rule, &label)?;
        for name in &rule.names {
            let Some((syscall, known)) = resolve(name) else {
                // Not a syscall of this architecture or this libseccomp: skipped, as runc
                // does, so one profile serves several kernels and architectures.
                continue;
            };
            // Every syscall the profile names counts for the ENOSYS limit, even in a rule
            // that is not added.
            let number = syscall.as_raw_syscall();
            if number >= 0 {
                highest = Some(highest.map_or(number, |h| h.max(number)));
            }
            if act == default {
                // libseccomp refuses a rule that repeats the default action; it changes
                // nothing.
                continue;
            }
            for set in &conditions {
                native
                    .add_rule_conditional(act, syscall, set)
                    .map_err(|source| SeccompError::Rule {
                        syscall: name.clone(),
                        action: rule.action.clone(),
                        source,
                    })?;
                if known && let Some(ctx) = others.as_deref_mut() {
                    // A syscall the other architectures lack is refused there; that is
                    // the same as not listing it.
                    let _ = ctx.add_rule_conditional(act, syscall, set);
                }
            }
        }
    }
    Ok(highest)
}

fn new_context(default: ScmpAction) -> Result<ScmpFilterContext, SeccompError> {
    let mut ctx = ScmpFilterContext::new(default).map_err(|source| SeccompError::Build {
        what: "cannot create a filter".to_string(),
        source,
    })?;
    // no_new_privs is the executor's decision (the container's allowPrivilegeEscalation).
    ctx.set_ctl_nnp(false)
        .map_err(|source| SeccompError::Build {
            what: "cannot leave no_new_privs alone".to_string(),
            source,
        })?;
    Ok(ctx)
}

/// The argument comparisons of a rule, as sets each added as one libseccomp rule.
/// libseccomp compares each argument at most once per rule, so a rule with several
/// conditions on one argument becomes one rule per condition (any of them matches), as
/// runc does.
fn conditions(rule: &SeccompRule, label: &str) -> Result<Vec<Vec<ScmpArgCompare>>, SeccompError> {
    let mut compares = Vec::new();
    for arg in &rule.args {
        if arg.index > 5 {
            return Err(SeccompError::BadArgIndex {
                index: arg.index,
                rule: label.to_string(),
            });
        }
        let (op, datum) = match compare_op(&arg.op, arg.value) {
            Some(op @ ScmpCompareOp::MaskedEqual(_)) => (op, arg.value_two),
            Some(op) => (op, arg.value),
            None => {
                return Err(SeccompError::UnknownOp {
                    op: arg.op.clone(),
                    rule: label.to_string(),
                });
            }
        };
        compares.push(ScmpArgCompare::new(arg.index, op, datum));
    }
    let mut indexes = HashSet::new();
    let repeated = rule.args.iter().any(|a| !indexes.insert(a.index));
    Ok(if compares.is_empty() {
        vec![Vec::new()]
    } else if repeated {
        compares.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![compares]
    })
}

/// A syscall by name: libseccomp's number (negative for one that exists only on another
/// architecture, which libseccomp places itself), or else the number from
/// [`NEW_SYSCALLS`], for syscalls newer than the libseccomp on this machine. The flag says
/// whether libseccomp knows the name.
fn resolve(name: &str) -> Option<(ScmpSyscall, bool)> {
    if let Ok(syscall) = ScmpSyscall::from_name(name) {
        return Some((syscall, true));
    }
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return None;
    }
    NEW_SYSCALLS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| (ScmpSyscall::from(*nr), false))
}

/// Syscalls added since Linux 5.1 share one number on every architecture (x86_64 and
/// aarch64 alike). libseccomp 2.5.4 (Debian 12) does not know the newest ones.
pub(super) const NEW_SYSCALLS: &[(&str, i32)] = &[
    ("pidfd_send_signal", 424),
    ("io_uring_setup", 425),
    ("io_uring_enter", 426),
    ("io_uring_register", 427),
    ("open_tree", 428),
    ("move_mount", 429),
    ("fsopen", 430),
    ("fsconfig", 431),
    ("fsmount", 432),
    ("fspick", 433),
    ("pidfd_open", 434),
    ("clone3", 435),
    ("close_range", 436),
    ("openat2", 437),
    ("pidfd_getfd", 438),
    ("faccessat2", 439),
    ("process_madvise", 440),
    ("epoll_pwait2", 441),
    ("mount_setattr", 442),
    ("quotactl_fd", 443),
    ("landlock_create_ruleset", 444),
    ("landlock_add_rule", 445),
    ("landlock_restrict_self", 446),
    ("memfd_secret", 447),
    ("process_mrelease", 448),
    ("futex_waitv", 449),
    ("set_mempolicy_home_node", 450),
    ("cachestat", 451),
    ("fchmodat2", 452),
    ("map_shadow_stack", 453),
    ("futex_wake", 454),
    ("futex_wait", 455),
    ("futex_requeue", 456),
    ("statmount", 457),
    ("listmount", 458),
    ("lsm_get_self_attr", 459),
    ("lsm_set_self_attr", 460),
    ("lsm_list_modules", 461),
    ("mseal", 462),
    ("setxattrat", 463),
    ("getxattrat", 464),
    ("listxattrat", 465),
    ("removexattrat", 466),
    ("open_tree_attr", 467),
    ("file_getattr", 468),
    ("file_setattr", 469),
];

/// libseccomp's program, read back through a memfd (libseccomp 2.5 writes to a descriptor).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let io = |what: &'static str| move |source| SeccompError::Export { what, source };
    // SAFETY: a plain syscall; the name is a NUL-terminated literal.
    let fd = unsafe { libc::memfd_create(c"ferrocri-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io("cannot create a memfd")(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file)
        .map_err(|source| SeccompError::Build {
            what: "cannot export the program".to_string(),
            source,
        })?;
    file.rewind().map_err(io("cannot read the program back"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(io("cannot read the program back"))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}
