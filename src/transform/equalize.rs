//! Cross-layer equalization (Nagel et al. 2019, "Data-free quantization"): for two linear layers
//! joined only by positively scale-equivariant ops (ReLU, identity, pooling, a global pool then
//! Flatten), output channel j of the first layer (weights and bias) is multiplied by
//! s_j = √(r2_j / r1_j) and the weights reading input channel j of the second by 1/s_j, where
//! r1_j = max|W1[j]| and r2_j = max|W2[:, j]|. Since ReLU(s·x) = s·ReLU(x) for s > 0 the float
//! outputs are unchanged, and both ranges become √(r1_j·r2_j). Chains (depthwise → pointwise
//! → depthwise ...) are swept until no scale moves by more than the tolerance.
//!
//! ReLU6 (`Clip(x, 0, 6)`) is not scale-equivariant. Two documented choices:
//! [`Relu6Handling::PerChannelCap`] (default, exact) rewrites it as `Min(Relu(x), cap)` with a
//! per-channel cap that is scaled with the channel (cap_j = 6·s_j); [`Relu6Handling::ReplaceWithRelu`]
//! replaces it with ReLU as the paper does, with a warning, which changes the float outputs
//! wherever an activation exceeded 6.

use std::collections::{BTreeMap, BTreeSet};

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

use super::FloatGraph;
use super::layers::{Layer, Topology, ensure_finite, fresh_name};
use super::report::{ChannelRanges, TransformReport};
use crate::error::{Error, Result};
use crate::ir::{DType, Graph, Node, ParamRole, Tensor, TensorData, assign_roles};
use crate::stats::channel_ranges;

const NAME: &str = "cross-layer equalization";

/// What to do with ReLU6 between two layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Relu6Handling {
    /// `Min(Relu(x), cap)` with cap_j = 6·s_j: the float outputs stay exactly the same.
    #[default]
    PerChannelCap,
    /// The paper's choice: ReLU6 becomes ReLU (a warning; outputs change where x > 6).
    ReplaceWithRelu,
}

/// Settings of [`equalize`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EqualizeOptions {
    pub relu6: Relu6Handling,
    /// Stop when every scale of a sweep is within `tolerance` of 1.
    pub tolerance: f32,
    pub max_sweeps: usize,
}

impl Default for EqualizeOptions {
    fn default() -> Self {
        EqualizeOptions {
            relu6: Relu6Handling::PerChannelCap,
            tolerance: 1e-4,
            max_sweeps: 500,
        }
    }
}

/// Two layers to equalize and the nodes between them.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    pub first: Layer,
    pub second: Layer,
    /// Nodes between the two layers, in order.
    pub through: Vec<usize>,
}

