//! Folding BatchNormalization into the Conv or Gemm before it: with k = γ/√(var+ε) per channel,
//! W' = k·W (output channel-wise) and b' = k·(b − mean) + β, and the BN node disappears. Only
//! a BN that is its layer's sole reader is folded. The report shows each weight's per-channel
//! ranges before and after: this is where depthwise layers blow up (a channel with a near-zero
//! variance gets k ≈ γ/√ε).

use std::collections::BTreeSet;

use super::layers::{Layer, Topology, drop_unread_initializers, ensure_finite};
use super::report::{ChannelRanges, TransformReport};
use super::{FloatGraph, GaussianChannels};
use crate::error::Result;
use crate::ir::{Graph, Node, assign_roles};
use crate::stats::channel_ranges;

const NAME: &str = "BN folding";

/// One BN to fold: its node, its layer, and its per-channel parameters.
struct Fold {
    bn: usize,
    layer: Layer,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    epsilon: f32,
}

/// Folds every foldable BN. The input is left untouched; a result with NaN/Inf is refused.
pub fn fold_batch_norm(model: &FloatGraph) -> Result<(FloatGraph, TransformReport)> {
    let graph = &model.graph;
    let topology = Topology::of(graph);
    let mut report = TransformReport::new(NAME);
    let mut folds = Vec::new();
    for (index, node) in graph.nodes.iter().enumerate() {
        if node.op_type != "BatchNormalization" {
            continue;
        }
        match plan_fold(graph, &topology, index, node) {
            Ok(fold) => folds.push(fold),
            Err(reason) => report.skip(&node.name, reason),
        }
    }

    let mut result = model.clone();
    let mut removed = BTreeSet::new();
    let mut touched = Vec::new();
    let mut released = Vec::new();
    for fold in folds {
        let bn = &graph.nodes[fold.bn];
        let k: Vec<f32> = fold
            .gamma
            .iter()
            .zip(&fold.var)
            .map(|(g, v)| g / (v + fold.epsilon).sqrt())
            .collect();
        let old_bias = fold
            .layer
            .bias(&result.graph)
            .map_err(|msg| crate::Error::Graph(format!("node '{}': {msg}", fold.layer.name)))?;
        let bias: Vec<f32> = (0..k.len())
            .map(|j| k[j] * (old_bias[j] - fold.mean[j]) + fold.beta[j])
            .collect();
        let axis = fold.layer.out_axis();
        let weight = fold.layer.weight_mut(&mut result.graph)?;
        let before = channel_ranges(weight.view(), axis);
        fold.layer.scale_out(weight, &k);
        let after = channel_ranges(weight.view(), axis);
        touched.push(fold.layer.weight.clone());
        touched.push(fold.layer.set_bias(&mut result.graph, bias)?);
        let output = bn.outputs[0].clone();
        if let Some(layer_node) = result.graph.nodes.get_mut(fold.layer.node) {
            layer_node.outputs[0] = output.clone();
        }
        result.preactivations.insert(
            output,
            GaussianChannels {
                mean: fold.beta.clone(),
                std: fold.gamma.iter().map(|g| g.abs()).collect(),
            },
        );
        report.ranges.push(ChannelRanges {
            layer: fold.layer.name.clone(),
            tensor: fold.layer.weight.clone(),
            before,
            after,
        });
        let min_var = fold.var.iter().copied().fold(f32::INFINITY, f32::min);
        report.apply(
            &format!("{} → {}", bn.name, fold.layer.name),
            format!(
                "{} channels, scale k from {:.3e} to {:.3e} (smallest variance {min_var:.3e})",
                k.len(),
                k.iter().copied().fold(f32::INFINITY, f32::min),
                k.iter().copied().fold(f32::NEG_INFINITY, f32::max)
            ),
        );
        removed.insert(fold.bn);
        released.extend(bn.inputs.iter().skip(1).cloned());
    }
    let mut index = 0;
    result.graph.nodes.retain(|_| {
        let keep = !removed.contains(&index);
        index += 1;
        keep
    });
    drop_unread_initializers(&mut result.graph, &released);
    ensure_finite(&result.graph, &touched, NAME)?;
    assign_roles(&mut result.graph);
    Ok((result, report))
}

/// Checks that the BN at `index` can be folded and reads its parameters, or says why not.
fn plan_fold(
    graph: &Graph,
    topology: &Topology,
    index: usize,
    bn: &Node,
) -> std::result::Result<Fold, String> {
    let input = bn.input(0).ok_or("has no input")?;
    if bn.outputs.first().is_none_or(|o| o.is_empty()) {
        return Err("has no output".into());
    }
    let producer = *topology
        .producer
        .get(input)
        .ok_or("its input is a graph input, not a layer output")?;
    let producer_op = &graph.nodes[producer].op_type;
    if producer_op != "Conv" && producer_op != "Gemm" {
        return Err(format!(
            "its input comes from {producer_op} (only Conv and Gemm fold)"
        ));
    }
    topology
        .sole_consumer(graph, input)
        .map_err(|why| format!("cannot fold: {why}"))?;
    if bn.attr_int("training_mode", 0)? != 0 {
        return Err("training_mode is set (batch statistics are not constants)".into());
    }
    if bn.outputs.iter().skip(1).any(|o| !o.is_empty()) {
        return Err("its running-statistics outputs are used".into());
    }
    let layer = Layer::at(graph, topology, producer)
        .map_err(|why| format!("layer '{}': {why}", graph.nodes[producer].name))?;
    let param = |position: usize, what: &str| -> std::result::Result<Vec<f32>, String> {
        let name = bn.input(position).ok_or_else(|| format!("has no {what}"))?;
        let values = graph
            .initializers
            .get(name)
            .and_then(|t| t.data.as_f32())
            .ok_or_else(|| format!("{what} '{name}' is not a stored float tensor"))?;
        if values.len() != layer.out_channels {
            return Err(format!(
                "{what} '{name}' has {} values for {} channels",
                values.len(),
                layer.out_channels
            ));
        }
        Ok(values.iter().copied().collect())
    };
    Ok(Fold {
        bn: index,
        gamma: param(1, "scale")?,
        beta: param(2, "bias")?,
        mean: param(3, "mean")?,
        var: param(4, "variance")?,
        epsilon: bn.attr_float("epsilon", 1e-5)?,
        layer,
    })
}
