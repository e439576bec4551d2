//! The executor: `ferrocri-monitor executor --spec <file>` turns a [`spec::ContainerSpec`] into the
//! running container process. The pod's monitor forks and execs it with the container's
//! stdio on fds 0-2 and the two pipes of [`sync`] on fds 3 and 4; it is a fresh,
//! single-threaded process, so every namespace and mount call is safe here.
//!
//! Order (each step names itself in the error the monitor gets):
//! 1. namespaces: network, IPC, UTS (join or create; PID is the monitor's);
//! 2. cgroup: join the container's cgroup, then enter the cgroup namespace (a new one rooted
//!    there, or an exec's container's); the container's own session keyring (see
//!    `keyring`); oom_score_adj;
//! 3. a private mount namespace (see `rootfs` for propagation), the overlay root, the
//!    spec's mounts (image volumes: see `image_volume`);
//! 4. /dev nodes and links; the `createRuntime` hooks (run by a helper forked before step
//!    1, in the runtime's namespaces), then the `createContainer` hooks (see `hooks`);
//! 5. pivot_root, the terminal (made in the container's devpts, see `terminal`), masked and
//!    read-only paths;
//! 6. working directory, read-only root, the pod's user namespace (if any), rlimits,
//!    controlling terminal, no_new_privs, stdio owned by the user, user and groups,
//!    capabilities;
//! 7. `ready` on the report pipe, wait for the start byte, the `startContainer` hooks, then
//!    exec.

pub mod seccomp;
pub mod spec;
pub mod sync;
pub mod terminal;

pub mod capabilities;
mod cgroupfs;
mod devices;
mod error;
mod exec;
mod hooks;
mod image_volume;
mod inroot;
mod keyring;
mod mounts;
mod namespaces;
mod options;
mod overlay;
mod process;
mod rootfs;

use std::path::Path;

pub use error::Error;

use error::{Context, Result};
use spec::{ContainerSpec, NamespaceMode, SeccompProfile};
use sync::{EXIT_EXEC_FAILED, EXIT_FAILED, EXIT_NOT_STARTED, Message, Reporter, StartSignal};

/// Entry point of `ferrocri-monitor executor --spec <file>`. Never returns when the exec succeeds.
pub fn run(spec_file: &Path) -> std::process::ExitCode {
    let (mut report, start) = match (Reporter::take(), StartSignal::take()) {
        (Ok(report), Ok(start)) => (report, start),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("ferrocri-monitor executor: {e} (this command is run by the pod monitor)");
            return std::process::ExitCode::from(EXIT_FAILED as u8);
        }
    };
    close_stray_fds_at_exec();
    let ready = match prepare(spec_file, &mut report) {
        Ok(ready) => ready,
        Err(e) => fail(&mut report, &e, EXIT_FAILED),
    };
    report.send(&Message::Ready);
    if !start.wait() {
        // Removed before it started: nothing runs, nothing to report.
        std::process::exit(EXIT_NOT_STARTED);
    }
    if let Some((id, start_hooks, bundle)) = &ready.start_hooks
        && let Err(e) = hooks::start_container(id, start_hooks, bundle)
    {
        fail(&mut report, &e, EXIT_FAILED);
    }
    if let Some(profile) = &ready.seccomp_before_exec
        && let Err(e) = process::load_seccomp(profile).context(|| "seccomp")
    {
        fail(&mut report, &e, EXIT_FAILED);
    }
    let errno = ready.program.exec();
    let e = Error::new(format!("exec {}: {}", ready.program.name, errno.desc()));
    fail(&mut report, &e, EXIT_EXEC_FAILED)
}

/// Everything done; what is left for after the start byte.
struct Ready {
    program: exec::Program,
    /// With no_new_privs the filter is loaded last, so it never applies to the executor.
    seccomp_before_exec: Option<SeccompProfile>,
    /// `startContainer` hooks with the container ID and the bundle, if there are any.
    start_hooks: Option<(String, Vec<spec::Hook>, String)>,
}

fn fail(report: &mut Reporter, error: &Error, code: i32) -> ! {
    report.send(&Message::Error(error.to_string()));
    std::process::exit(code)
}

/// Any fd the monitor leaked besides 0-4 closes at the exec instead of reaching the
/// container.
fn close_stray_fds_at_exec() {
    // SAFETY: close_range only changes fd flags here (CLOSE_RANGE_CLOEXEC).
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            5u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
}

