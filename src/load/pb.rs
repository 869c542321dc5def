//! The ONNX protobuf messages, generated at build time from `proto/onnx.proto`.
//!
//! Generated code is kept apart here; the loaders convert these messages into the IR and
//! nothing else in the crate sees them.

#![allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    rustdoc::all,
    unreachable_pub,
    dead_code
)]

include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
