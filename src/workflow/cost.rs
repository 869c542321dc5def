//! The parameter storage and BitOps of a quantized model against float, **per inference**:
//! weights at their scheme's storage, the rest float32; BitOps of each layer at its weight and
//! activation bits (32 where they stay float), from the activation shapes of a float run
//! divided by the samples that run held. One definition for the app, the CLI and reports.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ir::{Graph, Node};
use crate::quant::config::weight_input_names;
use crate::quant::cost::{StorageScheme, graph_size, layer_costs};
use crate::quant::{QuantConfig, QuantizedModel};

/// Parameter storage and BitOps per inference of the quantized model and of float.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    pub size_bytes: f64,
    #[serde(rename = "float32_size_bytes")]
    pub float_size_bytes: f64,
    /// BitOps of one inference (one sample).
    pub bitops: u64,
    pub float_bitops: u64,
}

/// Every tensor's shape in a run over `samples` samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunShapes {
    pub shapes: HashMap<String, Vec<usize>>,
    pub samples: usize,
}

impl RunShapes {
    /// (BitOps, float BitOps) of one inference, with `bits_of(node)` = (weight bits,
    /// activation bits) per compute layer.
    pub fn bitops_per_inference(
        &self,
        graph: &Graph,
        bits_of: impl FnMut(&Node) -> (u32, u32),
    ) -> Result<(u64, u64)> {
        let layers = layer_costs(graph, &self.shapes, bits_of).map_err(|e| Error::Graph(e.0))?;
        let per = self.samples.max(1) as u64;
        Ok((
            layers.iter().map(|l| l.bitops).sum::<u64>() / per,
            layers.iter().map(|l| l.float_bitops).sum::<u64>() / per,
        ))
    }
}

/// The cost of `quantized` (made from `graph` under `config`), per inference, with the shapes
/// of a float run in `shapes`.
pub fn quantized_cost(
    graph: &Graph,
    config: &QuantConfig,
    quantized: &QuantizedModel,
    shapes: &RunShapes,
) -> Result<Cost> {
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
    let (bitops, float_bitops) = shapes.bitops_per_inference(graph, |node| {
        let layer = config.layer(&node.name);
        let weight_bits = layer
            .weights
            .filter(|_| weight_input_names(node).any(|w| storage.contains_key(w)))
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
        bitops,
        float_bitops,
    })
}
