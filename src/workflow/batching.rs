//! The largest batch a graph accepts for some samples:
//!
//! 1. an input that declares a fixed batch k runs in chunks of exactly k (nearly always 1);
//! 2. a symbolic batch is probed once: sample 0 alone, then samples 0 and 1 together. The pair
//!    must run, every output's leading size must double, and sample 0's outputs must agree
//!    between the two runs (a batch baked into Reshape constants fails one of these); then the
//!    chunk is [`DEFAULT_BATCH`] samples, fewer when the probe's activations times the batch
//!    exceed the memory budget. Otherwise 1;
//! 3. per-sample feeds run one at a time.
//!
//! The choice and its reason are reported with every result. Probes are remembered in the
//! [`Samples`] by a fingerprint of the graph's structure and shape constants, so calibration
//! and every later evaluation on the same data probe once.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde::Serialize;

use super::samples::{SampleInputs, Samples};
use crate::budget::MemoryBudget;
use crate::engine::{Plan, RunOptions, TensorHook, TensorSite};
use crate::error::{Error, Result};
use crate::ir::{Attribute, Dim, Graph, TensorData};

/// Samples per chunk when the graph accepts any batch.
pub const DEFAULT_BATCH: usize = 64;

/// Bytes of activations all chunks in flight may hold together: an eighth of the process's
/// memory budget (1 GiB of the default 8 GiB).
pub fn activation_budget() -> usize {
    usize::try_from(MemoryBudget::current().bytes() / 8).unwrap_or(usize::MAX)
}

/// The chunk size chosen for a graph and its samples, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchChoice {
    pub size: usize,
    pub reason: String,
}

impl BatchChoice {
    fn new(size: usize, reason: impl Into<String>) -> Self {
        BatchChoice {
            size: size.max(1),
            reason: reason.into(),
        }
    }

    /// "chunks of 1 sample (input 'x' declares batch 1)".
    pub fn describe(&self) -> String {
        let noun = if self.size == 1 { "sample" } else { "samples" };
        format!("chunks of {} {noun} ({})", self.size, self.reason)
    }
}

/// The batch to run `plan`'s graph over `samples` with, at most `limit` samples per chunk
/// (a declared fixed batch wins over the limit).
pub fn choose_batch(
    plan: &Plan<'_>,
    samples: &Samples,
    limit: Option<usize>,
    options: RunOptions<'_>,
) -> Result<BatchChoice> {
    let graph = plan.graph();
    let (arrays, count) = match samples.inputs() {
        SampleInputs::PerSample(_) => {
            return Ok(BatchChoice::new(
                1,
                "each sample is a complete feed of its own",
            ));
        }
        SampleInputs::Stacked { arrays, count, .. } => (arrays, *count),
    };
    let mut fixed: Option<(&str, usize)> = None;
    for name in arrays.keys() {
        let Some(info) = graph.inputs.iter().find(|i| &i.name == name) else {
            continue;
        };
        let Some(Dim::Fixed(k)) = info.shape.as_ref().and_then(|d| d.first()) else {
            continue;
        };
        match fixed {
            Some((other, j)) if j != *k => {
                return Err(Error::Input {
                    name: name.clone(),
                    msg: format!(
                        "declares batch {k} but input '{other}' declares batch {j}: give one \
                         .npz per sample (a folder) instead of stacked arrays"
                    ),
                });
            }
            _ => fixed = Some((name, *k)),
        }
    }
    if let Some((name, k)) = fixed {
        if k == 0 || count % k != 0 {
            return Err(Error::Input {
                name: name.to_string(),
                msg: format!(
                    "declares a fixed batch of {k}; the {count} samples are not a multiple of it"
                ),
            });
        }
        return Ok(BatchChoice::new(
            k,
            format!("input '{name}' declares batch {k}"),
        ));
    }
    let limited = |choice: BatchChoice| match limit {
        Some(l) if l >= 1 && l < choice.size => BatchChoice::new(l, "the batch size asked for"),
        _ => choice,
    };
    if count <= 1 {
        return Ok(BatchChoice::new(1, "a single sample"));
    }
    let key = fingerprint(graph);
    if let Ok(cache) = samples.batch_cache.lock()
        && let Some((_, choice)) = cache.iter().find(|(k, _)| *k == key)
    {
        return Ok(limited(choice.clone()));
    }
    let choice = probe(plan, samples, count, options)?;
    if let Ok(mut cache) = samples.batch_cache.lock() {
        cache.push((key, choice.clone()));
    }
    Ok(limited(choice))
}

