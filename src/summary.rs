//! A model's summary as plain data: ops, parameter count, inputs/outputs and per-tensor
//! statistics. The CLI prints it (text or JSON) and the app shows it.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use crate::engine::Plan;
use crate::ir::{Model, Tensor, ValueInfo};
use crate::stats::{self, Summary};

/// One declared graph input or output.
#[derive(Debug, Clone, Serialize)]
pub struct IoSummary {
    pub name: String,
    pub dtype: Option<String>,
    pub shape: String,
}

impl From<&ValueInfo> for IoSummary {
    fn from(info: &ValueInfo) -> Self {
        IoSummary {
            name: info.name.clone(),
            dtype: info.dtype.map(|d| d.name().to_string()),
            shape: info.shape_text(),
        }
    }
}

/// One initializer's description and statistics.
#[derive(Debug, Clone, Serialize)]
pub struct TensorSummary {
    pub name: String,
    pub role: &'static str,
    /// The dtype stored in the file.
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    /// Statistics of the values (integer tensors are summarized as floats).
    pub stats: Summary,
    pub channel_axis: Option<usize>,
    /// Number of channels along `channel_axis`.
    pub channels: Option<usize>,
    /// Widest over narrowest per-channel range (see [`stats::range_spread`]).
    pub channel_range_spread: Option<f32>,
}

impl TensorSummary {
    /// Summarizes one tensor.
    pub fn of(tensor: &Tensor) -> Self {
        let values = tensor.data.to_f32();
        let stats = stats::summarize(values.view());
        let spread = tensor
            .channel_axis
            .and_then(|axis| stats::range_spread(&stats::channel_ranges(values.view(), axis)));
        TensorSummary {
            name: tensor.name.clone(),
            role: tensor.role.name(),
            dtype: tensor.origin_dtype.name(),
            shape: tensor.shape().to_vec(),
            stats,
            channel_axis: tensor.channel_axis,
            channels: tensor.channel_count(),
            channel_range_spread: spread,
        }
    }
}

/// Everything `quantscope inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub path: String,
    pub format: &'static str,
    pub opset: i64,
    /// Nodes, those of subgraphs included.
    pub node_count: usize,
    /// Node count per op type.
    pub ops: BTreeMap<String, usize>,
    /// Elements in all learned parameters.
    pub parameter_count: usize,
    pub inputs: Vec<IoSummary>,
    pub outputs: Vec<IoSummary>,
    /// Whether the engine can run the graph.
    pub runnable: bool,
    /// Why not, when it cannot (e.g. unsupported ops).
    pub run_error: Option<String>,
    pub tensors: Vec<TensorSummary>,
}

impl ModelSummary {
    /// Summarizes a loaded model (statistics computed in parallel).
    pub fn of(model: &Model) -> Self {
        let graph = &model.graph;
        let run_error = if graph.is_runnable() {
            crate::ir::check_runnable(graph)
                .and_then(|()| Plan::new(graph).map(drop))
                .err()
                .map(|e| e.to_string())
        } else {
            Some("weights only: no graph to run".to_string())
        };
        // Tensors in the order the graph first reads them, subgraphs where they lie (unread
        // ones last, by name). A control node's capture inputs are read in its subgraphs.
        let mut first_use: std::collections::HashMap<&str, usize> = Default::default();
        for (i, node) in graph.nodes_recursive().into_iter().enumerate() {
            for input in &node.inputs[..node.formal_input_count()] {
                first_use.entry(input.as_str()).or_insert(i);
            }
        }
        let mut tensors: Vec<&Tensor> = graph.initializers.values().collect();
        tensors.sort_by_key(|t| {
            first_use
                .get(t.name.as_str())
                .copied()
                .unwrap_or(usize::MAX)
        });
        ModelSummary {
            path: model.path.display().to_string(),
            format: model.format.name(),
            opset: graph.opset,
            node_count: graph.nodes_recursive().len(),
            ops: graph.op_histogram(),
            parameter_count: graph.parameter_count(),
            inputs: graph.inputs.iter().map(IoSummary::from).collect(),
            outputs: graph.outputs.iter().map(IoSummary::from).collect(),
            runnable: run_error.is_none(),
            run_error,
            tensors: tensors.par_iter().map(|t| TensorSummary::of(t)).collect(),
        }
    }
}
