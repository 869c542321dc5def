//! A layer's own error: its node run alone, with the quantized model's weights and input
//! quantizers, on the inputs the float model gives it.
//!
//! [`SingleLayers::new`] cuts one single-node graph per layer out of the quantized graph
//! (inputs: the node's data inputs; initializers: its quantized weights and biases). During one
//! float run, [`OwnErrorHook`] keeps each layer's float inputs until its float output appears,
//! then runs the layer's single-node graph on those inputs (quantizing them as the quantized
//! model does) and adds Σf² and Σ(f − q)² of its output. Every layer's own error thus costs one
//! float run plus one run of each layer alone: about one pass of the quantized model.

use std::collections::{HashMap, HashSet};

use ndarray::ArrayD;

use crate::engine::{Plan, RunOptions, TensorHook, TensorSite};
use crate::error::{Error, Result};
use crate::ir::{Graph, Node, TensorData, ValueInfo};
use crate::quant::QuantizedModel;

/// The graph of `node` alone, taken from `quantized` (a graph whose weights are already
/// de-quantized): its non-constant inputs become graph inputs, its outputs graph outputs.
pub fn single_layer_graph(quantized: &Graph, node: &Node) -> Graph {
    let mut inputs: Vec<ValueInfo> = Vec::new();
    let mut initializers = std::collections::BTreeMap::new();
    for name in node.inputs.iter().filter(|n| !n.is_empty()) {
        if let Some(tensor) = quantized.initializers.get(name) {
            initializers.insert(name.clone(), tensor.clone());
        } else if !inputs.iter().any(|i| &i.name == name) {
            inputs.push(ValueInfo {
                name: name.clone(),
                dtype: None,
                shape: None,
            });
        }
    }
    let outputs = node
        .outputs
        .iter()
        .filter(|o| !o.is_empty())
        .map(|name| ValueInfo {
            name: name.clone(),
            dtype: None,
            shape: None,
        })
        .collect();
    Graph {
        name: node.name.clone(),
        nodes: vec![node.clone()],
        inputs,
        outputs,
        initializers,
        opset: quantized.opset,
    }
}

/// The single-node graphs of the diagnosed layers (in the caller's order).
pub struct SingleLayers {
    graphs: Vec<Graph>,
}

impl SingleLayers {
    /// One single-node graph per layer named in `layers`, from `quantized`'s graph.
    pub fn new(quantized: &QuantizedModel, layers: &[String]) -> Result<SingleLayers> {
        let graphs = layers
            .iter()
            .map(|name| {
                let node = quantized
                    .graph
                    .nodes
                    .iter()
                    .find(|n| &n.name == name)
                    .ok_or_else(|| Error::Graph(format!("no layer named '{name}' in the graph")))?;
                Ok(single_layer_graph(&quantized.graph, node))
            })
            .collect::<Result<_>>()?;
        Ok(SingleLayers { graphs })
    }

    /// The plans of the single-node graphs.
    pub fn plans(&self) -> Result<Vec<Plan<'_>>> {
        self.graphs.iter().map(Plan::new).collect()
    }
}

/// Σf² and Σ(f − q)² over the elements of `float` and `quant` (same shape).
pub fn add_error(sums: &mut (f64, f64), float: &ArrayD<f32>, quant: &ArrayD<f32>) {
    for (a, b) in float.iter().zip(quant.iter()) {
        let (a, b) = (f64::from(*a), f64::from(*b));
        sums.0 += a * a;
        sums.1 += (a - b) * (a - b);
    }
}

/// Passes only the graph inputs to the inner hook: the single layer's input quantizers, never
/// a quantizer its output would meet as the next layer's input.
struct InputsOnly<'h> {
    inner: &'h mut dyn TensorHook,
}

impl TensorHook for InputsOnly<'_> {
    fn wants(&self, name: &str) -> bool {
        self.inner.wants(name)
    }

    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        if site.producer.is_none() {
            self.inner.on_tensor(site, value)
        } else {
            Ok(())
        }
    }
}

