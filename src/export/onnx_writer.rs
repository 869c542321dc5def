//! The IR back into an ONNX file: nodes with their attributes, initializers in their stored
//! element type (float32/16, bfloat16, double, the integer types, bool, and packed int4/uint4
//! for QDQ models), declared inputs and outputs with shapes, and opset imports.
//!
//! The prost messages of [`crate::load::pb`] are built here and encoded once; the output is
//! deterministic (initializers in name order, nodes in graph order), so the same graph always
//! gives the same bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use bytes::Bytes;
use half::{bf16, f16};
use prost::Message;

use super::atomic::write_bytes_atomic;
use crate::error::{Error, Result};
use crate::ir::{
    Attribute, DType, Dim, Graph, Node, Subgraph, Tensor, TensorData, ValueInfo, sink_constants,
};
use crate::load::pb;
use crate::load::pb::attribute_proto::AttributeType;
use crate::load::pb::tensor_shape_proto::dimension::Value as DimValue;

/// ONNX `TensorProto.DataType` codes used by the writer.
pub mod onnx_type {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;
    pub const UINT4: i32 = 21;
    pub const INT4: i32 = 22;
}

/// The ONNX data type code of a dtype.
pub fn onnx_type_of(dtype: DType) -> i32 {
    use onnx_type::*;
    match dtype {
        DType::F32 => FLOAT,
        DType::F16 => FLOAT16,
        DType::BF16 => BFLOAT16,
        DType::F64 => DOUBLE,
        DType::I8 => INT8,
        DType::U8 => UINT8,
        DType::I16 => INT16,
        DType::U16 => UINT16,
        DType::I32 => INT32,
        DType::U32 => UINT32,
        DType::I64 => INT64,
        DType::U64 => UINT64,
        DType::Bool => BOOL,
    }
}

/// Writes `graph` as an ONNX model file at `path`, atomically.
pub fn write_onnx_model(graph: &Graph, path: &Path) -> Result<()> {
    write_model_proto(&onnx_model_proto(graph)?, path, &[])
}

/// Encodes `model` and writes it atomically to `path`, refusing to overwrite any of `sources`.
pub fn write_model_proto(model: &pb::ModelProto, path: &Path, sources: &[&Path]) -> Result<()> {
    write_bytes_atomic(path, sources, &model.encode_to_vec())
}

/// The ONNX `ModelProto` of `graph`.
pub fn onnx_model_proto(graph: &Graph) -> Result<pb::ModelProto> {
    onnx_model_proto_with_types(graph, &BTreeMap::new())
}

