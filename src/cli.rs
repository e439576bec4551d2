//! Command line: `ferrocri` runs the daemon; subcommands are tools around it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH, LogFormat, LogLevel};

#[derive(Debug, Parser)]
#[command(
    name = "ferrocri",
    version,
    about = "A Kubernetes CRI container runtime"
)]
pub struct Cli {
    /// Configuration file (TOML). Without it, /etc/ferrocri/config.toml is read if present.
    #[arg(long, short = 'c', global = true, env = "FERROCRI_CONFIG")]
    pub config: Option<PathBuf>,
    /// Overrides `root_dir`.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Overrides `state_dir`.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Overrides `socket`.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Overrides `log.level`.
    #[arg(long, value_enum)]
    pub log_level: Option<LogLevel>,
    /// Overrides `log.format`.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Check that this host can run pods: prints one line per requirement (ok, warn or fail,
    /// with the fix) and exits with 1 when something fails.
    Check,
    /// Copy the images another runtime holds into ferrocri's store (the daemon must be stopped).
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// Copy images (index, manifest, config, layers, names) from a running containerd.
    Containerd {
        /// containerd's socket.
        #[arg(long, default_value = "/run/containerd/containerd.sock")]
        address: PathBuf,
        /// containerd namespace; `k8s.io` is where its CRI plugin keeps kubelet's images.
        #[arg(long, short = 'n', default_value = "k8s.io")]
        namespace: String,
        /// Images to copy, by name (`busybox:1.36`, `registry.k8s.io/pause:3.10`) or ID; all
        /// images of the namespace when none is given.
        images: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the complete default configuration file.
    Default,
    /// Print the effective configuration (file plus flags) after validation.
    Show,
}

impl Cli {
    /// The effective configuration: the file, then the command-line overrides, validated.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::load(path, true)?,
            None => Config::load(std::path::Path::new(DEFAULT_CONFIG_PATH), false)?,
        };
        if let Some(root) = &self.root {
            config.root_dir = root.clone();
        }
        if let Some(state) = &self.state {
            config.state_dir = state.clone();
        }
        if let Some(socket) = &self.socket {
            config.socket = socket.clone();
        }
        if let Some(level) = self.log_level {
            config.log.level = level;
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
        config.validate()?;
        Ok(config)
    }
}
