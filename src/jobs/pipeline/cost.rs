//! The parameter storage and BitOps of a quantized model against float, from the config's
//! weight and activation bits (what the app's results and the CLI's reports show).

use std::collections::{HashMap, HashSet};

use crate::ir::Graph;
use crate::quant::QuantError;
use crate::quant::cost::{StorageScheme, graph_size, layer_costs};
use crate::quant::{QuantConfig, QuantizedModel};

/// Parameter storage and BitOps (per sample) of the quantized model and of float.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Cost {
    pub size_bytes: f64,
    #[serde(rename = "float32_size_bytes")]
    pub float_size_bytes: f64,
    pub bitops: u64,
    pub float_bitops: u64,
}

/// The cost of `quantized` (made from `graph` under `config`): weights at their scheme's
/// storage, the rest float32; BitOps of each layer at its weight and activation bits (32 where
/// they stay float), with the activation shapes of a float run in `shapes`.
pub fn quantized_cost(
    graph: &Graph,
    config: &QuantConfig,
    quantized: &QuantizedModel,
    shapes: &HashMap<String, Vec<usize>>,
) -> Result<Cost, QuantError> {
    let storage: HashMap<&str, StorageScheme> = quantized
        .weights
        .iter()
        .filter_map(|w| Some((w.tensor.as_str(), config.layer(&w.node).weights?.storage())))
        .collect();
    let size = graph_size(graph, |name, _| {
        storage.get(name).copied().unwrap_or(StorageScheme::FLOAT32)
    });
    let quantized_inputs: HashSet<&str> = quantized
        .activations
        .iter()
        .map(|a| a.tensor.as_str())
        .collect();
    let layers = layer_costs(graph, shapes, |node| {
        let layer = config.layer(&node.name);
        let weight_bits = layer
            .weights
            .filter(|_| node.input(1).is_some_and(|w| storage.contains_key(w)))
            .map_or(32, |w| w.scheme.bits());
        let activation_bits = match (layer.activations, node.input(0)) {
            (Some(a), Some(i)) if quantized_inputs.contains(i) => a.bits,
            _ => 32,
        };
        (weight_bits, activation_bits)
    })?;
    Ok(Cost {
        size_bytes: size.total_bytes(),
        float_size_bytes: size.float32_bits as f64 / 8.0,
        bitops: layers.iter().map(|l| l.bitops).sum(),
        float_bitops: layers.iter().map(|l| l.float_bitops).sum(),
    })
}
