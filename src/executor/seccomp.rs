//! Seccomp for containers: ferrocri's RuntimeDefault profile, Localhost profiles in the
//! Docker/OCI JSON format, and turning a [`SeccompProfile`] into a kernel filter.
//!
//! - [`runtime_default`] is the profile a container gets when it asks for `RuntimeDefault`:
//!   the allow-list in `seccomp_default.json` (ferrocri's own, in the same JSON format as a
//!   Localhost profile), filtered for this architecture, the kernel and the container's
//!   capabilities.
//! - [`from_json`] reads a Localhost profile (`defaultAction`, `syscalls[]` with
//!   `names`/`name`, `action`, `errnoRet`, `args`, `includes`/`excludes`, `architectures` or
//!   `archMap`) and keeps only what applies here.
//! - [`compile`] builds the filter with libseccomp; [`Program::load`] (or [`load`], both
//!   steps at once) installs it on the calling thread. As runc does, names this libseccomp or
//!   architecture does not know are skipped, rules that repeat the default action are
//!   skipped, several conditions on one argument become separate rules, and a syscall
//!   numbered above every syscall the profile names answers `ENOSYS` instead of the default
//!   action, so a libc probing for a syscall newer than the profile falls back cleanly.
//!
//! Loading sets neither `no_new_privs` nor anything else: the executor decides that (the
//! kernel refuses the filter unless the thread has `no_new_privs` or `CAP_SYS_ADMIN`).

use std::collections::HashSet;
use std::io::{Read, Seek};
use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use serde::Deserialize;

use super::spec::{SeccompArg, SeccompProfile, SeccompRule};
use crate::probes::{kernel_version, parse_kernel_version};

/// ferrocri's RuntimeDefault profile, in the Docker/OCI JSON format.
const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;
/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
const MAX_INSTRUCTIONS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("the seccomp profile is not valid JSON for a profile: {0}")]
    Json(#[source] serde_json::Error),
    #[error("unknown seccomp action {action:?}{}", in_rule(rule))]
    UnknownAction {
        action: String,
        rule: Option<String>,
    },
    #[error("seccomp action {action}{} is not supported: {reason}", in_rule(rule))]
    UnsupportedAction {
        action: String,
        rule: Option<String>,
        reason: &'static str,
    },
    #[error(
        "errno {errno} of seccomp action {action}{} is out of range (at most 65535)",
        in_rule(rule)
    )]
    BadErrno {
        action: String,
        errno: u32,
        rule: Option<String>,
    },
    #[error("unknown seccomp argument operator {op:?} in the rule for {rule}")]
    UnknownOp { op: String, rule: String },
    #[error("seccomp argument index {index} in the rule for {rule} is out of range (0 to 5)")]
    BadArgIndex { index: u32, rule: String },
    #[error("seccomp rule number {0} names no syscall (neither \"names\" nor \"name\")")]
    NoNames(usize),
    #[error("unknown seccomp architecture {0:?}")]
    UnknownArch(String),
    #[error("invalid minKernel {version:?} in the rule for {rule}: expected e.g. \"4.8\"")]
    BadKernelVersion { version: String, rule: String },
    #[error("cannot add the seccomp rule for {syscall} ({action}): {source}")]
    Rule {
        syscall: String,
        action: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("cannot build the seccomp filter: {what}: {source}")]
    Build {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("cannot build the seccomp filter: {what}: {source}")]
    Export {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the seccomp filter has {0} instructions, more than the kernel takes (4096)")]
    TooLong(usize),
    #[error("the kernel refused the seccomp filter: {source}{hint}")]
    Load {
        #[source]
        source: std::io::Error,
        hint: &'static str,
    },
}

