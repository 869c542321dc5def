//! Quantizers: pure functions from tensors (and their statistics) to quantized values.
//!
//! `grid` holds the linear parameters (S, Z); `linear`, `binary`, `ternary` and `kmeans` apply
//! each scheme to whole tensors, per tensor or per channel (on the shared per-channel machinery
//! of `channels`); `scheme` is the one place that
//! dispatches on the configured [`WeightScheme`] (names, bits, storage, the whole-tensor and the
//! scalar quantizer); `scalar` models one value's quantization (levels, thresholds, staircase)
//! for the view, the histogram estimate and explain mode; `integer` is the integer-only
//! reference path (i32 accumulation, fixed-point requantization), `bias` the int32 biases at
//! S_x·S_w that the simulation and the QDQ export share, `xnor` the binary
//! XNOR-popcount kernel, `cost` the model size and BitOps accounting.

pub mod bias;
pub mod binary;
pub mod channels;
pub mod config;
pub mod cost;
pub mod fake;
pub mod grid;
pub mod integer;
pub mod kmeans;
pub mod learned_rounding;
pub mod linear;
pub mod scalar;
pub mod scheme;
pub mod ternary;
pub mod weight_calib;
pub mod xnor;

#[cfg(test)]
mod test_support;

pub use config::{ActivationQuant, LayerQuant, QuantConfig, WeightQuant};
pub use fake::{FakeQuantHook, QuantizedModel};
pub use grid::{IntGrid, LinearParams, QParams, QuantError};
pub use scalar::{Quantizer, Staircase};
pub use scheme::WeightScheme;
