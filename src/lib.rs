//! Quantscope's core: load models into a graph IR, run them exactly, and (in later modules)
//! quantize, calibrate and measure them. Nothing here depends on a GUI; the `ui` module is
//! behind the `gui` feature.

pub mod budget;
pub mod calib;
pub mod engine;
pub mod error;
pub mod export;
pub mod ir;
pub mod jobs;
pub mod load;
pub mod metrics;
pub mod mixed;
pub mod quant;
pub mod stats;
pub mod summary;
pub mod train;
pub mod transform;
#[cfg(feature = "gui")]
pub mod ui;
pub mod workflow;

pub use error::{Error, Result};
