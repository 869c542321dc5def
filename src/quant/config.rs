//! `QuantConfig`: the one piece of state a user edits. Per layer: the weight scheme, bits and
//! granularity, and how its input activations are quantized; layers without a setting stay in
//! float. Serializable, so it is the heart of the session file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::learned_rounding::LearnedRounding;
pub use super::scheme::WeightScheme;
use crate::calib::Method;

/// Ops whose weights and input activations are quantized.
pub const QUANTIZABLE_OPS: [&str; 7] = [
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "LSTM",
    "GRU",
    "RNN",
];

/// The recurrent ops among [`QUANTIZABLE_OPS`]: their input weights W and recurrence weights R
/// are quantized (per gate row when per channel) and their input sequence X; the hidden state
/// and the gate arithmetic stay float, as in a QDQ file (onnxruntime runs them in float after
/// DequantizeLinear).
pub const RECURRENT_OPS: [&str; 3] = ["LSTM", "GRU", "RNN"];

/// The input positions of `op_type` that hold quantizable weights: input 1 for the
/// convolutions and matrix products (W, B), inputs 1 and 2 (W, R) for the recurrent ops, none
/// for other ops.
pub fn weight_inputs(op_type: &str) -> &'static [usize] {
    if RECURRENT_OPS.contains(&op_type) {
        &[1, 2]
    } else if QUANTIZABLE_OPS.contains(&op_type) {
        &[1]
    } else {
        &[]
    }
}

/// The names of the weight inputs of `node` ([`weight_inputs`]) that the node has.
pub fn weight_input_names(node: &crate::ir::Node) -> impl Iterator<Item = &str> {
    weight_inputs(&node.op_type)
        .iter()
        .filter_map(|&i| node.input(i))
}

/// A weight tensor's quantization.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WeightQuant {
    pub scheme: WeightScheme,
    /// One set of parameters per output channel (the tensor's channel axis) instead of one.
    pub per_channel: bool,
}

impl WeightQuant {
    /// How the quantized tensor is stored, for the size accounting of [`super::cost`].
    pub fn storage(&self) -> super::cost::StorageScheme {
        self.scheme.storage(self.per_channel)
    }
}

/// How a layer's input activations are quantized (linear, per tensor).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActivationQuant {
    pub bits: u32,
    /// Symmetric on a signed grid, or asymmetric on an unsigned grid (the usual uint8).
    pub symmetric: bool,
    /// How the clip range is chosen from calibration statistics.
    pub method: Method,
}

/// One layer's settings; `None` parts stay in float.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LayerQuant {
    pub weights: Option<WeightQuant>,
    pub activations: Option<ActivationQuant>,
}

/// Everything a user chooses: a default for every quantizable layer, per-layer overrides (mixed
/// precision, layers kept in float) and manual clip ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct QuantConfig {
    pub default: LayerQuant,
    /// Overrides by node name.
    pub layers: BTreeMap<String, LayerQuant>,
    /// Manual clip ranges by activation tensor name; they win over the calibration method.
    pub activation_ranges: BTreeMap<String, (f32, f32)>,
    /// Manual clip ranges of single channels of activations by tensor name: channel index along
    /// the axis the consuming layer defines ([`crate::calib::ChannelAxis`]: axis 1 for a
    /// convolution's input, the last axis for a MatMul/Gemm input) → range. Such an activation
    /// is quantized per channel: these channels use their range, the others the tensor's range
    /// (its manual range if it has one, else the calibrated one), so only these channels'
    /// parameters differ from the per-tensor quantization.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub activation_channel_ranges: BTreeMap<String, BTreeMap<usize, (f32, f32)>>,
    /// Manual clip ranges by weight tensor name (linear schemes, per tensor).
    pub weight_ranges: BTreeMap<String, (f32, f32)>,
    /// Manual clip ranges of single channels (index along the tensor's channel axis) by weight
    /// tensor name (linear schemes). Such a tensor is quantized per channel: these channels use
    /// their range, the others the tensor's manual range if it has one, else their range
    /// calibrated as configured (per channel, or the per-tensor range for per-tensor layers).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub weight_channel_ranges: BTreeMap<String, BTreeMap<usize, (f32, f32)>>,
    /// How linear weights' clip ranges are chosen (per tensor or per channel, as the layer's
    /// granularity says) where no manual range is set; min-max when None.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_calib: Option<Method>,
    /// Learned (AdaRound) rounding by weight tensor name, used instead of round-to-nearest
    /// while it matches the grid it was learned on.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub adaround: BTreeMap<String, LearnedRounding>,
    /// Also quantize the graph's float outputs with the default activation settings, as a
    /// deployment whose last layers hand int8 tensors to the application does (onnxruntime's
    /// `quantize_static` places these quantizers too). Off by default: the outputs stay float,
    /// as they do behind a quantized layer that dequantizes its result.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub quantize_outputs: bool,
}

impl QuantConfig {
    /// Every quantizable layer with `weights` and `activations`, no overrides.
    pub fn uniform(weights: Option<WeightQuant>, activations: Option<ActivationQuant>) -> Self {
        QuantConfig {
            default: LayerQuant {
                weights,
                activations,
            },
            ..Default::default()
        }
    }

    /// The usual deployment setting (and the app's default): int8 symmetric per-channel
    /// weights, uint8 min-max activations.
    pub fn int8_per_channel() -> Self {
        QuantConfig::uniform(
            Some(WeightQuant {
                scheme: WeightScheme::Linear {
                    bits: 8,
                    symmetric: true,
                },
                per_channel: true,
            }),
            Some(ActivationQuant {
                bits: 8,
                symmetric: false,
                method: Method::MinMax,
            }),
        )
    }

    /// The settings of the node named `node` (its override, else the default).
    pub fn layer(&self, node: &str) -> &LayerQuant {
        self.layers.get(node).unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_json() {
        let mut config = QuantConfig::uniform(
            Some(WeightQuant {
                scheme: WeightScheme::KMeans { bits: 3 },
                per_channel: true,
            }),
            Some(ActivationQuant {
                bits: 8,
                symmetric: false,
                method: Method::Percentile(99.9),
            }),
        );
        config.layers.insert("fc".into(), LayerQuant::default());
        config.activation_ranges.insert("x".into(), (-1.0, 2.5));
        config
            .weight_channel_ranges
            .entry("w".into())
            .or_default()
            .insert(3, (-0.5, 0.25));
        config
            .activation_channel_ranges
            .entry("x".into())
            .or_default()
            .insert(2, (0.0, 0.75));
        let json = serde_json::to_string(&config).unwrap();
        let back: QuantConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        assert!(json.contains("weight_channel_ranges"), "{json}");
        assert!(json.contains("activation_channel_ranges"), "{json}");
        assert_eq!(back.layer("fc").weights, None);
        assert_eq!(back.layer("conv").weights, config.default.weights);
    }

    #[test]
    fn configs_without_activation_channel_clips_read_and_write_as_before() {
        // A session config written before activation channel clips existed.
        let old = r#"{"default":{"weights":null,"activations":null},"layers":{},
            "activation_ranges":{"x":[-1.0,2.5]},"weight_ranges":{}}"#;
        let config: QuantConfig = serde_json::from_str(old).unwrap();
        assert!(config.activation_channel_ranges.is_empty());
        assert_eq!(config.activation_ranges["x"], (-1.0, 2.5));
        let json = serde_json::to_string(&config).unwrap();
        assert!(!json.contains("activation_channel_ranges"), "{json}");
    }
}
