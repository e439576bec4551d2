//! Running OCI hooks (they come from CDI devices): the program gets the container's state
//! as JSON on stdin and only the hook's own environment; a non-zero exit or a timeout is a
//! failure whose message carries the start of its output.
//!
//! Where each kind runs in ferrocri (the OCI runtime spec's points, as runc places them):
//! - `createRuntime` and `prestart`: a helper the executor forks before it enters any
//!   namespace, so in the host's namespaces (and the pod's cgroup), once the rootfs, mounts
//!   and device nodes are in place; the state's pid is the container's host pid; a failure
//!   fails CreateContainer.
//! - `createContainer`: the executor, in the container's namespaces and cgroup, after the
//!   rootfs and every mount and device node are in place, before pivot_root (the hook's path
//!   is still the host's); a failure fails CreateContainer.
//! - `startContainer`: the executor, after StartContainer's start byte, as the container's
//!   user inside its root, just before the command's exec; a failure fails StartContainer.
//! - `poststart`: the daemon, after the command runs, before StartContainer answers; a
//!   failure is logged.
//! - `poststop`: the daemon, once, when it records the container's exit (also of one stopped
//!   or removed before it started, or whose start failed), in the background; a failure is
//!   logged.
//!
//! No thread is started here: the executor must stay single-threaded (joining a user
//! namespace needs it). The hook's stdout and stderr go to a memfd read afterwards.

use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The state a hook reads on stdin (OCI runtime spec, "State").
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct State<'a> {
    pub oci_version: &'a str,
    pub id: &'a str,
    /// `creating`, `created`, `running` or `stopped`.
    pub status: &'a str,
    pub pid: i32,
    /// The folder holding the container's spec (and the `config.json` hooks may read).
    pub bundle: &'a str,
}

pub const OCI_VERSION: &str = "1.2.0";

/// Output kept for a failure's message.
const OUTPUT_SHOWN: usize = 2048;

/// One OCI hook: a program run with the container's state as JSON on its stdin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// Absolute path of the program.
    pub path: String,
    /// argv, the first being argv[0]; empty: the path.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its whole environment, `KEY=VALUE`.
    #[serde(default)]
    pub env: Vec<String>,
    /// Seconds before it is killed and counted as failed; None: no limit.
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// Runs `hooks` in order; stops at the first failure, whose message names the hook.
pub fn run_all(kind: &str, hooks: &[Hook], state: &State) -> Result<(), String> {
    let json = serde_json::to_vec(state).map_err(|e| e.to_string())?;
    for hook in hooks {
        run(hook, &json).map_err(|e| format!("{kind} hook {}: {e}", hook.path))?;
    }
    Ok(())
}

/// Runs one hook with `state` on its stdin and waits for it (at most its timeout).
pub fn run(hook: &Hook, state: &[u8]) -> Result<(), String> {
    let output = rustix::fs::memfd_create("hook-output", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| format!("memfd: {e}"))?;
    let output = std::fs::File::from(output);
    let mut command = Command::new(&hook.path);
    if let Some((argv0, rest)) = hook.args.split_first() {
        command.arg0(argv0).args(rest);
    }
    command.env_clear();
    for entry in &hook.env {
        let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
        command.env(key, value);
    }
    let stdout = output.try_clone().map_err(|e| e.to_string())?;
    let stderr = output.try_clone().map_err(|e| e.to_string())?;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its state closes the pipe early: not an error.
        let _ = stdin.write_all(state);
    }
    let deadline = hook
        .timeout
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for it: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "timed out after {}s{}",
                hook.timeout.unwrap_or_default(),
                shown_output(output)
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!("{status}{}", shown_output(output)))
    }
}

fn shown_output(mut file: std::fs::File) -> String {
    let mut bytes = Vec::new();
    let _ = file.rewind();
    let _ = file.take(OUTPUT_SHOWN as u64).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(script: &str, timeout: Option<u64>) -> Hook {
        Hook {
            path: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["GREETING=hello there".into()],
            timeout,
        }
    }

    #[test]
    fn a_hook_reads_its_state_and_only_its_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "cat > {0}.state; echo \"$GREETING|$HOME\" > {0}",
            out.display()
        );
        let state = State {
            oci_version: OCI_VERSION,
            id: "abc",
            status: "created",
            pid: 42,
            bundle: "/b",
        };
        run_all("startContainer", &[hook(&script, Some(5))], &state).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "hello there|\n");
        let read: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.with_extension("state")).unwrap()).unwrap();
        assert_eq!(read["id"], "abc");
        assert_eq!(read["pid"], 42);
        assert_eq!(read["status"], "created");
        assert_eq!(read["ociVersion"], OCI_VERSION);
    }

    #[test]
    fn failures_and_timeouts_name_the_hook_and_show_output() {
        let state = State {
            oci_version: OCI_VERSION,
            id: "x",
            status: "creating",
            pid: 1,
            bundle: "/",
        };
        let err = run_all(
            "createContainer",
            &[hook("echo broken >&2; exit 3", None)],
            &state,
        )
        .unwrap_err();
        assert!(err.starts_with("createContainer hook /bin/sh:"), "{err}");
        assert!(
            err.contains("exit status: 3") && err.contains("broken"),
            "{err}"
        );
        let started = Instant::now();
        let err = run(&hook("sleep 30", Some(1)), b"{}").unwrap_err();
        assert!(err.contains("timed out after 1s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let missing = Hook {
            path: "/nonexistent/hook".into(),
            ..Default::default()
        };
        assert!(run(&missing, b"{}").unwrap_err().contains("cannot run it"));
    }
}
