//! Error metrics: how far a quantized tensor (or model) is from its float original.
//!
//! * [`tensor`]: element-wise metrics of a float tensor against its reconstruction (MSE, SQNR,
//!   max |error|, cosine similarity, KL divergence of the value distributions), per tensor or
//!   per channel along any axis.
//! * [`model`]: metrics of a model's outputs: top-1 accuracy on labelled data, top-1 agreement
//!   and softmax KL between float and quantized logits, and per-layer output SQNR.
//! * [`estimate`]: the fast estimate shown while a clip handle is dragged: the expected MSE
//!   (and SQNR) of any staircase quantizer (linear on any grid and clip range, binary, ternary,
//!   codebook) from a tensor's [`FineHistogram`], in O(bins) for linear quantizers, without
//!   touching the elements again.
//!
//! Everything here is a pure function of arrays. Non-finite inputs (NaN, ±Inf) are rejected
//! with [`MetricsError::NonFinite`] by the exact metrics; the histogram estimate counts them
//! and leaves them out (see [`FineHistogram`]).

pub mod estimate;
pub mod model;
pub mod tensor;

pub use estimate::{ErrorEstimate, FineHistogram};
pub use model::{
    LayerSqnr, LogitComparison, compare_logits, layer_sqnr, mean_softmax_kl, output_sqnr, top1,
    top1_accuracy, top1_agreement,
};
pub use tensor::{MetricOptions, TensorMetrics, compare, compare_channels, compare_slices};

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// The two tensors (or logit matrices) do not have the same shape.
    #[error("shapes differ: {float:?} (float) vs {quant:?} (quantized)")]
    ShapeMismatch {
        float: Vec<usize>,
        quant: Vec<usize>,
    },
    /// An input holds NaN or ±Inf values.
    #[error("the {which} tensor has {count} non-finite value(s) (first at flat index {first})")]
    NonFinite {
        /// "float", "quantized", "labels", ...
        which: &'static str,
        count: usize,
        first: usize,
    },
    /// There is nothing to measure (no elements, no rows, no finite values).
    #[error("no values to measure")]
    Empty,
    /// The channel axis is not an axis of the tensor.
    #[error("axis {axis} is out of range for a {ndim}-d tensor")]
    BadAxis { axis: usize, ndim: usize },
    /// A label is negative or not below the number of classes.
    #[error("label {label} at row {row} is not a class index (0..{classes})")]
    BadLabel {
        row: usize,
        label: i64,
        classes: usize,
    },
    /// Bad quantizer description (unsorted thresholds, non-finite levels, ...).
    #[error("{0}")]
    Invalid(String),
    /// A metric failed for one named layer.
    #[error("layer '{name}': {source}")]
    Layer {
        name: String,
        #[source]
        source: Box<MetricsError>,
    },
}

/// 10·log10(signal / noise) in dB, with the conventions used throughout: zero noise gives +∞
/// (a perfect reconstruction, also when the signal is zero), zero signal with non-zero noise
/// gives −∞.
pub fn sqnr_db(signal_power: f64, noise_power: f64) -> f64 {
    if noise_power <= 0.0 {
        f64::INFINITY
    } else if signal_power <= 0.0 {
        f64::NEG_INFINITY
    } else {
        10.0 * (signal_power / noise_power).log10()
    }
}
