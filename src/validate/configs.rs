//! The configurations RunPodSandbox and CreateContainer carry (PodSandboxConfig,
//! ContainerConfig), and the copies of a pod's configuration other requests carry.

use super::resources;
use super::rules::{
    MAX_NAME, absolute_path, annotations, hostname, ip, known, labels, max_len, name, no_nul,
    optional_absolute_path, optional_id, path_below, plain, port, required, shown, sysctl, unix_id,
};
use super::{Invalid, invalid};
use crate::cri::v1::*;

/// A Kubernetes namespace is a DNS-1123 label.
const MAX_NAMESPACE: usize = 63;
/// Pod UIDs are UUIDs; room for other callers' forms.
const MAX_UID: usize = 128;

/// The kernel's limit on one argument or environment string, its NUL included
/// (`MAX_ARG_STRLEN`).
const MAX_EXEC_STRING: usize = 128 << 10;
/// What execve takes in all, strings and their pointers, under the default 8 MiB stack
/// limit (a quarter of it). More fails the exec with E2BIG, after the container was made.
const MAX_EXEC_TOTAL: usize = 2 << 20;

/// The command, arguments and environment fit through execve: refused here, naming the
/// field, rather than failing StartContainer with E2BIG. (The image's own command and
/// environment come on top; a request this close to the limit is not a real one.)
fn exec_size(p: &str, c: &ContainerConfig) -> Result<(), Invalid> {
    let pointer = std::mem::size_of::<usize>();
    let mut total = 0;
    let words = [("command", &c.command), ("args", &c.args)];
    for (name, list) in words {
        for (i, w) in list.iter().enumerate() {
            if w.len() + 1 > MAX_EXEC_STRING {
                return Err(invalid(
                    format!("{p}.{name}[{i}]"),
                    format!(
                        "{} bytes; the kernel takes at most {MAX_EXEC_STRING} per argument",
                        w.len()
                    ),
                ));
            }
            total += w.len() + 1 + pointer;
        }
    }
    for (i, kv) in c.envs.iter().enumerate() {
        let len = kv.key.len() + 1 + kv.value.len();
        if len + 1 > MAX_EXEC_STRING {
            return Err(invalid(
                format!("{p}.envs[{i}]"),
                format!(
                    "{len} bytes as KEY=VALUE; the kernel takes at most {MAX_EXEC_STRING} per variable"
                ),
            ));
        }
        total += len + 1 + pointer;
    }
    if total > MAX_EXEC_TOTAL {
        return Err(invalid(
            format!("{p}.envs"),
            format!(
                "command, args and environment take {total} bytes; execve takes at most \
                 {MAX_EXEC_TOTAL}"
            ),
        ));
    }
    Ok(())
}

/// What a PodSandboxConfig is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// RunPodSandbox makes a pod from it: its metadata is required.
    Create,
    /// The copy CreateContainer and PullImage carry, for information only: critest sends an
    /// empty one, so only what is there is checked.
    Copy,
}

/// A PodSandboxConfig under `p` (`config` of RunPodSandbox, `sandbox_config` elsewhere).
pub(super) fn pod_config(p: &str, c: &PodSandboxConfig, usage: Use) -> Result<(), Invalid> {
    match (&c.metadata, usage) {
        (None, Use::Copy) => {}
        (None, Use::Create) => return Err(invalid(format!("{p}.metadata"), "is required")),
        (Some(meta), _) => {
            let name = |field: &str, value: &str, max: usize| {
                let field = format!("{p}.metadata.{field}");
                if usage == Use::Copy && value.is_empty() {
                    return Ok(());
                }
                name(&field, value, max)
            };
            name("name", &meta.name, MAX_NAME)?;
            name("namespace", &meta.namespace, MAX_NAMESPACE)?;
            name("uid", &meta.uid, MAX_UID)?;
        }
    }
    hostname(&format!("{p}.hostname"), &c.hostname)?;
    optional_absolute_path(&format!("{p}.log_directory"), &c.log_directory)?;
    if let Some(dns) = &c.dns_config {
        dns_config(&format!("{p}.dns_config"), dns)?;
    }
    for (i, m) in c.port_mappings.iter().enumerate() {
        let field = |name: &str| format!("{p}.port_mappings[{i}].{name}");
        known::<Protocol>(&field("protocol"), m.protocol)?;
        port(&field("container_port"), m.container_port, 0)?;
        port(&field("host_port"), m.host_port, 0)?;
        if !m.host_ip.is_empty() {
            ip(&field("host_ip"), &m.host_ip)?;
        }
    }
    labels(&format!("{p}.labels"), &c.labels)?;
    annotations(&format!("{p}.annotations"), &c.annotations)?;
    if let Some(linux) = &c.linux {
        pod_linux(&format!("{p}.linux"), linux)?;
    }
    Ok(())
}

