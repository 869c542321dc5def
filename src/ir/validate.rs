//! Load-time facts about a graph, found without running it: opsets Quantscope is not tested
//! with, and node attributes no input shape can make valid (a stride of 0, a negative pad, a
//! `perm` that is not a permutation). Errors make the graph not runnable; `inspect` and the
//! engine can both ask [`check_runnable`]. Shape-dependent checks stay with the kernels.

use std::ops::RangeInclusive;

use serde::Serialize;

use super::graph::{Graph, Node};
use crate::error::Error;

/// Opsets of the default ONNX domain Quantscope is built and tested for.
pub const TESTED_OPSETS: RangeInclusive<i64> = 7..=21;
/// The newest default-domain opset ONNX has released (ONNX 1.23); onnxruntime refuses newer.
pub const NEWEST_ONNX_OPSET: i64 = 28;
/// The newest IR version ONNX defines (ONNX 1.23); onnxruntime refuses newer.
pub const NEWEST_IR_VERSION: i64 = 14;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Severity {
    /// Worth showing; the graph still runs.
    Warning,
    /// The graph cannot run as it is.
    Error,
}

/// One thing validation found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The node concerned, as (name, op type), when it is about one node.
    pub node: Option<(String, String)>,
    /// One line saying what is wrong.
    pub message: String,
}

