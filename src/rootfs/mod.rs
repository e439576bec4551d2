//! Root filesystems: the unpacked image layers that overlayfs stacks for containers, and
//! the image volumes made of them.

pub mod image_volume;
pub mod layers;
pub mod usage;
