//! Root filesystems: the unpacked image layers that overlayfs stacks for containers.

pub mod layers;
pub mod usage;
