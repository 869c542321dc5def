//! The linear layers transforms rewrite (Conv with any group count, Gemm), with per-channel
//! access to their weights and biases, and the graph lookups the transforms share (consumers,
//! producers, fresh names, the finiteness check).

use std::collections::{BTreeSet, HashMap};

use ndarray::{Array1, ArrayD, Axis, IxDyn};
use rayon::prelude::*;

use crate::engine::geometry::WindowSpec;
use crate::error::{Error, Result};
use crate::ir::{Attribute, DType, Graph, ParamRole, Tensor, TensorData};

/// The op of a linear layer, with what decides its weight layout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum LayerKind {
    /// Weight `[Cout, Cin/group, k...]`.
    Conv { group: usize },
    /// Weight `[N, K]` when `trans_b`, else `[K, N]`.
    Gemm { trans_b: bool },
}

/// Elements per rayon task in the per-channel weight loops (smaller weights stay on one thread).
const PAR_ELEMENTS: usize = 1 << 14;

/// A Conv or Gemm node whose weight is an initializer only it reads.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub node: usize,
    pub name: String,
    pub kind: LayerKind,
    pub weight: String,
    pub out_channels: usize,
    pub in_channels: usize,
}

/// Graph lookups computed once per transform pass.
pub(crate) struct Topology {
    /// Tensor name → indices of the nodes reading it.
    pub consumers: HashMap<String, Vec<usize>>,
    /// Tensor name → index of the node producing it.
    pub producer: HashMap<String, usize>,
    pub graph_outputs: BTreeSet<String>,
}

impl Topology {
    pub fn of(graph: &Graph) -> Self {
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        let mut producer = HashMap::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            for input in node.inputs.iter().filter(|n| !n.is_empty()) {
                consumers.entry(input.clone()).or_default().push(i);
            }
            for output in node.outputs.iter().filter(|n| !n.is_empty()) {
                producer.insert(output.clone(), i);
            }
        }
        let graph_outputs = graph.outputs.iter().map(|o| o.name.clone()).collect();
        Topology {
            consumers,
            producer,
            graph_outputs,
        }
    }

    /// The only node reading `tensor`, or why there is not exactly one.
    pub fn sole_consumer(&self, graph: &Graph, tensor: &str) -> std::result::Result<usize, String> {
        if self.graph_outputs.contains(tensor) {
            return Err(format!("'{tensor}' is a graph output"));
        }
        match self.consumers.get(tensor).map(Vec::as_slice) {
            Some([only]) => Ok(*only),
            None | Some([]) => Err(format!("'{tensor}' is not read by any node")),
            Some(many) => {
                let ops: Vec<&str> = many
                    .iter()
                    .filter_map(|&i| graph.nodes.get(i))
                    .map(|n| n.op_type.as_str())
                    .collect();
                Err(format!(
                    "'{tensor}' is read by {} nodes ({})",
                    many.len(),
                    ops.join(", ")
                ))
            }
        }
    }

    /// How many nodes read `tensor`.
    pub fn reader_count(&self, tensor: &str) -> usize {
        self.consumers.get(tensor).map_or(0, Vec::len)
    }
}

