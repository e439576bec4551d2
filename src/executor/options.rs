//! mount(8)-style option lists (`["rbind", "ro", "nosuid", "mode=755"]`) split into what
//! each system call needs: flags for mount(2), the filesystem's data string, the kind of
//! bind, the propagation to set afterwards and recursive read-only.

use nix::mount::MsFlags;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bind {
    /// `bind`: only the mount at the source.
    Single,
    /// `rbind`: the source and every mount below it.
    Recursive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Flags to set: `ro`, `nosuid`, `nodev`, `noexec`, atime flags, …
    pub flags: MsFlags,
    /// Flags the options explicitly turn off (`rw`, `suid`, `dev`, `exec`, …): a remount
    /// must not keep them from the source mount.
    pub cleared: MsFlags,
    /// Filesystem-specific options, in order, for the data argument.
    pub data: Vec<String>,
    pub bind: Option<Bind>,
    /// `MS_PRIVATE`/`MS_SLAVE`/`MS_SHARED`/`MS_UNBINDABLE`, with `MS_REC` for the `r…` forms.
    pub propagation: Option<MsFlags>,
    /// `rro`: read-only for the mount and every mount below it (mount_setattr).
    pub recursive_readonly: bool,
}

impl Options {
    pub fn parse(options: &[String]) -> Options {
        let mut parsed = Options {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            data: Vec::new(),
            bind: None,
            propagation: None,
            recursive_readonly: false,
        };
        for option in options {
            parsed.add(option);
        }
        parsed
    }

    fn add(&mut self, option: &str) {
        if let Some(flag) = set_flag(option) {
            self.flags |= flag;
            self.cleared -= flag;
        } else if let Some(flag) = clear_flag(option) {
            self.flags -= flag;
            self.cleared |= flag;
        } else if let Some(propagation) = propagation(option) {
            self.propagation = Some(propagation);
        } else {
            match option {
                "bind" => self.bind = Some(Bind::Single),
                "rbind" => self.bind = Some(Bind::Recursive),
                "rro" => {
                    self.recursive_readonly = true;
                    self.flags |= MsFlags::MS_RDONLY;
                }
                "" | "defaults" => {}
                data => self.data.push(data.to_owned()),
            }
        }
    }

    /// The data argument of mount(2), or None when there is none.
    pub fn data(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }

    /// Whether `propagation` is a shared one: the container's mounts must then reach the
    /// host, and the mount namespace is set up for it.
    pub fn is_shared(&self) -> bool {
        self.propagation
            .is_some_and(|p| p.contains(MsFlags::MS_SHARED))
    }
}

fn set_flag(option: &str) -> Option<MsFlags> {
    Some(match option {
        "ro" => MsFlags::MS_RDONLY,
        "nosuid" => MsFlags::MS_NOSUID,
        "nodev" => MsFlags::MS_NODEV,
        "noexec" => MsFlags::MS_NOEXEC,
        "sync" => MsFlags::MS_SYNCHRONOUS,
        "dirsync" => MsFlags::MS_DIRSYNC,
        "mand" => MsFlags::MS_MANDLOCK,
        "noatime" => MsFlags::MS_NOATIME,
        "nodiratime" => MsFlags::MS_NODIRATIME,
        "relatime" => MsFlags::MS_RELATIME,
        "strictatime" => MsFlags::MS_STRICTATIME,
        "silent" => MsFlags::MS_SILENT,
        _ => return None,
    })
}

fn clear_flag(option: &str) -> Option<MsFlags> {
    Some(match option {
        "rw" => MsFlags::MS_RDONLY,
        "suid" => MsFlags::MS_NOSUID,
        "dev" => MsFlags::MS_NODEV,
        "exec" => MsFlags::MS_NOEXEC,
        "async" => MsFlags::MS_SYNCHRONOUS,
        "nomand" => MsFlags::MS_MANDLOCK,
        "atime" => MsFlags::MS_NOATIME,
        "diratime" => MsFlags::MS_NODIRATIME,
        "norelatime" => MsFlags::MS_RELATIME,
        "nostrictatime" => MsFlags::MS_STRICTATIME,
        "loud" => MsFlags::MS_SILENT,
        _ => return None,
    })
}

fn propagation(option: &str) -> Option<MsFlags> {
    let rec = MsFlags::MS_REC;
    Some(match option {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | rec,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | rec,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | rec,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | rec,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(options: &[&str]) -> Options {
        Options::parse(&options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_data_bind_propagation() {
        let o = parse(&[
            "rbind",
            "ro",
            "nosuid",
            "rprivate",
            "mode=755",
            "newinstance",
        ]);
        assert_eq!(o.bind, Some(Bind::Recursive));
        assert_eq!(o.flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(o.propagation, Some(MsFlags::MS_PRIVATE | MsFlags::MS_REC));
        assert_eq!(o.data().as_deref(), Some("mode=755,newinstance"));
        assert!(!o.recursive_readonly && !o.is_shared());
    }

    #[test]
    fn later_options_win() {
        let o = parse(&["ro", "rw", "noexec", "exec"]);
        assert_eq!(o.flags, MsFlags::empty());
        assert_eq!(o.cleared, MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC);
        assert_eq!(parse(&["rw", "ro"]).flags, MsFlags::MS_RDONLY);
    }

    #[test]
    fn rro_and_shared() {
        let o = parse(&["bind", "rro", "rshared"]);
        assert!(o.recursive_readonly);
        assert!(o.flags.contains(MsFlags::MS_RDONLY));
        assert_eq!(o.bind, Some(Bind::Single));
        assert!(o.is_shared());
        assert_eq!(parse(&[]).data(), None);
    }
}