fn dns_config(p: &str, dns: &DnsConfig) -> Result<(), Invalid> {
    for (i, server) in dns.servers.iter().enumerate() {
        ip(&format!("{p}.servers[{i}]"), server)?;
    }
    for (i, search) in dns.searches.iter().enumerate() {
        let field = format!("{p}.searches[{i}]");
        word(&field, search)?;
        max_len(&field, search, MAX_NAME)?;
    }
    for (i, option) in dns.options.iter().enumerate() {
        word(&format!("{p}.options[{i}]"), option)?;
    }
    Ok(())
}

/// A pod's `linux` section under `p`: cgroup parent, sysctls, overhead and resources,
/// security context.
fn pod_linux(p: &str, linux: &LinuxPodSandboxConfig) -> Result<(), Invalid> {
    let field = format!("{p}.cgroup_parent");
    let parent = &linux.cgroup_parent;
    plain(&field, parent)?;
    max_len(&field, parent, 4096)?;
    if !parent.is_empty() && (!parent.starts_with('/') || parent.split('/').any(|c| c == "..")) {
        return Err(invalid(
            field,
            "must be an absolute cgroupfs path without \"..\"",
        ));
    }
    let security = linux.security_context.as_ref();
    let host_network = security
        .and_then(|s| s.namespace_options.as_ref())
        .is_some_and(|n| n.network == NamespaceMode::Node as i32);
    for (key, value) in &linux.sysctls {
        sysctl(&format!("{p}.sysctls"), key, value, host_network)?;
    }
    if let Some(r) = &linux.overhead {
        resources::linux(&format!("{p}.overhead"), r)?;
    }
    if let Some(r) = &linux.resources {
        resources::linux(&format!("{p}.resources"), r)?;
    }
    if let Some(s) = security {
        let p = format!("{p}.security_context");
        namespace_options(&p, s.namespace_options.as_ref())?;
        selinux(&p, s.selinux_options.as_ref())?;
        ids(
            &p,
            s.run_as_user.as_ref(),
            s.run_as_group.as_ref(),
            &s.supplemental_groups,
        )?;
        known::<SupplementalGroupsPolicy>(
            &format!("{p}.supplemental_groups_policy"),
            s.supplemental_groups_policy,
        )?;
        profile(&format!("{p}.seccomp"), s.seccomp.as_ref())?;
        profile(&format!("{p}.apparmor"), s.apparmor.as_ref())?;
    }
    Ok(())
}