fn prepare(spec_file: &Path, report: &mut Reporter) -> Result<Ready> {
    let spec = read_spec(spec_file).context(|| format!("spec {}", spec_file.display()))?;
    // Modes given to mknod/mkdir are meant exactly; the container gets 022 back at exec.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());

    // Opened while the host's paths are in view; joined after pivot_root.
    let userns = match &spec.userns {
        Some(path) => Some(
            std::fs::File::open(path).context(|| format!("user namespace {}", path.display()))?,
        ),
        None => None,
    };
    // Hooks are the container's, never an exec's.
    let with_hooks = spec.exec_in.is_none() && !spec.hooks.is_empty();
    let bundle = if with_hooks {
        hooks::bundle(&spec, spec_file)?
    } else {
        String::new()
    };
    // Forked while this process is still in the runtime's namespaces.
    let runtime_hooks = match spec.exec_in {
        None => hooks::RuntimeHooks::fork(&spec, &bundle)?,
        Some(_) => None,
    };
    namespaces::enter(&spec.namespaces).context(|| "namespaces")?;
    join_cgroup(&spec.cgroup).context(|| "cgroup")?;
    let cgroup_ns = match spec.exec_in {
        // An exec sees the cgroups as its container does.
        Some(pid) => NamespaceMode::Join(format!("/proc/{pid}/ns/cgroup").into()),
        None => spec.namespaces.cgroup.clone(),
    };
    namespaces::enter_cgroup(&cgroup_ns).context(|| "namespaces")?;
    // Before seccomp, which may refuse keyctl.
    keyring::join_own(&spec.id, spec.exec_in.is_some()).context(|| "keyring")?;
    if let Some(value) = spec.oom_score_adj
        && let Some(warning) = process::set_oom_score_adj(value).context(|| "oom_score_adj")?
    {
        report.warn(warning);
    }

    match spec.exec_in {
        Some(pid) => {
            enter_container_root(pid).context(|| format!("entering container process {pid}"))?;
            make_terminal(&spec)?;
        }
        None => {
            let container_hooks = with_hooks.then_some(bundle.as_str());
            make_root(&spec, userns.as_ref(), runtime_hooks, container_hooks)?
        }
    }

    if let Some(userns) = &userns {
        // Last of all the namespaces: every mount above needed the host's privileges.
        namespaces::join_user(userns).context(|| "user namespace")?;
        if spec.exec_in.is_none() && !spec.rootfs.readonly {
            process::make_cwd(&spec.cwd, &spec.user).context(|| format!("cwd {}", spec.cwd))?;
        }
    }
    let env = process::with_home(&spec.env, spec.user.uid);
    let program = exec::Program::new(&spec.args, &env).context(|| "args")?;
    process::set_rlimits(&spec.rlimits).context(|| "rlimits")?;
    if spec.tty {
        process::take_terminal().context(|| "terminal")?;
    }
    become_container_user(&spec, report)?;
    let start_hooks = (with_hooks && !spec.hooks.start_container.is_empty())
        .then(|| (spec.id.clone(), spec.hooks.start_container.clone(), bundle));
    Ok(Ready {
        program,
        seccomp_before_exec: spec.seccomp.filter(|_| spec.no_new_privileges),
        start_hooks,
    })
}

/// A new container's root: mounted, hooks run (the runtime's, then the container's
/// `createContainer` ones with `bundle`), pivoted into, terminal made, paths masked.
fn make_root(
    spec: &ContainerSpec,
    userns: Option<&std::fs::File>,
    runtime_hooks: Option<hooks::RuntimeHooks>,
    bundle: Option<&str>,
) -> Result<()> {
    build_root(spec, userns)?;
    // As runc: the runtime's hooks, then the container's, then pivot_root.
    if let Some(runtime_hooks) = runtime_hooks {
        runtime_hooks.run()?;
    }
    if let Some(bundle) = bundle {
        hooks::create_container(spec, bundle)?;
    }
    rootfs::pivot(&spec.rootfs.mount_point).context(|| "pivot_root")?;
    // As runc: after the mounts are in place, before paths are masked.
    make_terminal(spec)?;
    rootfs::mask_paths(&spec.masked_paths)?;
    rootfs::readonly_paths(&spec.readonly_paths)?;
    // In a user namespace pod the working directory is made from inside it (see `prepare`),
    // so its owner is the container's user; a read-only root must have it made now.
    if spec.userns.is_none() || spec.rootfs.readonly {
        process::make_cwd(&spec.cwd, &spec.user).context(|| format!("cwd {}", spec.cwd))?;
    }
    if spec.rootfs.readonly {
        rootfs::readonly_root().context(|| "rootfs")?;
    }
    Ok(())
}

