//! Post-training transforms of a float graph: BN folding, cross-layer equalization,
//! high-bias absorption, bias correction and AdaRound. Each takes a `Graph` and returns a new
//! one (or a report of why nothing applied); the float outputs stay equal where the transform
//! promises it, and any NaN/Inf produced is detected and the transform refused.
//!
//! The transforms read and write a [`FloatGraph`]: the graph plus the per-channel Gaussian
//! statistics of pre-activations that BN folding leaves behind (β and |γ| of each folded BN),
//! which equalization rescales and high-bias absorption and analytic bias correction use.

pub mod absorb_bias;
pub mod adaround;
pub mod bias_correction;
pub mod compare;
pub mod equalize;
pub mod fold_bn;
mod layers;
pub mod report;
pub mod toggles;

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use crate::ir::Graph;

pub use report::{Applied, ChannelRanges, Skipped, TransformReport};

/// Per-channel mean and standard deviation of a layer's output, as a folded BN described it
/// (output of BN ~ N(β, γ²) per channel).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GaussianChannels {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// A float graph and what the transforms know about its pre-activations.
#[derive(Debug, Clone, Default)]
pub struct FloatGraph {
    pub graph: Graph,
    /// Tensor name (the output of a layer that had BN folded into it) → its channel statistics.
    pub preactivations: BTreeMap<String, GaussianChannels>,
}

impl FloatGraph {
    /// A graph with no pre-activation statistics yet.
    pub fn new(graph: Graph) -> Self {
        FloatGraph {
            graph,
            preactivations: BTreeMap::new(),
        }
    }

    /// The same as `clone`, with the initializers (nearly all of the bytes) copied in parallel.
    pub(crate) fn clone_parallel(&self) -> Self {
        let g = &self.graph;
        let initializers = g
            .initializers
            .par_iter()
            .map(|(name, tensor)| (name.clone(), tensor.clone()))
            .collect();
        FloatGraph {
            graph: Graph {
                name: g.name.clone(),
                nodes: g.nodes.clone(),
                inputs: g.inputs.clone(),
                outputs: g.outputs.clone(),
                initializers,
                opset: g.opset,
            },
            preactivations: self.preactivations.clone(),
        }
    }
}