impl SeccompError {
    /// The whole message, for logs and for the CRI error a caller gets.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

fn in_rule(rule: &Option<String>) -> String {
    match rule {
        Some(rule) => format!(" in the rule for {rule}"),
        None => " as the default action".to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Profiles
// ---------------------------------------------------------------------------------------

/// ferrocri's RuntimeDefault profile for a container holding `caps` (`CAP_SYS_ADMIN` or
/// `SYS_ADMIN`, …): syscalls that need a capability are allowed only with it.
pub fn runtime_default(caps: &[String]) -> SeccompProfile {
    runtime_default_for(caps, &Target::native())
}

fn runtime_default_for(caps: &[String], target: &Target) -> SeccompProfile {
    match from_json_for(DEFAULT_PROFILE.as_bytes(), caps, target) {
        Ok(profile) => profile,
        // The file is part of the binary and a test parses it.
        Err(e) => panic!("the built-in seccomp profile is invalid: {e}"),
    }
}

/// Reads a Localhost profile (Docker/OCI JSON) for a container holding `caps`, keeping the
/// rules that apply to this architecture, kernel and capabilities. Unknown actions,
/// operators or architectures are errors naming them.
pub fn from_json(bytes: &[u8], caps: &[String]) -> Result<SeccompProfile, SeccompError> {
    from_json_for(bytes, caps, &Target::native())
}

/// The profile file's shape. Fields may be `null` as well as missing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonProfile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<JsonArchMap>>,
    #[serde(default)]
    syscalls: Option<Vec<JsonSyscall>>,
    // `flags` (SECCOMP_FILTER_FLAG_*), `listenerPath` and `listenerMetadata` are accepted
    // and ignored: ferrocri sets no filter flags and has no notification agent.
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSyscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<JsonArg>>,
    #[serde(default)]
    includes: Option<JsonFilter>,
    #[serde(default)]
    excludes: Option<JsonFilter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: Option<u64>,
    op: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsonFilter {
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Where a profile is going to run.
#[derive(Debug, Clone)]
struct Target {
    /// libseccomp's name of the native architecture, `SCMP_ARCH_X86_64`.
    scmp_arch: &'static str,
    /// Names profiles use for it in `includes.arches` (Go's and the kernel's): `amd64`,
    /// `x86_64`.
    aliases: &'static [&'static str],
    /// (major, minor, patch) of the running kernel, if known.
    kernel: Option<(u32, u32, u32)>,
}

impl Target {
    fn native() -> Target {
        let (scmp_arch, aliases): (&'static str, &'static [&'static str]) =
            match std::env::consts::ARCH {
                "x86_64" => ("SCMP_ARCH_X86_64", &["amd64", "x86_64"]),
                "aarch64" => ("SCMP_ARCH_AARCH64", &["arm64", "aarch64"]),
                "x86" => ("SCMP_ARCH_X86", &["386", "x86", "i386", "i686"]),
                "arm" => ("SCMP_ARCH_ARM", &["arm"]),
                "riscv64" => ("SCMP_ARCH_RISCV64", &["riscv64"]),
                "s390x" => ("SCMP_ARCH_S390X", &["s390x"]),
                "powerpc64" if cfg!(target_endian = "little") => {
                    ("SCMP_ARCH_PPC64LE", &["ppc64le"])
                }
                "powerpc64" => ("SCMP_ARCH_PPC64", &["ppc64"]),
                "loongarch64" => ("SCMP_ARCH_LOONGARCH64", &["loong64", "loongarch64"]),
                _ => ("SCMP_ARCH_NATIVE", &[]),
            };
        Target {
            scmp_arch,
            aliases,
            kernel: kernel_version(),
        }
    }

    fn is(&self, arch: &str) -> bool {
        arch.eq_ignore_ascii_case(self.scmp_arch)
            || self.aliases.iter().any(|a| arch.eq_ignore_ascii_case(a))
    }
}

/// A container's capabilities, normalised to `CAP_*` upper case.
struct Caps {
    names: HashSet<String>,
    all: bool,
}

impl Caps {
    fn new(caps: &[String]) -> Caps {
        let names: HashSet<String> = caps
            .iter()
            .map(|c| super::capabilities::canonical_name(c))
            .collect();
        let all = names.contains("CAP_ALL");
        Caps { names, all }
    }

    fn has(&self, cap: &str) -> bool {
        self.all
            || self
                .names
                .contains(&super::capabilities::canonical_name(cap))
    }
}

/// Every libseccomp architecture name a profile may list.
const KNOWN_ARCHES: &[&str] = &[
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_SHEB",
    "SCMP_ARCH_SH",
];

fn check_arch(name: &str) -> Result<(), SeccompError> {
    if KNOWN_ARCHES.contains(&name) {
        Ok(())
    } else {
        Err(SeccompError::UnknownArch(name.to_string()))
    }
}

fn from_json_for(
    bytes: &[u8],
    caps: &[String],
    target: &Target,
) -> Result<SeccompProfile, SeccompError> {
    let doc: JsonProfile = serde_json::from_slice(bytes).map_err(SeccompError::Json)?;
    check_action(&doc.default_action, doc.default_errno_ret, None)?;

    // archMap (Docker's newer form) names the sub-architectures of each native one; the
    // older `architectures` lists them all. Either way the native one is always in.
    let mut architectures = Vec::new();
    if let Some(map) = doc.arch_map.as_ref().filter(|m| !m.is_empty()) {
        for entry in map {
            check_arch(&entry.architecture)?;
            for sub in entry.sub_architectures.iter().flatten() {
                check_arch(sub)?;
            }
        }
        if let Some(entry) = map.iter().find(|e| target.is(&e.architecture)) {
            architectures.extend(entry.sub_architectures.iter().flatten().cloned());
        }
    } else {
        for arch in doc.architectures.iter().flatten() {
            check_arch(arch)?;
            architectures.push(arch.clone());
        }
    }
    architectures.retain(|a| !target.is(a));
    let mut seen = HashSet::new();
    architectures.retain(|a| seen.insert(a.clone()));

    let caps = Caps::new(caps);
    let mut syscalls = Vec::new();
    for (number, rule) in doc.syscalls.unwrap_or_default().into_iter().enumerate() {
        let mut names = rule.names.unwrap_or_default();
        if names.is_empty()
            && let Some(name) = rule.name.filter(|n| !n.is_empty())
        {
            names.push(name);
        }
        names.retain(|n| !n.is_empty());
        if names.is_empty() {
            return Err(SeccompError::NoNames(number));
        }
        let label = rule_label(&names);
        check_action(&rule.action, rule.errno_ret, Some(&label))?;
        let mut args = Vec::new();
        for arg in rule.args.unwrap_or_default() {
            if arg.index > 5 {
                return Err(SeccompError::BadArgIndex {
                    index: arg.index,
                    rule: label,
                });
            }
            compare_op(&arg.op, 0).ok_or_else(|| SeccompError::UnknownOp {
                op: arg.op.clone(),
                rule: label.clone(),
            })?;
            args.push(SeccompArg {
                index: arg.index,
                value: arg.value,
                value_two: arg.value_two.unwrap_or(0),
                op: arg.op,
            });
        }
        if !applies(
            rule.includes.as_ref(),
            rule.excludes.as_ref(),
            &caps,
            target,
            &label,
        )? {
            continue;
        }
        syscalls.push(SeccompRule {
            names,
            action: rule.action,
            errno_ret: rule.errno_ret,
            args,
        });
    }
    Ok(SeccompProfile {
        default_action: doc.default_action,
        default_errno_ret: doc.default_errno_ret,
        architectures,
        syscalls,
    })
}

/// How errors name a rule: its syscalls, the first few of them.
fn rule_label(names: &[String]) -> String {
    if names.len() <= 4 {
        names.join(", ")
    } else {
        format!("{}, … ({} syscalls)", names[..3].join(", "), names.len())
    }
}

/// Docker's filter semantics: every `includes` condition must hold (all its caps held, the
/// native arch listed, the kernel at least `minKernel`); no `excludes` condition may
/// (none of its caps held, the native arch not listed).
fn applies(
    includes: Option<&JsonFilter>,
    excludes: Option<&JsonFilter>,
    caps: &Caps,
    target: &Target,
    label: &str,
) -> Result<bool, SeccompError> {
    if let Some(inc) = includes {
        if let Some(arches) = inc.arches.as_ref().filter(|a| !a.is_empty())
            && !arches.iter().any(|a| target.is(a))
        {
            return Ok(false);
        }
        if inc.caps.iter().flatten().any(|c| !caps.has(c)) {
            return Ok(false);
        }
        if let Some(min) = inc.min_kernel.as_deref().filter(|m| !m.is_empty()) {
            let wanted =
                parse_kernel_version(min).ok_or_else(|| SeccompError::BadKernelVersion {
                    version: min.to_string(),
                    rule: label.to_string(),
                })?;
            // An unknown kernel version counts as too old: the stricter choice.
            if target.kernel.is_none_or(|k| k < wanted) {
                return Ok(false);
            }
        }
    }
    if let Some(exc) = excludes {
        if exc.arches.iter().flatten().any(|a| target.is(a)) {
            return Ok(false);
        }
        if exc.caps.iter().flatten().any(|c| caps.has(c)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Checks an action name (and its errno) the way [`action`] will read it.
fn check_action(name: &str, errno: Option<u32>, rule: Option<&str>) -> Result<(), SeccompError> {
    action(name, errno, rule).map(|_| ())
}

/// The libseccomp action for a profile's action name. `errno` is the `errnoRet` of
/// `SCMP_ACT_ERRNO` (EPERM when missing) or the message of `SCMP_ACT_TRACE`.
fn action(name: &str, errno: Option<u32>, rule: Option<&str>) -> Result<ScmpAction, SeccompError> {
    let rule = || rule.map(str::to_string);
    let value = || {
        let errno = errno.unwrap_or(EPERM);
        u16::try_from(errno).map_err(|_| SeccompError::BadErrno {
            action: name.to_string(),
            errno,
            rule: rule(),
        })
    };
    Ok(match name {
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(i32::from(value()?)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        "SCMP_ACT_TRACE" => ScmpAction::Trace(value()?),
        "SCMP_ACT_NOTIFY" => {
            return Err(SeccompError::UnsupportedAction {
                action: name.to_string(),
                rule: rule(),
                reason: "ferrocri has no seccomp notification agent",
            });
        }
        _ => {
            return Err(SeccompError::UnknownAction {
                action: name.to_string(),
                rule: rule(),
            });
        }
    })
}

/// The libseccomp operator for a profile's operator name. For `SCMP_CMP_MASKED_EQ` the
/// profile's `value` is the mask and `valueTwo` the value the masked argument must equal.
fn compare_op(name: &str, mask: u64) -> Option<ScmpCompareOp> {
    Some(match name {
        "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
        "SCMP_CMP_LT" => ScmpCompareOp::Less,
        "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
        "SCMP_CMP_EQ" => ScmpCompareOp::Equal,
        "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
        "SCMP_CMP_GT" => ScmpCompareOp::Greater,
        "SCMP_CMP_MASKED_EQ" => ScmpCompareOp::MaskedEqual(mask),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------
// Compiling and loading
// ---------------------------------------------------------------------------------------

/// A compiled filter: the classic BPF program the kernel takes.
pub struct Program {
    instructions: Vec<libc::sock_filter>,
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
    let build = |what: &str| {
        let what = what.to_string();
        move |source| SeccompError::Build { what, source }
    };

    // The native architecture's filter, and one for the others: a syscall libseccomp does
    // not know by name is added by number to the native filter only, which a filter
    // spanning several architectures refuses. The two are merged at the end.
    let mut native = new_context(default)?;
    let mut others = None;
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
    if !other_arches.is_empty() {
        let mut ctx = new_context(default)?;
        for arch in &other_arches {
            ctx.add_arch(*arch)
                .map_err(build(&format!("cannot add architecture {arch:?}")))?;
        }
        ctx.remove_arch(ScmpArch::Native)
            .map_err(build("cannot drop the native architecture"))?;
        others = Some(ctx);
    }

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
                if known && let Some(ctx) = others.as_mut() {
                    // A syscall the other architectures lack is refused there; that is
                    // the same as not listing it.
                    let _ = ctx.add_rule_conditional(act, syscall, set);
                }
            }
        }
    }
    if let Some(ctx) = others {
        native
            .merge(ctx)
            .map_err(build("cannot merge the architectures' filters"))?;
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
const NEW_SYSCALLS: &[(&str, i32)] = &[
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

/// `AUDIT_ARCH_*` of the native architecture, for the architectures that get the stub.
fn native_audit_arch() -> Option<u32> {
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
fn wants_enosys_stub(default: ScmpAction) -> bool {
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
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
/// Offsets in `struct seccomp_data`.
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;
/// x32 syscalls are x86_64 ones with this bit set; libseccomp's program handles them.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Runs before libseccomp's program: on the native architecture, a syscall number above
/// `highest` returns ENOSYS. Every other case continues into libseccomp's program, which
/// starts right after (jumps are relative, so prepending moves nothing in it).
fn enosys_stub(audit_arch: u32, highest: u32) -> Vec<libc::sock_filter> {
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

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Output};

    use serde::{Deserialize, Serialize};

    use super::*;

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
        let busybox = std::env::var("FERROCRI_TEST_BUSYBOX").unwrap_or_else(|_| {
            "/var/cache/ferrocri-test-images/busybox-root/bin/busybox".to_string()
        });
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
}
