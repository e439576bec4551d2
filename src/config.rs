//! The daemon's configuration: a TOML file where every key has a default, plus CLI overrides.
//!
//! Unknown keys and bad values are refused when the daemon starts, with a message that names
//! the key, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the daemon looks for its configuration file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ferrocri/config.toml";

/// The complete default configuration file, with a comment on every key.
/// `ferrocri config default` prints it; a unit test checks it parses to `Config::default()`.
pub const DEFAULT_CONFIG_TOML: &str = r#"# ferrocri configuration. Every key is optional: the values below are the defaults.

# Persistent data: the metadata database, image content, layers and container files.
root_dir = "/var/lib/ferrocri"
# Runtime state that does not survive a reboot: pinned namespaces, monitor sockets, exit files.
state_dir = "/run/ferrocri"
# The CRI gRPC socket kubelet and crictl connect to (unix:///run/ferrocri/ferrocri.sock).
socket = "/run/ferrocri/ferrocri.sock"
# Image that kubelet reports as the sandbox image; ferrocri runs its own built-in pause
# process and never needs to pull it, but keeps it pinned so image GC leaves it alone.
sandbox_image = "registry.k8s.io/pause:3.10"
# How long in-flight RPCs may run after SIGTERM/SIGINT before the daemon exits anyway.
shutdown_timeout = "10s"

[log]
# One of: trace, debug, info, warn, error.
level = "info"
# "text" for people, "json" for log collectors.
format = "text"

[streaming]
# Address of the exec/attach/port-forward server; port 0 picks a free port.
address = "127.0.0.1:0"
# PEM files; both set turns TLS on, both empty serves plain HTTP.
tls_cert = ""
tls_key = ""

[cni]
# Folder with CNI network configurations; the first by file name is used.
conf_dir = "/etc/cni/net.d"
# Folders searched, in order, for CNI plugin binaries.
bin_dirs = ["/opt/cni/bin", "/usr/lib/cni"]
# Pod subnet of the default network ferrocri writes when conf_dir holds no configuration.
pod_subnet = "10.88.0.0/16"

[registry]
# Per-registry host configuration in containerd's layout: <config_dir>/<host>/hosts.toml.
config_dir = "/etc/ferrocri/certs.d"
# Layers downloaded at the same time for one pull.
max_concurrent_downloads = 3
# A pull is aborted when a blob delivers no bytes for this long.
progress_timeout = "1m"

[image]
# Caps on one layer's unpacked content, checked while it is unpacked: a layer over either
# (a decompression bomb, say) is refused with RESOURCE_EXHAUSTED before it fills the disk.
max_layer_bytes = 68719476736
max_layer_files = 2000000

[cri]
# Items per message of the Stream* list RPCs (StreamContainers, …); a message also stays
# under 1 MiB, so thousands of containers never reach a client's message size limit.
stream_page_size = 500
# Container events (GetContainerEvents) a subscriber may fall behind by. One that falls
# further behind is dropped: its stream ends with RESOURCE_EXHAUSTED (kubelet then relists).
event_buffer = 1024

[cdi]
# Folders of Container Device Interface specs (.json, .yaml), in rising priority: a device
# defined in a later folder replaces one of the same name in an earlier folder.
spec_dirs = ["/etc/cdi", "/var/run/cdi"]

[metrics]
# Address of the Prometheus endpoint (http://<address>/metrics), e.g. "127.0.0.1:9090";
# empty serves no metrics. Plain HTTP without authentication: keep it on a trusted address.
address = ""
"#;

