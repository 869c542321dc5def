//! Generates the ONNX protobuf types from `proto/onnx.proto` with protox (pure Rust, no
//! `protoc` binary) and prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    println!("cargo:rerun-if-changed=build.rs");
    let fds = protox::compile(["proto/onnx.proto"], ["proto"])?;
    let mut config = prost_build::Config::new();
    // Every `bytes` field (notably TensorProto.raw_data) as `bytes::Bytes`, so decoding from a
    // `Bytes` buffer slices the input instead of copying it.
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
