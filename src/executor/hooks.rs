//! The OCI hooks the executor runs (see `crate::hooks` for where every kind runs):
//! `createRuntime` (and `prestart`) in the runtime's namespaces, `createContainer` in the
//! container's before pivot_root, `startContainer` just before the exec.
//!
//! The runtime's namespaces are the ones the executor leaves at its first step, so for
//! `createRuntime` it forks a helper before entering any namespace: the helper stays in
//! the host's network, mount, IPC and UTS namespaces (and the pod's cgroup) and runs the
//! hooks when the executor, its rootfs and mounts in place, sends it its host pid.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::unistd::{ForkResult, Pid, fork};

use super::error::{Context, Result};
use super::spec::{ContainerSpec, Hook};
use crate::hooks::{OCI_VERSION, State};

/// A forked helper waiting to run the `createRuntime` hooks.
pub struct RuntimeHooks {
    pid: Pid,
    /// Executor → helper: the container's host pid, then close.
    go: std::fs::File,
    /// Helper → executor: empty for success, else the failure.
    result: std::fs::File,
}

/// The bundle folder hooks are told about: the one holding the spec file, where a minimal
/// `config.json` is written for hooks that read it.
pub fn bundle(spec: &ContainerSpec, spec_file: &Path) -> Result<String> {
    let dir = spec_file.parent().unwrap_or(Path::new("/"));
    let config = serde_json::to_vec_pretty(&bundle_config(spec))?;
    std::fs::write(dir.join("config.json"), config).context(|| "write the bundle's config.json")?;
    Ok(dir.to_string_lossy().into_owned())
}

impl RuntimeHooks {
    /// Forks the helper (still in the host's namespaces); None when there are no hooks.
    pub fn fork(spec: &ContainerSpec, bundle: &str) -> Result<Option<RuntimeHooks>> {
        let hooks = &spec.hooks.create_runtime;
        if hooks.is_empty() {
            return Ok(None);
        }
        let (go_r, go_w) = pipe()?;
        let (result_r, result_w) = pipe()?;
        // SAFETY: the executor is single-threaded; the child only reads a pipe, runs the
        // hooks (fork+exec through std) and exits.
        match unsafe { fork() }.context(|| "fork the createRuntime hook runner")? {
            ForkResult::Child => {
                drop((go_w, result_r));
                let code = helper(hooks, &spec.id, bundle, go_r, result_w);
                // SAFETY: _exit ends the forked child without running the parent's exit
                // handlers or flushing its buffers twice.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => Ok(Some(RuntimeHooks {
                pid: child,
                go: go_w.into(),
                result: result_r.into(),
            })),
        }
    }

    /// Has the helper run the hooks for the container (this process) and waits for it.
    pub fn run(mut self) -> Result<()> {
        let host_pid = host_pid().context(|| "createRuntime hooks: find the host pid")?;
        self.go
            .write_all(&host_pid.to_le_bytes())
            .context(|| "createRuntime hooks: start the runner")?;
        drop(self.go);
        let mut answer = String::new();
        let read = self.result.read_to_string(&mut answer);
        let _ = nix::sys::wait::waitpid(self.pid, None);
        read.context(|| "createRuntime hooks: read the runner's answer")?;
        match answer.strip_prefix("ok") {
            Some("") => Ok(()),
            _ if answer.is_empty() => Err("createRuntime hooks: the runner died".into()),
            _ => Err(answer.into()),
        }
    }
}

fn helper(hooks: &[Hook], id: &str, bundle: &str, go: OwnedFd, result: OwnedFd) -> i32 {
    // The container's stdio, report and start pipes are not the helper's to hold.
    for fd in 3..=5 {
        if fd != go.as_raw_fd() && fd != result.as_raw_fd() {
            let _ = nix::unistd::close(fd);
        }
    }
    let mut go = std::fs::File::from(go);
    let mut result = std::fs::File::from(result);
    let mut pid = [0u8; 4];
    if go.read_exact(&mut pid).is_err() {
        // The executor failed before the rootfs was ready: nothing to run.
        return 0;
    }
    let state = State {
        oci_version: OCI_VERSION,
        id,
        status: "creating",
        pid: i32::from_le_bytes(pid),
        bundle,
    };
    let answer = match crate::hooks::run_all("createRuntime", hooks, &state) {
        Ok(()) => "ok".to_owned(),
        Err(e) => e,
    };
    let _ = result.write_all(answer.as_bytes());
    0
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context(|| "pipe")
}

/// This process's pid in the host's PID namespace: the first of `NSpid` in the host's
/// /proc (still mounted here, before pivot_root).
fn host_pid() -> std::io::Result<i32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|pids| pids.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| std::io::Error::other("no NSpid in /proc/self/status"))
}

/// `createContainer` hooks: in the container's namespaces, before pivot_root.
pub fn create_container(spec: &ContainerSpec, bundle: &str) -> Result<()> {
    let state = State {
        oci_version: OCI_VERSION,
        id: &spec.id,
        status: "creating",
        pid: std::process::id() as i32,
        bundle,
    };
    Ok(crate::hooks::run_all(
        "createContainer",
        &spec.hooks.create_container,
        &state,
    )?)
}

/// `startContainer` hooks: after the start byte, just before the exec.
pub fn start_container(id: &str, hooks: &[Hook], bundle: &str) -> Result<()> {
    let state = State {
        oci_version: OCI_VERSION,
        id,
        status: "created",
        pid: std::process::id() as i32,
        bundle,
    };
    Ok(crate::hooks::run_all("startContainer", hooks, &state)?)
}

/// A minimal OCI `config.json` for the bundle, for hooks that read the container's root
/// from it (NVIDIA's `nvidia-cdi-hook` does): the root path as the host sees it, and the
/// process.
fn bundle_config(spec: &ContainerSpec) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": OCI_VERSION,
        "root": {
            "path": spec.rootfs.mount_point,
            "readonly": spec.rootfs.readonly,
        },
        "process": {
            "args": spec.args,
            "env": spec.env,
            "cwd": spec.cwd,
            "user": {
                "uid": spec.user.uid,
                "gid": spec.user.gid,
                "additionalGids": spec.user.additional_gids,
            },
        },
    })
}