/// The whole configuration. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub root_dir: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub sandbox_image: String,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub log: LogConfig,
    pub streaming: StreamingConfig,
    pub cni: CniConfig,
    pub registry: RegistryConfig,
    pub image: ImageConfig,
    pub cri: CriConfig,
    pub cdi: CdiConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    pub address: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    pub pod_subnet: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    pub config_dir: PathBuf,
    pub max_concurrent_downloads: usize,
    #[serde(with = "humantime_serde")]
    pub progress_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    /// Bytes of file data one layer may unpack to (64 GiB by default).
    pub max_layer_bytes: u64,
    /// Entries (files, directories, links, whiteouts) one layer may hold.
    pub max_layer_files: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CriConfig {
    pub stream_page_size: usize,
    pub event_buffer: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdiConfig {
    /// CDI spec folders, in rising priority.
    pub spec_dirs: Vec<PathBuf>,
}

impl Default for CdiConfig {
    fn default() -> Self {
        CdiConfig {
            spec_dirs: crate::cdi::DEFAULT_SPEC_DIRS
                .iter()
                .map(PathBuf::from)
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port`, or empty for no endpoint.
    pub address: String,
}

impl MetricsConfig {
    /// The endpoint's address; None when metrics are off. Valid after [`Config::validate`].
    pub fn socket_address(&self) -> Option<SocketAddr> {
        self.address.trim().parse().ok()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root_dir: "/var/lib/ferrocri".into(),
            state_dir: "/run/ferrocri".into(),
            socket: "/run/ferrocri/ferrocri.sock".into(),
            sandbox_image: "registry.k8s.io/pause:3.10".into(),
            shutdown_timeout: Duration::from_secs(10),
            log: LogConfig::default(),
            streaming: StreamingConfig::default(),
            cni: CniConfig::default(),
            registry: RegistryConfig::default(),
            image: ImageConfig::default(),
            cri: CriConfig::default(),
            cdi: CdiConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel::Info,
            format: LogFormat::Text,
        }
    }
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
        }
    }
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/opt/cni/bin".into(), "/usr/lib/cni".into()],
            pod_subnet: "10.88.0.0/16".into(),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            config_dir: "/etc/ferrocri/certs.d".into(),
            max_concurrent_downloads: 3,
            progress_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            max_layer_bytes: 64 << 30,
            max_layer_files: 2_000_000,
        }
    }
}

impl Default for CriConfig {
    fn default() -> Self {
        CriConfig {
            stream_page_size: 500,
            event_buffer: 1024,
        }
    }
}

/// A configuration that cannot be used; the message names the file and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Config {
    /// Loads `path`. A missing file is fine only at the default location, where "no file" means
    /// "all defaults"; a file named on the command line must exist.
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; the error message names the offending key and line.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// Checks what serde cannot: relations between keys and value ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_paths()?;
        if self.sandbox_image.trim().is_empty() {
            return Err(invalid("sandbox_image", "must not be empty".into()));
        }
        parse_cidr(&self.cni.pod_subnet).map_err(|m| invalid("cni.pod_subnet", m))?;
        let tls = (
            self.streaming.tls_cert.as_os_str().is_empty(),
            self.streaming.tls_key.as_os_str().is_empty(),
        );
        if tls.0 != tls.1 {
            return Err(invalid(
                "streaming.tls_cert",
                "tls_cert and tls_key must be set together".into(),
            ));
        }
        if self.image.max_layer_bytes == 0 {
            return Err(invalid(
                "image.max_layer_bytes",
                "must be at least 1".into(),
            ));
        }
        if self.image.max_layer_files == 0 {
            return Err(invalid(
                "image.max_layer_files",
                "must be at least 1".into(),
            ));
        }
        if self.registry.max_concurrent_downloads == 0 {
            return Err(invalid(
                "registry.max_concurrent_downloads",
                "must be at least 1".into(),
            ));
        }
        if self.registry.progress_timeout.is_zero() {
            return Err(invalid(
                "registry.progress_timeout",
                "must be longer than 0s".into(),
            ));
        }
        if self.cri.stream_page_size == 0 {
            return Err(invalid("cri.stream_page_size", "must be at least 1".into()));
        }
        let metrics = self.metrics.address.trim();
        if !metrics.is_empty() && metrics.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "metrics.address",
                format!("{metrics:?} is not an address like 127.0.0.1:9090"),
            ));
        }
        if self.cri.event_buffer == 0 {
            return Err(invalid("cri.event_buffer", "must be at least 1".into()));
        }
        Ok(())
    }

    /// Paths must be absolute (the daemon's working directory means nothing), the socket's
    /// short enough to bind.
    fn check_paths(&self) -> Result<(), ConfigError> {
        let absolute = [
            ("root_dir", &self.root_dir),
            ("state_dir", &self.state_dir),
            ("socket", &self.socket),
            ("cni.conf_dir", &self.cni.conf_dir),
            ("registry.config_dir", &self.registry.config_dir),
        ];
        for (key, path) in absolute {
            if !path.is_absolute() {
                return Err(invalid(
                    key,
                    format!("{} is not an absolute path", path.display()),
                ));
            }
        }
        if let Some(dir) = self.cdi.spec_dirs.iter().find(|d| !d.is_absolute()) {
            return Err(invalid(
                "cdi.spec_dirs",
                format!("{} is not an absolute path", dir.display()),
            ));
        }
        if let Some(dir) = self.cni.bin_dirs.iter().find(|d| !d.is_absolute()) {
            return Err(invalid(
                "cni.bin_dirs",
                format!("{} is not an absolute path", dir.display()),
            ));
        }
        // A unix socket path must fit in sockaddr_un.sun_path (108 bytes with the NUL).
        if self.socket.as_os_str().len() > 107 {
            return Err(invalid("socket", "path is longer than 107 bytes".into()));
        }
        Ok(())
    }

    /// Path of the metadata database.
    pub fn database_path(&self) -> PathBuf {
        self.root_dir.join("metadata.db")
    }
}

fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { key, message }
}

/// Parses an IPv4 or IPv6 CIDR such as `10.88.0.0/16`; returns the address and prefix length.
pub fn parse_cidr(text: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not a CIDR (address/prefix)"))?;
    let addr: std::net::IpAddr = addr
        .parse()
        .map_err(|_| format!("{text:?} has an invalid IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max => Ok((addr, p)),
        _ => Err(format!("{text:?} has an invalid prefix length")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_matches_default_struct() {
        assert_eq!(
            Config::parse(DEFAULT_CONFIG_TOML).unwrap(),
            Config::default()
        );
        Config::default().validate().unwrap();
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("root_dir = \"/x\"\nsokcet = \"/y\"\n").unwrap_err();
        assert!(err.contains("sokcet"), "{err}");
        let err = Config::parse("[cni]\nconfdir = \"/x\"\n").unwrap_err();
        assert!(err.contains("confdir"), "{err}");
    }

    #[test]
    fn bad_value_is_named() {
        let err = Config::parse("[log]\nlevel = \"loud\"\n").unwrap_err();
        assert!(err.contains("level") && err.contains("loud"), "{err}");
        let err = Config::parse("shutdown_timeout = \"soon\"\n").unwrap_err();
        assert!(err.contains("shutdown_timeout"), "{err}");
        let err = Config::parse("[streaming]\naddress = \"nowhere\"\n").unwrap_err();
        assert!(err.contains("address"), "{err}");
    }

    #[test]
    fn validate_names_the_key() {
        let mut c = Config {
            root_dir: "relative".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("`root_dir`"));
        c.root_dir = "/ok".into();
        c.cni.pod_subnet = "10.0.0.0/40".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("`cni.pod_subnet`")
        );
        c.cni.pod_subnet = "10.0.0.0/8".into();
        c.metrics.address = "localhost:9090".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("`metrics.address`")
        );
        c.metrics.address = "127.0.0.1:9090".into();
        c.validate().unwrap();
        c.streaming.tls_cert = "/cert.pem".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("`streaming.tls_cert`")
        );
    }

    #[test]
    fn cidr_parsing() {
        assert!(parse_cidr("10.1.0.0/16").is_ok());
        assert!(parse_cidr("fd00::/64").is_ok());
        assert!(parse_cidr("10.1.0.0").is_err());
        assert!(parse_cidr("10.1.0.0/33").is_err());
        assert!(parse_cidr("banana/8").is_err());
    }
}
