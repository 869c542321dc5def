//! What the graph tells about each tensor without running it: its element type and its rank.
//! Some rewrites need them (a Clip bound must have the type of the clipped tensor; Softmax
//! needs no rewrite when its axis is the last one). Both are propagated forward through the
//! nodes, which ONNX requires to be in topological order; anything not certain is left
//! unknown, and the rewrites fall back to forms that do not need it.

use std::collections::HashMap;

use crate::ir::{Attribute, DType, Graph, Node};

#[derive(Debug, Default)]
pub(super) struct TensorFacts {
    dtypes: HashMap<String, DType>,
    ranks: HashMap<String, usize>,
    /// A real-valued type other than float32 appears somewhere (inputs, initializers, casts).
    other_real_types: bool,
}

/// Ops whose first output has the type and rank of their first input.
const SAME_AS_FIRST: [&str; 70] = [
    "Abs",
    "Acos",
    "Acosh",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "AveragePool",
    "BatchNormalization",
    "Ceil",
    "Celu",
    "Clip",
    "Conv",
    "ConvTranspose",
    "Cos",
    "Cosh",
    "CumSum",
    "DepthToSpace",
    "Dropout",
    "Elu",
    "Erf",
    "Exp",
    "Floor",
    "GatherElements",
    "Gelu",
    "GlobalAveragePool",
    "GlobalLpPool",
    "GlobalMaxPool",
    "GroupNormalization",
    "HardSigmoid",
    "HardSwish",
    "Hardmax",
    "Identity",
    "ImageScaler",
    "InstanceNormalization",
    "LRN",
    "LayerNormalization",
    "LeakyRelu",
    "Log",
    "LogSoftmax",
    "LpNormalization",
    "LpPool",
    "MaxPool",
    "MaxUnpool",
    "MeanVarianceNormalization",
    "Mish",
    "Neg",
    "Pad",
    "Reciprocal",
    "Relu",
    "Resize",
    "ReverseSequence",
    "Round",
    "Selu",
    "Shrink",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "SpaceToDepth",
    "Sqrt",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
    "Trilu",
    "Upsample",
];

/// Ops broadcasting their inputs against each other; the output type is the first input's.
const BROADCASTING: [&str; 11] = [
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "PRelu",
];

/// Comparisons and logic: broadcasting, bool results.
const BOOLEAN: [&str; 9] = [
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Not",
];

impl TensorFacts {
    pub fn infer(graph: &Graph) -> Self {
        let mut facts = TensorFacts::default();
        for v in &graph.inputs {
            if let Some(t) = v.dtype {
                facts.dtypes.insert(v.name.clone(), t);
            }
            if let Some(shape) = &v.shape {
                facts.ranks.insert(v.name.clone(), shape.len());
            }
        }
        for (name, t) in &graph.initializers {
            facts.dtypes.insert(name.clone(), t.origin_dtype);
            facts.ranks.insert(name.clone(), t.shape().len());
        }
        for node in &graph.nodes {
            if matches!(node.domain.as_str(), "" | "ai.onnx") {
                facts.learn(node, graph);
            }
        }
        facts.other_real_types = facts
            .dtypes
            .values()
            .any(|t| matches!(t, DType::F16 | DType::BF16 | DType::F64));
        facts
    }

    /// The real-valued type of a tensor whose type the graph does not tell, when there is
    /// only one: float32 in a graph with no other real-valued type anywhere.
    pub fn sole_real_type(&self) -> Option<DType> {
        (!self.other_real_types).then_some(DType::F32)
    }

    pub fn dtype(&self, name: &str) -> Option<DType> {
        self.dtypes.get(name).copied()
    }

    pub fn rank(&self, name: &str) -> Option<usize> {
        self.ranks.get(name).copied()
    }

    fn input_dtype(&self, node: &Node, i: usize) -> Option<DType> {
        node.input(i).and_then(|n| self.dtype(n))
    }

    fn input_rank(&self, node: &Node, i: usize) -> Option<usize> {
        node.input(i).and_then(|n| self.rank(n))
    }

    fn set(&mut self, node: &Node, i: usize, dtype: Option<DType>, rank: Option<usize>) {
        let Some(out) = node.outputs.get(i).filter(|o| !o.is_empty()) else {
            return;
        };
        if let Some(t) = dtype {
            self.dtypes.insert(out.clone(), t);
        }
        if let Some(r) = rank {
            self.ranks.insert(out.clone(), r);
        }
    }

