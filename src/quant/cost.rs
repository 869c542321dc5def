//! Cost model: how many bits a quantized model takes, and how many bit operations its layers
//! need.
//!
//! # Size
//!
//! A tensor costs its codes (elements × bits) plus its side information, 32 bits per stored
//! real number:
//!
//! * linear: one scale per tensor or per channel, plus as many zero points when asymmetric;
//! * k-means: a codebook of 2^b centroids per tensor (or per channel);
//! * binary / ternary: the scale α per tensor or channel (TTQ learns two, W_p and W_n);
//! * float: 32 (or 16) bits per element and nothing else.
//!
//! # Compute
//!
//! A layer's multiply-accumulates are Conv: N·Cout·Hout·Wout·(Cin/group)·kh·kw (any number of
//! spatial dims), Gemm and MatMul: M·N·K (times the batch of a batched MatMul). BitOps weigh
//! each MAC by its operand widths, MACs × weight bits × activation bits; the float baseline is
//! MACs × 32 × 32.
//!
//! Activation shapes are only known from a run: [`ShapeRecorder`] is a
//! [`TensorHook`] that keeps the shape of every tensor of a run, and [`layer_costs`] reads them
//! (initializer shapes come from the graph) to call [`macs_of`] on each node.

use std::collections::HashMap;

use super::grid::QuantError;
use crate::engine::geometry::WindowSpec;
use crate::engine::{TensorHook, TensorSite};
use crate::ir::{Graph, Node, TensorData};

/// Bits of one stored real number (scale, zero point, centroid, α).
pub const SIDE_BITS: u64 = 32;

/// How a tensor is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageScheme {
    /// Plain floats of `bits` bits (32 or 16), no side information.
    Float { bits: u32 },
    /// Linear codes of `bits` bits; one scale (and, when `zero_point`, one zero point) per
    /// tensor or per channel.
    Linear {
        bits: u32,
        per_channel: bool,
        zero_point: bool,
    },
    /// K-means indices of `bits` bits plus a codebook of 2^bits 32-bit centroids per tensor
    /// (or per channel).
    KMeans { bits: u32, per_channel: bool },
    /// 1-bit signs plus α per tensor or channel.
    Binary { per_channel: bool },
    /// 2-bit codes plus `scales` values (1 for TWN, 2 for TTQ) per tensor or channel.
    Ternary { per_channel: bool, scales: u32 },
}

impl StorageScheme {
    pub const FLOAT32: StorageScheme = StorageScheme::Float { bits: 32 };

    /// Bits per element code.
    pub fn code_bits(&self) -> u32 {
        match *self {
            StorageScheme::Float { bits }
            | StorageScheme::Linear { bits, .. }
            | StorageScheme::KMeans { bits, .. } => bits,
            StorageScheme::Binary { .. } => 1,
            StorageScheme::Ternary { .. } => 2,
        }
    }

    fn per_channel(&self) -> bool {
        match *self {
            StorageScheme::Float { .. } => false,
            StorageScheme::Linear { per_channel, .. }
            | StorageScheme::KMeans { per_channel, .. }
            | StorageScheme::Binary { per_channel }
            | StorageScheme::Ternary { per_channel, .. } => per_channel,
        }
    }

    /// Side bits stored once per tensor or once per channel.
    fn side_bits_per_group(&self) -> u64 {
        match *self {
            StorageScheme::Float { .. } => 0,
            StorageScheme::Linear { zero_point, .. } => SIDE_BITS * (1 + u64::from(zero_point)),
            StorageScheme::KMeans { bits, .. } => SIDE_BITS << bits,
            StorageScheme::Binary { .. } => SIDE_BITS,
            StorageScheme::Ternary { scales, .. } => SIDE_BITS * u64::from(scales),
        }
    }
}

/// The size of one stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TensorSize {
    pub elements: u64,
    /// elements × code bits.
    pub payload_bits: u64,
    /// Scales, zero points, codebooks.
    pub overhead_bits: u64,
}

