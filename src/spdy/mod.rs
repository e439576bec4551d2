//! Server side of SPDY/3.1 for Kubernetes streaming (exec, attach, port-forward).
//!
//! - `frame.rs`: pure codec between bytes and [`frame::Frame`]; no state, no I/O.
//! - `headers.rs`: name/value header blocks and the per-direction zlib contexts.

pub mod frame;
pub mod headers;

/// Header name/value pairs; names lower-case as on the wire. A header with several
/// values appears as several pairs.
pub type Headers = Vec<(String, String)>;
