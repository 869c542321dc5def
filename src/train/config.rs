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

/// Ops an XNOR layer's input may pass through after its activation (they commute with sign or
/// only move values).
const XNOR_PASS_THROUGH: &[&str] = &["MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze"];

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
    /// is an XNOR layer; those two stay as `quant` says. Depthwise convolutions stay as `quant`
    /// says too: a binary 3×3 filter over one channel keeps 9 bits of its input, and with them
    /// the MobileNet sample trains to 39 % held-out accuracy instead of 75 % (8 epochs).
    pub fn xnor_net(graph: &Graph, quant: QuantConfig) -> Self {
        let layers: Vec<&str> = graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op_type.as_str(), "Conv" | "Gemm"))
            .filter(|n| !is_depthwise(graph, n))
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

    /// The graph XNOR layers train on: XNOR-Net's block is BatchNorm → sign → binary conv, the
    /// sign being the nonlinearity. A ReLU (or a Clip from 0) in front of an XNOR layer makes
    /// every input non-negative, so sign(I) is +1 everywhere and the layer sees nothing but K;
    /// training then stays at chance. Such an activation becomes an Identity (same tensor
    /// names) when everything it feeds, through pooling and reshaping, is XNOR layers' data
    /// input. Returns the graph and the nodes bypassed.
    pub fn xnor_graph(&self, graph: &Graph) -> (Graph, Vec<String>) {
        let mut out = graph.clone();
        if self.xnor_layers.is_empty() {
            return (out, Vec::new());
        }
        let consumers = |tensor: &str| -> Vec<(usize, usize)> {
            graph
                .nodes
                .iter()
                .enumerate()
                .flat_map(|(n, node)| {
                    node.inputs
                        .iter()
                        .enumerate()
                        .filter(move |(_, i)| i.as_str() == tensor)
                        .map(move |(slot, _)| (n, slot))
                })
                .collect()
        };
        // Whether every use of `tensor` ends, through pass-through ops, in an XNOR data input.
        fn feeds_only_xnor(
            graph: &Graph,
            config: &QatConfig,
            tensor: &str,
            consumers: &dyn Fn(&str) -> Vec<(usize, usize)>,
            depth: usize,
        ) -> bool {
            if depth > 8 || graph.outputs.iter().any(|o| o.name == tensor) {
                return false;
            }
            let uses = consumers(tensor);
            !uses.is_empty()
                && uses.iter().all(|&(n, slot)| {
                    let node = &graph.nodes[n];
                    if config.xnor_layers.contains(&node.name) {
                        return slot == 0;
                    }
                    slot == 0
                        && XNOR_PASS_THROUGH.contains(&node.op_type.as_str())
                        && node.outputs.len() == 1
                        && feeds_only_xnor(graph, config, &node.outputs[0], consumers, depth + 1)
                })
        }
        let mut bypassed = Vec::new();
        for node in out.nodes.iter_mut() {
            let clips_at_zero = match node.op_type.as_str() {
                "Relu" => true,
                // Clip's lower bound: an input from opset 11, an attribute before.
                "Clip" => match node.inputs.get(1).filter(|name| !name.is_empty()) {
                    Some(name) => graph
                        .initializers
                        .get(name)
                        .and_then(|t| t.data.as_f32())
                        .is_some_and(|min| min.iter().all(|&v| v >= 0.0)),
                    None => node.attr_float("min", f32::MIN).is_ok_and(|v| v >= 0.0),
                },
                _ => false,
            };
            if clips_at_zero
                && node.outputs.len() == 1
                && feeds_only_xnor(graph, self, &node.outputs[0], &consumers, 0)
            {
                node.op_type = "Identity".into();
                node.inputs.truncate(1);
                node.attributes.clear();
                bypassed.push(node.name.clone());
            }
        }
        (out, bypassed)
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

/// A Conv with one input channel per group and as many groups as output channels.
fn is_depthwise(graph: &Graph, node: &crate::ir::Node) -> bool {
    let group = node.attr_int("group", 1).unwrap_or(1);
    group > 1
        && node
            .input(1)
            .and_then(|w| graph.initializers.get(w))
            .is_some_and(|w| {
                w.shape().first() == Some(&(group as usize)) && w.shape().get(1) == Some(&1)
            })
}
