//! Finding the CNI network configuration and checking its plugins are installed.
//!
//! As libcni does: files ending in `.conflist`, `.conf` or `.json` in the conf dir, taken in
//! file-name order; the first one that parses and names at least one plugin wins. A `.conf`
//! (a single plugin) is treated as a list of one.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A network configuration list ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    pub file: PathBuf,
    pub name: String,
    pub cni_version: String,
    /// Each plugin's configuration object, in chain order.
    pub plugins: Vec<Value>,
}

impl NetworkList {
    /// The configuration list as JSON (what [`parse_value`] reads back).
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "plugins": self.plugins,
        })
    }

    /// The `type` of each plugin, i.e. its binary name.
    pub fn plugin_types(&self) -> impl Iterator<Item = &str> {
        self.plugins
            .iter()
            .map(|p| p.get("type").and_then(Value::as_str).unwrap_or_default())
    }
}

/// Why pod networking is not ready; the text is what Status reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("no CNI network configuration in {0}")]
    NoConfig(PathBuf),
    #[error("CNI plugin {plugin:?} of network {network:?} ({file}) is not in {dirs}")]
    MissingPlugin {
        plugin: String,
        network: String,
        file: PathBuf,
        dirs: String,
    },
}

/// Loads the network that pods will use: the first valid configuration in `conf_dir`.
pub fn load_default_network(conf_dir: &Path) -> Result<NetworkList, NotReady> {
    let no_config = || NotReady::NoConfig(conf_dir.to_owned());
    config_files(conf_dir)
        .map_err(|_| no_config())?
        .into_iter()
        .find_map(|file| parse_file(&file))
        .ok_or_else(no_config)
}

/// The files of `conf_dir` that may hold a network configuration (`.conflist`, `.conf`,
/// `.json`), in the order they are tried: by name.
pub fn config_files(conf_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(conf_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Parses one configuration file; `None` when it is not a usable network configuration.
pub fn parse_file(file: &Path) -> Option<NetworkList> {
    let text = std::fs::read_to_string(file).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    parse_value(&value, file)
}

/// Reads a network configuration (a list, or a single plugin) from parsed JSON; `file` is
/// where it came from, for messages. `None` when it is not a usable configuration.
pub fn parse_value(value: &Value, file: &Path) -> Option<NetworkList> {
    let name = value.get("name")?.as_str()?.to_owned();
    let cni_version = value
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or("0.2.0")
        .to_owned();
    let plugins = match value.get("plugins") {
        Some(list) => list.as_array()?.clone(),
        // A single-plugin `.conf`: the whole object is the plugin configuration.
        None if value.get("type").is_some() => vec![value.clone()],
        None => return None,
    };
    let all_typed = plugins.iter().all(|p| {
        p.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
    });
    if plugins.is_empty() || !all_typed {
        return None;
    }
    Some(NetworkList {
        file: file.to_owned(),
        name,
        cni_version,
        plugins,
    })
}

/// Finds a plugin binary in the bin dirs, first match wins.
pub fn find_plugin(plugin: &str, bin_dirs: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    // A plugin type is a file name, never a path: refuse anything that could climb out.
    if plugin.is_empty() || plugin.contains('/') || plugin == "." || plugin == ".." {
        return None;
    }
    bin_dirs.iter().map(|d| d.join(plugin)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Checks that a usable network configuration exists and all its plugins are installed.
pub fn check_ready(conf_dir: &Path, bin_dirs: &[PathBuf]) -> Result<NetworkList, NotReady> {
    let network = load_default_network(conf_dir)?;
    if let Some(missing) = network
        .plugin_types()
        .find(|t| find_plugin(t, bin_dirs).is_none())
    {
        return Err(NotReady::MissingPlugin {
            plugin: missing.to_owned(),
            network: network.name.clone(),
            file: network.file.clone(),
            dirs: bin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(network)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn executable(dir: &Path, name: &str) {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn empty_or_missing_dir_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_default_network(dir.path()),
            Err(NotReady::NoConfig(_))
        ));
        let missing = dir.path().join("nope");
        assert!(matches!(
            load_default_network(&missing),
            Err(NotReady::NoConfig(_))
        ));
    }

    #[test]
    fn first_valid_file_by_name_wins() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "00-broken.conflist", "{ not json");
        write(
            dir.path(),
            "05-notes.txt",
            r#"{"name":"ignored","type":"bridge"}"#,
        );
        write(
            dir.path(),
            "10-b.conflist",
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        );
        write(
            dir.path(),
            "20-a.conf",
            r#"{"cniVersion":"0.4.0","name":"a","type":"ptp"}"#,
        );
        let net = load_default_network(dir.path()).unwrap();
        assert_eq!(net.name, "b");
        assert_eq!(
            net.plugin_types().collect::<Vec<_>>(),
            ["bridge", "portmap"]
        );
    }

    #[test]
    fn single_plugin_conf_is_a_list_of_one() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "10.conf",
            r#"{"cniVersion":"0.4.0","name":"a","type":"ptp"}"#,
        );
        let net = load_default_network(dir.path()).unwrap();
        assert_eq!(net.plugin_types().collect::<Vec<_>>(), ["ptp"]);
        assert_eq!(net.cni_version, "0.4.0");
    }

    #[test]
    fn missing_plugin_is_named() {
        let conf = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        write(
            conf.path(),
            "10.conflist",
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        );
        executable(bin.path(), "bridge");
        let err = check_ready(conf.path(), &[bin.path().to_owned()]).unwrap_err();
        assert!(err.to_string().contains("\"portmap\""), "{err}");
        executable(bin.path(), "portmap");
        assert!(check_ready(conf.path(), &[bin.path().to_owned()]).is_ok());
    }

    #[test]
    fn plugin_names_cannot_escape_bin_dirs() {
        let bin = tempfile::tempdir().unwrap();
        assert_eq!(find_plugin("../../bin/sh", &[bin.path().to_owned()]), None);
        assert_eq!(find_plugin("..", &[bin.path().to_owned()]), None);
    }
}