impl Layer {
    /// The node at `index` as a linear layer, or why it cannot be rewritten.
    pub fn at(
        graph: &Graph,
        topology: &Topology,
        index: usize,
    ) -> std::result::Result<Layer, String> {
        let node = graph
            .nodes
            .get(index)
            .ok_or_else(|| format!("no node at index {index}"))?;
        let weight = node.input(1).ok_or("has no weight input")?.to_string();
        let tensor = graph
            .initializers
            .get(&weight)
            .ok_or_else(|| format!("weight '{weight}' is computed, not a stored tensor"))?;
        let shape = tensor.shape();
        if tensor.data.as_f32().is_none() {
            return Err(format!("weight '{weight}' is not a float tensor"));
        }
        if topology.reader_count(&weight) != 1 {
            return Err(format!("weight '{weight}' is shared with other nodes"));
        }
        let (kind, out_channels, in_channels) = match node.op_type.as_str() {
            "Conv" => {
                if shape.len() < 3 {
                    return Err(format!("weight shape {shape:?} is not a Conv weight"));
                }
                let window = WindowSpec::conv(node, &shape[2..]).map_err(|e| e.msg)?;
                let group = window.group;
                if shape[0] % group != 0 {
                    return Err(format!(
                        "weight shape {shape:?} does not fit a Conv with group {group}"
                    ));
                }
                (LayerKind::Conv { group }, shape[0], shape[1] * group)
            }
            "Gemm" => {
                if node.attr_int("transA", 0)? != 0 {
                    return Err("Gemm with transA is not rewritten".into());
                }
                let trans_b = node.attr_int("transB", 0)? != 0;
                let [rows, cols] = shape else {
                    return Err(format!("Gemm weight shape {shape:?} is not 2-D"));
                };
                let (n, k) = if trans_b {
                    (*rows, *cols)
                } else {
                    (*cols, *rows)
                };
                (LayerKind::Gemm { trans_b }, n, k)
            }
            other => return Err(format!("{other} is not a Conv or Gemm")),
        };
        let layer = Layer {
            node: index,
            name: node.name.clone(),
            kind,
            weight,
            out_channels,
            in_channels,
        };
        layer.bias(graph)?;
        Ok(layer)
    }

    /// Whether the layer's input is zero-padded (a Conv with non-zero pads or SAME padding).
    pub fn pads_input(&self, graph: &Graph) -> bool {
        if !matches!(self.kind, LayerKind::Conv { .. }) {
            return false;
        }
        let (Some(node), Ok(weight)) = (graph.nodes.get(self.node), self.weight(graph)) else {
            return false;
        };
        weight.ndim() >= 3
            && WindowSpec::conv(node, &weight.shape()[2..]).is_ok_and(|w| w.pads_input())
    }