/// The float run's hook measuring every layer's own error (see the module docs).
pub struct OwnErrorHook<'a> {
    plans: &'a [Plan<'a>],
    quantized: &'a QuantizedModel,
    /// Node name → index into `plans`.
    by_node: &'a HashMap<String, usize>,
    /// Data input → how many diagnosed layers read it.
    readers: &'a HashMap<String, usize>,
    /// The diagnosed layers' first outputs.
    outputs: HashSet<&'a str>,
    options: RunOptions<'a>,
    /// Float inputs waiting for their readers, with the readers still to come.
    pending: HashMap<String, (TensorData, usize)>,
    /// Σf², Σ(f − q)² per layer.
    pub sums: Vec<(f64, f64)>,
}

impl<'a> OwnErrorHook<'a> {
    /// A hook for one float run; `readers` counts, per data input, the layers of `by_node`
    /// reading it.
    pub fn new(
        plans: &'a [Plan<'a>],
        quantized: &'a QuantizedModel,
        by_node: &'a HashMap<String, usize>,
        readers: &'a HashMap<String, usize>,
        options: RunOptions<'a>,
    ) -> Self {
        let outputs = plans
            .iter()
            .filter_map(|p| p.graph().outputs.first().map(|o| o.name.as_str()))
            .collect();
        OwnErrorHook {
            plans,
            quantized,
            by_node,
            readers,
            outputs,
            options,
            pending: HashMap::new(),
            sums: vec![(0.0, 0.0); plans.len()],
        }
    }

    /// Runs layer `index` alone on its pending float inputs; compares with `float`.
    fn measure(&mut self, index: usize, float: &ArrayD<f32>) -> Result<()> {
        let plan = &self.plans[index];
        let graph = plan.graph();
        let mut feeds = HashMap::new();
        for input in &graph.inputs {
            let Some(entry) = self.pending.get_mut(&input.name) else {
                return Err(Error::Graph(format!(
                    "layer '{}': its input '{}' was not seen in the float run",
                    graph.name, input.name
                )));
            };
            entry.1 = entry.1.saturating_sub(1);
            let value = if entry.1 == 0 {
                match self.pending.remove(&input.name) {
                    Some((value, _)) => value,
                    None => continue,
                }
            } else {
                entry.0.clone()
            };
            feeds.insert(input.name.clone(), value);
        }
        let mut fake = self.quantized.hook();
        let mut inputs_only = InputsOnly { inner: &mut fake };
        let outputs = plan.run(feeds, Some(&mut inputs_only), self.options)?;
        let Some((_, TensorData::F32(quant))) = outputs.first() else {
            return Err(Error::Graph(format!(
                "layer '{}': its output is not a float tensor",
                graph.name
            )));
        };
        if quant.shape() != float.shape() {
            return Err(Error::Graph(format!(
                "layer '{}': run alone it gives shape {:?}, in the model {:?}",
                graph.name,
                quant.shape(),
                float.shape()
            )));
        }
        add_error(&mut self.sums[index], float, quant);
        Ok(())
    }
}

impl TensorHook for OwnErrorHook<'_> {
    /// The diagnosed layers' data inputs and outputs; the plan may fuse the rest away.
    fn wants(&self, name: &str) -> bool {
        self.readers.contains_key(name) || self.outputs.contains(name)
    }

    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        if let Some(&count) = self.readers.get(site.name) {
            self.pending
                .insert(site.name.to_string(), (value.clone(), count));
        }
        if let (Some(node), TensorData::F32(float)) = (site.producer, &*value)
            && node.outputs.first().is_some_and(|o| o == site.name)
            && let Some(&index) = self.by_node.get(&node.name)
        {
            self.measure(index, float)?;
        }
        Ok(())
    }
}