impl TensorSize {
    pub fn total_bits(&self) -> u64 {
        self.payload_bits + self.overhead_bits
    }

    /// Effective bits per element, side information included.
    pub fn bits_per_element(&self) -> f64 {
        if self.elements == 0 {
            0.0
        } else {
            self.total_bits() as f64 / self.elements as f64
        }
    }
}

/// The size of a tensor of `shape` stored with `scheme`; per-channel schemes have one group per
/// index of `channel_axis` (axis 0 when None).
pub fn tensor_size(
    shape: &[usize],
    channel_axis: Option<usize>,
    scheme: &StorageScheme,
) -> TensorSize {
    let elements: u64 = shape.iter().map(|&d| d as u64).product();
    let groups = if scheme.per_channel() {
        shape.get(channel_axis.unwrap_or(0)).copied().unwrap_or(1) as u64
    } else {
        1
    };
    let overhead_bits = if elements == 0 {
        0
    } else {
        groups * scheme.side_bits_per_group()
    };
    TensorSize {
        elements,
        payload_bits: elements * u64::from(scheme.code_bits()),
        overhead_bits,
    }
}

/// A model's size under some schemes against the same tensors in float32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelSize {
    pub elements: u64,
    pub payload_bits: u64,
    pub overhead_bits: u64,
    /// 32 × elements.
    pub float32_bits: u64,
}

impl ModelSize {
    pub fn total_bits(&self) -> u64 {
        self.payload_bits + self.overhead_bits
    }

    pub fn total_bytes(&self) -> f64 {
        self.total_bits() as f64 / 8.0
    }

    /// float32 size / quantized size.
    pub fn compression_ratio(&self) -> f64 {
        if self.total_bits() == 0 {
            1.0
        } else {
            self.float32_bits as f64 / self.total_bits() as f64
        }
    }
}

/// Sums tensor sizes: `(shape, channel axis, scheme)` per tensor.
pub fn model_size<'a>(
    tensors: impl IntoIterator<Item = (&'a [usize], Option<usize>, StorageScheme)>,
) -> ModelSize {
    let mut total = ModelSize::default();
    for (shape, axis, scheme) in tensors {
        let t = tensor_size(shape, axis, &scheme);
        total.elements += t.elements;
        total.payload_bits += t.payload_bits;
        total.overhead_bits += t.overhead_bits;
        total.float32_bits += 32 * t.elements;
    }
    total
}

/// The size of every parameter of `graph` (initializers whose role is a parameter) stored with
/// `scheme_of(tensor name, role)`, each with its own channel axis.
pub fn graph_size(
    graph: &Graph,
    mut scheme_of: impl FnMut(&str, crate::ir::ParamRole) -> StorageScheme,
) -> ModelSize {
    let schemes: Vec<(&[usize], Option<usize>, StorageScheme)> = graph
        .initializers
        .values()
        .filter(|t| t.role.is_parameter())
        .map(|t| (t.shape(), t.channel_axis, scheme_of(&t.name, t.role)))
        .collect();
    model_size(schemes)
}

// ---- compute ----------------------------------------------------------------------------------

fn shape_of<'a>(
    node: &Node,
    shapes: &[Option<&'a [usize]>],
    i: usize,
) -> Result<&'a [usize], QuantError> {
    shapes.get(i).copied().flatten().ok_or_else(|| {
        QuantError(format!(
            "{} '{}': the shape of input {i} is not known",
            node.op_type, node.name
        ))
    })
}

fn product(dims: &[usize]) -> u64 {
    dims.iter().map(|&d| d as u64).product()
}

