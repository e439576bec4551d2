//! Pod sandboxes: the namespaces, network, cgroup, /dev/shm and files a pod's containers
//! share, held by the pod's monitor and its built-in pause process.

pub mod container_logs;
pub mod edges;
pub mod error;
pub mod files;
pub mod record;
pub mod resources;
pub mod service;
pub mod shm;
pub mod stats;
pub mod status;

#[cfg(test)]
pub(crate) mod fakes;
#[cfg(test)]
mod tests;