impl Finding {
    /// A warning about the whole model.
    pub fn warning(message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Warning,
            node: None,
            message: message.into(),
        }
    }

    fn graph_error(message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Error,
            node: None,
            message: message.into(),
        }
    }

    fn node_error(node: &Node, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Error,
            node: Some((node.name.clone(), node.op_type.clone())),
            message: message.into(),
        }
    }

    /// Whether this finding makes the graph not runnable.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The finding as the core's error type.
    pub fn to_error(&self) -> Error {
        match &self.node {
            Some((node, op)) => Error::Op {
                node: node.clone(),
                op: op.clone(),
                msg: self.message.clone(),
            },
            None => Error::Graph(self.message.clone()),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.node {
            Some((node, op)) => write!(f, "node '{node}' ({op}): {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Everything validation finds in `graph`, errors first in node order. A graph without nodes
/// (weights only) has nothing to find.
pub fn validate(graph: &Graph) -> Vec<Finding> {
    if graph.nodes.is_empty() {
        return Vec::new();
    }
    let mut findings = Vec::new();
    if let Some(f) = opset_finding(graph.opset) {
        findings.push(f);
    }
    for node in graph
        .nodes_recursive()
        .into_iter()
        .filter(|n| matches!(n.domain.as_str(), "" | "ai.onnx"))
    {
        if let Err(message) = check_node(node) {
            findings.push(Finding::node_error(node, message));
        }
    }
    findings.sort_by_key(|f| !f.is_error());
    findings
}

/// The first error [`validate`] finds, as the core's error type.
pub fn check_runnable(graph: &Graph) -> Result<(), Error> {
    match validate(graph).into_iter().find(Finding::is_error) {
        Some(f) => Err(f.to_error()),
        None => Ok(()),
    }
}

/// What the default-domain opset calls for. 0 means "not stated" (graphs built in memory);
/// the loader refuses files that use the domain without importing it.
fn opset_finding(opset: i64) -> Option<Finding> {
    let (lo, hi) = (*TESTED_OPSETS.start(), *TESTED_OPSETS.end());
    match opset {
        0 => None,
        v if v < 0 => Some(Finding::graph_error(format!(
            "opset {v} is not an ONNX opset version"
        ))),
        v if v > NEWEST_ONNX_OPSET => Some(Finding::graph_error(format!(
            "opset {v} is newer than any ONNX release (the newest is {NEWEST_ONNX_OPSET})"
        ))),
        v if v < lo => Some(Finding::warning(format!(
            "opset {v} is older than {lo}, the oldest Quantscope reads; operators are run with \
             their opset-{lo} meaning, which may differ (onnxruntime also only guarantees {lo} and newer)"
        ))),
        v if v > hi => Some(Finding::warning(format!(
            "opset {v} is newer than {hi}, the newest Quantscope is tested with; operators are \
             run with their opset-{hi} meaning"
        ))),
        _ => None,
    }
}

/// Attribute facts of one node that hold whatever its inputs are.
fn check_node(node: &Node) -> Result<(), String> {
    match node.op_type.as_str() {
        "Conv" | "ConvInteger" | "QLinearConv" => {
            check_window(node, false)?;
            check_group(node)
        }
        "ConvTranspose" => {
            check_window(node, false)?;
            check_group(node)?;
            check_all(node, "output_padding", |v| v >= 0, "must not be negative")?;
            check_all(node, "output_shape", |v| v >= 0, "must not be negative")
        }
        "MaxPool" => {
            check_window(node, true)?;
            check_flag(node, "ceil_mode")?;
            check_flag(node, "storage_order")
        }
        "AveragePool" | "LpPool" => {
            check_window(node, true)?;
            check_flag(node, "ceil_mode")?;
            check_flag(node, "count_include_pad")
        }
        "Gemm" => {
            check_flag(node, "transA")?;
            check_flag(node, "transB")
        }
        "Transpose" => check_permutation(node),
        "BatchNormalization" | "InstanceNormalization" | "LayerNormalization" => {
            let eps = node.attr_float("epsilon", 1e-5)?;
            if eps.is_finite() && eps >= 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "attribute 'epsilon' must be a finite non-negative number, the file has {eps}"
                ))
            }
        }
        "Split" => check_all(node, "split", |v| v >= 0, "must not be negative"),
        "Reshape" => check_flag(node, "allowzero"),
        "If" | "Loop" | "Scan" => super::scope::check_control(node),
        _ => Ok(()),
    }
}

/// Kernel, stride, dilation and pad attributes of convolutions and pools: positive sizes,
/// non-negative pads, a known `auto_pad`, and one value per spatial axis in each list.
fn check_window(node: &Node, needs_kernel: bool) -> Result<(), String> {
    let kernel = node.attr_ints("kernel_shape")?;
    if needs_kernel && kernel.is_none() {
        return Err("attribute 'kernel_shape' is required".into());
    }
    check_all(node, "kernel_shape", |v| v > 0, "must be positive")?;
    check_all(node, "strides", |v| v > 0, "must be positive")?;
    check_all(node, "dilations", |v| v > 0, "must be positive")?;
    check_all(node, "pads", |v| v >= 0, "must not be negative")?;
    let auto_pad = node.attr_string("auto_pad", "NOTSET")?;
    if !matches!(
        auto_pad.as_str(),
        "NOTSET" | "SAME_UPPER" | "SAME_LOWER" | "VALID"
    ) {
        return Err(format!(
            "attribute 'auto_pad' must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, the file has '{auto_pad}'"
        ));
    }
    // Every list present must describe the same number of spatial axes.
    let mut axes: Option<(&str, usize)> = None;
    for (name, per_axis) in [
        ("kernel_shape", 1),
        ("strides", 1),
        ("dilations", 1),
        ("pads", 2),
    ] {
        let Some(values) = node.attr_ints(name)? else {
            continue;
        };
        if values.len() % per_axis != 0 {
            return Err(format!(
                "attribute '{name}' needs two values per spatial axis, the file has {}",
                values.len()
            ));
        }
        let n = values.len() / per_axis;
        match axes {
            Some((first, m)) if m != n => {
                return Err(format!(
                    "attribute '{first}' describes {m} spatial axes but '{name}' describes {n}"
                ));
            }
            None => axes = Some((name, n)),
            _ => {}
        }
    }
    Ok(())
}

fn check_group(node: &Node) -> Result<(), String> {
    let group = node.attr_int("group", 1)?;
    if group < 1 {
        return Err(format!(
            "attribute 'group' must be at least 1, the file has {group}"
        ));
    }
    Ok(())
}

/// An int attribute that can only be 0 or 1.
fn check_flag(node: &Node, name: &str) -> Result<(), String> {
    match node.attr_int(name, 0)? {
        0 | 1 => Ok(()),
        v => Err(format!(
            "attribute '{name}' must be 0 or 1, the file has {v}"
        )),
    }
}

/// Every value of an int-list attribute satisfies `ok`.
fn check_all(node: &Node, name: &str, ok: impl Fn(i64) -> bool, rule: &str) -> Result<(), String> {
    match node.attr_ints(name)? {
        Some(values) if !values.iter().all(|&v| ok(v)) => Err(format!(
            "attribute '{name}' {rule}, the file has {values:?}"
        )),
        _ => Ok(()),
    }
}

fn check_permutation(node: &Node) -> Result<(), String> {
    let Some(perm) = node.attr_ints("perm")? else {
        return Ok(());
    };
    let mut seen = vec![false; perm.len()];
    for &p in &perm {
        match usize::try_from(p).ok().and_then(|i| seen.get_mut(i)) {
            Some(slot) if !*slot => *slot = true,
            _ => {
                return Err(format!(
                    "attribute 'perm' must list each axis 0..{} once, the file has {perm:?}",
                    perm.len()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ir::Attribute;

    fn node(op: &str, attributes: &[(&str, Attribute)]) -> Node {
        Node {
            name: "n".into(),
            op_type: op.into(),
            domain: String::new(),
            inputs: vec!["x".into()],
            outputs: vec!["y".into()],
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn graph(opset: i64, nodes: Vec<Node>) -> Graph {
        Graph {
            nodes,
            opset,
            ..Graph::default()
        }
    }

    fn ints(v: &[i64]) -> Attribute {
        Attribute::Ints(v.to_vec())
    }

    #[test]
    fn a_zero_stride_makes_the_graph_not_runnable() {
        let g = graph(
            17,
            vec![node(
                "Conv",
                &[("strides", ints(&[0, 0])), ("kernel_shape", ints(&[3, 3]))],
            )],
        );
        let err = check_runnable(&g).unwrap_err().to_string();
        assert_eq!(
            err,
            "node 'n' (Conv): attribute 'strides' must be positive, the file has [0, 0]"
        );
    }

    #[test]
    fn window_attributes_are_checked_for_sign_kind_and_axis_count() {
        type Case<'a> = (&'a str, Vec<(&'a str, Attribute)>, &'a str);
        let cases: Vec<Case> = vec![
            ("MaxPool", vec![], "'kernel_shape' is required"),
            (
                "MaxPool",
                vec![
                    ("kernel_shape", ints(&[2, 2])),
                    ("pads", ints(&[0, -1, 0, 0])),
                ],
                "'pads' must not be negative",
            ),
            (
                "Conv",
                vec![("dilations", ints(&[1, 0]))],
                "'dilations' must be positive",
            ),
            (
                "Conv",
                vec![("strides", ints(&[1, 1])), ("pads", ints(&[1, 1, 1]))],
                "two values per spatial axis",
            ),
            (
                "AveragePool",
                vec![("kernel_shape", ints(&[2, 2])), ("strides", ints(&[2]))],
                "'kernel_shape' describes 2 spatial axes but 'strides' describes 1",
            ),
            (
                "Conv",
                vec![("strides", Attribute::Float(1.0))],
                "'strides' should be a list of ints",
            ),
            (
                "Conv",
                vec![("auto_pad", Attribute::String("SAME".into()))],
                "'auto_pad' must be NOTSET",
            ),
            (
                "Conv",
                vec![("group", Attribute::Int(0))],
                "'group' must be at least 1",
            ),
            (
                "Gemm",
                vec![("transB", Attribute::Int(2))],
                "'transB' must be 0 or 1",
            ),
            (
                "Transpose",
                vec![("perm", ints(&[0, 2, 2]))],
                "'perm' must list each axis 0..3 once",
            ),
            (
                "BatchNormalization",
                vec![("epsilon", Attribute::Float(-1.0))],
                "'epsilon' must be a finite non-negative number",
            ),
        ];
        for (op, attrs, expected) in cases {
            let g = graph(17, vec![node(op, &attrs)]);
            let err = check_runnable(&g).expect_err(op).to_string();
            assert!(err.contains(expected), "{op}: {err}");
        }
    }

    #[test]
    fn sound_attributes_and_other_domains_pass() {
        let ok = node(
            "Conv",
            &[
                ("kernel_shape", ints(&[3, 3])),
                ("strides", ints(&[2, 2])),
                ("pads", ints(&[1, 1, 1, 1])),
                ("dilations", ints(&[1, 1])),
                ("group", Attribute::Int(4)),
            ],
        );
        let mut custom = node("Conv", &[("strides", ints(&[0]))]);
        custom.domain = "com.example".into();
        let transpose = node("Transpose", &[("perm", ints(&[2, 0, 1]))]);
        assert!(validate(&graph(17, vec![ok, custom, transpose])).is_empty());
    }

    #[test]
    fn opsets_outside_the_tested_range_warn_and_impossible_ones_are_errors() {
        let relu = || vec![node("Relu", &[])];
        let severity = |opset| {
            validate(&graph(opset, relu()))
                .first()
                .map(|f| (f.severity, f.message.clone()))
        };
        assert_eq!(severity(17), None);
        assert_eq!(severity(0), None);
        let (s, m) = severity(5).unwrap();
        assert!(s == Severity::Warning && m.contains("older than 7"), "{m}");
        let (s, m) = severity(24).unwrap();
        assert!(s == Severity::Warning && m.contains("newer than 21"), "{m}");
        assert_eq!(severity(99).unwrap().0, Severity::Error);
        assert_eq!(severity(-1).unwrap().0, Severity::Error);
        assert!(check_runnable(&graph(5, relu())).is_ok());
        // Weights-only graphs have nothing to validate.
        assert!(validate(&graph(99, vec![])).is_empty());
    }
}
