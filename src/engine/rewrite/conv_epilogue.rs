//! Work after a convolution moved into its [`ConvEpilogue`], applied while each output channel
//! is still in cache: a BatchNormalization as the per-channel scale and shift (the BN
//! kernel's own factors, so the values are the same), then the activation that reads the
//! convolution's output alone, then a QuantizeLinear/DequantizeLinear pair made one step
//! (`quantize_pairs`) on a per-tensor 8/16-bit grid (the same rounding, so the same values).
//!
//! The activation may be a node (Relu, Clip with constant bounds, LeakyRelu, HardSwish,
//! HardSigmoid) or a fused elementwise chain of the output alone that computes one of them
//! under another spelling (ReLU6 as Clip(0, 6) or Min/Max, hard-swish as `x·Clip(x+3, 0, 6)/6`
//! or `x·HardSigmoid(x)`): a chain is recognised by evaluating it against each candidate on a
//! dense grid of values. Sigmoid and SiLU stay in the fused chains, whose vector loops compute
//! them faster than the epilogue's scalar ones.

use std::collections::HashMap;

use ndarray::{ArrayD, IxDyn};

use super::{FusedElementwise, PlannedNode, Work};
use crate::engine::ops::Args;
use crate::engine::ops::conv::{Activation, ConvEpilogue};
use crate::engine::ops::elementwise::UnaryOp;
use crate::engine::ops::quantize::round_trip_grid;
use crate::ir::{Node, TensorData};

fn is_conv(node: &Node) -> bool {
    node.in_default_domain()
        && matches!(node.op_type.as_str(), "Conv" | "ConvTranspose")
        && node.outputs.len() == 1
}

/// The epilogue activation computing what `op` computes, if there is one.
fn activation_of(op: UnaryOp) -> Option<Activation> {
    Some(match op {
        UnaryOp::Relu => Activation::Relu,
        UnaryOp::Clip { lo, hi } => Activation::Clip { min: lo, max: hi },
        UnaryOp::LeakyRelu { alpha } => Activation::LeakyRelu { alpha },
        UnaryOp::HardSwish => Activation::HardSwish,
        UnaryOp::HardSigmoid { alpha, beta } => Activation::HardSigmoid { alpha, beta },
        _ => return None,
    })
}

/// The activation a one-input fused chain computes, recognised on a grid of values.
fn recognise(fused: &FusedElementwise) -> Option<Activation> {
    if fused.inputs.len() != 1 {
        return None;
    }
    let mut points: Vec<f32> = (-2400..=2400).map(|k| k as f32 / 200.0).collect();
    points.extend([1e-4, -1e-4, 0.5e3, -0.5e3, 1e5, -1e5]);
    let x = TensorData::F32(ArrayD::from_shape_vec(IxDyn(&[points.len()]), points.clone()).ok()?);
    let mut args = Args::borrowed(&[Some(&x)]);
    let got = fused.program.run(&mut args)?.ok()?;
    let got = got.as_f32()?;
    let candidates = [
        Activation::Relu,
        Activation::Clip { min: 0.0, max: 6.0 },
        Activation::HardSwish,
    ];
    candidates.into_iter().find(|act| {
        points.iter().zip(got.iter()).all(|(&p, &g)| {
            let want = act.apply(p);
            (g - want).abs() <= 1e-6 * want.abs().max(1.0)
        })
    })
}

/// The activation the node at `reader` applies to its input `input` alone, if any.
fn reader_activation(work: &Work<'_>, reader: &PlannedNode, input: &str) -> Option<Activation> {
    if let Some(fused) = &reader.fused {
        return recognise(fused).filter(|_| fused.inputs == [input]);
    }
    let node = &reader.node;
    if node.input(0) != Some(input) || node.outputs.len() != 1 {
        return None;
    }
    let bounds: Vec<Option<&TensorData>> = node
        .inputs
        .iter()
        .enumerate()
        .map(|(k, name)| {
            if k == 0 || name.is_empty() {
                Some(None)
            } else {
                work.constant(name).map(Some)
            }
        })
        .collect::<Option<_>>()?;
    let op = UnaryOp::of_node(node, work.graph.opset, &Args::borrowed(&bounds)).ok()??;
    activation_of(op)
}

/// The grid of `reader` when it is a QuantizeLinear/DequantizeLinear pair made one step
/// (`quantize_pairs`) on `input` alone, per tensor, with constant parameters that
/// [`Quantizer`](crate::engine::ops::Quantizer) takes.
fn reader_round_trip(
    work: &Work<'_>,
    reader: &PlannedNode,
    input: &str,
) -> Option<crate::engine::ops::Quantizer> {
    let node = &reader.node;
    if reader.fused.is_some()
        || node.op_type != "QuantizeLinear"
        || !node.in_default_domain()
        || node.input(0) != Some(input)
        || node.outputs.len() != 1
    {
        return None;
    }
    let scale = work.constant(node.input(1)?)?;
    let zero_point = match node.input(2).filter(|z| !z.is_empty()) {
        Some(name) => Some(work.constant(name)?),
        None => None,
    };
    round_trip_grid(node, scale, zero_point)
}

/// Moves each BatchNormalization, activation and quantize/de-quantize pair that only a
/// convolution feeds into the convolution's epilogue.
pub(super) fn fuse_into_convs(work: &mut Work<'_>) {
    for _pass in 0..3 {
        // BN first, then the activation after it, then the pair after that (each pass sees
        // the output the last one renamed)
        let readers = work.readers();
        let mut changes: Vec<(usize, usize, Node)> = Vec::new();
        let mut touched: HashMap<usize, ()> = HashMap::new();
        for (i, planned) in work.nodes.iter().enumerate() {
            let Some(PlannedNode {
                node: conv,
                fused: None,
            }) = planned
            else {
                continue;
            };
            if !is_conv(conv) || touched.contains_key(&i) {
                continue;
            }
            let out = &conv.outputs[0];
            let Some([(j, 0)]) = readers.get(out).map(Vec::as_slice) else {
                continue;
            };
            if work.kept(out) || touched.contains_key(j) {
                continue;
            }
            let Some(reader) = &work.nodes[*j] else {
                continue;
            };
            let Ok(existing) = ConvEpilogue::from_node(conv) else {
                continue;
            };
            let mut epilogue = existing.unwrap_or_default();
            if epilogue.round_trip.is_some() {
                continue;
            }
            if let Some(grid) = reader_round_trip(work, reader, out) {
                epilogue.round_trip = Some(grid);
            } else if epilogue.activation.is_some() {
                continue;
            } else if reader.fused.is_none()
                && reader.node.op_type == "BatchNormalization"
                && epilogue.scale.is_none()
                && epilogue.shift.is_none()
            {
                let Some((mul, add)) = super::fold_bn::bn_factors(work, &reader.node) else {
                    continue;
                };
                epilogue.scale = Some(mul);
                epilogue.shift = Some(add);
            } else if let Some(act) = reader_activation(work, reader, out) {
                epilogue.activation = Some(act);
            } else {
                continue;
            }
            let mut node = conv.clone();
            epilogue.write_to(&mut node);
            node.outputs[0] = reader.node.outputs[0].clone();
            touched.insert(i, ());
            touched.insert(*j, ());
            changes.push((i, *j, node));
        }
        if changes.is_empty() {
            break;
        }
        for (i, j, node) in changes {
            work.nodes[i] = Some(PlannedNode { node, fused: None });
            work.nodes[j] = None;
        }
    }
}
