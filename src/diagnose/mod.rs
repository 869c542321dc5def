//! Finding the layer that breaks a model: how quantization error arises and travels through it.
//!
//! * [`propagation`]: per quantizable layer, its **own** error (only this layer quantized, its
//!   inputs float), the **accumulated** error (every layer up to and including it quantized)
//!   and the model outputs' SQNR when **only this layer is left float**, all measured against
//!   the float model with the workflow's batching and [`Evaluation`](crate::workflow::Evaluation);
//! * [`own`]: the single-layer runs behind the own error (each layer's node run alone on the
//!   float run's inputs, with its quantized weights and input quantizers);
//! * [`curves`]: "why this threshold": the MSE and KL objectives against the clip value on a
//!   tensor's |x| histogram, the very curves the MSE and KL calibrators minimise.
//!
//! Quantizers sit where the rest of Quantscope puts them: a quantized layer has quantized
//! weights and quantized *inputs* (TensorRT's placement); its output is quantized only as the
//! input of the next quantized layer. So a layer's own error is its weights' and its input
//! quantizers' error, seen at its output before any later quantizer.

pub mod curves;
pub mod own;
pub mod propagation;

pub use curves::{CurvePoint, ThresholdCurves, threshold_curves};
pub use propagation::{
    DiagnoseOptions, Diagnosis, LayerDiagnosis, Passes, diagnose, diagnosed_layers,
};
