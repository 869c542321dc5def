//! ONNX models (`.onnx`): protobuf → [`Graph`].
//!
//! The file is memory-mapped and decoded with prost straight from a [`Bytes`] view of the
//! mapping, so `raw_data` fields are slices of the file rather than copies. Tensors are then
//! converted one at a time; on Unix the mapped pages behind each converted `raw_data` are
//! handed back to the kernel right away, so peak memory stays near the size of the converted
//! tensors instead of file + tensors. Every converted tensor is reserved in the load's memory
//! [`Ledger`] first, and external data is read only from regular files whose real path (links
//! resolved) lies inside the model's directory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

mod tensors;
mod weight_layouts;

use self::tensors::convert_tensor;
use super::convert::to_array;
use super::mapped;
use super::pb;
use super::pb::attribute_proto::AttributeType;
use super::pb::tensor_shape_proto::dimension::Value as DimValue;
use super::pb::type_proto::Value as TypeValue;
use crate::budget::{Ledger, MemoryBudget};
use crate::error::{Error, Result, shown_path};
use crate::ir::{
    self, Attribute, DType, Dim, Finding, Graph, Model, ModelFormat, Node, Subgraph, Tensor,
    TensorData, ValueInfo,
};

/// Loads an ONNX model file within the process-wide memory budget. External tensor data is
/// read relative to the file's directory.
pub fn load_onnx(path: &Path) -> Result<Model> {
    load_onnx_counted(path, &mut MemoryBudget::current().ledger(), &mut Vec::new())
}

pub(crate) fn load_onnx_counted(
    path: &Path,
    ledger: &mut Ledger,
    findings: &mut Vec<Finding>,
) -> Result<Model> {
    let map = Arc::new(mapped::map_file(path, "an ONNX model")?);
    let bytes = Bytes::from_owner(mapped::SharedMap(Arc::clone(&map)));
    let base_dir = model_dir(path);
    let release = |slice: &[u8]| mapped::release_pages(&map, slice);
    let graph = decode_graph(bytes, path, &base_dir, Some(&release), ledger, findings)?;
    Ok(Model {
        path: path.to_path_buf(),
        format: ModelFormat::Onnx,
        graph,
    })
}

/// The directory external data is read from: the model's own.
fn model_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Decodes an ONNX model held in memory within the process-wide memory budget.
/// `path_for_messages` is used in error messages only; external tensor data is read relative
/// to `base_dir`.
pub fn load_onnx_bytes(bytes: Bytes, path_for_messages: &Path, base_dir: &Path) -> Result<Graph> {
    load_onnx_bytes_within(bytes, path_for_messages, base_dir, MemoryBudget::current())
        .map(|(graph, _)| graph)
}

/// [`load_onnx_bytes`] within `budget`, also returning what only the file shows (an unusual
/// IR version) as findings.
pub fn load_onnx_bytes_within(
    bytes: Bytes,
    path_for_messages: &Path,
    base_dir: &Path,
    budget: MemoryBudget,
) -> Result<(Graph, Vec<Finding>)> {
    let mut findings = Vec::new();
    let graph = decode_graph(
        bytes,
        path_for_messages,
        base_dir,
        None,
        &mut budget.ledger(),
        &mut findings,
    )?;
    Ok((graph, findings))
}

/// Called with each converted `raw_data` slice, so its memory can be given back.
type Release<'a> = &'a dyn Fn(&[u8]);

/// Conversion state shared by all tensors of one file.
struct Ctx<'a> {
    path: &'a Path,
    base_dir: &'a Path,
    release: Option<Release<'a>>,
    ledger: &'a mut Ledger,
    /// The model directory's real path, resolved on first use of external data.
    real_base: Option<PathBuf>,
    /// Open external-data files by their relative location.
    external: HashMap<String, (PathBuf, File, u64)>,
}

impl Ctx<'_> {
    fn err(&self, what: impl Into<String>) -> Error {
        Error::format(self.path, what)
    }
}

fn decode_graph(
    bytes: Bytes,
    path: &Path,
    base_dir: &Path,
    release: Option<Release<'_>>,
    ledger: &mut Ledger,
    findings: &mut Vec<Finding>,
) -> Result<Graph> {
    if bytes.is_empty() {
        return Err(Error::format(path, "the file is empty, not an ONNX model"));
    }
    let model = pb::ModelProto::decode(bytes).map_err(|e| {
        Error::format(
            path,
            format!("not a valid ONNX model (protobuf decoding failed: {e}); the file may be truncated or not ONNX"),
        )
    })?;
    findings.extend(check_versions(&model, path)?);
    let mut ctx = Ctx {
        path,
        base_dir,
        release,
        ledger,
        real_base: None,
        external: HashMap::new(),
    };
    convert_model(model, &mut ctx)
}