    pub fn weight<'g>(&self, graph: &'g Graph) -> Result<&'g ArrayD<f32>> {
        graph
            .initializers
            .get(&self.weight)
            .and_then(|t| t.data.as_f32())
            .ok_or_else(|| self.missing(&self.weight))
    }

    pub fn weight_mut<'g>(&self, graph: &'g mut Graph) -> Result<&'g mut ArrayD<f32>> {
        match graph
            .initializers
            .get_mut(&self.weight)
            .map(|t| &mut t.data)
        {
            Some(TensorData::F32(a)) => Ok(a),
            _ => Err(self.missing(&self.weight)),
        }
    }

    fn missing(&self, tensor: &str) -> Error {
        Error::Graph(format!(
            "node '{}': float tensor '{tensor}' is missing",
            self.name
        ))
    }

    /// Axis of the weight holding output channels.
    pub fn out_axis(&self) -> usize {
        match self.kind {
            LayerKind::Conv { .. } | LayerKind::Gemm { trans_b: true } => 0,
            LayerKind::Gemm { trans_b: false } => 1,
        }
    }

    /// (input channels per group, output channels per group, elements per (out, in) block) of
    /// a contiguous Conv weight; None for other layers or layouts (the generic paths serve).
    fn conv_blocks(&self, w: &ArrayD<f32>) -> Option<(usize, usize, usize)> {
        let LayerKind::Conv { group } = self.kind else {
            return None;
        };
        let block: usize = w.shape().iter().skip(2).product();
        let ins = self.in_channels / group;
        (w.is_standard_layout() && block > 0 && ins > 0).then_some((
            ins,
            (self.out_channels / group).max(1),
            block,
        ))
    }

    /// Conv with `group` groups: the input channel read by slice `ci` (axis 1) of output
    /// channel `o`'s weight.
    fn conv_in_channel(&self, group: usize, o: usize, ci: usize) -> usize {
        let outs_per_group = (self.out_channels / group).max(1);
        (o / outs_per_group) * (self.in_channels / group) + ci
    }

    /// max |w| of each output channel.
    pub fn out_abs_max(&self, w: &ArrayD<f32>) -> Vec<f32> {
        if self.out_axis() == 0
            && let Some(data) = w.as_slice()
            && self.out_channels > 0
        {
            let per_channel = data.len() / self.out_channels;
            if per_channel == 0 {
                return vec![0.0; self.out_channels];
            }
            return data
                .par_chunks_exact(per_channel)
                .with_min_len(PAR_ELEMENTS.div_ceil(per_channel))
                .map(|c| c.iter().fold(0.0f32, |m, v| m.max(v.abs())))
                .collect();
        }
        w.axis_iter(Axis(self.out_axis()))
            .map(|c| c.iter().fold(0.0f32, |m, v| m.max(v.abs())))
            .collect()
    }

    /// max |w| over the weights reading each input channel.
    pub fn in_abs_max(&self, w: &ArrayD<f32>) -> Vec<f32> {
        let mut result = vec![0.0f32; self.in_channels];
        if let Some((ins, outs, block)) = self.conv_blocks(w)
            && let Some(data) = w.as_slice()
        {
            // One output channel (ins blocks) per item; the maxima of the items are merged.
            let row = ins * block;
            let in_channels = self.in_channels;
            return data
                .par_chunks_exact(row)
                .enumerate()
                .with_min_len(PAR_ELEMENTS.div_ceil(row))
                .fold(
                    || vec![0.0f32; in_channels],
                    |mut acc, (o, values)| {
                        let first = (o / outs) * ins;
                        for (ci, block_values) in values.chunks_exact(block).enumerate() {
                            if let Some(r) = acc.get_mut(first + ci) {
                                *r = block_values.iter().fold(*r, |m, v| m.max(v.abs()));
                            }
                        }
                        acc
                    },
                )
                .reduce(
                    || vec![0.0f32; in_channels],
                    |mut a, b| {
                        a.iter_mut().zip(&b).for_each(|(x, y)| *x = x.max(*y));
                        a
                    },
                );
        }
        self.for_each_in_channel(w, |c, slice| {
            result[c] = slice.iter().fold(result[c], |m, v| m.max(v.abs()));
        });
        result
    }

    /// Calls `f(input channel, weights reading it)` for every (output channel, input channel)
    /// block of the weight (a Conv input channel is read only by its group's outputs).
    pub fn for_each_in_channel(
        &self,
        w: &ArrayD<f32>,
        mut f: impl FnMut(usize, ndarray::ArrayViewD<'_, f32>),
    ) {
        match self.kind {
            LayerKind::Conv { group } => {
                for (o, w_o) in w.outer_iter().enumerate() {
                    for (ci, slice) in w_o.outer_iter().enumerate() {
                        f(self.conv_in_channel(group, o, ci), slice);
                    }
                }
            }
            LayerKind::Gemm { trans_b } => {
                let in_axis = if trans_b { 1 } else { 0 };
                for (c, slice) in w.axis_iter(Axis(in_axis)).enumerate() {
                    f(c, slice);
                }
            }
        }
    }

    /// Multiplies output channel j of the weight by `s[j]`.
    pub fn scale_out(&self, w: &mut ArrayD<f32>, s: &[f32]) {
        let out_channels = self.out_channels;
        if self.out_axis() == 0
            && out_channels > 0
            && let Some(data) = w.as_slice_mut()
        {
            let per_channel = data.len() / out_channels;
            if per_channel == 0 {
                return;
            }
            data.par_chunks_exact_mut(per_channel)
                .zip(s.par_iter())
                .with_min_len(PAR_ELEMENTS.div_ceil(per_channel))
                .for_each(|(c, &factor)| c.iter_mut().for_each(|v| *v *= factor));
            return;
        }
        for (mut c, &factor) in w.axis_iter_mut(Axis(self.out_axis())).zip(s) {
            c.mapv_inplace(|v| v * factor);
        }
    }

    /// Multiplies the weights reading input channel c by `s[c]`.
    pub fn scale_in(&self, w: &mut ArrayD<f32>, s: &[f32]) {
        if let Some((ins, outs, block)) = self.conv_blocks(w)
            && let Some(data) = w.as_slice_mut()
        {
            data.par_chunks_exact_mut(block)
                .enumerate()
                .with_min_len(PAR_ELEMENTS.div_ceil(block))
                .for_each(|(i, values)| {
                    let factor = s
                        .get((i / ins / outs) * ins + i % ins)
                        .copied()
                        .unwrap_or(1.0);
                    values.iter_mut().for_each(|v| *v *= factor);
                });
            return;
        }
        match self.kind {
            LayerKind::Conv { group } => {
                for (o, mut w_o) in w.outer_iter_mut().enumerate() {
                    for (ci, mut slice) in w_o.outer_iter_mut().enumerate() {
                        let c = self.conv_in_channel(group, o, ci);
                        let factor = s.get(c).copied().unwrap_or(1.0);
                        slice.mapv_inplace(|v| v * factor);
                    }
                }
            }
            LayerKind::Gemm { trans_b } => {
                let in_axis = if trans_b { 1 } else { 0 };
                for (mut slice, &factor) in w.axis_iter_mut(Axis(in_axis)).zip(s) {
                    slice.mapv_inplace(|v| v * factor);
                }
            }
        }
    }

    /// Σ over the weights reading input channel c of w·x[c], per output channel: the layer's
    /// response to a constant input x (padding ignored).
    pub fn response_to_constant(&self, w: &ArrayD<f32>, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; self.out_channels];
        match self.kind {
            LayerKind::Conv { group } => {
                for (o, w_o) in w.outer_iter().enumerate() {
                    for (ci, slice) in w_o.outer_iter().enumerate() {
                        let c = self.conv_in_channel(group, o, ci);
                        out[o] += x.get(c).copied().unwrap_or(0.0) * slice.sum();
                    }
                }
            }
            LayerKind::Gemm { trans_b } => {
                for (o, out_o) in out.iter_mut().enumerate() {
                    *out_o = (0..self.in_channels)
                        .map(|k| {
                            let idx = if trans_b { [o, k] } else { [k, o] };
                            w.get(IxDyn(&idx)).copied().unwrap_or(0.0) * x[k]
                        })
                        .sum();
                }
            }
        }
        out
    }

    /// The per-output-channel bias (zeros when there is none; Gemm's `beta` applied), or why it
    /// is not a per-channel vector.
    pub fn bias(&self, graph: &Graph) -> std::result::Result<Vec<f32>, String> {
        let node = graph
            .nodes
            .get(self.node)
            .ok_or_else(|| format!("no node at index {}", self.node))?;
        let Some(name) = node.input(2) else {
            return Ok(vec![0.0; self.out_channels]);
        };
        let values = graph
            .initializers
            .get(name)
            .and_then(|t| t.data.as_f32())
            .ok_or_else(|| format!("bias '{name}' is not a stored float tensor"))?;
        let beta = match self.kind {
            LayerKind::Gemm { .. } => node.attr_float("beta", 1.0)?,
            LayerKind::Conv { .. } => 1.0,
        };
        let n = values.len();
        let leading_ones = values.shape().iter().rev().skip(1).all(|&d| d == 1);
        if n == self.out_channels && leading_ones {
            Ok(values.iter().map(|v| v * beta).collect())
        } else if n == 1 {
            Ok(vec![
                values.iter().next().copied().unwrap_or(0.0) * beta;
                self.out_channels
            ])
        } else {
            Err(format!(
                "bias '{name}' of shape {:?} is not one value per output channel",
                values.shape()
            ))
        }
    }

    /// Writes a per-output-channel bias, creating the bias input when the layer has none.
    /// Returns the bias tensor's name.
    pub fn set_bias(&self, graph: &mut Graph, bias: Vec<f32>) -> Result<String> {
        let existing = graph
            .nodes
            .get(self.node)
            .and_then(|n| n.input(2))
            .map(str::to_string);
        let name = match existing {
            // A bias read by other nodes too is left for them; this layer gets its own.
            Some(name) if graph_readers(graph, &name) == 1 => name,
            _ => fresh_name(graph, &format!("{}.bias", self.weight)),
        };
        let mut tensor = Tensor::new(
            name.clone(),
            TensorData::F32(Array1::from(bias).into_dyn()),
            DType::F32,
        );
        tensor.role = ParamRole::Bias;
        tensor.channel_axis = Some(0);
        graph.initializers.insert(name.clone(), tensor);
        let node = graph
            .nodes
            .get_mut(self.node)
            .ok_or_else(|| self.missing("node"))?;
        while node.inputs.len() < 3 {
            node.inputs.push(String::new());
        }
        node.inputs[2] = name.clone();
        if matches!(self.kind, LayerKind::Gemm { .. }) {
            node.attributes
                .insert("beta".to_string(), Attribute::Float(1.0));
        }
        Ok(name)
    }
}