/// A tty process's terminal, from the container's devpts (see `terminal`); a container's
/// is also its /dev/console.
fn make_terminal(spec: &ContainerSpec) -> Result<()> {
    if !spec.tty {
        return Ok(());
    }
    let socket = terminal::ConsoleSocket::take().context(|| "terminal")?;
    terminal::create(socket, spec.exec_in.is_none()).context(|| "terminal")
}

fn read_spec(path: &Path) -> Result<ContainerSpec> {
    let bytes = std::fs::read(path)?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn join_cgroup(path: &str) -> Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    let cgroups = crate::cgroup::Cgroups::detect().context(|| "find the cgroup mounts")?;
    cgroups
        .add_process(path, std::process::id() as i32)
        .context(|| format!("join {path}"))
}

/// Exec mode: the running container's mount namespace and root, as `nsenter -m -r` does
/// (the root is taken from /proc before the switch, since a pivoted namespace's own root
/// mount is not the container's root).
fn enter_container_root(pid: i32) -> Result<()> {
    let root = std::fs::File::open(format!("/proc/{pid}/root")).context(|| "open its root")?;
    let mnt = std::fs::File::open(format!("/proc/{pid}/ns/mnt"))
        .context(|| "open its mount namespace")?;
    nix::sched::setns(&mnt, nix::sched::CloneFlags::CLONE_NEWNS)
        .context(|| "join its mount namespace")?;
    nix::unistd::fchdir(&root).context(|| "enter its root")?;
    nix::unistd::chroot(".").context(|| "chroot to its root")
}

/// Steps 3 and 4: the mount namespace, the overlay, the spec's mounts, /dev. In a user
/// namespace pod the overlay's image layers and every bind are idmapped.
fn build_root(spec: &ContainerSpec, userns: Option<&std::fs::File>) -> Result<()> {
    rootfs::isolate(&spec.mounts, &spec.rootfs.mount_point).context(|| "mount namespace")?;
    match userns {
        Some(userns) => overlay::mount_rootfs_idmapped(&spec.rootfs, userns),
        None => overlay::mount_rootfs(&spec.rootfs),
    }
    .context(|| "rootfs")?;
    let root = inroot::Root::open(&spec.rootfs.mount_point).context(|| "rootfs")?;
    let own_cgroup_ns = spec.namespaces.cgroup != NamespaceMode::Host;
    for m in &spec.mounts {
        if m.fstype == "cgroup" {
            cgroupfs::mount_cgroups(&root, m, &spec.cgroup, own_cgroup_ns)
        } else if let Some(image) = &m.image {
            image_volume::apply(&root, m, image, userns)
        } else {
            mounts::apply(&root, m, userns)
        }
        .context(|| format!("mount {}", m.destination))?;
    }
    devices::create(&root, spec).context(|| "devices")
}

/// no_new_privs, seccomp (without no_new_privs), then groups, user and capabilities, and
/// the working directory (entered before the user changes, in case only root may pass
/// through its parents, and again after if that failed).
fn become_container_user(spec: &ContainerSpec, report: &mut Reporter) -> Result<()> {
    let (caps, unsupported) =
        capabilities::resolve(&spec.capabilities, spec.privileged).context(|| "capabilities")?;
    if !unsupported.is_empty() {
        report.warn(format!(
            "capabilities this kernel does not have, ignored: {}",
            unsupported.join(", ")
        ));
    }
    if spec.no_new_privileges {
        process::set_no_new_privs().context(|| "no_new_privs")?;
    } else if let Some(profile) = &spec.seccomp {
        process::load_seccomp(profile).context(|| "seccomp")?;
    }
    capabilities::limit_bounding(&caps).context(|| "capabilities")?;
    capabilities::keep_across_setuid().context(|| "capabilities")?;
    let entered = process::chdir(&spec.cwd).is_ok();
    process::own_stdio(spec.user.uid).context(|| "stdio")?;
    process::switch_user(&spec.user).context(|| "user")?;
    capabilities::apply(&caps).context(|| "capabilities")?;
    if !entered {
        process::chdir(&spec.cwd).context(|| "cwd")?;
    }
    Ok(())
}
