//! ONNX QDQ models: QuantizeLinear/DequantizeLinear pairs on the quantized activations, weights
//! stored as integers feeding a DequantizeLinear (per-axis scales for per-channel weights),
//! int32 biases at scale S_w·S_x, and everything else left in float. Names follow onnxruntime's
//! convention (`<tensor>_QuantizeLinear`, `<tensor>_quantized`, `<tensor>_scale`, ...).
//!
//! The parameters come from [`QuantizedModel::prepare`]'s reports, never recomputed, so the
//! exported model computes what Quantscope's fake quantization simulates. Opset 13 carries 8-bit
//! types; 4- and 16-bit containers need opset 21 (older graphs are lifted, see
//! [`super::opset`]). Weights of up to 4 bits are stored as int4; activations use 8-bit types
//! at least (see [`container`]). Widths without their own ONNX type are stored in the next
//! wider type, with a Clip before each activation's QuantizeLinear to keep it on the grid.
//! An activation with channels clipped by hand gets a per-axis QuantizeLinear/DequantizeLinear
//! (`axis` and 1-D scale and zero point, opset 13) on the channel axis its consumer defines;
//! a bias behind it stays float (its scale S_w·S_x would differ per input channel).
//! A quantized graph output keeps its name on the DequantizeLinear's output.

use std::collections::{BTreeMap, HashMap};

use ndarray::{ArrayD, IxDyn};

use super::onnx_writer::{onnx_model_proto_with_types, onnx_type};
use super::opset::upgrade_opset;
use crate::error::{Error, Result};
use crate::ir::{Attribute, DType, Graph, Node, Tensor, TensorData};
use crate::load::pb;
use crate::quant::bias::BiasCodes;
use crate::quant::fake::{ActivationReport, WeightReport};
use crate::quant::linear::{self, Granularity, Rounding};
use crate::quant::{IntGrid, QuantizedModel};

/// A QDQ model ready to write: the graph (integer tensors held as f32/i64 with their dtype of
/// origin), the 4-bit tensors' ONNX types, and what could not be expressed as QDQ.
pub struct QdqModel {
    pub graph: Graph,
    /// Initializers stored in a type the IR has no dtype for (int4/uint4).
    pub stored_types: BTreeMap<String, i32>,
    /// Weights kept as de-quantized float because their scheme is not linear, and similar notes.
    pub warnings: Vec<String>,
}

impl QdqModel {
    /// The ONNX `ModelProto`.
    pub fn model_proto(&self) -> Result<pb::ModelProto> {
        onnx_model_proto_with_types(&self.graph, &self.stored_types)
    }
}

/// The integer type holding values of a grid: its ONNX code, IR dtype (None for 4-bit types),
/// and bit width.
#[derive(Debug, Clone, Copy)]
struct Container {
    code: i32,
    dtype: Option<DType>,
    bits: u32,
}

/// The container of a grid. Weights of up to 4 bits use int4 (opset 21); activations use at
/// least 8 bits, because onnxruntime 1.32's graph optimizers reject 4-bit activations (QDQ
/// propagation hands a uint4 tensor to MaxPool; Clip/QuantizeLinear fusion fails on a uint4
/// zero point), so a 4-bit activation is a uint8/int8 QuantizeLinear behind a Clip to its grid.
fn container(grid: IntGrid, activation: bool) -> Container {
    use onnx_type::*;
    let (code, dtype, bits) = match (grid.bits, grid.signed) {
        (..=4, true) if !activation => (INT4, None, 4),
        (..=4, false) if !activation => (UINT4, None, 4),
        (..=8, true) => (INT8, Some(DType::I8), 8),
        (..=8, false) => (UINT8, Some(DType::U8), 8),
        (_, true) => (INT16, Some(DType::I16), 16),
        (_, false) => (UINT16, Some(DType::U16), 16),
    };
    Container { code, dtype, bits }
}

/// Builds the QDQ form of `graph` (the float model `quantized` was prepared from).
pub fn qdq_model(graph: &Graph, quantized: &QuantizedModel) -> Result<QdqModel> {
    let mut builder = Builder {
        graph: graph.clone(),
        stored_types: BTreeMap::new(),
        warnings: Vec::new(),
        weight_nodes: Vec::new(),
        activation_scales: HashMap::new(),
        weight_scales: HashMap::new(),
    };
    let mut needs_opset_21 = false;
    for w in &quantized.weights {
        needs_opset_21 |= builder.weight(w, quantized)?;
    }
    for a in &quantized.activations {
        needs_opset_21 |= builder.activation(a)?;
    }
    builder.biases()?;
    let Builder {
        mut graph,
        stored_types,
        warnings,
        weight_nodes,
        ..
    } = builder;
    // Weight DequantizeLinear nodes read constants only: put them first.
    let rest = std::mem::take(&mut graph.nodes);
    graph.nodes = weight_nodes.into_iter().chain(rest).collect();
    let target = if needs_opset_21 { 21 } else { 13 };
    if graph.opset < target {
        upgrade_opset(&mut graph, target)?;
    }
    Ok(QdqModel {
        graph,
        stored_types,
        warnings,
    })
}