fn graph_readers(graph: &Graph, tensor: &str) -> usize {
    graph
        .nodes
        .iter()
        .flat_map(|n| n.inputs.iter())
        .filter(|i| *i == tensor)
        .count()
}

/// `base`, or `base_1`, `base_2`, ... : a tensor name not yet used in the graph.
pub(crate) fn fresh_name(graph: &Graph, base: &str) -> String {
    let taken = |name: &str| {
        graph.initializers.contains_key(name)
            || graph.inputs.iter().any(|i| i.name == name)
            || graph
                .nodes
                .iter()
                .any(|n| n.outputs.iter().any(|o| o == name))
    };
    if !taken(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{base}_{i}"))
        .find(|n| !taken(n))
        .unwrap_or_else(|| base.to_string())
}

/// Refuses a transform whose result holds NaN or Inf in any of the `touched` tensors.
pub(crate) fn ensure_finite<'a>(
    graph: &Graph,
    touched: impl IntoIterator<Item = &'a String>,
    transform: &str,
) -> Result<()> {
    let tensors: Vec<(&String, &ArrayD<f32>)> = touched
        .into_iter()
        .filter_map(|name| Some((name, graph.initializers.get(name)?.data.as_f32()?)))
        .collect();
    // The first offending tensor in `touched` order, checked in parallel.
    let first_bad = tensors.par_iter().find_map_first(|&(name, values)| {
        let bad = match values.as_slice_memory_order() {
            Some(data) => data
                .par_chunks(PAR_ELEMENTS)
                .map(|c| c.iter().filter(|v| !v.is_finite()).count())
                .sum(),
            None => values.iter().filter(|v| !v.is_finite()).count(),
        };
        (bad > 0).then_some((name, bad))
    });
    match first_bad {
        Some((name, bad)) => Err(Error::Transform {
            transform: transform.to_string(),
            msg: format!(
                "tensor '{name}' would hold {bad} NaN/Inf value(s); the transform is refused and \
                 the model left as it was"
            ),
        }),
        None => Ok(()),
    }
}

/// Drops initializers no node reads any more (and that are not graph inputs or outputs).
pub(crate) fn drop_unread_initializers(graph: &mut Graph, candidates: &[String]) {
    for name in candidates {
        let read = graph_readers(graph, name) > 0
            || graph.outputs.iter().any(|o| &o.name == name)
            || graph.inputs.iter().any(|i| &i.name == name);
        if !read {
            graph.initializers.remove(name);
        }
    }
}