/// Multiply-accumulates of one run of `node`, from the shapes of its inputs (in node input
/// order; None where unknown or omitted). Ok(None) for ops that are not Conv, Gemm, MatMul or
/// recurrent.
///
/// Conv: N·Cout·Π(output spatial)·(Cin/group)·Π(kernel), with the output size from the node's
/// strides, pads, dilations and auto_pad. Gemm: M·N·K after transA/transB. MatMul: M·N·K times
/// the broadcast batch size (1-D operands count as a single row or column). LSTM, GRU, RNN: the
/// input products X·Wᵀ, steps·batch·|W| (the recurrence h·Rᵀ is [`recurrence_macs`]).
pub fn macs_of(node: &Node, input_shapes: &[Option<&[usize]>]) -> Result<Option<u64>, QuantError> {
    let bad = |what: String| QuantError(format!("{} '{}': {what}", node.op_type, node.name));
    match node.op_type.as_str() {
        "Conv" => {
            let x = shape_of(node, input_shapes, 0)?;
            let w = shape_of(node, input_shapes, 1)?;
            if x.len() < 3 || w.len() != x.len() {
                return Err(bad(format!("input {x:?} and weight {w:?} do not fit")));
            }
            let axes = WindowSpec::conv(node, &w[2..])
                .and_then(|window| window.axes(&x[2..]))
                .map_err(|e| QuantError(e.to_string()))?;
            let out: u64 = axes.iter().map(|a| a.output as u64).product();
            // w = [Cout, Cin/group, k...]: everything but the batch and output spatial dims.
            Ok(Some(x[0] as u64 * out * product(w)))
        }
        "Gemm" => {
            let a = shape_of(node, input_shapes, 0)?;
            let b = shape_of(node, input_shapes, 1)?;
            if a.len() != 2 || b.len() != 2 {
                return Err(bad(format!("Gemm operands {a:?} and {b:?} must be 2-D")));
            }
            let trans_a = node.attr_int("transA", 0).map_err(QuantError)? != 0;
            let trans_b = node.attr_int("transB", 0).map_err(QuantError)? != 0;
            let (m, k) = if trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
            let (kb, n) = if trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
            if k != kb {
                return Err(bad(format!("inner dimensions {k} and {kb} differ")));
            }
            Ok(Some((m * n) as u64 * k as u64))
        }
        "MatMul" => {
            let a = shape_of(node, input_shapes, 0)?;
            let b = shape_of(node, input_shapes, 1)?;
            if a.is_empty() || b.is_empty() {
                return Err(bad("MatMul operands must have at least one dim".into()));
            }
            let (m, k, a_batch) = match a.len() {
                1 => (1, a[0], &a[..0]),
                r => (a[r - 2], a[r - 1], &a[..r - 2]),
            };
            let (kb, n, b_batch) = match b.len() {
                1 => (b[0], 1, &b[..0]),
                r => (b[r - 2], b[r - 1], &b[..r - 2]),
            };
            if k != kb {
                return Err(bad(format!("inner dimensions {k} and {kb} differ")));
            }
            // Broadcast batch dims (right-aligned).
            let rank = a_batch.len().max(b_batch.len());
            let mut batch = 1u64;
            for i in 0..rank {
                let da = a_batch
                    .len()
                    .checked_sub(rank - i)
                    .map_or(1, |j| a_batch[j]);
                let db = b_batch
                    .len()
                    .checked_sub(rank - i)
                    .map_or(1, |j| b_batch[j]);
                if da != db && da != 1 && db != 1 {
                    return Err(bad(format!(
                        "batch dims {a_batch:?} and {b_batch:?} do not broadcast"
                    )));
                }
                batch *= da.max(db) as u64;
            }
            Ok(Some(batch * (m * n) as u64 * k as u64))
        }
        "LSTM" | "GRU" | "RNN" => recurrent_macs(node, input_shapes, 1).map(Some),
        _ => Ok(None),
    }
}

/// Multiply-accumulates of the recurrence h·Rᵀ of a run of an LSTM, GRU or RNN node:
/// steps·batch·|R|. Ok(None) for other ops.
pub fn recurrence_macs(
    node: &Node,
    input_shapes: &[Option<&[usize]>],
) -> Result<Option<u64>, QuantError> {
    if !crate::quant::config::RECURRENT_OPS.contains(&node.op_type.as_str()) {
        return Ok(None);
    }
    recurrent_macs(node, input_shapes, 2).map(Some)
}