/// Equalizes every pair found. The input is left untouched; a result with NaN/Inf is refused.
pub fn equalize(
    model: &FloatGraph,
    options: &EqualizeOptions,
) -> Result<(FloatGraph, TransformReport)> {
    let mut report = TransformReport::new(NAME);
    let mut result = model.clone_parallel();
    let (pairs, _) = find_pairs(&result.graph);
    let clips: BTreeSet<usize> = pairs
        .iter()
        .flat_map(|p| p.through.iter().copied())
        .filter(|&i| result.graph.nodes[i].op_type == "Clip")
        .collect();
    if !clips.is_empty() {
        rewrite_clips(&mut result.graph, &clips, options.relu6, &mut report)?;
    }
    let (pairs, skipped) = find_pairs(&result.graph);
    report.skipped = skipped;
    if pairs.is_empty() {
        // Nothing rewritten: the copy is the input; otherwise the Clip rewrite is undone.
        let unchanged = if clips.is_empty() {
            result
        } else {
            model.clone_parallel()
        };
        return Ok((unchanged, report));
    }

    let mut layers: BTreeMap<String, Layer> = BTreeMap::new();
    for pair in &pairs {
        layers.insert(pair.first.name.clone(), pair.first.clone());
        layers.insert(pair.second.name.clone(), pair.second.clone());
    }
    let mut before = layer_ranges(&result.graph, &layers)?;

    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    for pair in &pairs {
        *uses.entry(pair.first.name.as_str()).or_default() += 1;
        *uses.entry(pair.second.name.as_str()).or_default() += 1;
    }
    let chained = uses.values().any(|&n| n > 1);
    let mut total_scale: Vec<Vec<f32>> = pairs
        .iter()
        .map(|p| vec![1.0; p.first.out_channels])
        .collect();
    let mut sweeps = 0;
    while sweeps < options.max_sweeps {
        sweeps += 1;
        let mut largest_move = 0.0f32;
        for (pair, total) in pairs.iter().zip(total_scale.iter_mut()) {
            let scales = equalize_pair(&mut result, pair)?;
            for (t, s) in total.iter_mut().zip(&scales) {
                *t *= s;
                largest_move = largest_move.max((s - 1.0).abs());
            }
        }
        // Pairs sharing no layer are exact after one sweep; chains need more.
        if largest_move <= options.tolerance || !chained {
            break;
        }
    }
    report.iterations = sweeps;
    if sweeps == options.max_sweeps {
        report.warnings.push(format!(
            "stopped after {sweeps} sweeps before the scales settled (tolerance {})",
            options.tolerance
        ));
    }

    let mut touched = Vec::new();
    for (pair, total) in pairs.iter().zip(&total_scale) {
        let through: Vec<&str> = pair
            .through
            .iter()
            .map(|&i| result.graph.nodes[i].op_type.as_str())
            .collect();
        let lo = total.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = total.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        report.apply(
            &format!("{} → {}", pair.first.name, pair.second.name),
            format!(
                "{} channels through {}; scales s from {lo:.3e} to {hi:.3e}",
                total.len(),
                if through.is_empty() {
                    "nothing".to_string()
                } else {
                    through.join(", ")
                }
            ),
        );
    }
    let mut after = layer_ranges(&result.graph, &layers)?;
    for (name, layer) in &layers {
        touched.push(layer.weight.clone());
        report.ranges.push(ChannelRanges {
            layer: name.clone(),
            tensor: layer.weight.clone(),
            before: before.remove(name).unwrap_or_default(),
            after: after.remove(name).unwrap_or_default(),
        });
        if let Some(bias) = result.graph.nodes[layer.node].input(2) {
            touched.push(bias.to_string());
        }
    }
    for pair in &pairs {
        for &i in &pair.through {
            if let Some(cap) = result.graph.nodes[i].input(1) {
                touched.push(cap.to_string());
            }
        }
    }
    ensure_finite(&result.graph, &touched, NAME)?;
    Ok((result, report))
}

/// Per-output-channel (min, max) of every layer's weight, the layers in parallel.
fn layer_ranges(
    graph: &Graph,
    layers: &BTreeMap<String, Layer>,
) -> Result<BTreeMap<String, Vec<(f32, f32)>>> {
    layers
        .par_iter()
        .map(|(name, layer)| {
            let w = layer.weight(graph)?;
            Ok((name.clone(), channel_ranges(w.view(), layer.out_axis())))
        })
        .collect()
}

/// One equalization step of one pair; returns the scales applied.
fn equalize_pair(model: &mut FloatGraph, pair: &Pair) -> Result<Vec<f32>> {
    let graph = &mut model.graph;
    let r1 = pair.first.out_abs_max(pair.first.weight(graph)?);
    let r2 = pair.second.in_abs_max(pair.second.weight(graph)?);
    let scales: Vec<f32> = r1
        .iter()
        .zip(&r2)
        .map(|(&a, &b)| {
            let s = (b / a).sqrt();
            if a > 0.0 && b > 0.0 && s.is_finite() {
                s
            } else {
                1.0
            }
        })
        .collect();
    pair.first.scale_out(pair.first.weight_mut(graph)?, &scales);
    if graph.nodes[pair.first.node].input(2).is_some() {
        let bias = pair
            .first
            .bias(graph)
            .map_err(|msg| Error::Graph(format!("node '{}': {msg}", pair.first.name)))?;
        let scaled = bias.iter().zip(&scales).map(|(b, s)| b * s).collect();
        pair.first.set_bias(graph, scaled)?;
    }
    let inverse: Vec<f32> = scales.iter().map(|s| 1.0 / s).collect();
    pair.second
        .scale_in(pair.second.weight_mut(graph)?, &inverse);
    for &i in &pair.through {
        let Some(cap) = graph.nodes[i].input(1).map(str::to_string) else {
            continue;
        };
        if let Some(TensorData::F32(values)) = graph.initializers.get_mut(&cap).map(|t| &mut t.data)
        {
            for (v, s) in values.iter_mut().zip(&scales) {
                *v *= s;
            }
        }
    }
    let output = graph.nodes[pair.first.node].outputs[0].clone();
    if let Some(stats) = model.preactivations.get_mut(&output) {
        for ((m, d), s) in stats.mean.iter_mut().zip(stats.std.iter_mut()).zip(&scales) {
            *m *= s;
            *d *= s;
        }
    }
    Ok(scales)
}

