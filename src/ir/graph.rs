//! Graph structure: nodes with attributes, graph inputs/outputs, initializers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::tensor::{DType, Tensor};

/// One dimension of a declared input/output shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A named symbolic size (e.g. the batch dimension `N`).
    Symbolic(String),
    /// Not given by the file.
    Unknown,
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbolic(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A declared graph input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    /// Element type, when the file declares one.
    pub dtype: Option<DType>,
    /// Declared shape, when the file declares one.
    pub shape: Option<Vec<Dim>>,
}

impl ValueInfo {
    /// The shape as text, e.g. `[N, 1, 8, 8]`.
    pub fn shape_text(&self) -> String {
        match &self.shape {
            Some(dims) => {
                let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
                format!("[{}]", parts.join(", "))
            }
            None => "[?]".to_string(),
        }
    }
}

/// A node attribute.
#[derive(Debug, Clone)]
pub enum Attribute {
    Float(f32),
    Int(i64),
    String(String),
    Tensor(Tensor),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<String>),
    /// A kind of attribute Quantscope does not interpret (subgraphs, sparse tensors, ...).
    Unsupported(String),
}

impl Attribute {
    fn kind(&self) -> &'static str {
        match self {
            Attribute::Float(_) => "float",
            Attribute::Int(_) => "int",
            Attribute::String(_) => "string",
            Attribute::Tensor(_) => "tensor",
            Attribute::Floats(_) => "floats",
            Attribute::Ints(_) => "ints",
            Attribute::Strings(_) => "strings",
            Attribute::Unsupported(_) => "unsupported",
        }
    }
}

/// One operator application.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's name; generated stably (`<op>_<index>`) where the file has none.
    pub name: String,
    pub op_type: String,
    /// Operator domain ("" for the default ONNX domain).
    pub domain: String,
    /// Input tensor names; an empty string marks an omitted optional input.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: BTreeMap<String, Attribute>,
}

impl Node {
    /// Input name `i`, or None when absent or omitted (empty name).
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn wrong_kind(&self, name: &str, expected: &str, got: &Attribute) -> String {
        format!(
            "attribute '{name}' should be {expected}, the file has {}",
            got.kind()
        )
    }

    /// Integer attribute, or `default` when absent.
    pub fn attr_int(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.attributes.get(name) {
            None => Ok(default),
            Some(Attribute::Int(v)) => Ok(*v),
            Some(other) => Err(self.wrong_kind(name, "an int", other)),
        }
    }

    /// Float attribute, or `default` when absent.
    pub fn attr_float(&self, name: &str, default: f32) -> Result<f32, String> {
        match self.attributes.get(name) {
            None => Ok(default),
            Some(Attribute::Float(v)) => Ok(*v),
            Some(Attribute::Int(v)) => Ok(*v as f32),
            Some(other) => Err(self.wrong_kind(name, "a float", other)),
        }
    }

    /// String attribute, or `default` when absent.
    pub fn attr_string(&self, name: &str, default: &str) -> Result<String, String> {
        match self.attributes.get(name) {
            None => Ok(default.to_string()),
            Some(Attribute::String(v)) => Ok(v.clone()),
            Some(other) => Err(self.wrong_kind(name, "a string", other)),
        }
    }

    /// Integer-list attribute, or None when absent.
    pub fn attr_ints(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        match self.attributes.get(name) {
            None => Ok(None),
            Some(Attribute::Ints(v)) => Ok(Some(v.clone())),
            Some(other) => Err(self.wrong_kind(name, "a list of ints", other)),
        }
    }

    /// Float-list attribute, or None when absent.
    pub fn attr_floats(&self, name: &str) -> Result<Option<Vec<f32>>, String> {
        match self.attributes.get(name) {
            None => Ok(None),
            Some(Attribute::Floats(v)) => Ok(Some(v.clone())),
            Some(other) => Err(self.wrong_kind(name, "a list of floats", other)),
        }
    }

    /// Tensor attribute, or None when absent.
    pub fn attr_tensor(&self, name: &str) -> Result<Option<&Tensor>, String> {
        match self.attributes.get(name) {
            None => Ok(None),
            Some(Attribute::Tensor(t)) => Ok(Some(t)),
            Some(other) => Err(self.wrong_kind(name, "a tensor", other)),
        }
    }
}

/// A computation graph: nodes in the file's order, declared inputs and outputs, initializers.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub name: String,
    pub nodes: Vec<Node>,
    /// Inputs the caller feeds (initializers listed as inputs are not among them).
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    /// Constant tensors by name (initializers and folded `Constant` nodes).
    pub initializers: BTreeMap<String, Tensor>,
    /// Opset version of the default ONNX domain (0 when there is none).
    pub opset: i64,
}

impl Graph {
    /// Whether there is anything to run.
    pub fn is_runnable(&self) -> bool {
        !self.nodes.is_empty()
    }

    /// Total number of elements of all learned parameters.
    pub fn parameter_count(&self) -> usize {
        self.initializers
            .values()
            .filter(|t| t.role.is_parameter())
            .map(|t| t.data.len())
            .sum()
    }

    /// Count of nodes by op type, sorted by op type.
    pub fn op_histogram(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for node in &self.nodes {
            *counts.entry(node.op_type.clone()).or_insert(0) += 1;
        }
        counts
    }
}

/// The kind of file a model was loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    Onnx,
    Safetensors,
    Npy,
    Npz,
}

impl ModelFormat {
    pub fn name(self) -> &'static str {
        match self {
            ModelFormat::Onnx => "ONNX",
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::Npy => "npy",
            ModelFormat::Npz => "npz",
        }
    }
}

/// A loaded model: its graph and where it came from.
#[derive(Debug, Clone)]
pub struct Model {
    pub path: PathBuf,
    pub format: ModelFormat,
    pub graph: Graph,
}
