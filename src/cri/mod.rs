//! The CRI `runtime.v1` API: code generated from `proto/cri/api.proto`, and the codec it uses.

pub mod codec;
pub mod stored;

/// Messages, enums, servers and clients of package `runtime.v1`.
#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}
