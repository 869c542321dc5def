//! Quantization-aware training (QAT) over the IR: gradients through the model by the backward
//! kernels of [`crate::engine::grad`], fake quantization with the straight-through estimator,
//! and the lecture's training schemes.
//!
//! * [`tape`]: the training forward (the forward kernels in plan order, every value kept) and
//!   the reverse sweep, with a hook for quantizers and replaced layers;
//! * [`fake_quant`]: activation quantizers (linear N-bit with EMA, PACT or LSQ ranges; binary
//!   sign activations) and their STE;
//! * [`schemes`]: weight quantizers with their backward rules (linear STE, BinaryConnect,
//!   TWN, TTQ's learned scales, k-means centroid fine-tuning) and XNOR-Net layers;
//! * [`loss`], [`optim`]: softmax cross-entropy, SGD with momentum and Adam, schedules;
//! * [`trainer`]: one model under training (steps, evaluation, the trained graph and config);
//! * [`config`], [`job`]: what to train for and how, and the job function with progress,
//!   cancel and per-epoch curves.

pub mod config;
pub mod fake_quant;
pub mod job;
pub mod loss;
pub mod optim;
pub mod schemes;
pub mod tape;
pub mod trainer;

pub use config::{QatConfig, QatOptions};
pub use job::{EpochPoint, Labelled, QatInputs, QatProgress, QatResult, run_qat};
pub use trainer::Trainer;