/// Sums the bytes of every tensor of a run.
#[derive(Default)]
struct ByteCounter {
    bytes: usize,
}

impl TensorHook for ByteCounter {
    fn on_tensor(&mut self, _: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        self.bytes += value.len()
            * match value {
                TensorData::F32(_) => 4,
                TensorData::I64(_) => 8,
            };
        Ok(())
    }
}

fn probe(
    plan: &Plan<'_>,
    samples: &Samples,
    count: usize,
    options: RunOptions<'_>,
) -> Result<BatchChoice> {
    let mut counter = ByteCounter::default();
    let single = plan.run(samples.feeds(0..1), Some(&mut counter), options)?;
    let pair = match plan.run(samples.feeds(0..2), None, options) {
        Ok(pair) => pair,
        Err(Error::Cancelled) => return Err(Error::Cancelled),
        Err(e) => {
            return Ok(BatchChoice::new(
                1,
                format!("two samples at once fail: {e}"),
            ));
        }
    };
    for ((name, one), (_, two)) in single.iter().zip(&pair) {
        if let Some(why) = batch_mismatch(one, two) {
            return Ok(BatchChoice::new(1, format!("output '{name}' {why}")));
        }
    }
    let threads = rayon::current_num_threads().max(1);
    let per_chunk = activation_budget() / threads;
    let by_memory = per_chunk / counter.bytes.max(1);
    let size = count.min(DEFAULT_BATCH).min(by_memory.max(1));
    let reason = if size < count.min(DEFAULT_BATCH) {
        format!(
            "the batch is free; {} MB of activations per sample",
            counter.bytes / 1_000_000
        )
    } else {
        "the batch is free".to_string()
    };
    Ok(BatchChoice::new(size, reason))
}

