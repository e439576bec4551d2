//! Images: references, registry configuration and client, the content store, layer unpacking
//! and the catalog of pulled images.

pub mod catalog;
pub mod content;
pub mod error;
pub mod hosts;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod service;
pub mod source;
pub mod sparse;
pub mod unpack;
