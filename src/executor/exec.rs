//! The final exec: argv[0] looked up in the container's PATH (from the spec's env, inside the
//! new root, never the host's), the spec's env exactly, default signal handling.

use std::ffi::CString;

use nix::errno::Errno;

use super::error::{Error, Result};

/// What `execvp` uses when the environment has no PATH.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A command ready to exec: everything allocated up front.
pub struct Program {
    /// argv[0] as the spec gave it, for messages.
    pub name: String,
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
}

impl Program {
    pub fn new(args: &[String], env: &[String]) -> Result<Program> {
        let name = args
            .first()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| Error::new("no command to run"))?
            .clone();
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        Ok(Program {
            candidates: candidates(&name, path)
                .into_iter()
                .map(c_string)
                .collect::<Result<_>>()?,
            argv: args.iter().cloned().map(c_string).collect::<Result<_>>()?,
            env: env.iter().cloned().map(c_string).collect::<Result<_>>()?,
            name,
        })
    }

    /// Replaces this process; returns only on failure, with the error that explains it
    /// (as execvp reports it: EACCES if some candidate was not executable, else the last
    /// error).
    pub fn exec(&self) -> Errno {
        reset_signals();
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        let mut denied = false;
        let mut last = Errno::ENOENT;
        for path in &self.candidates {
            let Err(errno) = nix::unistd::execve(path, &self.argv, &self.env);
            match errno {
                Errno::EACCES => denied = true,
                // Not in this directory: try the next one.
                Errno::ENOENT | Errno::ENOTDIR | Errno::ESTALE | Errno::ENODEV => {}
                other => return other,
            }
            last = errno;
        }
        if denied { Errno::EACCES } else { last }
    }
}

/// The paths to try for `name`: itself when it has a slash, else each PATH entry's.
fn candidates(name: &str, path: &str) -> Vec<String> {
    if name.contains('/') {
        return vec![name.to_owned()];
    }
    path.split(':')
        .map(|dir| match dir {
            // An empty entry means the working directory, as in a shell.
            "" => name.to_owned(),
            dir => format!("{}/{name}", dir.trim_end_matches('/')),
        })
        .collect()
}

fn c_string(s: String) -> Result<CString> {
    CString::new(s).map_err(|e| Error::new(format!("argument or variable with a NUL byte: {e}")))
}

/// Signal dispositions and the mask survive exec: the container must start with defaults,
/// not with what this Rust binary or the monitor set up (std ignores SIGPIPE, for one).
fn reset_signals() {
    for signal in 1..=libc::SIGRTMAX() {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: SIG_DFL is always a valid disposition; invalid numbers just fail.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_candidates() {
        assert_eq!(candidates("/bin/sh", "/x"), vec!["/bin/sh"]);
        assert_eq!(candidates("./run", "/x"), vec!["./run"]);
        assert_eq!(
            candidates("sh", "/usr/bin/:/bin::"),
            vec!["/usr/bin/sh", "/bin/sh", "sh", "sh"]
        );
    }

    #[test]
    fn program_needs_a_command() {
        assert!(Program::new(&[], &[]).is_err());
        assert!(Program::new(&["".into()], &[]).is_err());
        let p = Program::new(&["echo".into(), "hi".into()], &["PATH=/bin".into()]).unwrap();
        assert_eq!(p.candidates, vec![CString::new("/bin/echo").unwrap()]);
        assert!(Program::new(&["a\0b".into()], &[]).is_err());
    }
}