/// Why a batch-of-two output does not hold the single-sample output as its first rows.
fn batch_mismatch(one: &TensorData, two: &TensorData) -> Option<String> {
    let (s1, s2) = (one.shape(), two.shape());
    if s1.is_empty() || s2.len() != s1.len() || s2[0] != 2 * s1[0] || s1[1..] != s2[1..] {
        return Some(format!(
            "does not grow with the batch ({s1:?} for one sample, {s2:?} for two)"
        ));
    }
    let rows = one.len();
    let same = match (one, two) {
        (TensorData::F32(a), TensorData::F32(b)) => a
            .iter()
            .zip(b.iter().take(rows))
            .all(|(&x, &y)| (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-4 * x.abs().max(1.0)),
        (TensorData::I64(a), TensorData::I64(b)) => {
            a.iter().zip(b.iter().take(rows)).all(|(x, y)| x == y)
        }
        _ => false,
    };
    (!same).then(|| {
        "changes when another sample shares the batch (a batch baked into the graph)".into()
    })
}

/// A hash of what decides which batches a graph accepts: inputs and their declared shapes,
/// the nodes and their integer attributes, integer initializers' values and float
/// initializers' shapes (not the weights' values, so transforms keep the fingerprint).
pub fn fingerprint(graph: &Graph) -> u64 {
    let mut h = DefaultHasher::new();
    for input in &graph.inputs {
        input.name.hash(&mut h);
        format!("{:?}", input.shape).hash(&mut h);
    }
    for output in &graph.outputs {
        output.name.hash(&mut h);
    }
    for node in &graph.nodes {
        node.op_type.hash(&mut h);
        node.inputs.hash(&mut h);
        node.outputs.hash(&mut h);
        for (name, attr) in &node.attributes {
            name.hash(&mut h);
            match attr {
                Attribute::Int(v) => v.hash(&mut h),
                Attribute::Ints(v) => v.hash(&mut h),
                Attribute::Tensor(t) => hash_tensor(&t.data, &mut h),
                _ => {}
            }
        }
    }
    for (name, tensor) in &graph.initializers {
        name.hash(&mut h);
        hash_tensor(&tensor.data, &mut h);
    }
    h.finish()
}

fn hash_tensor(data: &TensorData, h: &mut DefaultHasher) {
    data.shape().hash(h);
    if let TensorData::I64(a) = data {
        a.iter().for_each(|v| v.hash(h));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::ir::{DType, Node, Tensor, ValueInfo};

    /// x [N, 4] → `op` → y, with an i64 shape constant for Reshape.
    fn graph(op: &str, shape: Option<Vec<i64>>) -> Graph {
        let mut inputs = vec!["x".to_string()];
        let mut initializers = BTreeMap::new();
        if let Some(shape) = shape {
            inputs.push("shape".into());
            let data =
                TensorData::I64(ArrayD::from_shape_vec(IxDyn(&[shape.len()]), shape).unwrap());
            initializers.insert("shape".into(), Tensor::new("shape", data, DType::I64));
        }
        let info = |name: &str, dims: Vec<Dim>| ValueInfo {
            name: name.into(),
            dtype: Some(DType::F32),
            shape: Some(dims),
        };
        Graph {
            name: "g".into(),
            nodes: vec![Node {
                name: "n".into(),
                op_type: op.into(),
                domain: String::new(),
                inputs,
                outputs: vec!["y".into()],
                attributes: BTreeMap::new(),
            }],
            inputs: vec![info("x", vec![Dim::Symbolic("N".into()), Dim::Fixed(4)])],
            outputs: vec![info("y", vec![Dim::Unknown, Dim::Unknown])],
            initializers,
            opset: 17,
        }
    }

    fn samples(n: usize) -> Samples {
        let values = ArrayD::from_shape_fn(IxDyn(&[n, 4]), |i| (i[0] * 4 + i[1]) as f32);
        Samples::single("x", TensorData::F32(values), "t").unwrap()
    }

    #[test]
    fn a_free_batch_takes_every_sample_up_to_the_limit() {
        let g = graph("Relu", None);
        let plan = Plan::new(&g).unwrap();
        let s = samples(10);
        let choice = choose_batch(&plan, &s, None, RunOptions::default()).unwrap();
        assert_eq!(choice, BatchChoice::new(10, "the batch is free"));
        assert_eq!(
            choose_batch(&plan, &s, Some(3), RunOptions::default())
                .unwrap()
                .size,
            3
        );
        assert_eq!(s.batch_cache.lock().unwrap().len(), 1, "probed once");
    }

    #[test]
    fn a_batch_baked_into_a_reshape_runs_one_sample_at_a_time() {
        let g = graph("Reshape", Some(vec![1, -1]));
        let plan = Plan::new(&g).unwrap();
        let choice = choose_batch(&plan, &samples(6), None, RunOptions::default()).unwrap();
        assert_eq!(choice.size, 1);
        assert!(choice.reason.contains("does not grow"), "{choice:?}");
        // A Reshape that keeps the batch is free.
        let g = graph("Reshape", Some(vec![-1, 2, 2]));
        let plan = Plan::new(&g).unwrap();
        assert_eq!(
            choose_batch(&plan, &samples(6), None, RunOptions::default())
                .unwrap()
                .size,
            6
        );
    }

    #[test]
    fn a_declared_batch_must_divide_the_samples() {
        let mut g = graph("Relu", None);
        g.inputs[0].shape = Some(vec![Dim::Fixed(2), Dim::Fixed(4)]);
        let plan = Plan::new(&g).unwrap();
        assert_eq!(
            choose_batch(&plan, &samples(6), Some(64), RunOptions::default())
                .unwrap()
                .size,
            2
        );
        let err = choose_batch(&plan, &samples(5), None, RunOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 'x': declares a fixed batch of 2; the 5 samples are not a multiple of it"
        );
    }

    #[test]
    fn transforms_keep_the_fingerprint_shape_constants_change_it() {
        let g = graph("Reshape", Some(vec![1, -1]));
        let mut weights = g.clone();
        weights.initializers.insert(
            "w".into(),
            Tensor::new("w", TensorData::F32(ArrayD::zeros(IxDyn(&[2]))), DType::F32),
        );
        let mut changed = weights.clone();
        if let Some(t) = changed.initializers.get_mut("w") {
            t.data = TensorData::F32(ArrayD::ones(IxDyn(&[2])));
        }
        assert_eq!(fingerprint(&weights), fingerprint(&changed));
        assert_ne!(
            fingerprint(&g),
            fingerprint(&graph("Reshape", Some(vec![-1, 2, 2])))
        );
    }
}
