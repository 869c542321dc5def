//! Biases as integer kernels hold them: int32 codes at S_b = S_x·S_w (one scale per output
//! channel when the weights have one), zero point 0, so that the bias adds straight into the
//! 32-bit accumulator of x_q·w_q.
//!
//! The QDQ export writes these codes and the simulation ([`super::QuantizedModel`]) computes
//! with their de-quantized values, as onnxruntime's DequantizeLinear does (`float(q) · S_b`),
//! so a quantized model evaluated here and its exported file run in onnxruntime see the same
//! biases. The rounding error is at most S_b/2, half an accumulator step: small, but enough to
//! flip a few output codes by one step, which sensitive models carry to their outputs.

use std::collections::HashMap;

use super::fake::WeightReport;
use super::grid::LinearParams;
use crate::ir::{Graph, TensorData};
use ndarray::{ArrayD, IxDyn};

/// A bias's int32 codes and their scales (one, or one per channel).
#[derive(Debug, Clone, PartialEq)]
pub struct BiasCodes {
    pub codes: Vec<i64>,
    pub scales: Vec<f32>,
}

impl BiasCodes {
    /// The bias of `values` (one per output channel) for an input at scale `input_scale` and
    /// weights at `weight_scales` (one, or one per channel); None when the counts do not match.
    pub fn new(values: &[f32], input_scale: f32, weight_scales: &[f32]) -> Option<BiasCodes> {
        if weight_scales.len() != 1 && weight_scales.len() != values.len() {
            return None;
        }
        let scales: Vec<f32> = weight_scales.iter().map(|s| s * input_scale).collect();
        let per_channel = scales.len() > 1;
        let codes = values
            .iter()
            .enumerate()
            .map(|(c, v)| {
                let s = scales[if per_channel { c } else { 0 }];
                let q = f64::from(v / s).round_ties_even();
                q.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i64
            })
            .collect();
        Some(BiasCodes { codes, scales })
    }

    /// Whether there is one scale per channel.
    pub fn per_channel(&self) -> bool {
        self.scales.len() > 1
    }

    /// The de-quantized bias, computed as onnxruntime's DequantizeLinear does.
    pub fn dequantized(&self) -> Vec<f32> {
        self.codes
            .iter()
            .enumerate()
            .map(|(c, &q)| {
                let s = self.scales[if self.per_channel() { c } else { 0 }];
                q as f32 * s
            })
            .collect()
    }
}

/// The int32 bias of layer `node` (Conv or Gemm, in `graph`'s top level) when its bias is a 1-D
/// float initializer and both its weight (linear scheme, in `weights`) and its input (in
/// `activations`) are quantized: the conditions under which the QDQ export stores it in int32.
pub fn layer_bias_codes(
    graph: &Graph,
    node: &crate::ir::Node,
    weights: &[WeightReport],
    activations: &HashMap<String, LinearParams>,
) -> Option<BiasCodes> {
    if !matches!(node.op_type.as_str(), "Conv" | "Gemm") {
        return None;
    }
    let (x, w, b) = (node.input(0)?, node.input(1)?, node.input(2)?);
    let input = activations.get(x)?;
    let weight = weights
        .iter()
        .find(|r| r.tensor == w)
        .filter(|r| !r.params.is_empty())?;
    let values = graph.initializers.get(b)?.data.as_f32()?;
    if values.ndim() != 1 {
        return None;
    }
    let weight_scales: Vec<f32> = weight.params.iter().map(|p| p.scale).collect();
    let values: Vec<f32> = values.iter().copied().collect();
    BiasCodes::new(&values, input.scale, &weight_scales)
}

/// Replaces, in `quantized` (prepared from `graph`), every bias the QDQ export stores in int32
/// by its de-quantized values. A bias read by several layers whose scales differ gets a copy
/// per reader after the first, named `{bias}_{layer}` as in the export.
pub(crate) fn quantize_biases(
    quantized: &mut Graph,
    graph: &Graph,
    weights: &[WeightReport],
    activations: &HashMap<String, LinearParams>,
) {
    let mut done: HashMap<String, Vec<f32>> = HashMap::new();
    for (index, node) in graph.nodes.iter().enumerate() {
        let Some(codes) = layer_bias_codes(graph, node, weights, activations) else {
            continue;
        };
        let Some(bias) = node.input(2) else { continue };
        let values = codes.dequantized();
        let name = match done.get(bias) {
            None => bias.to_string(),
            Some(first) if *first == values => continue,
            Some(_) => format!("{bias}_{}", node.name),
        };
        let Ok(array) = ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.clone()) else {
            continue;
        };
        if name != bias {
            let Some(mut copy) = graph.initializers.get(bias).cloned() else {
                continue;
            };
            copy.name = name.clone();
            quantized.initializers.insert(name.clone(), copy);
            if let Some(reader) = quantized.nodes.get_mut(index) {
                reader.inputs[2] = name.clone();
            }
        }
        if let Some(target) = quantized.initializers.get_mut(&name) {
            target.data = TensorData::F32(array);
        }
        done.entry(bias.to_string()).or_insert(values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_bias_over_input_times_weight_scale_rounded_half_even() {
        // S_b = 0.5 · 0.25 = 0.125: 0.3125 / 0.125 = 2.5 → 2 (ties to even), −0.1875 → −1.5 → −2
        let codes = BiasCodes::new(&[0.3125, -0.1875], 0.5, &[0.25]).expect("counts match");
        assert_eq!(codes.codes, vec![2, -2]);
        assert_eq!(codes.dequantized(), vec![0.25, -0.25]);
        assert!(!codes.per_channel());
    }

    #[test]
    fn per_channel_weight_scales_give_per_channel_bias_scales() {
        let codes = BiasCodes::new(&[1.0, 1.0], 0.1, &[0.01, 0.02]).expect("counts match");
        assert_eq!(codes.codes, vec![1000, 500]);
        assert!(codes.per_channel());
        for (got, want) in codes.scales.iter().zip([0.001f32, 0.002]) {
            assert!((got - want).abs() < 1e-9);
        }
        assert!(BiasCodes::new(&[1.0, 1.0, 1.0], 0.1, &[0.01, 0.02]).is_none());
    }

    #[test]
    fn a_bias_beyond_int32_saturates() {
        let codes = BiasCodes::new(&[1e9], 1e-3, &[1e-3]).expect("counts match");
        assert_eq!(codes.codes, vec![i64::from(i32::MAX)]);
    }
}
