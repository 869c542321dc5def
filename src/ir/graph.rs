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
    /// A subgraph (If's branches, Loop's and Scan's body).
    Graph(Box<Subgraph>),
    /// A list of subgraphs.
    Graphs(Vec<Subgraph>),
    /// A kind of attribute Quantscope does not interpret (sparse tensors, type protos, ...).
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
            Attribute::Graph(_) => "graph",
            Attribute::Graphs(_) => "graphs",
            Attribute::Unsupported(_) => "unsupported",
        }
    }
}

/// A graph held by a node attribute, closed over what it reads from enclosing scopes.
///
/// `graph.inputs` are the inputs the operator binds (none for If; iteration number, condition
/// and loop-carried values for Loop; state and scan slices for Scan), `formal_inputs` of them,
/// followed by one input per outer-scope value the subgraph reads (its captures, declared
/// without type). The node holding the subgraph lists the values it binds to the captures after
/// its own inputs (see [`Node::captured_names`]), so every outer value a subgraph reads is an
/// ordinary input of the node: ordering, freeing and rewiring see it like any other input.
#[derive(Debug, Clone)]
pub struct Subgraph {
    pub graph: Graph,
    /// How many of `graph.inputs` the operator binds; the rest are captures.
    pub formal_inputs: usize,
}

impl Subgraph {
    /// A subgraph that reads nothing from enclosing scopes.
    pub fn new(graph: Graph) -> Self {
        let formal_inputs = graph.inputs.len();
        Subgraph {
            graph,
            formal_inputs,
        }
    }

    /// The inputs the operator binds.
    pub fn formal(&self) -> &[ValueInfo] {
        &self.graph.inputs[..self.formal_inputs.min(self.graph.inputs.len())]
    }

    /// The outer-scope values the subgraph reads, by the name it reads them under.
    pub fn captured(&self) -> &[ValueInfo] {
        &self.graph.inputs[self.formal_inputs.min(self.graph.inputs.len())..]
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
    /// A node of the default ONNX domain without attributes.
    pub fn new(
        name: impl Into<String>,
        op_type: impl Into<String>,
        inputs: &[&str],
        outputs: &[&str],
    ) -> Self {
        Node {
            name: name.into(),
            op_type: op_type.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attributes: BTreeMap::new(),
        }
    }

    /// The node with these attributes set.
    pub fn with_attributes<'a>(
        mut self,
        attributes: impl IntoIterator<Item = (&'a str, Attribute)>,
    ) -> Self {
        self.attributes
            .extend(attributes.into_iter().map(|(k, v)| (k.to_string(), v)));
        self
    }

    /// Whether the node belongs to the default ONNX domain (empty or "ai.onnx").
    pub fn in_default_domain(&self) -> bool {
        self.domain.is_empty() || self.domain == "ai.onnx"
    }

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

    /// Subgraph attribute, or None when absent.
    pub fn attr_graph(&self, name: &str) -> Result<Option<&Subgraph>, String> {
        match self.attributes.get(name) {
            None => Ok(None),
            Some(Attribute::Graph(g)) => Ok(Some(g)),
            Some(other) => Err(self.wrong_kind(name, "a graph", other)),
        }
    }

    /// Every subgraph of the node with the attribute holding it, in attribute-name order.
    pub fn subgraphs(&self) -> Vec<(&str, &Subgraph)> {
        let mut found = Vec::new();
        for (name, value) in &self.attributes {
            match value {
                Attribute::Graph(g) => found.push((name.as_str(), g.as_ref())),
                Attribute::Graphs(gs) => found.extend(gs.iter().map(|g| (name.as_str(), g))),
                _ => {}
            }
        }
        found
    }

    /// Mutable access to every subgraph of the node, in attribute-name order.
    pub fn subgraphs_mut(&mut self) -> Vec<(&str, &mut Subgraph)> {
        let mut found = Vec::new();
        for (name, value) in &mut self.attributes {
            match value {
                Attribute::Graph(g) => found.push((name.as_str(), g.as_mut())),
                Attribute::Graphs(gs) => found.extend(gs.iter_mut().map(|g| (name.as_str(), g))),
                _ => {}
            }
        }
        found
    }

    /// Whether any attribute holds a subgraph.
    pub fn has_subgraphs(&self) -> bool {
        self.attributes
            .values()
            .any(|a| matches!(a, Attribute::Graph(_) | Attribute::Graphs(_)))
    }

    /// The names the subgraphs capture, each once, in attribute-name order then first
    /// capture: the node binds `inputs[formal_input_count() + k]` to the k-th of them.
    pub fn captured_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for (_, sub) in self.subgraphs() {
            for c in sub.captured() {
                if !names.contains(&c.name.as_str()) {
                    names.push(&c.name);
                }
            }
        }
        names
    }

    /// How many inputs are the operator's own (the rest bind the subgraphs' captures).
    pub fn formal_input_count(&self) -> usize {
        self.inputs
            .len()
            .saturating_sub(self.captured_names().len())
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

    /// Count of nodes by op type (subgraphs' nodes included), sorted by op type.
    pub fn op_histogram(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for node in self.nodes_recursive() {
            *counts.entry(node.op_type.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Every node, each followed by the nodes of its subgraphs (depth first).
    pub fn nodes_recursive(&self) -> Vec<&Node> {
        let mut all = Vec::with_capacity(self.nodes.len());
        push_recursive(&self.nodes, &mut all);
        all
    }

    /// Whether any node holds a subgraph.
    pub fn has_subgraphs(&self) -> bool {
        self.nodes.iter().any(Node::has_subgraphs)
    }
}

fn push_recursive<'a>(nodes: &'a [Node], all: &mut Vec<&'a Node>) {
    for node in nodes {
        all.push(node);
        for (_, sub) in node.subgraphs() {
            push_recursive(&sub.graph.nodes, all);
        }
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