/// steps·batch·|weight| for the weight at input `weight` of a recurrent node: X is
/// [steps, batch, input] or [batch, steps, input], and each step multiplies every weight once
/// per sequence of the batch.
fn recurrent_macs(
    node: &Node,
    input_shapes: &[Option<&[usize]>],
    weight: usize,
) -> Result<u64, QuantError> {
    let x = shape_of(node, input_shapes, 0)?;
    let w = shape_of(node, input_shapes, weight)?;
    if x.len() != 3 || w.len() != 3 {
        return Err(QuantError(format!(
            "{} '{}': input {x:?} and weight {w:?} must be 3-D",
            node.op_type, node.name
        )));
    }
    Ok(product(&x[..2]) * product(w))
}

/// BitOps = MACs × weight bits × activation bits.
pub fn bitops(macs: u64, weight_bits: u32, activation_bits: u32) -> u64 {
    macs.saturating_mul(u64::from(weight_bits) * u64::from(activation_bits))
}

/// The cost of one compute layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerCost {
    pub node: String,
    pub op_type: String,
    pub macs: u64,
    pub weight_bits: u32,
    pub activation_bits: u32,
    /// MACs × weight bits × activation bits.
    pub bitops: u64,
    /// MACs × 32 × 32.
    pub float_bitops: u64,
}

/// Records the shape of every tensor seen in a run (graph inputs and node outputs).
#[derive(Debug, Clone, Default)]
pub struct ShapeRecorder {
    pub shapes: HashMap<String, Vec<usize>>,
}

impl TensorHook for ShapeRecorder {
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> crate::Result<()> {
        self.shapes
            .insert(site.name.to_string(), value.shape().to_vec());
        Ok(())
    }
}

