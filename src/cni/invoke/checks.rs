//! Checks of what callers and configuration files hand us, before any plugin runs: names
//! that become cache file names and plugin arguments, and the spec version rules.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Attachment, CniError};
use crate::cni::config::NetworkList;

/// `"0.4.0"` ≥ `(0, 4, 0)`; a version that does not parse counts as old.
pub(super) fn version_at_least(version: &str, want: (u64, u64, u64)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Some(a)), Some(Some(b)), c) => (a, b, c.flatten().unwrap_or(0)) >= want,
        _ => false,
    }
}

/// The spec's rule for container IDs and network names: alphanumeric first, then alphanumeric,
/// `_`, `.`, `-`. It also keeps cache file names inside the cache dir.
pub(super) fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub(super) fn validate_id(container_id: &str) -> Result<(), CniError> {
    if valid_name(container_id) {
        Ok(())
    } else {
        Err(CniError::InvalidAttachment(format!(
            "container ID {container_id:?} must start with a letter or digit and contain only letters, digits, '_', '.' and '-'"
        )))
    }
}

pub(super) fn validate_attachment(att: &Attachment) -> Result<(), CniError> {
    validate_id(&att.container_id)?;
    let ifname = &att.ifname;
    if ifname.is_empty()
        || ifname.len() > 15
        || ifname == "."
        || ifname == ".."
        || ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(CniError::InvalidAttachment(format!(
            "interface name {ifname:?} must be 1 to 15 bytes without '/', ':' or spaces"
        )));
    }
    let mut seen = BTreeMap::new();
    for (k, v) in &att.args {
        if k.is_empty() || k.contains([';', '=']) || v.contains([';', '=']) {
            return Err(CniError::InvalidAttachment(format!(
                "CNI_ARGS pair {k:?}={v:?}: keys must be non-empty and neither may contain ';' or '='"
            )));
        }
        if seen.insert(k, ()).is_some() {
            return Err(CniError::InvalidAttachment(format!(
                "CNI_ARGS key {k:?} is given twice"
            )));
        }
    }
    Ok(())
}

pub(super) fn validate_network_name(name: &str) -> Result<(), CniError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(CniError::InvalidAttachment(format!(
            "network name {name:?} must start with a letter or digit and contain only letters, digits, '_', '.' and '-'"
        )))
    }
}

pub(super) fn validate_network(net: &NetworkList) -> Result<(), CniError> {
    let invalid = |reason: String| CniError::InvalidConfig {
        network: net.name.clone(),
        file: net.file.clone(),
        reason,
    };
    if !valid_name(&net.name) {
        return Err(invalid(format!(
            "the name {:?} must start with a letter or digit and contain only letters, digits, '_', '.' and '-'",
            net.name
        )));
    }
    if net.plugins.is_empty() {
        return Err(invalid("it has no plugins".into()));
    }
    for (n, p) in net.plugins.iter().enumerate() {
        if !p.is_object() {
            return Err(invalid(format!("plugins[{n}] is not an object")));
        }
        if p.get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(invalid(format!("plugins[{n}] has no type")));
        }
    }
    Ok(())
}
