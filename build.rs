//! Generates the CRI bindings from proto/cri/api.proto with protox, a pure-Rust protobuf
//! compiler, so building ferrocri needs no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/cri/api.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto/cri"])?;
    tonic_prost_build::configure()
        // Bad request bytes are answered with InvalidArgument (see src/cri/codec.rs).
        .codec_path("crate::cri::codec::CriCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