struct Builder {
    graph: Graph,
    stored_types: BTreeMap<String, i32>,
    warnings: Vec<String>,
    weight_nodes: Vec<Node>,
    /// Scale of each quantized activation, by the name its readers see (its
    /// DequantizeLinear's output).
    activation_scales: HashMap<String, f32>,
    /// Scales (one per channel, or one) and channel axis of each QDQ weight, by tensor name.
    weight_scales: HashMap<String, (Vec<f32>, Option<usize>)>,
}

fn node(op: &str, name: String, inputs: Vec<String>, output: String) -> Node {
    Node {
        name,
        op_type: op.to_string(),
        domain: String::new(),
        inputs,
        outputs: vec![output],
        attributes: BTreeMap::new(),
    }
}

/// The DequantizeLinear of the initializers `{stem}_quantized`, `{stem}_scale` and
/// `{stem}_zero_point` (per channel along `axis`), and the name of its output.
fn dequantize_node(stem: &str, axis: Option<usize>) -> (Node, String) {
    let output = format!("{stem}_DequantizeLinear_Output");
    let mut dq = node(
        "DequantizeLinear",
        format!("{stem}_DequantizeLinear"),
        vec![
            format!("{stem}_quantized"),
            format!("{stem}_scale"),
            format!("{stem}_zero_point"),
        ],
        output.clone(),
    );
    if let Some(axis) = axis {
        dq.attributes
            .insert("axis".into(), Attribute::Int(axis as i64));
    }
    (dq, output)
}

impl Builder {
    fn add_initializer(&mut self, name: String, data: TensorData, container: Container) {
        let dtype = container.dtype.unwrap_or(DType::I8);
        if container.dtype.is_none() {
            self.stored_types.insert(name.clone(), container.code);
        }
        self.graph
            .initializers
            .insert(name.clone(), Tensor::new(name, data, dtype));
    }

    fn add_float(&mut self, name: String, values: Vec<f32>, shape: &[usize]) -> Result<()> {
        let data = array(shape, values, &name)?;
        self.graph.initializers.insert(
            name.clone(),
            Tensor::new(name, TensorData::F32(data), DType::F32),
        );
        Ok(())
    }

    /// Renames every read of `from` to `to`, except by the nodes named in `skip`.
    fn rewire(&mut self, from: &str, to: &str, skip: &[&str]) {
        for n in &mut self.graph.nodes {
            if skip.contains(&n.name.as_str()) {
                continue;
            }
            for input in &mut n.inputs {
                if input == from {
                    *input = to.to_string();
                }
            }
        }
    }

    /// A weight stored as integers behind a DequantizeLinear; returns whether it needs
    /// opset 21. Non-linear schemes keep their de-quantized float values (with a warning).
    fn weight(&mut self, w: &WeightReport, quantized: &QuantizedModel) -> Result<bool> {
        let name = w.tensor.as_str();
        let Some(original) = self.graph.initializers.get(name).cloned() else {
            return Err(Error::Graph(format!(
                "quantized weight '{name}' is not an initializer of the model"
            )));
        };
        let Some(first) = w.params.first().copied() else {
            let baked = quantized
                .graph
                .initializers
                .get(name)
                .ok_or_else(|| Error::Graph(format!("quantized weight '{name}' is missing")))?;
            self.graph
                .initializers
                .insert(name.to_string(), baked.clone());
            self.warnings.push(format!(
                "weight '{name}' uses {}, which has no QDQ form; stored as its de-quantized float values",
                w.scheme
            ));
            return Ok(false);
        };
        // Learned (AdaRound) rounding: the codes are those of the de-quantized grid values.
        let learned = quantized
            .graph
            .initializers
            .get(name)
            .filter(|_| w.adaround);
        let values = learned
            .unwrap_or(&original)
            .data
            .as_f32()
            .ok_or_else(|| Error::Quant {
                tensor: name.to_string(),
                msg: "integer tensors are not quantized".into(),
            })?;
        let axis = match (w.per_channel, original.channel_axis) {
            (true, Some(axis)) => Some(axis),
            (true, None) => {
                return Err(Error::Quant {
                    tensor: name.to_string(),
                    msg: "per-channel parameters without a channel axis".into(),
                });
            }
            (false, _) => None,
        };
        let granularity = axis.map_or(Granularity::PerTensor, |axis| Granularity::PerChannel {
            axis,
        });
        let codes = linear::quantize(values.view(), &w.params, granularity, Rounding::NearestEven)
            .map_err(|e| Error::Quant {
                tensor: name.to_string(),
                msg: e.to_string(),
            })?;
        let c = container(first.grid, false);
        let quantized_name = format!("{name}_quantized");
        let scale_name = format!("{name}_scale");
        let zero_name = format!("{name}_zero_point");
        let scales: Vec<f32> = w.params.iter().map(|p| p.scale).collect();
        let zeros: Vec<f32> = w.params.iter().map(|p| p.zero_point as f32).collect();
        let param_shape: Vec<usize> = if axis.is_some() {
            vec![scales.len()]
        } else {
            vec![]
        };
        self.add_initializer(
            quantized_name.clone(),
            TensorData::F32(codes.mapv(|q| q as f32)),
            c,
        );
        self.add_float(scale_name.clone(), scales.clone(), &param_shape)?;
        self.add_initializer(
            zero_name.clone(),
            TensorData::F32(array(&param_shape, zeros, &zero_name)?),
            c,
        );
        self.graph.initializers.remove(name);
        let (dq, output) = dequantize_node(name, axis);
        self.rewire(name, &output, &[]);
        self.weight_nodes.push(dq);
        self.weight_scales.insert(name.to_string(), (scales, axis));
        Ok(c.bits != 8)
    }