/// Refuses IR and opset versions onnxruntime refuses too (an IR version newer than ONNX
/// defines, no opset for the default domain while nodes use it, an opset below 1 or newer
/// than any ONNX release); returns a warning for a missing or non-positive IR version, which
/// onnxruntime accepts. Opsets it accepts but Quantscope is not tested with are
/// [`ir::validate`]'s warnings.
fn check_versions(model: &pb::ModelProto, path: &Path) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    match model.ir_version {
        Some(v) if v > ir::NEWEST_IR_VERSION => {
            return Err(Error::format(
                path,
                format!(
                    "IR version {v} is newer than any ONNX defines (the newest is {}); onnxruntime refuses it too",
                    ir::NEWEST_IR_VERSION
                ),
            ));
        }
        Some(v) if v >= 1 => {}
        other => findings.push(Finding::warning(format!(
            "{}: the model states {} (ONNX defines 1 to {}); it is read as a current model",
            shown_path(path),
            match other {
                Some(v) => format!("IR version {v}"),
                None => "no IR version".to_string(),
            },
            ir::NEWEST_IR_VERSION
        ))),
    }
    let uses_default_domain = model
        .graph
        .as_ref()
        .is_some_and(|g| g.node.iter().any(|n| matches!(n.domain(), "" | "ai.onnx")));
    let default_opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain(), "" | "ai.onnx"))
        .map(|o| o.version());
    match default_opset {
        None if uses_default_domain => Err(Error::format(
            path,
            "the model imports no opset for the default ONNX domain, but its nodes use that domain (opset_import is missing or incomplete)",
        )),
        Some(v) if v < 1 => Err(Error::format(
            path,
            format!("opset {v} is not an ONNX opset version (they start at 1)"),
        )),
        Some(v) if v > ir::NEWEST_ONNX_OPSET => Err(Error::format(
            path,
            format!(
                "opset {v} is newer than any ONNX release (the newest is {}); onnxruntime refuses it too",
                ir::NEWEST_ONNX_OPSET
            ),
        )),
        _ => Ok(findings),
    }
}

fn convert_model(model: pb::ModelProto, ctx: &mut Ctx<'_>) -> Result<Graph> {
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain(), "" | "ai.onnx"))
        .map_or(0, |o| o.version());
    let Some(g) = model.graph else {
        return Err(ctx.err("the ONNX model has no graph (empty or not an ONNX model file)"));
    };
    let mut names = NodeNamer::new(&g);
    let mut graph = convert_graph(g, opset, &mut names, ctx)?;
    weight_layouts::fold_weight_layouts(&mut graph);
    ir::close_subgraphs(&mut graph);
    ir::assign_roles(&mut graph);
    Ok(graph)
}

/// Converts one graph: the model's, or a subgraph held by a node attribute (whose own
/// subgraphs are converted on the way).
fn convert_graph(
    g: pb::GraphProto,
    opset: i64,
    names: &mut NodeNamer,
    ctx: &mut Ctx<'_>,
) -> Result<Graph> {
    let pb::GraphProto {
        node: pb_nodes,
        name,
        initializer,
        input,
        output,
        ..
    } = g;

    let mut initializers: BTreeMap<String, Tensor> = BTreeMap::new();
    for (i, t) in initializer.into_iter().enumerate() {
        let name = match t.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => return Err(ctx.err(format!("initializer #{i} has no name"))),
        };
        let what = format!("initializer '{name}'");
        let tensor = convert_tensor(t, name.clone(), &what, ctx)?;
        if initializers.insert(name, tensor).is_some() {
            return Err(ctx.err(format!("{what} is defined twice")));
        }
    }

    let mut nodes = Vec::with_capacity(pb_nodes.len());
    for (index, mut n) in pb_nodes.into_iter().enumerate() {
        let op_type = match n.op_type.as_deref() {
            Some(op) if !op.is_empty() => op.to_string(),
            _ => {
                return Err(ctx.err(format!("node #{index} ('{}') has no op_type", n.name())));
            }
        };
        let node_name = names.name(index, n.name(), &op_type);
        let domain = n.domain().to_string();
        if op_type == "Constant"
            && matches!(domain.as_str(), "" | "ai.onnx")
            && let Some((out, tensor)) = fold_constant(&mut n, &node_name, ctx)?
        {
            if initializers.insert(out.clone(), tensor).is_some() {
                return Err(ctx.err(format!(
                    "Constant node '{node_name}' defines '{out}', which is already an initializer"
                )));
            }
            continue;
        }
        let mut attributes = BTreeMap::new();
        for (k, a) in n.attribute.into_iter().enumerate() {
            let (key, value) = convert_attribute(a, k, &node_name, opset, names, ctx)?;
            attributes.insert(key, value);
        }
        nodes.push(Node {
            name: node_name,
            op_type,
            domain,
            inputs: n.input,
            outputs: n.output,
            attributes,
        });
    }

    let mut inputs = Vec::with_capacity(input.len());
    for (i, v) in input.into_iter().enumerate() {
        let info = convert_value_info(v, "input", i, ctx)?;
        // Old exporters (IR < 4) list every initializer as a graph input too; those are
        // constants, not something the caller feeds.
        if !initializers.contains_key(&info.name) {
            inputs.push(info);
        }
    }
    let outputs = output
        .into_iter()
        .enumerate()
        .map(|(i, v)| convert_value_info(v, "output", i, ctx))
        .collect::<Result<Vec<_>>>()?;

    Ok(Graph {
        name: name.unwrap_or_default(),
        nodes,
        inputs,
        outputs,
        initializers,
        opset,
    })
}

