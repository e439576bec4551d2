//! Device access rules: which device nodes the processes of a cgroup may create (`m`), read
//! (`r`) and write (`w`). Everything not allowed is denied. v1 writes them to the devices
//! controller (`devices.deny a`, then one `devices.allow` line per rule); v2 compiles them
//! into a `BPF_PROG_TYPE_CGROUP_DEVICE` program (`device_filter`).

use std::fmt;

/// Which device nodes a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Every device, character and block (`a`).
    All,
    Char,
    Block,
}

/// `m`, `r` and `w`, any subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    pub mknod: bool,
    pub read: bool,
    pub write: bool,
}

impl Access {
    pub const ALL: Access = Access {
        mknod: true,
        read: true,
        write: true,
    };
    pub const MKNOD: Access = Access {
        mknod: true,
        read: false,
        write: false,
    };

    /// Parses the CRI's `permissions` ("rwm" or any subset, in any order; empty means all,
    /// as runc and containerd take it).
    pub fn parse(text: &str) -> Result<Access, String> {
        if text.is_empty() {
            return Ok(Access::ALL);
        }
        let mut access = Access::default();
        for c in text.chars() {
            let slot = match c {
                'r' => &mut access.read,
                'w' => &mut access.write,
                'm' => &mut access.mknod,
                other => {
                    return Err(format!(
                        "permissions {text:?}: {other:?} is not one of r, w, m"
                    ));
                }
            };
            if *slot {
                return Err(format!("permissions {text:?}: {c:?} appears twice"));
            }
            *slot = true;
        }
        Ok(access)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (set, c) in [(self.read, 'r'), (self.write, 'w'), (self.mknod, 'm')] {
            if set {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// One allow rule: the devices `kind` `major:minor` (None is `*`) may be used with `access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: Access,
}

impl DeviceRule {
    pub const fn char(major: u32, minor: u32) -> DeviceRule {
        DeviceRule {
            kind: DeviceKind::Char,
            major: Some(major),
            minor: Some(minor),
            access: Access::ALL,
        }
    }

    /// Every device with every access: what a privileged container gets.
    pub const ALL_DEVICES: DeviceRule = DeviceRule {
        kind: DeviceKind::All,
        major: None,
        minor: None,
        access: Access::ALL,
    };
}

/// The v1 `devices.allow` syntax: `c 1:3 rwm`, `b *:* m`, `a *:* rwm`.
impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DeviceKind::All => 'a',
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        let number = |n: Option<u32>| n.map_or("*".to_owned(), |n| n.to_string());
        write!(
            f,
            "{kind} {}:{} {}",
            number(self.major),
            number(self.minor),
            self.access
        )
    }
}

/// runc's `AllowedDevices` (libcontainer/specconv), which containerd and CRI-O containers
/// get: mknod of any node (using one still needs a rule below), the standard character
/// devices, ptys and tun. /dev/console (5:1) is not in it: a container's console is a pty.
pub const DEFAULT_ALLOWED: [DeviceRule; 11] = [
    DeviceRule {
        kind: DeviceKind::Char,
        major: None,
        minor: None,
        access: Access::MKNOD,
    },
    DeviceRule {
        kind: DeviceKind::Block,
        major: None,
        minor: None,
        access: Access::MKNOD,
    },
    DeviceRule::char(1, 3), // null
    DeviceRule::char(1, 8), // random
    DeviceRule::char(1, 7), // full
    DeviceRule::char(5, 0), // tty
    DeviceRule::char(1, 5), // zero
    DeviceRule::char(1, 9), // urandom
    DeviceRule {
        // /dev/pts/*
        kind: DeviceKind::Char,
        major: Some(136),
        minor: None,
        access: Access::ALL,
    },
    DeviceRule::char(5, 2),    // ptmx
    DeviceRule::char(10, 200), // tun
];

/// The rules of a container: every device when privileged, else the devices it asks for
/// (with their permissions) and the defaults.
pub fn container_rules(privileged: bool, requested: &[DeviceRule]) -> Vec<DeviceRule> {
    if privileged {
        return vec![DeviceRule::ALL_DEVICES];
    }
    requested.iter().chain(&DEFAULT_ALLOWED).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_list_is_runcs() {
        let lines: Vec<String> = DEFAULT_ALLOWED.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            lines,
            [
                "c *:* m",
                "b *:* m",
                "c 1:3 rwm",
                "c 1:8 rwm",
                "c 1:7 rwm",
                "c 5:0 rwm",
                "c 1:5 rwm",
                "c 1:9 rwm",
                "c 136:* rwm",
                "c 5:2 rwm",
                "c 10:200 rwm",
            ]
        );
    }

    #[test]
    fn permissions() {
        assert_eq!(Access::parse("").unwrap(), Access::ALL);
        assert_eq!(Access::parse("mwr").unwrap().to_string(), "rwm");
        assert_eq!(Access::parse("r").unwrap().to_string(), "r");
        assert_eq!(Access::parse("wm").unwrap().to_string(), "wm");
        assert!(Access::parse("rx").unwrap_err().contains("'x'"));
        assert!(Access::parse("rr").unwrap_err().contains("twice"));
    }

    #[test]
    fn container_rules_put_requests_first_and_privileged_gets_all() {
        let fuse = DeviceRule {
            access: Access::parse("r").unwrap(),
            ..DeviceRule::char(10, 229)
        };
        let rules = container_rules(false, &[fuse]);
        assert_eq!(rules[0].to_string(), "c 10:229 r");
        assert_eq!(rules.len(), 1 + DEFAULT_ALLOWED.len());
        assert_eq!(
            container_rules(true, &[fuse])
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>(),
            ["a *:* rwm"]
        );
    }
}