    /// A QuantizeLinear/DequantizeLinear pair after activation `a`, read by all its consumers
    /// (per axis when channels of it are clipped by hand).
    fn activation(&mut self, a: &ActivationReport) -> Result<bool> {
        let name = a.tensor.as_str();
        let p = a.params;
        let c = container(p.grid, true);
        // A graph output keeps its name on the DequantizeLinear's output (its producer's
        // output is renamed), so the caller and every reader see the de-quantized values, as
        // in the simulation; other activations get the pair before their first reader.
        let is_output = self.graph.outputs.iter().any(|o| o.name == name);
        let position = if is_output {
            self.graph
                .nodes
                .iter()
                .position(|n| n.outputs.iter().any(|o| o == name))
                .map(|producer| producer + 1)
        } else {
            self.graph
                .nodes
                .iter()
                .position(|n| n.inputs.iter().any(|i| i == name))
        };
        let Some(position) = position else {
            return Ok(false);
        };
        let refuse = |msg: String| Error::Quant {
            tensor: name.to_string(),
            msg,
        };
        let (params, axis) = match &a.channels {
            None => (vec![p], None),
            Some(channels) => {
                let all = channels.all_params(p).ok_or_else(|| {
                    refuse(format!(
                        "channels {:?} are clipped by hand, but the number of channels along \
                         axis {} is not known from the model (no weight of the consuming layer \
                         or declared input shape tells it), so no per-axis QDQ can be written",
                        channels.channels(),
                        channels.axis
                    ))
                })?;
                if p.grid.bits != c.bits {
                    return Err(refuse(format!(
                        "channels {:?} are clipped by hand on a {}-bit grid, which QDQ stores \
                         in {} bits behind a Clip that cannot clip per channel; use 8 or 16 \
                         activation bits",
                        channels.channels(),
                        p.grid.bits,
                        c.bits
                    )));
                }
                (all, Some(channels.axis))
            }
        };
        let shape: Vec<usize> = if axis.is_some() {
            vec![params.len()]
        } else {
            vec![]
        };
        let scale_name = format!("{name}_scale");
        let zero_name = format!("{name}_zero_point");
        self.add_float(
            scale_name.clone(),
            params.iter().map(|p| p.scale).collect(),
            &shape,
        )?;
        let zeros = params.iter().map(|p| p.zero_point as f32).collect();
        self.add_initializer(
            zero_name.clone(),
            TensorData::F32(array(&shape, zeros, &zero_name)?),
            c,
        );
        let mut new_nodes = Vec::new();
        let mut q_input = name.to_string();
        if is_output {
            q_input = format!("{name}_QuantizeLinear_Input");
            let producer = &mut self.graph.nodes[position - 1];
            for output in producer.outputs.iter_mut().filter(|o| *o == name) {
                output.clone_from(&q_input);
            }
        }
        if p.grid.bits != c.bits {
            // QuantizeLinear saturates to the container; clip to the grid's real range first.
            let (lo, hi) = p.range();
            let (lo_name, hi_name) = (format!("{name}_clip_min"), format!("{name}_clip_max"));
            self.add_float(lo_name.clone(), vec![lo], &[])?;
            self.add_float(hi_name.clone(), vec![hi], &[])?;
            let clipped = format!("{name}_Clip_Output");
            new_nodes.push(node(
                "Clip",
                format!("{name}_Clip"),
                vec![q_input, lo_name, hi_name],
                clipped.clone(),
            ));
            q_input = clipped;
        }
        let quantized = format!("{name}_QuantizeLinear_Output");
        let output = if is_output {
            name.to_string()
        } else {
            format!("{name}_DequantizeLinear_Output")
        };
        let q_name = format!("{name}_QuantizeLinear");
        let mut q = node(
            "QuantizeLinear",
            q_name.clone(),
            vec![q_input, scale_name.clone(), zero_name.clone()],
            quantized.clone(),
        );
        let mut dq = node(
            "DequantizeLinear",
            format!("{name}_DequantizeLinear"),
            vec![quantized, scale_name, zero_name],
            output.clone(),
        );
        if let Some(axis) = axis {
            for n in [&mut q, &mut dq] {
                n.attributes.insert("axis".into(), Attribute::Int(axis));
            }
        }
        new_nodes.push(q);
        new_nodes.push(dq);
        let skip: Vec<String> = new_nodes.iter().map(|n| n.name.clone()).collect();
        let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
        self.graph.nodes.splice(position..position, new_nodes);
        if !is_output {
            self.rewire(name, &output, &skip);
        }
        if axis.is_none() {
            self.activation_scales.insert(output, p.scale);
        }
        Ok(c.bits != 8)
    }

