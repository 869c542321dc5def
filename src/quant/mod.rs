//! Quantizers: pure functions from tensors (and their statistics) to quantized values.

pub mod grid;

pub use grid::{IntGrid, LinearParams, QParams, QuantError};
