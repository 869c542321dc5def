//! BatchNormalization folded into the Gemm that feeds it: with the BN kernel's own factors
//! `m = γ/√(var+ε)` and `a = β − mean·m` per channel, the Gemm's weights are scaled by `m`
//! along the output column and its bias becomes `b·m + a`. Only where the Gemm's output is read
//! by the BN alone and is not kept, and every parameter is a constant. (A BN after a Conv goes
//! into the convolution's epilogue instead: [`conv_epilogue`](super::conv_epilogue).)

use std::sync::Arc;

use ndarray::{ArrayD, Axis, IxDyn};

use super::{PlannedNode, Work};
use crate::ir::{Attribute, Node, TensorData};

/// The per-channel factors of an inference BatchNormalization node, if its parameters are
/// float constants of one length.
pub(super) fn bn_factors(work: &Work<'_>, bn: &Node) -> Option<(Vec<f32>, Vec<f32>)> {
    if bn.attr_int("training_mode", 0).ok()? != 0 || bn.outputs.len() != 1 {
        return None;
    }
    let epsilon = bn.attr_float("epsilon", 1e-5).ok()?;
    let mut params = Vec::with_capacity(4);
    for k in 1..5 {
        let values = work.constant(bn.input(k)?)?.as_f32()?;
        params.push(values.iter().copied().collect::<Vec<f32>>());
    }
    let c = params[0].len();
    if params.iter().any(|p| p.len() != c) {
        return None;
    }
    let (scale, bias, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
    let mul: Vec<f32> = (0..c)
        .map(|k| scale[k] / (var[k] + epsilon).sqrt())
        .collect();
    let add: Vec<f32> = (0..c).map(|k| bias[k] - mean[k] * mul[k]).collect();
    Some((mul, add))
}

/// Folds every BN that can be folded.
pub(super) fn fold_batch_norms(work: &mut Work<'_>) {
    let producers = work.producers();
    let readers = work.readers();
    for i in 0..work.nodes.len() {
        let Some(PlannedNode {
            node: bn,
            fused: None,
        }) = &work.nodes[i]
        else {
            continue;
        };
        if !bn.in_default_domain() || bn.op_type != "BatchNormalization" {
            continue;
        }
        let Some(x) = bn.input(0) else { continue };
        let Some(&p) = producers.get(x) else { continue };
        if work.kept(x) || readers.get(x).is_none_or(|r| r.len() != 1) {
            continue;
        }
        let Some(PlannedNode {
            node: layer,
            fused: None,
        }) = &work.nodes[p]
        else {
            continue;
        };
        if layer.outputs.len() != 1 || !layer.in_default_domain() {
            continue;
        }
        let Some((mul, add)) = bn_factors(work, bn) else {
            continue;
        };
        let folded = match layer.op_type.as_str() {
            "Gemm" => fold_gemm(work, layer, &mul, &add),
            _ => None,
        };
        let Some((weight, bias, attributes)) = folded else {
            continue;
        };
        let mut node = layer.clone();
        let weight_name = work.fresh_name(&format!("{}/weight", node.name));
        let bias_name = work.fresh_name(&format!("{}/bias", node.name));
        work.constants
            .insert(weight_name.clone(), Arc::new(TensorData::F32(weight)));
        work.constants
            .insert(bias_name.clone(), Arc::new(TensorData::F32(bias)));
        node.inputs.resize(3, String::new());
        node.inputs[1] = weight_name;
        node.inputs[2] = bias_name;
        node.outputs[0] = bn.outputs[0].clone();
        for (key, value) in attributes {
            node.attributes.insert(key.to_string(), value);
        }
        work.nodes[p] = Some(PlannedNode { node, fused: None });
        work.nodes[i] = None;
    }
}

/// A folded Gemm: its new B, its new C and the attributes that change.
type FoldedGemm = (ArrayD<f32>, ArrayD<f32>, Vec<(&'static str, Attribute)>);

/// New Gemm B and C (β becomes 1): output columns scaled. C must be absent, a scalar or one
/// value per column.
fn fold_gemm(work: &Work<'_>, gemm: &Node, mul: &[f32], add: &[f32]) -> Option<FoldedGemm> {
    let b = work.constant(gemm.input(1)?)?.as_f32()?;
    if b.ndim() != 2 {
        return None;
    }
    let trans_b = gemm.attr_int("transB", 0).ok()? != 0;
    let out_axis = if trans_b { 0 } else { 1 };
    let n = b.shape()[out_axis];
    if n != mul.len() {
        return None;
    }
    let beta = gemm.attr_float("beta", 1.0).ok()?;
    let c: Vec<f32> = match gemm.input(2) {
        Some(name) => {
            let c = work.constant(name)?.as_f32()?;
            match c.shape() {
                [] | [1] | [1, 1] => vec![c.iter().next().copied()? * beta; n],
                [k] | [1, k] if *k == n => c.iter().map(|v| v * beta).collect(),
                _ => return None,
            }
        }
        None => vec![0.0; n],
    };
    let mut weight = b.as_standard_layout().into_owned();
    for (j, mut column) in weight.axis_iter_mut(Axis(out_axis)).enumerate() {
        column.mapv_inplace(|v| v * mul[j]);
    }
    let bias: Vec<f32> = (0..n).map(|j| c[j] * mul[j] + add[j]).collect();
    Some((
        weight,
        ArrayD::from_shape_vec(IxDyn(&[n]), bias).ok()?,
        vec![("beta", Attribute::Float(1.0))],
    ))
}
