//! Containers: records, turning CRI configs into executor specs, and the lifecycle the
//! daemon drives through each pod's monitor.

pub mod build;
mod cache;
pub mod cdi;
mod create;
mod device_nodes;
mod error;
pub mod events;
mod exit_watch;
mod exits;
pub mod image_volumes;
pub mod layer_usage;
mod lifecycle;
pub mod pods;
pub mod record;
pub mod service;
mod sessions;
pub mod signals;
pub mod stats;
pub mod status;
pub mod user;

#[cfg(test)]
mod tests;
