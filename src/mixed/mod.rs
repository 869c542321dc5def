//! Mixed precision: per-layer sensitivity analysis and bit allocation under a size or
//! BitOps budget, measured with the workflow's [`crate::workflow::Evaluator`].
//!
//! * [`sensitivity`]: each layer alone at b bits, the rest float;
//! * [`allocation`]: Pareto bit allocation over the sensitivities, with the size-vs-accuracy
//!   curve of every measured allocation;
//! * [`presets`]: depthwise vs pointwise presets (`dw8-pw4`, `dw4-pw8`).

pub mod allocation;
pub mod presets;
pub mod sensitivity;

pub use allocation::{
    Allocation, AllocationOptions, BitAssignment, Budget, CostModel, CurvePoint, allocate,
    config_for,
};
pub use presets::{ConvKind, conv_kind, preset, preset_config};
pub use sensitivity::{
    LayerSensitivity, QuantizableLayer, SensitivityReport, analyze, measure, quantizable_layers,
};