/// The lower and upper bound of a Clip node (from inputs or, before opset 11, attributes).
pub(crate) fn clip_bounds(graph: &Graph, node: &Node) -> std::result::Result<(f32, f32), String> {
    let scalar = |position: usize, attr: &str, default: f32| -> std::result::Result<f32, String> {
        match node.input(position) {
            Some(name) => {
                let values = graph
                    .initializers
                    .get(name)
                    .and_then(|t| t.data.as_f32())
                    .ok_or_else(|| format!("Clip bound '{name}' is computed, not stored"))?;
                match values.iter().collect::<Vec<_>>().as_slice() {
                    [v] => Ok(**v),
                    _ => Err(format!("Clip bound '{name}' is not a scalar")),
                }
            }
            None => node.attr_float(attr, default),
        }
    };
    Ok((
        scalar(1, "min", f32::NEG_INFINITY)?,
        scalar(2, "max", f32::INFINITY)?,
    ))
}

/// Every equalizable pair, and for every other Conv/Gemm why it starts none.
pub(crate) fn find_pairs(graph: &Graph) -> (Vec<Pair>, Vec<super::Skipped>) {
    let topology = Topology::of(graph);
    let mut pairs = Vec::new();
    let mut skipped = Vec::new();
    for (index, node) in graph.nodes.iter().enumerate() {
        if node.op_type != "Conv" && node.op_type != "Gemm" {
            continue;
        }
        match pair_from(graph, &topology, index) {
            Ok(pair) => pairs.push(pair),
            Err(reason) => skipped.push(super::Skipped {
                layer: node.name.clone(),
                reason,
            }),
        }
    }
    (pairs, skipped)
}

/// The pair starting at layer `index`, or why there is none.
fn pair_from(
    graph: &Graph,
    topology: &Topology,
    index: usize,
) -> std::result::Result<Pair, String> {
    let first = Layer::at(graph, topology, index)?;
    first.bias(graph)?;
    let mut tensor = graph.nodes[index]
        .outputs
        .first()
        .cloned()
        .ok_or("has no output")?;
    let mut through = Vec::new();
    let mut globally_pooled = false;
    loop {
        let next = topology.sole_consumer(graph, &tensor)?;
        let node = &graph.nodes[next];
        let op = node.op_type.as_str();
        match op {
            "Conv" | "Gemm" => {
                if node.input(0) != Some(tensor.as_str()) {
                    return Err(format!(
                        "'{tensor}' is read by {op} '{}' as a weight",
                        node.name
                    ));
                }
                let second = Layer::at(graph, topology, next)
                    .map_err(|why| format!("next layer '{}': {why}", node.name))?;
                if second.in_channels != first.out_channels {
                    return Err(format!(
                        "{} output channels but '{}' reads {} input channels",
                        first.out_channels, second.name, second.in_channels
                    ));
                }
                return Ok(Pair {
                    first,
                    second,
                    through,
                });
            }
            "BatchNormalization" => {
                return Err("followed by BatchNormalization: fold BN first".into());
            }
            "Relu" | "Identity" | "MaxPool" | "AveragePool" => {}
            "GlobalAveragePool" | "GlobalMaxPool" => globally_pooled = true,
            "Flatten"
                if globally_pooled
                    || matches!(first.kind, super::layers::LayerKind::Gemm { .. }) => {}
            "Flatten" => {
                return Err(format!(
                    "'{tensor}' is flattened with its spatial positions (channels mix with space)"
                ));
            }
            "Clip" => {
                let (lo, _) = clip_bounds(graph, node)?;
                if lo != 0.0 {
                    return Err(format!(
                        "Clip '{}' has lower bound {lo} (only 0 is scale-equivariant)",
                        node.name
                    ));
                }
            }
            "Min" => {
                let cap = node
                    .input(1)
                    .and_then(|c| graph.initializers.get(c))
                    .and_then(|t| t.data.as_f32());
                let per_channel = cap.is_some_and(|c| c.len() == first.out_channels);
                let cap_name = node.input(1).unwrap_or("");
                if node.input(0) != Some(tensor.as_str())
                    || !per_channel
                    || topology.reader_count(cap_name) != 1
                {
                    return Err(format!(
                        "Min '{}' is not a per-channel cap of this layer's output",
                        node.name
                    ));
                }
            }
            other => {
                return Err(format!(
                    "'{tensor}' feeds {other} '{}', which is not scale-equivariant",
                    node.name
                ));
            }
        }
        through.push(next);
        tensor = node
            .outputs
            .first()
            .cloned()
            .ok_or("a node has no output")?;
    }
}