/// The cost of every Conv, Gemm, MatMul and recurrent layer of `graph` (a recurrent one as two
/// entries: its inputs, and its recurrence `"<node> (recurrence)"` at 32 activation bits, since
/// the hidden state stays float), in graph order. Input shapes come from
/// `shapes` (e.g. a [`ShapeRecorder`] after a run) or the graph's initializers;
/// `bits_of(node)` gives (weight bits, activation bits) per layer.
pub fn layer_costs(
    graph: &Graph,
    shapes: &HashMap<String, Vec<usize>>,
    mut bits_of: impl FnMut(&Node) -> (u32, u32),
) -> Result<Vec<LayerCost>, QuantError> {
    let mut costs = Vec::new();
    for node in &graph.nodes {
        let input_shapes: Vec<Option<&[usize]>> = node
            .inputs
            .iter()
            .map(|name| {
                shapes
                    .get(name)
                    .map(Vec::as_slice)
                    .or_else(|| graph.initializers.get(name).map(|t| t.shape()))
            })
            .collect();
        let Some(macs) = macs_of(node, &input_shapes)? else {
            continue;
        };
        let node_op = &node.op_type;
        let (weight_bits, activation_bits) = bits_of(node);
        let cost = |node: String, macs: u64, activation_bits: u32| LayerCost {
            node,
            op_type: node_op.clone(),
            macs,
            weight_bits,
            activation_bits,
            bitops: bitops(macs, weight_bits, activation_bits),
            float_bitops: bitops(macs, 32, 32),
        };
        costs.push(cost(node.name.clone(), macs, activation_bits));
        // The hidden state a recurrence multiplies stays float.
        if let Some(macs) = recurrence_macs(node, &input_shapes)? {
            costs.push(cost(format!("{} (recurrence)", node.name), macs, 32));
        }
    }
    Ok(costs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Plan, RunOptions};
    use crate::ir::Attribute;
    use crate::quant::test_support::sample_cnn_with_images;

    fn node(op: &str, attrs: &[(&str, Attribute)]) -> Node {
        Node::new(format!("{op}_0"), op, &["x", "w"], &["y"])
            .with_attributes(attrs.iter().map(|(k, v)| (*k, v.clone())))
    }

    fn ints(v: &[i64]) -> Attribute {
        Attribute::Ints(v.to_vec())
    }

    #[test]
    fn resnet_3x3_conv_macs_and_bitops() {
        // ResNet stage 1: 64 → 64, 3×3, pad 1 on 56×56: 56·56·64·64·9 = 115,605,504 MACs.
        let conv = node("Conv", &[("pads", ints(&[1, 1, 1, 1]))]);
        let macs = macs_of(&conv, &[Some(&[1, 64, 56, 56]), Some(&[64, 64, 3, 3])])
            .unwrap()
            .unwrap();
        assert_eq!(macs, 115_605_504);
        assert_eq!(bitops(macs, 8, 8), 115_605_504 * 64);
        assert_eq!(bitops(macs, 32, 32), 115_605_504 * 1024);
        assert_eq!(bitops(macs, 1, 1), macs);
        // Batch 4 and a stride-2 downsampling conv 64 → 128: 28·28·128·64·9 per image.
        let down = node(
            "Conv",
            &[("pads", ints(&[1, 1, 1, 1])), ("strides", ints(&[2, 2]))],
        );
        let macs = macs_of(&down, &[Some(&[4, 64, 56, 56]), Some(&[128, 64, 3, 3])]).unwrap();
        assert_eq!(macs, Some(4 * 28 * 28 * 128 * 64 * 9));
    }

    #[test]
    fn depthwise_conv_macs() {
        // MobileNet-style depthwise 3×3, stride 2, 32 channels on 112×112 → 56×56:
        // 32·56·56·(32/32)·9 = 903,168 MACs.
        let dw = node(
            "Conv",
            &[
                ("group", Attribute::Int(32)),
                ("pads", ints(&[1, 1, 1, 1])),
                ("strides", ints(&[2, 2])),
            ],
        );
        let macs = macs_of(&dw, &[Some(&[1, 32, 112, 112]), Some(&[32, 1, 3, 3])]).unwrap();
        assert_eq!(macs, Some(903_168));
        // SAME_UPPER and a 1-D conv.
        let same = node(
            "Conv",
            &[("auto_pad", Attribute::String("SAME_UPPER".into()))],
        );
        assert_eq!(
            macs_of(&same, &[Some(&[2, 3, 10]), Some(&[5, 3, 4])]).unwrap(),
            Some(2 * 5 * 10 * 3 * 4)
        );
    }

    #[test]
    fn gemm_and_matmul_macs() {
        // Classifier: 8 × 512 by 1000 × 512 (transB) = 4,096,000 MACs.
        let gemm = node("Gemm", &[("transB", Attribute::Int(1))]);
        assert_eq!(
            macs_of(&gemm, &[Some(&[8, 512]), Some(&[1000, 512])]).unwrap(),
            Some(4_096_000)
        );
        let gemm_ta = node("Gemm", &[("transA", Attribute::Int(1))]);
        assert_eq!(
            macs_of(&gemm_ta, &[Some(&[512, 8]), Some(&[512, 10])]).unwrap(),
            Some(8 * 10 * 512)
        );
        assert!(macs_of(&gemm, &[Some(&[8, 512]), Some(&[1000, 511])]).is_err());
        let mm = node("MatMul", &[]);
        assert_eq!(
            macs_of(&mm, &[Some(&[4, 3]), Some(&[3, 5])]).unwrap(),
            Some(60)
        );
        assert_eq!(
            macs_of(&mm, &[Some(&[2, 4, 3]), Some(&[3, 5])]).unwrap(),
            Some(120)
        );
        assert_eq!(
            macs_of(&mm, &[Some(&[6, 1, 4, 3]), Some(&[2, 3, 5])]).unwrap(),
            Some(12 * 60)
        );
        assert_eq!(
            macs_of(&mm, &[Some(&[3]), Some(&[3, 5])]).unwrap(),
            Some(15)
        );
        assert!(macs_of(&mm, &[Some(&[4, 3]), None]).is_err());
        assert_eq!(macs_of(&node("Relu", &[]), &[Some(&[4])]).unwrap(), None);
    }

    #[test]
    fn tensor_sizes_count_codes_and_side_information() {
        let shape = [64, 64, 3, 3]; // 36,864 weights
        let size = |s: StorageScheme| tensor_size(&shape, Some(0), &s);
        assert_eq!(size(StorageScheme::FLOAT32).total_bits(), 36_864 * 32);
        // int8 per channel, asymmetric: codes + 64 scales + 64 zero points.
        let lin = size(StorageScheme::Linear {
            bits: 8,
            per_channel: true,
            zero_point: true,
        });
        assert_eq!((lin.payload_bits, lin.overhead_bits), (294_912, 64 * 64));
        // int8 per tensor, symmetric: one scale.
        let sym = size(StorageScheme::Linear {
            bits: 8,
            per_channel: false,
            zero_point: false,
        });
        assert_eq!(sym.total_bits(), 294_912 + 32);
        // 2-bit k-means: indices + 4 centroids.
        let km = size(StorageScheme::KMeans {
            bits: 2,
            per_channel: false,
        });
        assert_eq!(km.total_bits(), 73_728 + 4 * 32);
        // Binary with α per output channel.
        let bin = size(StorageScheme::Binary { per_channel: true });
        assert_eq!(bin.total_bits(), 36_864 + 64 * 32);
        // TTQ per tensor: 2-bit codes + W_p and W_n.
        let ttq = size(StorageScheme::Ternary {
            per_channel: false,
            scales: 2,
        });
        assert_eq!(ttq.total_bits(), 73_728 + 64);
        assert!((bin.bits_per_element() - (1.0 + 2048.0 / 36_864.0)).abs() < 1e-12);
        // Per-channel on another axis (Gemm B without transB: channels on axis 1).
        let gemm_b = tensor_size(
            &[512, 10],
            Some(1),
            &StorageScheme::Binary { per_channel: true },
        );
        assert_eq!(gemm_b.overhead_bits, 10 * 32);
    }

    #[test]
    fn model_size_against_float32() {
        let w1 = [16usize, 1, 3, 3];
        let b1 = [16usize];
        let w2 = [10usize, 144];
        let int8 = StorageScheme::Linear {
            bits: 8,
            per_channel: true,
            zero_point: false,
        };
        let total = model_size([
            (&w1[..], Some(0), int8),
            (&b1[..], Some(0), StorageScheme::FLOAT32),
            (&w2[..], Some(0), int8),
        ]);
        assert_eq!(total.elements, 144 + 16 + 1440);
        assert_eq!(total.float32_bits, 32 * 1600);
        assert_eq!(
            total.total_bits(),
            144 * 8 + 16 * 32 + 16 * 32 + 1440 * 8 + 10 * 32
        );
        assert!((total.compression_ratio() - 51_200.0 / 14_016.0).abs() < 1e-12);
    }

    #[test]
    fn sample_cnn_layer_costs_from_a_recorded_run() {
        let (model, images) = sample_cnn_with_images(2);
        let graph = &model.graph;
        let mut recorder = ShapeRecorder::default();
        let feeds = HashMap::from([(graph.inputs[0].name.clone(), TensorData::F32(images))]);
        Plan::new(graph)
            .unwrap()
            .run(feeds, Some(&mut recorder), RunOptions::default())
            .unwrap();
        let costs = layer_costs(graph, &recorder.shapes, |_| (8, 8)).unwrap();
        let compute_nodes = graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op_type.as_str(), "Conv" | "Gemm" | "MatMul"))
            .count();
        assert_eq!(costs.len(), compute_nodes);
        // The first layer: Conv(1 → 16, 3×3, pad 1) on 8×8, batch 2.
        assert_eq!(costs[0].op_type, "Conv");
        assert_eq!(costs[0].macs, 2 * 16 * 8 * 8 * 9);
        for c in &costs {
            assert!(c.macs > 0);
            assert_eq!(c.bitops * 16, c.float_bitops);
        }
        let size = graph_size(graph, |_, _| StorageScheme::Linear {
            bits: 8,
            per_channel: true,
            zero_point: false,
        });
        assert!(size.compression_ratio() > 3.0 && size.compression_ratio() < 4.0);
    }
}
