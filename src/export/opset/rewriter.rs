//! The state of one lift: the source and target opsets, the names already taken, what each
//! tensor is known to be, and the nodes and constants written so far. Rewrite families take a
//! node and emit its replacement through it.

use std::collections::{BTreeMap, HashSet};

use ndarray::{ArrayD, IxDyn};

use super::facts::TensorFacts;
use crate::error::{Error, Result};
use crate::ir::{Attribute, DType, Graph, Node, Tensor, TensorData};

pub(super) struct Rewriter<'g> {
    pub from: i64,
    pub target: i64,
    pub facts: TensorFacts,
    initializers: &'g BTreeMap<String, Tensor>,
    /// Tensor names read by some node or declared as a graph output.
    consumed: HashSet<String>,
    /// Every tensor and node name in use, so new ones never collide.
    taken: HashSet<String>,
    pub nodes: Vec<Node>,
    pub constants: Vec<Tensor>,
}

impl<'g> Rewriter<'g> {
    pub fn new(graph: &'g Graph, target: i64) -> Self {
        let mut taken: HashSet<String> = graph.initializers.keys().cloned().collect();
        let mut consumed = HashSet::new();
        for v in graph.inputs.iter().chain(&graph.outputs) {
            taken.insert(v.name.clone());
        }
        for o in &graph.outputs {
            consumed.insert(o.name.clone());
        }
        for n in &graph.nodes {
            taken.insert(n.name.clone());
            taken.extend(n.outputs.iter().cloned());
            for i in &n.inputs {
                taken.insert(i.clone());
                consumed.insert(i.clone());
            }
        }
        Rewriter {
            from: graph.opset,
            target,
            facts: TensorFacts::infer(graph),
            initializers: &graph.initializers,
            consumed,
            taken,
            nodes: Vec::with_capacity(graph.nodes.len()),
            constants: Vec::new(),
        }
    }

    /// Marks `names` (those of enclosing and sibling scopes) as taken.
    pub fn also_taken(&mut self, names: &HashSet<String>) {
        self.taken.extend(names.iter().cloned());
    }

    /// Whether the lift passes the opset where an operator changed in `version`.
    pub fn crosses(&self, version: i64) -> bool {
        self.from < version && self.target >= version
    }

    /// Whether any node reads `name` or the graph returns it.
    pub fn is_consumed(&self, name: &str) -> bool {
        !name.is_empty() && self.consumed.contains(name)
    }