/// Gives every node, subgraphs' nodes included, a unique, stable name: the file's name, or
/// `<op_type>_<index>` when it has none; a repeated name gets `_<index>` appended.
struct NodeNamer {
    explicit: HashSet<String>,
    used: HashSet<String>,
}

impl NodeNamer {
    fn new(graph: &pb::GraphProto) -> Self {
        let mut explicit = HashSet::new();
        collect_node_names(graph, &mut explicit);
        NodeNamer {
            explicit,
            used: HashSet::new(),
        }
    }

    fn name(&mut self, index: usize, given: &str, op_type: &str) -> String {
        let mut candidate = if given.is_empty() {
            let generated = format!("{op_type}_{index}");
            if self.explicit.contains(&generated) {
                format!("{generated}_{index}")
            } else {
                generated
            }
        } else if self.used.contains(given) {
            format!("{given}_{index}")
        } else {
            given.to_string()
        };
        let stem = candidate.clone();
        let mut k = 1usize;
        while self.used.contains(&candidate) {
            candidate = format!("{stem}_{k}");
            k += 1;
        }
        self.used.insert(candidate.clone());
        candidate
    }
}

/// The names the file gives the nodes of `graph` and of its subgraphs.
fn collect_node_names(graph: &pb::GraphProto, names: &mut HashSet<String>) {
    for n in &graph.node {
        if !n.name().is_empty() {
            names.insert(n.name().to_string());
        }
        for a in &n.attribute {
            for g in a.g.iter().chain(&a.graphs) {
                collect_node_names(g, names);
            }
        }
    }
}

/// A `Constant` node's output as an initializer, or None when its value is of a kind that is
/// not folded (strings, sparse tensors), in which case it stays a node.
fn fold_constant(
    n: &mut pb::NodeProto,
    node_name: &str,
    ctx: &mut Ctx<'_>,
) -> Result<Option<(String, Tensor)>> {
    let Some(out) = n.output.first().filter(|o| !o.is_empty()) else {
        return Err(ctx.err(format!("Constant node '{node_name}' has no output")));
    };
    let out = out.clone();
    let Some(a) = n.attribute.first_mut() else {
        return Err(ctx.err(format!(
            "Constant node '{node_name}' has no value attribute"
        )));
    };
    let what = format!("Constant node '{node_name}'");
    let data = match a.name() {
        "value" => match a.t.take() {
            Some(t) => {
                let tensor = convert_tensor(t, out.clone(), &what, ctx)?;
                return Ok(Some((out, tensor)));
            }
            None => return Err(ctx.err(format!("{what}: attribute 'value' holds no tensor"))),
        },
        "value_float" => (
            TensorData::F32(
                to_array(&[], vec![a.f()]).map_err(|e| ctx.err(format!("{what}: {e}")))?,
            ),
            DType::F32,
        ),
        "value_floats" => (
            TensorData::F32(
                to_array(&[a.floats.len()], a.floats.clone())
                    .map_err(|e| ctx.err(format!("{what}: {e}")))?,
            ),
            DType::F32,
        ),
        "value_int" => (
            TensorData::I64(
                to_array(&[], vec![a.i()]).map_err(|e| ctx.err(format!("{what}: {e}")))?,
            ),
            DType::I64,
        ),
        "value_ints" => (
            TensorData::I64(
                to_array(&[a.ints.len()], a.ints.clone())
                    .map_err(|e| ctx.err(format!("{what}: {e}")))?,
            ),
            DType::I64,
        ),
        _ => return Ok(None),
    };
    let (data, dtype) = data;
    Ok(Some((out.clone(), Tensor::new(out, data, dtype))))
}