/// A ContainerConfig under `p`.
pub(super) fn container_config(p: &str, c: &ContainerConfig) -> Result<(), Invalid> {
    let meta = c
        .metadata
        .as_ref()
        .ok_or_else(|| invalid(format!("{p}.metadata"), "is required"))?;
    name(&format!("{p}.metadata.name"), &meta.name, MAX_NAME)?;
    super::image::required_spec(&format!("{p}.image"), c.image.as_ref())?;
    for (i, w) in c.command.iter().enumerate() {
        no_nul(&format!("{p}.command[{i}]"), w)?;
    }
    for (i, w) in c.args.iter().enumerate() {
        no_nul(&format!("{p}.args[{i}]"), w)?;
    }
    optional_absolute_path(&format!("{p}.working_dir"), &c.working_dir)?;
    for (i, kv) in c.envs.iter().enumerate() {
        let field = format!("{p}.envs[{i}].key");
        required(&field, &kv.key)?;
        no_nul(&field, &kv.key)?;
        if kv.key.contains('=') {
            return Err(invalid(field, "must not contain '='"));
        }
        if kv.value.contains(&0) {
            return Err(invalid(
                format!("{p}.envs[{i}].value"),
                "must not contain a NUL byte",
            ));
        }
    }
    exec_size(p, c)?;
    for (i, m) in c.mounts.iter().enumerate() {
        mount(&format!("{p}.mounts[{i}]"), m)?;
    }
    for (i, d) in c.devices.iter().enumerate() {
        // Empty means the host path, as in containerd.
        optional_absolute_path(
            &format!("{p}.devices[{i}].container_path"),
            &d.container_path,
        )?;
        absolute_path(&format!("{p}.devices[{i}].host_path"), &d.host_path)?;
    }
    for (i, d) in c.cdi_devices.iter().enumerate() {
        let field = format!("{p}.CDI_devices[{i}].name");
        plain(&field, &d.name)?;
        crate::cdi::names::parse_qualified(&d.name).map_err(|e| invalid(&field, e))?;
    }
    labels(&format!("{p}.labels"), &c.labels)?;
    annotations(&format!("{p}.annotations"), &c.annotations)?;
    // `cdi.k8s.io/<anything>`: a comma-separated list of qualified device names.
    for (key, value) in &c.annotations {
        if key.starts_with(crate::cdi::ANNOTATION_PREFIX) {
            for name in value.split(',') {
                crate::cdi::names::parse_qualified(name)
                    .map_err(|e| invalid(format!("{p}.annotations[{key:?}]"), e))?;
            }
        }
    }
    path_below(&format!("{p}.log_path"), &c.log_path)?;
    known::<Signal>(&format!("{p}.stop_signal"), c.stop_signal)?;
    if let Some(linux) = &c.linux {
        if let Some(r) = &linux.resources {
            resources::linux(&format!("{p}.linux.resources"), r)?;
        }
        if let Some(s) = &linux.security_context {
            container_security(&format!("{p}.linux.security_context"), s)?;
        }
    }
    Ok(())
}

fn mount(p: &str, m: &Mount) -> Result<(), Invalid> {
    absolute_path(&format!("{p}.container_path"), &m.container_path)?;
    match &m.image {
        // An image volume: the image is the source.
        Some(spec) => {
            if !m.host_path.is_empty() {
                return Err(invalid(
                    format!("{p}.host_path"),
                    "must be empty for an image volume (image is set)",
                ));
            }
            super::image::image_spec(&format!("{p}.image"), spec)?;
        }
        None => {
            absolute_path(&format!("{p}.host_path"), &m.host_path)?;
            if !m.image_sub_path.is_empty() {
                return Err(invalid(
                    format!("{p}.image_sub_path"),
                    "is only for an image volume (image is not set)",
                ));
            }
        }
    }
    known::<MountPropagation>(&format!("{p}.propagation"), m.propagation)?;
    if m.recursive_read_only {
        if !m.readonly {
            return Err(invalid(
                format!("{p}.recursive_read_only"),
                "needs readonly",
            ));
        }
        if m.propagation != MountPropagation::PropagationPrivate as i32 {
            return Err(invalid(
                format!("{p}.recursive_read_only"),
                "needs private propagation",
            ));
        }
    }
    for (i, o) in m.mount_options.iter().enumerate() {
        word(&format!("{p}.mount_options[{i}]"), o)?;
    }
    path_below(&format!("{p}.image_sub_path"), &m.image_sub_path)
}

