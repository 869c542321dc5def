//! The model panel's rows: every node in execution (file) order with its weight and its input
//! and output activations; weights-only files list one row per weight tensor.

use crate::ir::{Graph, ParamRole};
use crate::quant::config::{QUANTIZABLE_OPS, RECURRENT_OPS};

/// One layer as the model panel lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRow {
    /// Node name (for weights-only files: the weight's name).
    pub node: String,
    pub op: String,
    /// Its quantizable weight tensor, if any.
    pub weight: Option<String>,
    pub weight_shape: Vec<usize>,
    /// The recurrence weights R of an LSTM, GRU or RNN (input 2), quantized like W.
    pub recurrence: Option<String>,
    pub recurrence_shape: Vec<usize>,
    /// Elements of all its parameters.
    pub params: usize,
    pub input: Option<String>,
    pub output: Option<String>,
    /// Whether the quantization config applies to it (Conv, Gemm, MatMul, or a weights-only
    /// weight).
    pub quantizable: bool,
}

/// The rows of `graph`.
pub fn layer_rows(graph: &Graph) -> Vec<LayerRow> {
    if !graph.is_runnable() {
        return graph
            .initializers
            .values()
            .filter(|t| t.role == ParamRole::Weight)
            .map(|t| LayerRow {
                node: t.name.clone(),
                op: "weight".into(),
                weight: Some(t.name.clone()),
                weight_shape: t.shape().to_vec(),
                recurrence: None,
                recurrence_shape: Vec::new(),
                params: t.data.len(),
                input: None,
                output: None,
                quantizable: true,
            })
            .collect();
    }
    graph
        .nodes
        .iter()
        .map(|node| {
            let weight = node
                .input(1)
                .and_then(|name| graph.initializers.get(name))
                .filter(|t| t.role == ParamRole::Weight);
            let recurrence = node
                .input(2)
                .filter(|_| RECURRENT_OPS.contains(&node.op_type.as_str()))
                .and_then(|name| graph.initializers.get(name))
                .filter(|t| t.role == ParamRole::Weight);
            let params = node
                .inputs
                .iter()
                .filter_map(|name| graph.initializers.get(name))
                .filter(|t| t.role.is_parameter())
                .map(|t| t.data.len())
                .sum();
            LayerRow {
                node: node.name.clone(),
                op: node.op_type.clone(),
                weight: weight.map(|t| t.name.clone()),
                weight_shape: weight.map(|t| t.shape().to_vec()).unwrap_or_default(),
                recurrence: recurrence.map(|t| t.name.clone()),
                recurrence_shape: recurrence.map(|t| t.shape().to_vec()).unwrap_or_default(),
                params,
                input: node
                    .input(0)
                    .filter(|name| !graph.initializers.contains_key(*name))
                    .map(str::to_string),
                output: node.outputs.first().filter(|o| !o.is_empty()).cloned(),
                quantizable: QUANTIZABLE_OPS.contains(&node.op_type.as_str()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobilenet_rows_follow_the_graph_with_depthwise_weights() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sample_models/digits_mobilenet.onnx");
        let model = crate::load::load_model(&path).unwrap();
        let rows = layer_rows(&model.graph);
        assert_eq!(rows.len(), model.graph.nodes.len());
        let dw = rows
            .iter()
            .find(|r| r.weight.as_deref() == Some("block1.dw.weight"))
            .unwrap();
        assert_eq!(
            (dw.op.as_str(), dw.weight_shape.as_slice()),
            ("Conv", &[16, 1, 3, 3][..])
        );
        assert!(dw.quantizable && dw.input.is_some() && dw.output.is_some());
        assert_eq!(rows.iter().filter(|r| r.quantizable).count(), 11);
        assert!(rows.iter().all(|r| r.recurrence.is_none()));
    }

    #[test]
    fn a_recurrent_layer_lists_its_recurrence_weights() {
        use crate::ir::{Attribute, DType, Node, Tensor, TensorData};
        let mut graph = Graph::default();
        for (name, shape) in [("w", [1, 8, 3]), ("r", [1, 8, 2])] {
            let data = TensorData::F32(ndarray::ArrayD::zeros(shape.to_vec()));
            graph
                .initializers
                .insert(name.into(), Tensor::new(name, data, DType::F32));
        }
        graph.nodes = vec![
            Node::new("gru", "GRU", &["x", "w", "r"], &["y"])
                .with_attributes([("hidden_size", Attribute::Int(2))]),
        ];
        crate::ir::assign_roles(&mut graph);
        let rows = layer_rows(&graph);
        let row = &rows[0];
        assert_eq!(row.weight.as_deref(), Some("w"));
        assert_eq!(row.recurrence.as_deref(), Some("r"));
        assert_eq!(row.recurrence_shape, [1, 8, 2]);
        assert!(row.quantizable);
    }
}
