//! What the Train window asks of a run: the training settings a user edits (epochs, learning
//! rate, optimizer, how activation ranges move, TTQ's threshold, XNOR-Net layers, a sample
//! limit, labels from the float model), turned into the core's `QatOptions` and `QatConfig`.
//! The quantization itself (schemes, bits, manual ranges) is the session's config.

use crate::ir::Graph;
use crate::quant::QuantConfig;
use crate::quant::ternary::TTQ_DEFAULT_THRESHOLD;
use crate::train::fake_quant::RangeLearning;
use crate::train::optim::OptimizerKind;
use crate::train::{QatConfig, QatOptions};

/// The optimizers `QatOptions` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimizer {
    Adam,
    Sgd,
}

impl Optimizer {
    pub const ALL: [Optimizer; 2] = [Optimizer::Adam, Optimizer::Sgd];

    pub fn label(self) -> &'static str {
        match self {
            Optimizer::Adam => "Adam",
            Optimizer::Sgd => "SGD (momentum 0.9)",
        }
    }

    fn kind(self) -> OptimizerKind {
        match self {
            Optimizer::Adam => OptimizerKind::ADAM,
            Optimizer::Sgd => OptimizerKind::SGD,
        }
    }
}

/// How activation clip ranges move during training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranges {
    Ema,
    Pact,
    Lsq,
    Fixed,
}

impl Ranges {
    pub const ALL: [Ranges; 4] = [Ranges::Ema, Ranges::Pact, Ranges::Lsq, Ranges::Fixed];

    pub fn label(self) -> &'static str {
        match self {
            Ranges::Ema => "EMA of min/max",
            Ranges::Pact => "learned clip (PACT)",
            Ranges::Lsq => "learned step (LSQ)",
            Ranges::Fixed => "calibrated, fixed",
        }
    }

    fn learning(self) -> RangeLearning {
        match self {
            Ranges::Ema => RangeLearning::EMA,
            Ranges::Pact => RangeLearning::Pact,
            Ranges::Lsq => RangeLearning::Lsq,
            Ranges::Fixed => RangeLearning::Fixed,
        }
    }
}

/// The window's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainSettings {
    pub epochs: usize,
    pub learning_rate: f32,
    pub optimizer: Optimizer,
    pub batch_size: usize,
    pub ranges: Ranges,
    /// TTQ's threshold factor t (Δ = t·max|W|), used when the weights are TTQ.
    pub ttq_threshold: f32,
    /// Train the inner Conv/Gemm layers as XNOR-Net layers (binary weights and inputs).
    pub xnor: bool,
    /// Train on at most this many samples (0: all).
    pub max_samples: usize,
    /// Without labels: train towards the float model's top-1 class.
    pub float_labels: bool,
}

impl Default for TrainSettings {
    fn default() -> Self {
        let options = QatOptions::default();
        TrainSettings {
            epochs: options.epochs,
            learning_rate: options.learning_rate,
            optimizer: Optimizer::Adam,
            batch_size: options.batch_size,
            ranges: Ranges::Ema,
            ttq_threshold: TTQ_DEFAULT_THRESHOLD,
            xnor: false,
            max_samples: 0,
            float_labels: false,
        }
    }
}

impl TrainSettings {
    /// The core's options for these settings.
    pub fn options(&self) -> QatOptions {
        QatOptions {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            optimizer: self.optimizer.kind(),
            ranges: self.ranges.learning(),
            ttq_threshold: self.ttq_threshold,
            ..QatOptions::default()
        }
    }

    /// What to train `graph` for: the session's `quant`, with XNOR-Net's inner layers if asked.
    pub fn qat_config(&self, graph: &Graph, quant: QuantConfig) -> QatConfig {
        if self.xnor {
            QatConfig::xnor_net(graph, quant)
        } else {
            QatConfig::new(quant)
        }
    }
}

/// A short description of the default quantization of `config`, e.g. "weights int4
/// per-channel, activations 8-bit".
pub fn describe_quant(config: &QuantConfig, xnor: bool) -> String {
    let weights = match (xnor, config.default.weights) {
        (true, _) => "XNOR-Net (inner layers binary, first and last as set)".to_string(),
        (false, Some(w)) => format!(
            "{} {}",
            w.scheme,
            if w.per_channel {
                "per-channel"
            } else {
                "per-tensor"
            }
        ),
        (false, None) => "float".to_string(),
    };
    let activations = match config.default.activations {
        Some(a) if a.bits == 1 => "binary (sign)".to_string(),
        Some(a) => format!("{}-bit", a.bits),
        None => "float".to_string(),
    };
    let overrides = match config.layers.len() {
        0 => String::new(),
        n => format!(", {n} layer override(s)"),
    };
    format!("weights {weights}, activations {activations}{overrides}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_checked_options() {
        let settings = TrainSettings {
            epochs: 2,
            learning_rate: 0.01,
            optimizer: Optimizer::Sgd,
            ranges: Ranges::Lsq,
            ttq_threshold: 0.1,
            ..TrainSettings::default()
        };
        let options = settings.options();
        assert_eq!(options.epochs, 2);
        assert_eq!(options.optimizer, OptimizerKind::SGD);
        assert_eq!(options.ranges, RangeLearning::Lsq);
        assert_eq!(options.ttq_threshold, 0.1);
        assert!(options.check().is_ok());
        let bad = TrainSettings {
            learning_rate: 0.0,
            ..settings
        };
        assert!(bad.options().check().is_err());
    }

    #[test]
    fn the_description_names_scheme_and_bits() {
        let config = QuantConfig::int8_per_channel();
        let text = describe_quant(&config, false);
        assert!(text.contains("per-channel"), "{text}");
        assert!(text.contains("8-bit"), "{text}");
        assert!(describe_quant(&config, true).contains("XNOR"));
    }
}
