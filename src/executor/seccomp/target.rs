//! Where a profile is going to run: the native architecture under its several names, the
//! kernel version, and the container's capabilities.

use std::collections::HashSet;

use crate::executor::capabilities::canonical_name;
use crate::probes::kernel_version;

/// Where a profile is going to run.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// libseccomp's name of the native architecture, `SCMP_ARCH_X86_64`.
    pub(super) scmp_arch: &'static str,
    /// Names profiles use for it in `includes.arches` (Go's and the kernel's): `amd64`,
    /// `x86_64`.
    pub(super) aliases: &'static [&'static str],
    /// (major, minor, patch) of the running kernel, if known.
    pub(super) kernel: Option<(u32, u32, u32)>,
}

impl Target {
    pub(super) fn native() -> Target {
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

    pub(super) fn is(&self, arch: &str) -> bool {
        arch.eq_ignore_ascii_case(self.scmp_arch)
            || self.aliases.iter().any(|a| arch.eq_ignore_ascii_case(a))
    }
}

/// A container's capabilities, normalised to `CAP_*` upper case.
pub(super) struct Caps {
    pub(super) names: HashSet<String>,
    pub(super) all: bool,
}

impl Caps {
    pub(super) fn new(caps: &[String]) -> Caps {
        let names: HashSet<String> = caps.iter().map(|c| canonical_name(c)).collect();
        let all = names.contains("CAP_ALL");
        Caps { names, all }
    }

    pub(super) fn has(&self, cap: &str) -> bool {
        self.all || self.names.contains(&canonical_name(cap))
    }
}