fn convert_attribute(
    a: pb::AttributeProto,
    index: usize,
    node_name: &str,
    opset: i64,
    names: &mut NodeNamer,
    ctx: &mut Ctx<'_>,
) -> Result<(String, Attribute)> {
    let name = match a.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            return Err(ctx.err(format!(
                "node '{node_name}': attribute #{index} has no name"
            )));
        }
    };
    let declared = a
        .r#type
        .and_then(|t| AttributeType::try_from(t).ok())
        .filter(|t| *t != AttributeType::Undefined);
    let kind = match declared {
        Some(kind) => kind,
        None => infer_attribute_type(&a),
    };
    let value = match kind {
        AttributeType::Float => Attribute::Float(a.f()),
        AttributeType::Int => Attribute::Int(a.i()),
        AttributeType::String => Attribute::String(
            String::from_utf8_lossy(a.s.as_deref().unwrap_or_default()).into_owned(),
        ),
        AttributeType::Tensor => match a.t {
            Some(t) => {
                let tname = match t.name.as_deref() {
                    Some(n) if !n.is_empty() => n.to_string(),
                    _ => format!("{node_name}.{name}"),
                };
                let what = format!("attribute '{name}' of node '{node_name}'");
                Attribute::Tensor(convert_tensor(t, tname, &what, ctx)?)
            }
            None => {
                return Err(ctx.err(format!(
                    "attribute '{name}' of node '{node_name}' is a tensor attribute without a tensor"
                )));
            }
        },
        AttributeType::Floats => Attribute::Floats(a.floats),
        AttributeType::Ints => Attribute::Ints(a.ints),
        AttributeType::Strings => Attribute::Strings(
            a.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        ),
        AttributeType::Graph => match a.g {
            Some(g) => Attribute::Graph(Box::new(Subgraph::new(convert_graph(
                g, opset, names, ctx,
            )?))),
            None => {
                return Err(ctx.err(format!(
                    "attribute '{name}' of node '{node_name}' is a graph attribute without a graph"
                )));
            }
        },
        AttributeType::Graphs => Attribute::Graphs(
            a.graphs
                .into_iter()
                .map(|g| convert_graph(g, opset, names, ctx).map(Subgraph::new))
                .collect::<Result<Vec<_>>>()?,
        ),
        other => Attribute::Unsupported(other.as_str_name().to_string()),
    };
    Ok((name, value))
}

/// For old files that leave `type` unset: the kind is whichever value field is filled.
fn infer_attribute_type(a: &pb::AttributeProto) -> AttributeType {
    if a.t.is_some() {
        AttributeType::Tensor
    } else if a.g.is_some() {
        AttributeType::Graph
    } else if a.sparse_tensor.is_some() {
        AttributeType::SparseTensor
    } else if a.tp.is_some() {
        AttributeType::TypeProto
    } else if a.s.is_some() {
        AttributeType::String
    } else if a.i.is_some() {
        AttributeType::Int
    } else if a.f.is_some() {
        AttributeType::Float
    } else if !a.floats.is_empty() {
        AttributeType::Floats
    } else if !a.ints.is_empty() {
        AttributeType::Ints
    } else if !a.strings.is_empty() {
        AttributeType::Strings
    } else if !a.tensors.is_empty() {
        AttributeType::Tensors
    } else if !a.graphs.is_empty() {
        AttributeType::Graphs
    } else if !a.sparse_tensors.is_empty() {
        AttributeType::SparseTensors
    } else if !a.type_protos.is_empty() {
        AttributeType::TypeProtos
    } else {
        AttributeType::Undefined
    }
}

fn convert_value_info(
    v: pb::ValueInfoProto,
    side: &str,
    index: usize,
    ctx: &Ctx<'_>,
) -> Result<ValueInfo> {
    let name = match v.name {
        Some(n) if !n.is_empty() => n,
        _ => return Err(ctx.err(format!("graph {side} #{index} has no name"))),
    };
    let (dtype, shape) = match v.r#type.and_then(|t| t.value) {
        Some(TypeValue::TensorType(t)) => {
            let dtype = t.elem_type.and_then(DType::from_onnx);
            let shape = t.shape.map(|s| {
                s.dim
                    .into_iter()
                    .map(|d| match d.value {
                        Some(DimValue::DimValue(n)) => {
                            usize::try_from(n).map_or(Dim::Unknown, Dim::Fixed)
                        }
                        Some(DimValue::DimParam(p)) if !p.is_empty() => Dim::Symbolic(p),
                        _ => Dim::Unknown,
                    })
                    .collect()
            });
            (dtype, shape)
        }
        _ => (None, None),
    };
    Ok(ValueInfo { name, dtype, shape })
}
