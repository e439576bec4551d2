//! The executor: turns a [`spec::ContainerSpec`] into a running container process. It runs
//! inside the pod's monitor (a single-threaded process), in the child it forks for the
//! container: namespaces, rootfs, mounts, pivot_root, user, capabilities, seccomp, exec.

pub mod spec;
