//! Containers: records, turning CRI configs into executor specs, and the lifecycle the
//! daemon drives through each pod's monitor.

pub mod build;
mod cache;
pub mod cdi;
mod device_nodes;
pub mod events;
mod exit_watch;
pub mod image_volumes;
pub mod layer_usage;
pub mod pods;
pub mod record;
pub mod service;
pub mod signals;
pub mod stats;
pub mod status;
pub mod user;
