//! Quantizers: pure functions from tensors (and their statistics) to quantized values.
//!
//! `grid` holds the linear parameters (S, Z); `linear`, `binary`, `ternary` and `kmeans` apply
//! each scheme to whole tensors, per tensor or per channel; `integer` is the integer-only
//! reference path (i32 accumulation, fixed-point requantization), `xnor` the binary
//! XNOR-popcount kernel, `cost` the model size and BitOps accounting.

pub mod binary;
pub mod config;
pub mod cost;
pub mod fake;
pub mod grid;
pub mod integer;
pub mod kmeans;
pub mod linear;
pub mod ternary;
pub mod xnor;

#[cfg(test)]
mod test_support;

pub use config::{ActivationQuant, LayerQuant, QuantConfig, WeightQuant, WeightScheme};
pub use fake::{FakeQuantHook, QuantizedModel};
pub use grid::{IntGrid, LinearParams, QParams, QuantError};