fn container_security(p: &str, s: &LinuxContainerSecurityContext) -> Result<(), Invalid> {
    if let Some(caps) = &s.capabilities {
        for (list, names) in [
            ("add_capabilities", &caps.add_capabilities),
            ("drop_capabilities", &caps.drop_capabilities),
            ("add_ambient_capabilities", &caps.add_ambient_capabilities),
        ] {
            for (i, c) in names.iter().enumerate() {
                word(&format!("{p}.capabilities.{list}[{i}]"), c)?;
            }
        }
    }
    namespace_options(p, s.namespace_options.as_ref())?;
    selinux(p, s.selinux_options.as_ref())?;
    ids(
        p,
        s.run_as_user.as_ref(),
        s.run_as_group.as_ref(),
        &s.supplemental_groups,
    )?;
    let field = format!("{p}.run_as_username");
    plain(&field, &s.run_as_username)?;
    max_len(&field, &s.run_as_username, 256)?;
    known::<SupplementalGroupsPolicy>(
        &format!("{p}.supplemental_groups_policy"),
        s.supplemental_groups_policy,
    )?;
    for (list, paths) in [
        ("masked_paths", &s.masked_paths),
        ("readonly_paths", &s.readonly_paths),
    ] {
        for (i, path) in paths.iter().enumerate() {
            absolute_path(&format!("{p}.{list}[{i}]"), path)?;
        }
    }
    profile(&format!("{p}.seccomp"), s.seccomp.as_ref())?;
    profile(&format!("{p}.apparmor"), s.apparmor.as_ref())?;
    // Deprecated, but still on the wire from older kubelets.
    #[allow(deprecated)]
    let (apparmor, seccomp) = (&s.apparmor_profile, &s.seccomp_profile_path);
    plain(&format!("{p}.apparmor_profile"), apparmor)?;
    no_nul(&format!("{p}.seccomp_profile_path"), seccomp)
}

fn namespace_options(p: &str, n: Option<&NamespaceOption>) -> Result<(), Invalid> {
    let Some(n) = n else { return Ok(()) };
    let p = format!("{p}.namespace_options");
    known::<NamespaceMode>(&format!("{p}.network"), n.network)?;
    known::<NamespaceMode>(&format!("{p}.pid"), n.pid)?;
    known::<NamespaceMode>(&format!("{p}.ipc"), n.ipc)?;
    optional_id(&format!("{p}.target_id"), &n.target_id)?;
    if let Some(u) = &n.userns_options {
        known::<NamespaceMode>(&format!("{p}.userns_options.mode"), u.mode)?;
        let mappings = crate::userns::mappings_of(Some(u))
            .map_err(|(field, rule)| invalid(format!("{p}.{field}"), rule))?;
        if mappings.is_some() && n.network == NamespaceMode::Node as i32 {
            return Err(invalid(
                format!("{p}.userns_options"),
                "a user namespace with the host network is not supported (Status says user_namespaces_host_network: false)",
            ));
        }
    }
    Ok(())
}

fn selinux(p: &str, s: Option<&SeLinuxOption>) -> Result<(), Invalid> {
    let Some(s) = s else { return Ok(()) };
    for (name, value) in [
        ("user", &s.user),
        ("role", &s.role),
        ("type", &s.r#type),
        ("level", &s.level),
    ] {
        plain(&format!("{p}.selinux_options.{name}"), value)?;
    }
    Ok(())
}

fn ids(
    p: &str,
    user: Option<&Int64Value>,
    group: Option<&Int64Value>,
    groups: &[i64],
) -> Result<(), Invalid> {
    if let Some(u) = user {
        unix_id(&format!("{p}.run_as_user.value"), u.value)?;
    }
    if let Some(g) = group {
        unix_id(&format!("{p}.run_as_group.value"), g.value)?;
    }
    for (i, g) in groups.iter().enumerate() {
        unix_id(&format!("{p}.supplemental_groups[{i}]"), *g)?;
    }
    Ok(())
}

fn profile(p: &str, profile: Option<&SecurityProfile>) -> Result<(), Invalid> {
    let Some(profile) = profile else {
        return Ok(());
    };
    known::<security_profile::ProfileType>(&format!("{p}.profile_type"), profile.profile_type)?;
    no_nul(&format!("{p}.localhost_ref"), &profile.localhost_ref)
}

/// One word: one-line text without spaces (DNS searches and options, capability names,
/// mount options).
fn word(field: &str, s: &str) -> Result<(), Invalid> {
    required(field, s)?;
    plain(field, s)?;
    if s.contains(' ') {
        return Err(invalid(
            field,
            format!("{} must not contain spaces", shown(s)),
        ));
    }
    Ok(())
}
