//! The app's jobs as plain functions (run them inside a [`super::Job`]), one file per job:
//! `data` (reading calibration and evaluation data), `calibration` (every activation's
//! statistics), `evaluation` (a quantization config against float: accuracy, agreement,
//! output KL, per-layer output SQNR) with `cost` (size and BitOps) and `focus` (exact figures
//! of one tensor); `feeds` batches the single input. They check the job's cancel flag between
//! batches and report progress.

mod calibration;
mod cost;
mod data;
mod evaluation;
mod feeds;
mod focus;
#[cfg(test)]
mod tests;

pub use calibration::{Calibration, calibrate};
pub use cost::{Cost, quantized_cost};
pub use data::{
    Data, DataSet, DataSource, SYNTHETIC_SAMPLES, bundled_digits_dir, default_source, read_data,
    synthetic,
};
pub use evaluation::{Evaluation, LayerError, evaluate, evaluate_against};
pub use feeds::{BATCH, input_name};
pub use focus::{Focus, FocusFigures};