    /// An unused name starting with `hint`.
    pub fn fresh(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        let mut k = 1;
        while self.taken.contains(&name) {
            name = format!("{hint}_{k}");
            k += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    /// The value of a constant tensor (an initializer or a constant made by this lift).
    pub fn constant(&self, name: &str) -> Option<&Tensor> {
        self.initializers
            .get(name)
            .or_else(|| self.constants.iter().find(|t| t.name == name))
    }

    /// A new int64 constant of `shape` holding `values`; returns its name.
    pub fn const_i64(&mut self, hint: &str, shape: &[usize], values: Vec<i64>) -> Result<String> {
        let name = self.fresh(hint);
        let data = ArrayD::from_shape_vec(IxDyn(shape), values)
            .map_err(|e| Error::Graph(format!("constant '{name}': {e}")))?;
        self.constants
            .push(Tensor::new(name.clone(), TensorData::I64(data), DType::I64));
        Ok(name)
    }

    /// A new real-valued constant of `shape` stored as `dtype`; returns its name.
    pub fn const_real(
        &mut self,
        hint: &str,
        shape: &[usize],
        values: Vec<f32>,
        dtype: DType,
    ) -> Result<String> {
        let name = self.fresh(hint);
        let data = ArrayD::from_shape_vec(IxDyn(shape), values)
            .map_err(|e| Error::Graph(format!("constant '{name}': {e}")))?;
        self.constants
            .push(Tensor::new(name.clone(), TensorData::F32(data), dtype));
        Ok(name)
    }

    /// The floating-point element type of `node`'s input `i`, for constants that must match it
    /// (float32 when the graph does not tell and holds no other real-valued type).
    pub fn float_type_of_input(&self, node: &Node, i: usize) -> Result<DType> {
        let name = node.input(i).unwrap_or_default();
        match self
            .facts
            .dtype(name)
            .or_else(|| self.facts.sole_real_type())
        {
            Some(t @ (DType::F32 | DType::F16 | DType::BF16 | DType::F64)) => Ok(t),
            Some(other) => Err(self.error(
                node,
                format!("input '{name}' is {other}, where a floating-point type was expected"),
            )),
            None => Err(self.error(
                node,
                format!("the element type of input '{name}' cannot be told from the graph"),
            )),
        }
    }

    /// A new node in the default domain with a fresh name built from `hint`.
    pub fn node(
        &mut self,
        op: &str,
        hint: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attributes: Vec<(&str, Attribute)>,
    ) -> Node {
        Node {
            name: self.fresh(hint),
            op_type: op.to_string(),
            domain: String::new(),
            inputs,
            outputs,
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    /// Appends a finished node.
    pub fn emit(&mut self, node: Node) {
        self.nodes.push(node);
    }

    /// The error for a node that cannot be lifted, naming it and what is missing.
    pub fn error(&self, node: &Node, what: impl std::fmt::Display) -> Error {
        Error::Op {
            node: node.name.clone(),
            op: node.op_type.clone(),
            msg: format!(
                "cannot be lifted from opset {} to {}: {what}",
                self.from, self.target
            ),
        }
    }

    /// Removes attribute `name` as a list of ints.
    pub fn take_ints(&self, node: &mut Node, name: &str) -> Result<Option<Vec<i64>>> {
        match node.attributes.remove(name) {
            None => Ok(None),
            Some(Attribute::Ints(v)) => Ok(Some(v)),
            Some(_) => Err(self.error(node, format!("attribute '{name}' is not a list of ints"))),
        }
    }

    /// Removes attribute `name` as a list of floats.
    pub fn take_floats(&self, node: &mut Node, name: &str) -> Result<Option<Vec<f32>>> {
        match node.attributes.remove(name) {
            None => Ok(None),
            Some(Attribute::Floats(v)) => Ok(Some(v)),
            Some(_) => Err(self.error(node, format!("attribute '{name}' is not a list of floats"))),
        }
    }

    /// Removes attribute `name` as a float (ints are accepted, as the loader does).
    pub fn take_float(&self, node: &mut Node, name: &str) -> Result<Option<f32>> {
        match node.attributes.remove(name) {
            None => Ok(None),
            Some(Attribute::Float(v)) => Ok(Some(v)),
            Some(Attribute::Int(v)) => Ok(Some(v as f32)),
            Some(_) => Err(self.error(node, format!("attribute '{name}' is not a float"))),
        }
    }

    /// Removes attribute `name` as an int.
    pub fn take_int(&self, node: &mut Node, name: &str) -> Result<Option<i64>> {
        match node.attributes.remove(name) {
            None => Ok(None),
            Some(Attribute::Int(v)) => Ok(Some(v)),
            Some(_) => Err(self.error(node, format!("attribute '{name}' is not an int"))),
        }
    }

    /// Reads attribute `name` as a string, `default` when absent.
    pub fn string_attr(&self, node: &Node, name: &str, default: &str) -> Result<String> {
        node.attr_string(name, default)
            .map_err(|msg| self.error(node, msg))
    }

    /// Reads attribute `name` as an int, `default` when absent.
    pub fn int_attr(&self, node: &Node, name: &str, default: i64) -> Result<i64> {
        node.attr_int(name, default)
            .map_err(|msg| self.error(node, msg))
    }
}

/// Puts `name` at input position `i`, filling skipped optional inputs with empty names.
pub(super) fn set_input(node: &mut Node, i: usize, name: String) {
    while node.inputs.len() <= i {
        node.inputs.push(String::new());
    }
    node.inputs[i] = name;
}

/// Drops trailing omitted (empty) inputs and outputs.
pub(super) fn trim_optional(node: &mut Node) {
    while node.inputs.last().is_some_and(String::is_empty) {
        node.inputs.pop();
    }
    while node.outputs.last().is_some_and(String::is_empty) {
        node.outputs.pop();
    }
}