    /// Conv and Gemm biases as int32 at S_w·S_x, where both the weight and the input are
    /// quantized linearly and the bias is a 1-D initializer.
    fn biases(&mut self) -> Result<()> {
        let mut plans = Vec::new();
        for (index, n) in self.graph.nodes.iter().enumerate() {
            if !matches!(n.op_type.as_str(), "Conv" | "Gemm") {
                continue;
            }
            let (Some(x), Some(w), Some(b)) = (n.input(0), n.input(1), n.input(2)) else {
                continue;
            };
            let Some(w) = w.strip_suffix("_DequantizeLinear_Output") else {
                continue;
            };
            let (Some(&sx), Some((sw, _))) =
                (self.activation_scales.get(x), self.weight_scales.get(w))
            else {
                continue;
            };
            let Some(bias) = self.graph.initializers.get(b) else {
                continue;
            };
            let Some(values) = bias.data.as_f32().filter(|v| v.ndim() == 1) else {
                continue;
            };
            if sw.len() != 1 && sw.len() != values.len() {
                continue;
            }
            plans.push((
                index,
                b.to_string(),
                values.iter().copied().collect::<Vec<f32>>(),
                sx,
                sw.clone(),
            ));
        }
        for (index, b, values, sx, sw) in plans {
            let Some(BiasCodes { codes, scales }) = BiasCodes::new(&values, sx, &sw) else {
                continue;
            };
            let per_channel = scales.len() > 1;
            let shape = if per_channel {
                vec![scales.len()]
            } else {
                vec![]
            };
            // A bias shared by several layers gets one DequantizeLinear per reader.
            let stem = format!("{b}_{}", self.graph.nodes[index].name);
            let stem = if self
                .graph
                .initializers
                .contains_key(&format!("{b}_quantized"))
            {
                stem
            } else {
                b.clone()
            };
            let (q_name, s_name, z_name) = (
                format!("{stem}_quantized"),
                format!("{stem}_scale"),
                format!("{stem}_zero_point"),
            );
            let count = codes.len();
            self.graph.initializers.insert(
                q_name.clone(),
                Tensor::new(
                    q_name.clone(),
                    TensorData::I64(array(&[count], codes, &q_name)?),
                    DType::I32,
                ),
            );
            self.add_float(s_name.clone(), scales.clone(), &shape)?;
            let zeros = vec![0i64; scales.len()];
            self.graph.initializers.insert(
                z_name.clone(),
                Tensor::new(
                    z_name.clone(),
                    TensorData::I64(array(&shape, zeros, &z_name)?),
                    DType::I32,
                ),
            );
            let (dq, output) = dequantize_node(&stem, per_channel.then_some(0));
            self.graph.nodes[index].inputs[2] = output;
            self.weight_nodes.push(dq);
            let still_read = self.graph.nodes.iter().any(|n| n.inputs.contains(&b));
            if !still_read {
                self.graph.initializers.remove(&b);
            }
        }
        Ok(())
    }
}

fn array<T>(shape: &[usize], values: Vec<T>, name: &str) -> Result<ArrayD<T>> {
    ArrayD::from_shape_vec(IxDyn(shape), values)
        .map_err(|e| Error::Graph(format!("QDQ tensor '{name}': {e}")))
}
