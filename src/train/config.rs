//! What a QAT run is asked to do: the quantization to train for ([`QatConfig`]: the PTQ
//! configuration on screen plus the layers trained as XNOR-Net layers) and how to train
//! ([`QatOptions`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::fake_quant::RangeLearning;
use super::optim::{OptimizerKind, Schedule};
use crate::ir::Graph;
use crate::quant::QuantConfig;
use crate::quant::ternary::TTQ_DEFAULT_THRESHOLD;

/// The quantization a model is trained for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct QatConfig {
    /// Weight schemes, activation settings and manual ranges, per layer, as in PTQ. Activation
    /// bits of 1 mean binary (sign) activations, as in BNN.
    pub quant: QuantConfig,
    /// Conv and Gemm nodes trained and run as XNOR-Net layers (binary weights scaled by α per
    /// output channel, binary inputs scaled by K); their `quant` settings are ignored.
    pub xnor_layers: BTreeSet<String>,
}

impl QatConfig {
    /// Training for `quant`, no XNOR layers.
    pub fn new(quant: QuantConfig) -> Self {
        QatConfig {
            quant,
            xnor_layers: BTreeSet::new(),
        }
    }

    /// XNOR-Net's convention: every Conv and Gemm but the first and the last (in file order)
    /// is an XNOR layer; those two stay as `quant` says.
    pub fn xnor_net(graph: &Graph, quant: QuantConfig) -> Self {
        let layers: Vec<&str> = graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op_type.as_str(), "Conv" | "Gemm"))
            .map(|n| n.name.as_str())
            .collect();
        let inner = if layers.len() > 2 {
            &layers[1..layers.len() - 1]
        } else {
            &[][..]
        };
        QatConfig {
            quant,
            xnor_layers: inner.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// How to train.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QatOptions {
    pub epochs: usize,
    /// Samples per optimizer step (split into smaller forward passes when the model has a
    /// fixed batch size, the gradients accumulated).
    pub batch_size: usize,
    pub learning_rate: f32,
    pub optimizer: OptimizerKind,
    pub schedule: Schedule,
    /// Weight decay on the weights of Conv/Gemm/MatMul layers (not biases or scales).
    pub weight_decay: f32,
    /// How activation clip ranges move.
    pub ranges: RangeLearning,
    /// TTQ's threshold factor t: Δ = t·max|W|.
    pub ttq_threshold: f32,
    /// Train BatchNormalization γ/β and LayerNormalization scales and shifts too (the BN
    /// statistics stay frozen either way).
    pub train_norm: bool,
    /// Seed of the shuffling and of stochastic binarization.
    pub seed: u64,
}

impl Default for QatOptions {
    fn default() -> Self {
        QatOptions {
            epochs: 5,
            batch_size: 64,
            learning_rate: 1e-3,
            optimizer: OptimizerKind::ADAM,
            schedule: Schedule::Cosine,
            weight_decay: 0.0,
            ranges: RangeLearning::EMA,
            ttq_threshold: TTQ_DEFAULT_THRESHOLD,
            train_norm: true,
            seed: 0,
        }
    }
}

impl QatOptions {
    /// An error naming the first setting out of range.
    pub fn check(&self) -> crate::Result<()> {
        let bad = |msg: String| {
            Err(crate::Error::Input {
                name: "QAT options".into(),
                msg,
            })
        };
        if self.epochs == 0 || self.batch_size == 0 {
            return bad(format!(
                "epochs ({}) and batch size ({}) must be at least 1",
                self.epochs, self.batch_size
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "learning rate {} must be positive",
                self.learning_rate
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weight decay {} must be ≥ 0", self.weight_decay));
        }
        if !(0.0..1.0).contains(&self.ttq_threshold) {
            return bad(format!(
                "TTQ threshold {} must be in [0, 1)",
                self.ttq_threshold
            ));
        }
        if let RangeLearning::Ema { momentum } = self.ranges
            && !(momentum > 0.0 && momentum <= 1.0)
        {
            return bad(format!("EMA momentum {momentum} must be in (0, 1]"));
        }
        Ok(())
    }
}