    fn learn(&mut self, node: &Node, graph: &Graph) {
        let op = node.op_type.as_str();
        let first = self.input_dtype(node, 0);
        let first_rank = self.input_rank(node, 0);
        let broadcast_rank = || -> Option<usize> {
            let ranks: Option<Vec<usize>> = node
                .inputs
                .iter()
                .filter(|n| !n.is_empty())
                .map(|n| self.rank(n))
                .collect();
            ranks.and_then(|r| r.into_iter().max())
        };
        let ints_input = |i: usize| -> Option<Vec<i64>> {
            let t = graph.initializers.get(node.input(i)?)?;
            Some(t.data.as_i64()?.iter().copied().collect())
        };
        let axes_count = |since: i64| -> Option<usize> {
            if graph.opset >= since {
                ints_input(1).map(|a| a.len())
            } else {
                node.attr_ints("axes").ok().flatten().map(|a| a.len())
            }
        };
        match op {
            _ if SAME_AS_FIRST.contains(&op) => {
                self.set(node, 0, first, first_rank);
                if op == "MaxPool" {
                    self.set(node, 1, Some(DType::I64), first_rank);
                }
                if op == "Dropout" {
                    let mask = if graph.opset >= 10 {
                        Some(DType::Bool)
                    } else {
                        first
                    };
                    self.set(node, 1, mask, first_rank);
                }
            }
            _ if BROADCASTING.contains(&op) => self.set(node, 0, first, broadcast_rank()),
            _ if BOOLEAN.contains(&op) => self.set(node, 0, Some(DType::Bool), broadcast_rank()),
            "Where" => self.set(node, 0, self.input_dtype(node, 1), broadcast_rank()),
            "Cast" => {
                let to = node
                    .attr_int("to", 0)
                    .ok()
                    .and_then(|c| i32::try_from(c).ok());
                self.set(node, 0, to.and_then(DType::from_onnx), first_rank);
            }
            "CastLike" => self.set(node, 0, self.input_dtype(node, 1), first_rank),
            "Shape" => self.set(node, 0, Some(DType::I64), Some(1)),
            "Size" => self.set(node, 0, Some(DType::I64), Some(0)),
            "NonZero" => self.set(node, 0, Some(DType::I64), Some(2)),
            "Flatten" => self.set(node, 0, first, Some(2)),
            "Gemm" => self.set(node, 0, first, Some(2)),
            "MatMul" => {
                let rank = match (first_rank, self.input_rank(node, 1)) {
                    (Some(1), Some(1)) => Some(0),
                    (Some(1), Some(b)) => Some(b - 1),
                    (Some(a), Some(1)) => Some(a - 1),
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                self.set(node, 0, first, rank);
            }
            "Transpose" | "Tile" | "Concat" | "ScatterElements" | "ScatterND" | "Scatter" => {
                self.set(node, 0, first, first_rank)
            }
            "IsNaN" | "IsInf" => self.set(node, 0, Some(DType::Bool), first_rank),
            "GatherND" | "Compress" => self.set(node, 0, first, None),
            "OneHot" => self.set(node, 0, self.input_dtype(node, 2), None),
            "Split" => {
                for i in 0..node.outputs.len() {
                    self.set(node, i, first, first_rank);
                }
            }
            "TopK" => {
                self.set(node, 0, first, first_rank);
                self.set(node, 1, Some(DType::I64), first_rank);
            }
            "ArgMax" | "ArgMin" => {
                let keep = node.attr_int("keepdims", 1).unwrap_or(1) != 0;
                let rank = if keep {
                    first_rank
                } else {
                    first_rank.and_then(|r| r.checked_sub(1))
                };
                self.set(node, 0, Some(DType::I64), rank);
            }
            "Reshape" => {
                let rank = ints_input(1).map(|s| s.len());
                self.set(node, 0, first, rank);
            }
            "Expand" => {
                let rank = ints_input(1)
                    .map(|s| s.len())
                    .zip(first_rank)
                    .map(|(a, b)| a.max(b));
                self.set(node, 0, first, rank);
            }
            "Unsqueeze" => {
                let rank = first_rank.zip(axes_count(13)).map(|(r, a)| r + a);
                self.set(node, 0, first, rank);
            }
            "Squeeze" => {
                let rank = first_rank
                    .zip(axes_count(13))
                    .and_then(|(r, a)| r.checked_sub(a));
                self.set(node, 0, first, rank);
            }
            "Gather" => {
                let rank = first_rank
                    .zip(self.input_rank(node, 1))
                    .and_then(|(r, i)| (r + i).checked_sub(1));
                self.set(node, 0, first, rank);
            }
            "ConstantOfShape" => {
                let dtype = match node.attributes.get("value") {
                    Some(Attribute::Tensor(t)) => Some(t.origin_dtype),
                    _ => Some(DType::F32),
                };
                self.set(node, 0, dtype, ints_input(0).map(|s| s.len()));
            }
            "Range" => self.set(node, 0, first, Some(1)),
            "QuantizeLinear" => {
                let dtype = self.input_dtype(node, 2).or(Some(DType::U8));
                self.set(node, 0, dtype, first_rank);
            }
            "DequantizeLinear" => self.set(node, 0, self.input_dtype(node, 1), first_rank),
            _ if op.starts_with("Reduce") => {
                let keep = node.attr_int("keepdims", 1).unwrap_or(1) != 0;
                let since = if op == "ReduceSum" { 13 } else { 18 };
                let rank = if keep {
                    first_rank
                } else {
                    match axes_count(since) {
                        Some(a) => first_rank.and_then(|r| r.checked_sub(a)),
                        // No axes: everything is reduced, or nothing with noop_with_empty_axes.
                        None if node.input(1).is_none() => {
                            if node.attr_int("noop_with_empty_axes", 0).unwrap_or(0) != 0 {
                                first_rank
                            } else {
                                Some(0)
                            }
                        }
                        None => None,
                    }
                };
                self.set(node, 0, first, rank);
            }
            // Recurrent layers, Einsum, If, ... : only the type of the first output is certain
            // enough to matter here.
            "LSTM" | "GRU" | "RNN" | "Einsum" => self.set(node, 0, first, None),
            _ => {}
        }
    }
}