/// The ONNX `ModelProto` of `graph`, storing the initializers named in `stored_types` with the
/// given ONNX data type code instead of their dtype of origin (e.g. [`onnx_type::INT4`] for
/// 4-bit weights, which the IR holds as f32).
pub fn onnx_model_proto_with_types(
    graph: &Graph,
    stored_types: &BTreeMap<String, i32>,
) -> Result<pb::ModelProto> {
    // Constants read by one subgraph only are written inside it (see `sink_constants`).
    let sunk;
    let graph = if graph.has_subgraphs() {
        let mut copy = graph.clone();
        sink_constants(&mut copy);
        sunk = copy;
        &sunk
    } else {
        graph
    };
    let opset = if graph.opset > 0 { graph.opset } else { 13 };
    let mut opset_import = vec![pb::OperatorSetIdProto {
        domain: Some(String::new()),
        version: Some(opset),
    }];
    let domains: BTreeSet<&str> = graph
        .nodes_recursive()
        .into_iter()
        .map(|n| n.domain.as_str())
        .filter(|d| !matches!(*d, "" | "ai.onnx"))
        .collect();
    for domain in domains {
        opset_import.push(pb::OperatorSetIdProto {
            domain: Some(domain.to_string()),
            version: Some(1),
        });
    }
    let mut initializer = Vec::with_capacity(graph.initializers.len());
    for (name, tensor) in &graph.initializers {
        let code = stored_types
            .get(name)
            .copied()
            .unwrap_or_else(|| onnx_type_of(tensor.origin_dtype));
        initializer.push(tensor_proto(tensor, name, code)?);
    }
    let node = graph
        .nodes
        .iter()
        .map(|n| node_proto(n, stored_types))
        .collect::<Result<Vec<_>>>()?;
    let g = pb::GraphProto {
        node,
        name: Some(graph.name.clone()),
        initializer,
        input: graph.inputs.iter().map(value_info_proto).collect(),
        output: graph.outputs.iter().map(value_info_proto).collect(),
        ..Default::default()
    };
    Ok(pb::ModelProto {
        ir_version: Some(ir_version_for(opset)),
        opset_import,
        producer_name: Some("quantscope".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(g),
        ..Default::default()
    })
}

/// The lowest IR version that knows `opset` (onnx's version table: opset 21 came with IR 10).
fn ir_version_for(opset: i64) -> i64 {
    match opset {
        23.. => 11,
        21..=22 => 10,
        19..=20 => 9,
        _ => 8,
    }
}

fn node_err(node: &Node, what: impl std::fmt::Display) -> Error {
    Error::Op {
        node: node.name.clone(),
        op: node.op_type.clone(),
        msg: format!("cannot be written to ONNX: {what}"),
    }
}

fn node_proto(node: &Node, stored_types: &BTreeMap<String, i32>) -> Result<pb::NodeProto> {
    let mut attribute = Vec::with_capacity(node.attributes.len());
    for (name, value) in &node.attributes {
        attribute.push(attribute_proto(node, name, value, stored_types)?);
    }
    // The inputs binding subgraph captures are not ONNX inputs: the subgraphs read those
    // values by name (see `subgraph_proto`).
    let formal = node.formal_input_count();
    Ok(pb::NodeProto {
        input: node.inputs[..formal].to_vec(),
        output: node.outputs.clone(),
        name: Some(node.name.clone()),
        op_type: Some(node.op_type.clone()),
        domain: Some(node.domain.clone()),
        attribute,
        ..Default::default()
    })
}

fn attribute_proto(
    node: &Node,
    name: &str,
    value: &Attribute,
    stored_types: &BTreeMap<String, i32>,
) -> Result<pb::AttributeProto> {
    let mut a = pb::AttributeProto {
        name: Some(name.to_string()),
        ..Default::default()
    };
    let kind = match value {
        Attribute::Float(v) => {
            a.f = Some(*v);
            AttributeType::Float
        }
        Attribute::Int(v) => {
            a.i = Some(*v);
            AttributeType::Int
        }
        Attribute::String(v) => {
            a.s = Some(Bytes::from(v.clone().into_bytes()));
            AttributeType::String
        }
        Attribute::Tensor(t) => {
            a.t = Some(tensor_proto(t, &t.name, onnx_type_of(t.origin_dtype))?);
            AttributeType::Tensor
        }
        Attribute::Floats(v) => {
            a.floats = v.clone();
            AttributeType::Floats
        }
        Attribute::Ints(v) => {
            a.ints = v.clone();
            AttributeType::Ints
        }
        Attribute::Strings(v) => {
            a.strings = v
                .iter()
                .map(|s| Bytes::from(s.clone().into_bytes()))
                .collect();
            AttributeType::Strings
        }
        Attribute::Graph(sub) => {
            a.g = Some(subgraph_proto(node, name, sub, stored_types)?);
            AttributeType::Graph
        }
        Attribute::Graphs(subs) => {
            a.graphs = subs
                .iter()
                .map(|sub| subgraph_proto(node, name, sub, stored_types))
                .collect::<Result<Vec<_>>>()?;
            AttributeType::Graphs
        }
        Attribute::Unsupported(kind) => {
            return Err(node_err(
                node,
                format!("attribute '{name}' is of a kind Quantscope does not keep ({kind})"),
            ));
        }
    };
    a.r#type = Some(kind as i32);
    Ok(a)
}

/// A subgraph of `node` as a `GraphProto`: its captures read under the names `node` binds to
/// them, its formal inputs only, and an Identity for each output that is an outer value
/// returned as it is (so every output is produced inside the subgraph).
fn subgraph_proto(
    node: &Node,
    attr: &str,
    sub: &Subgraph,
    stored_types: &BTreeMap<String, i32>,
) -> Result<pb::GraphProto> {
    let formal = node.formal_input_count();
    let bound: HashMap<&str, &str> = node
        .captured_names()
        .into_iter()
        .zip(node.inputs[formal..].iter().map(String::as_str))
        .collect();
    let outer = |name: &str| -> String {
        bound
            .get(name)
            .map_or_else(|| name.to_string(), |s| (*s).to_string())
    };
    let graph = &sub.graph;
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    for inner in &graph.nodes {
        let mut renamed = inner.clone();
        for input in &mut renamed.inputs {
            *input = outer(input);
        }
        nodes.push(node_proto(&renamed, stored_types)?);
    }
    let captured: HashSet<&str> = sub.captured().iter().map(|v| v.name.as_str()).collect();
    let graph_name = if graph.name.is_empty() {
        format!("{}_{attr}", node.name)
    } else {
        graph.name.clone()
    };
    let mut output = Vec::with_capacity(graph.outputs.len());
    for (i, out) in graph.outputs.iter().enumerate() {
        let mut info = out.clone();
        if captured.contains(out.name.as_str()) {
            let returned = format!("{graph_name}_output_{i}");
            nodes.push(pb::NodeProto {
                input: vec![outer(&out.name)],
                output: vec![returned.clone()],
                name: Some(format!("{graph_name}_Identity_{i}")),
                op_type: Some("Identity".into()),
                domain: Some(String::new()),
                ..Default::default()
            });
            info.name = returned;
        }
        output.push(inner_value_info_proto(&info));
    }
    let mut initializer = Vec::with_capacity(graph.initializers.len());
    for (name, tensor) in &graph.initializers {
        let code = stored_types
            .get(name)
            .copied()
            .unwrap_or_else(|| onnx_type_of(tensor.origin_dtype));
        initializer.push(tensor_proto(tensor, name, code)?);
    }
    Ok(pb::GraphProto {
        node: nodes,
        name: Some(graph_name),
        initializer,
        input: sub.formal().iter().map(inner_value_info_proto).collect(),
        output,
        ..Default::default()
    })
}

/// A subgraph's input or output: typed where the IR knows the type (subgraphs may leave it to
/// the operator).
fn inner_value_info_proto(v: &ValueInfo) -> pb::ValueInfoProto {
    if v.dtype.is_some() {
        value_info_proto(v)
    } else {
        pb::ValueInfoProto {
            name: Some(v.name.clone()),
            ..Default::default()
        }
    }
}

fn value_info_proto(v: &ValueInfo) -> pb::ValueInfoProto {
    let shape = v.shape.as_ref().map(|dims| pb::TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| pb::tensor_shape_proto::Dimension {
                value: match d {
                    Dim::Fixed(n) => Some(DimValue::DimValue(*n as i64)),
                    Dim::Symbolic(s) => Some(DimValue::DimParam(s.clone())),
                    Dim::Unknown => None,
                },
                ..Default::default()
            })
            .collect(),
    });
    // The checker requires a type on graph inputs and outputs; float when the file gave none.
    let elem_type = v.dtype.map_or(onnx_type::FLOAT, onnx_type_of);
    pb::ValueInfoProto {
        name: Some(v.name.clone()),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: Some(elem_type),
                shape,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One tensor as a `TensorProto` of ONNX type `code`, data little-endian in `raw_data`.
fn tensor_proto(tensor: &Tensor, name: &str, code: i32) -> Result<pb::TensorProto> {
    let raw = encode(&tensor.data, code).map_err(|what| {
        Error::Graph(format!("tensor '{name}' cannot be written to ONNX: {what}"))
    })?;
    Ok(pb::TensorProto {
        dims: tensor.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(code),
        name: Some(name.to_string()),
        raw_data: Some(Bytes::from(raw)),
        ..Default::default()
    })
}

/// The elements of `data` as little-endian bytes of ONNX type `code`; integer types must hold
/// whole numbers within their range.
fn encode(data: &TensorData, code: i32) -> Result<Vec<u8>, String> {
    use onnx_type::*;
    match (data, code) {
        (TensorData::F32(a), FLOAT) => Ok(a.iter().flat_map(|v| v.to_le_bytes()).collect()),
        (TensorData::F32(a), FLOAT16) => Ok(a
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect()),
        (TensorData::F32(a), BFLOAT16) => Ok(a
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect()),
        (TensorData::F32(a), DOUBLE) => {
            Ok(a.iter().flat_map(|&v| f64::from(v).to_le_bytes()).collect())
        }
        (TensorData::I64(a), FLOAT | FLOAT16 | BFLOAT16 | DOUBLE) => {
            encode(&TensorData::F32(a.mapv(|v| v as f32)), code)
        }
        (TensorData::F32(a), _) => {
            let mut ints = Vec::with_capacity(a.len());
            for &v in a {
                if v.fract() != 0.0 || !v.is_finite() {
                    return Err(format!(
                        "value {v} is not an integer, but the tensor is stored as {}",
                        type_name(code)
                    ));
                }
                ints.push(v as i64);
            }
            encode_ints(&ints, code)
        }
        (TensorData::I64(a), _) => encode_ints(&a.iter().copied().collect::<Vec<_>>(), code),
    }
}

fn encode_ints(values: &[i64], code: i32) -> Result<Vec<u8>, String> {
    use onnx_type::*;
    let (lo, hi): (i64, i64) = match code {
        UINT8 => (0, 255),
        INT8 => (-128, 127),
        UINT16 => (0, 65535),
        INT16 => (-32768, 32767),
        INT32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        UINT32 => (0, i64::from(u32::MAX)),
        INT64 | UINT64 => (i64::MIN, i64::MAX),
        BOOL => (0, 1),
        UINT4 => (0, 15),
        INT4 => (-8, 7),
        other => return Err(format!("ONNX data type {other} is not written")),
    };
    if let Some(v) = values.iter().find(|&&v| v < lo || v > hi) {
        return Err(format!(
            "value {v} is outside the range of {} [{lo}, {hi}]",
            type_name(code)
        ));
    }
    let width = match code {
        UINT8 | INT8 | BOOL => 1,
        UINT16 | INT16 => 2,
        INT32 | UINT32 => 4,
        INT64 | UINT64 => 8,
        // 4-bit types: two per byte, the first element in the low nibble.
        _ => {
            return Ok(values
                .chunks(2)
                .map(|pair| {
                    let low = (pair[0] & 0xF) as u8;
                    let high = pair.get(1).map_or(0, |&v| (v & 0xF) as u8);
                    low | (high << 4)
                })
                .collect());
        }
    };
    Ok(values
        .iter()
        .flat_map(|v| v.to_le_bytes().into_iter().take(width))
        .collect())
}

fn type_name(code: i32) -> String {
    pb::tensor_proto::DataType::try_from(code).map_or_else(
        |_| format!("code {code}"),
        |t| t.as_str_name().to_lowercase(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_little_endian_and_range_checked() {
        assert_eq!(
            encode_ints(&[1, -2], onnx_type::INT32).unwrap(),
            vec![1, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(
            encode_ints(&[-1, 255], onnx_type::UINT8).unwrap_err(),
            "value -1 is outside the range of uint8 [0, 255]"
        );
        assert!(encode_ints(&[128], onnx_type::INT8).is_err());
    }

    #[test]
    fn four_bit_values_pack_low_nibble_first() {
        // [1, -1, 7] as int4: 0x1 | 0xF << 4, then 0x7 with a zero high nibble.
        assert_eq!(
            encode_ints(&[1, -1, 7], onnx_type::INT4).unwrap(),
            vec![0xF1, 0x07]
        );
        assert_eq!(encode_ints(&[15, 0], onnx_type::UINT4).unwrap(), vec![0x0F]);
        assert!(encode_ints(&[8], onnx_type::INT4).is_err());
    }

    #[test]
    fn fractional_values_are_not_stored_as_integers() {
        let data = TensorData::F32(ndarray::arr1(&[1.0f32, 2.5]).into_dyn());
        assert!(encode(&data, onnx_type::INT8).unwrap_err().contains("2.5"));
    }
}
