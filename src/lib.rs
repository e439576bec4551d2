//! ferrocri: a Kubernetes CRI runtime. See ARCHITECTURE.md for the module map.

pub mod cli;
pub mod cni;
pub mod config;
pub mod cri;
pub mod daemon;
pub mod image;
pub mod rootfs;
pub mod server;
pub mod socket;
pub mod store;
pub mod telemetry;
