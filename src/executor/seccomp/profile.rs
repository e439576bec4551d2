//! Profiles in the Docker/OCI JSON format (Localhost ones and our RuntimeDefault), read and
//! cut down to the rules that apply to this architecture, kernel and container.

use std::collections::HashSet;

use serde::Deserialize;

use super::actions::{check_action, compare_op};
use super::target::{Caps, Target};
use super::{DEFAULT_PROFILE, SeccompError};
use crate::executor::spec::{SeccompArg, SeccompProfile, SeccompRule};
use crate::probes::parse_kernel_version;

/// ferrocri's RuntimeDefault profile for a container holding `caps` (`CAP_SYS_ADMIN` or
/// `SYS_ADMIN`, …): syscalls that need a capability are allowed only with it.
pub fn runtime_default(caps: &[String]) -> SeccompProfile {
    runtime_default_for(caps, &Target::native())
}

pub(super) fn runtime_default_for(caps: &[String], target: &Target) -> SeccompProfile {
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

pub(super) fn from_json_for(
    bytes: &[u8],
    caps: &[String],
    target: &Target,
) -> Result<SeccompProfile, SeccompError> {
    let doc: JsonProfile = serde_json::from_slice(bytes).map_err(SeccompError::Json)?;
    check_action(&doc.default_action, doc.default_errno_ret, None)?;
    let architectures = architectures(&doc, target)?;
    let caps = Caps::new(caps);
    let mut syscalls = Vec::new();
    for (number, rule) in doc.syscalls.unwrap_or_default().into_iter().enumerate() {
        if let Some(rule) = syscall_rule(number, rule, &caps, target)? {
            syscalls.push(rule);
        }
    }
    Ok(SeccompProfile {
        default_action: doc.default_action,
        default_errno_ret: doc.default_errno_ret,
        architectures,
        syscalls,
    })
}

/// The other architectures the filter covers (all checked, the native one left out: it is
/// always in). archMap (Docker's newer form) names the sub-architectures of each native
/// one; the older `architectures` lists them all.
fn architectures(doc: &JsonProfile, target: &Target) -> Result<Vec<String>, SeccompError> {
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
    Ok(architectures)
}

/// Rule `number` of the file, checked; `None` when its `includes`/`excludes` leave it out
/// here.
fn syscall_rule(
    number: usize,
    rule: JsonSyscall,
    caps: &Caps,
    target: &Target,
) -> Result<Option<SeccompRule>, SeccompError> {
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
        caps,
        target,
        &label,
    )? {
        return Ok(None);
    }
    Ok(Some(SeccompRule {
        names,
        action: rule.action,
        errno_ret: rule.errno_ret,
        args,
    }))
}

/// How errors name a rule: its syscalls, the first few of them.
pub(super) fn rule_label(names: &[String]) -> String {
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
