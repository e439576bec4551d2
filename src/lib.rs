//! ferrocri: a Kubernetes CRI runtime. See ARCHITECTURE.md for the module map.

pub mod cdi;
pub mod cgroup;
pub mod cli;
pub mod cni;
pub mod config;
pub mod container;
pub mod cri;
pub mod cri_metrics;
pub mod daemon;
pub mod digest;
pub mod executor;
#[doc(hidden)]
pub mod fuzz_entries;
pub mod gauges;
pub mod hooks;
pub mod ids;
pub mod image;
pub mod import;
pub mod inflight;
pub mod keyed_lock;
pub mod monitor;
pub mod netns;
pub mod preflight;
pub mod probes;
pub mod prometheus;
pub mod rootfs;
pub mod sandbox;
pub mod server;
pub mod socket;
pub mod spdy;
pub mod store;
pub mod streaming;
pub mod systemd;
pub mod telemetry;
pub mod userns;
pub mod validate;