/// Rewrites the Clips between equalizable layers: unbounded ones become Relu, bounded ones
/// `Min(Relu(x), cap)` or Relu per `handling`.
fn rewrite_clips(
    graph: &mut Graph,
    clips: &BTreeSet<usize>,
    handling: Relu6Handling,
    report: &mut TransformReport,
) -> Result<()> {
    let topology = Topology::of(graph);
    let mut inserts: Vec<(usize, Node)> = Vec::new();
    let mut replaced = Vec::new();
    for &index in clips {
        let node = &graph.nodes[index];
        let (_, hi) = clip_bounds(graph, node)
            .map_err(|msg| Error::Graph(format!("node '{}': {msg}", node.name)))?;
        let channels = channels_at(graph, &topology, index);
        let bound_inputs: Vec<String> = node.inputs.iter().skip(1).cloned().collect();
        let mut relu = node.clone();
        relu.op_type = "Relu".to_string();
        relu.inputs.truncate(1);
        relu.attributes.clear();
        if hi.is_finite() && handling == Relu6Handling::PerChannelCap {
            let Some((channels, rank)) = channels else {
                return Err(Error::Graph(format!(
                    "node '{}': cannot tell the channel count to cap",
                    node.name
                )));
            };
            let output = node.outputs[0].clone();
            let relu_out = fresh_name(graph, &format!("{output}_relu"));
            let cap_name = fresh_name(graph, &format!("{output}_cap"));
            let mut shape = vec![channels];
            shape.extend(std::iter::repeat_n(1, rank.saturating_sub(2)));
            let cap = ArrayD::from_elem(IxDyn(&shape), hi);
            let mut tensor = Tensor::new(cap_name.clone(), TensorData::F32(cap), DType::F32);
            tensor.role = ParamRole::Constant;
            graph.initializers.insert(cap_name.clone(), tensor);
            relu.outputs = vec![relu_out.clone()];
            let min = Node {
                name: fresh_name(graph, &format!("{}_cap", node.name)),
                op_type: "Min".to_string(),
                domain: String::new(),
                inputs: vec![relu_out, cap_name],
                outputs: vec![output],
                attributes: Default::default(),
            };
            inserts.push((index + 1, min));
        } else if hi.is_finite() {
            replaced.push(node.name.clone());
        }
        graph.nodes[index] = relu;
        for name in bound_inputs.iter().filter(|n| !n.is_empty()) {
            if topology.reader_count(name) <= 1 {
                graph.initializers.remove(name);
            }
        }
    }
    for (at, node) in inserts.into_iter().rev() {
        graph.nodes.insert(at, node);
    }
    if !replaced.is_empty() {
        report.warnings.push(format!(
            "ReLU6 replaced by ReLU in {} node(s) ({}): the float outputs change wherever an \
             activation exceeded the clip",
            replaced.len(),
            replaced.join(", ")
        ));
    }
    assign_roles(graph);
    Ok(())
}

/// Channel count and rank of the tensor a node between two layers sees: walks back to the
/// layer producing it.
fn channels_at(graph: &Graph, topology: &Topology, mut index: usize) -> Option<(usize, usize)> {
    let mut flattened = false;
    loop {
        let node = graph.nodes.get(index)?;
        if node.op_type == "Flatten" {
            flattened = true;
        }
        if node.op_type == "Conv" || node.op_type == "Gemm" {
            let layer = Layer::at(graph, topology, index).ok()?;
            let rank = match layer.kind {
                super::layers::LayerKind::Conv { .. } if !flattened => {
                    layer.weight(graph).ok()?.ndim()
                }
                _ => 2,
            };
            return Some((layer.out_channels, rank));
        }
        index = *topology.producer.get(node.input(0)?)?;
    }
}
