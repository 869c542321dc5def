//! One chunk of an evaluation reduced to sums that merge exactly (in chunk order): per graph
//! output Σf², Σ(f−q)², Σf·q, Σq², max |f−q| and KL sums; per layer Σf², Σ(f−q)²; for the
//! classification output, agreement and correct counts. Nothing proportional to the data is
//! kept beyond the chunk.
//!
//! KL of an output: on its values when its rows (last axis, or the classes of the
//! classification output) are distributions (non-negative, summing to 1; exponentiated for
//! LogSoftmax outputs), of the softmax for the classification output's logits, else none. The classification output is
//! the first float output shaped `[N, C]` (C ≥ 2, N the chunk's samples), or `[N, C, 1, 1]`,
//! or any `[N, …, C, …]` with size-1 axes besides made by Softmax/LogSoftmax.

use std::collections::{HashMap, HashSet};

use ndarray::{ArrayD, ArrayView1};

use crate::engine::{TensorHook, TensorSite};
use crate::error::{Error, Result};
use crate::ir::{Graph, TensorData};
use crate::quant::cost::ShapeRecorder;

use super::samples::check_labels;

/// How an output's KL is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KlKind {
    /// Probabilities made by Softmax.
    Probabilities,
    /// Log-probabilities made by LogSoftmax.
    LogProbabilities,
    /// Decided from the values (distribution rows) and the shape (classification logits).
    FromValues,
}

/// The KL rule of each graph output, from its producer.
pub(super) fn kl_kinds(graph: &Graph) -> HashMap<String, KlKind> {
    graph
        .outputs
        .iter()
        .map(|o| {
            let producer = graph
                .nodes
                .iter()
                .find(|n| n.outputs.contains(&o.name))
                .map(|n| n.op_type.as_str());
            let kind = match producer {
                Some("Softmax") => KlKind::Probabilities,
                Some("LogSoftmax") => KlKind::LogProbabilities,
                _ => KlKind::FromValues,
            };
            (o.name.clone(), kind)
        })
        .collect()
}

/// Sums of one graph output.
#[derive(Debug, Clone, Default)]
pub(super) struct OutputSums {
    pub name: String,
    pub signal: f64,
    pub noise: f64,
    pub dot: f64,
    pub quant_power: f64,
    pub max_abs: f64,
    pub kl_sum: f64,
    pub kl_rows: usize,
    /// Whether every chunk so far had a KL (a distribution or classification logits).
    pub has_kl: bool,
}

impl OutputSums {
    pub fn merge(&mut self, other: &OutputSums) {
        self.signal += other.signal;
        self.noise += other.noise;
        self.dot += other.dot;
        self.quant_power += other.quant_power;
        self.max_abs = self.max_abs.max(other.max_abs);
        self.kl_sum += other.kl_sum;
        self.kl_rows += other.kl_rows;
        self.has_kl &= other.has_kl;
    }
}

/// Sums of the classification output.
#[derive(Debug, Clone, Default)]
pub(super) struct ClassSums {
    pub output: String,
    pub classes: usize,
    pub rows: usize,
    pub agree: usize,
    pub float_correct: usize,
    pub quant_correct: usize,
}

/// Everything one chunk contributes.
#[derive(Debug, Default)]
pub(super) struct ChunkSums {
    pub outputs: Vec<OutputSums>,
    pub classification: Option<ClassSums>,
    /// Σf², Σ(f−q)² per layer (node name).
    pub layers: HashMap<String, (f64, f64)>,
    /// The focused activation's float values (first chunk only).
    pub focus: Option<ArrayD<f32>>,
}

/// Records the float outputs of the quantizable layers (by node), one focus tensor and,
/// optionally, every tensor's shape.
pub(super) struct FloatRecorder<'a> {
    pub layers: Option<&'a HashSet<String>>,
    pub focus: Option<&'a str>,
    pub outputs: HashMap<String, ArrayD<f32>>,
    pub focus_values: Option<ArrayD<f32>>,
    pub shapes: Option<ShapeRecorder>,
}

impl TensorHook for FloatRecorder<'_> {
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        if let Some(shapes) = self.shapes.as_mut() {
            shapes.on_tensor(site, value)?;
        }
        let TensorData::F32(values) = value else {
            return Ok(());
        };
        if let (Some(layers), Some(node)) = (self.layers, site.producer)
            && layers.contains(&node.name)
            && node.outputs.first().is_some_and(|o| o == site.name)
        {
            self.outputs.insert(node.name.clone(), values.clone());
        }
        if self.focus == Some(site.name) {
            self.focus_values = Some(values.clone());
        }
        Ok(())
    }
}

/// Compares each quantizable layer's output of the quantized run with the float one (before
/// the inner hook quantizes it), then passes the tensor to `inner`.
pub(super) struct LayerComparer<'a> {
    pub float: &'a HashMap<String, ArrayD<f32>>,
    pub sums: HashMap<String, (f64, f64)>,
    pub inner: &'a mut dyn TensorHook,
}

impl TensorHook for LayerComparer<'_> {
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        if let (Some(node), TensorData::F32(q)) = (site.producer, &*value)
            && node.outputs.first().is_some_and(|o| o == site.name)
            && let Some(f) = self.float.get(&node.name)
            && f.shape() == q.shape()
        {
            let entry = self.sums.entry(node.name.clone()).or_default();
            for (a, b) in f.iter().zip(q.iter()) {
                let (a, b) = (f64::from(*a), f64::from(*b));
                entry.0 += a * a;
                entry.1 += (a - b) * (a - b);
            }
        }
        self.inner.on_tensor(site, value)
    }
}

/// The shape `[rows, classes]` of a classification output, when `shape` is one (see the
/// module docs).
fn class_shape(shape: &[usize], rows: usize, softmax: bool) -> Option<usize> {
    let classes = match shape {
        [n, c] if *n == rows => *c,
        [n, c, 1, 1] if *n == rows => *c,
        [n, rest @ ..] if *n == rows && softmax => {
            let big: Vec<usize> = rest.iter().copied().filter(|&d| d != 1).collect();
            match big.as_slice() {
                [c] => *c,
                _ => return None,
            }
        }
        _ => return None,
    };
    (classes >= 2).then_some(classes)
}

/// The rows (last axis) of `values` as a 2-D matrix: `[len / last, last]`.
fn rows_of(values: &ArrayD<f32>, classes: Option<usize>) -> Option<ndarray::Array2<f32>> {
    let last = classes.or_else(|| values.shape().last().copied())?;
    if last == 0 {
        return None;
    }
    let flat: Vec<f32> = values.iter().copied().collect();
    ndarray::Array2::from_shape_vec((flat.len() / last, last), flat).ok()
}

fn is_distribution(rows: &ndarray::Array2<f32>) -> bool {
    rows.ncols() >= 2
        && rows.rows().into_iter().all(|r| {
            r.iter().all(|&v| v >= 0.0)
                && (r.iter().map(|&v| f64::from(v)).sum::<f64>() - 1.0).abs() <= 1e-3
        })
}

fn log_softmax(row: ndarray::ArrayView1<'_, f32>) -> Vec<f64> {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let log_sum = row
        .iter()
        .map(|&v| (f64::from(v) - max).exp())
        .sum::<f64>()
        .ln();
    row.iter().map(|&v| f64::from(v) - max - log_sum).collect()
}

/// Σ over rows of KL(float ‖ quant) for rows given as `kind`.
fn kl_rows(f: &ndarray::Array2<f32>, q: &ndarray::Array2<f32>, kind: KlRows) -> f64 {
    const FLOOR: f64 = 1e-12;
    f.rows()
        .into_iter()
        .zip(q.rows())
        .map(|(fr, qr)| {
            let kl: f64 = match kind {
                KlRows::Probabilities => fr
                    .iter()
                    .zip(qr.iter())
                    .filter(|(p, _)| **p > 0.0)
                    .map(|(&p, &q)| {
                        let (p, q) = (f64::from(p), f64::from(q).max(FLOOR));
                        p * (p / q).ln()
                    })
                    .sum(),
                KlRows::LogProbabilities => fr
                    .iter()
                    .zip(qr.iter())
                    .map(|(&a, &b)| f64::from(a).exp() * (f64::from(a) - f64::from(b)))
                    .sum(),
                KlRows::Logits => {
                    let (lp, lq) = (log_softmax(fr), log_softmax(qr));
                    lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum()
                }
            };
            kl.max(0.0)
        })
        .sum()
}

#[derive(Clone, Copy)]
enum KlRows {
    Probabilities,
    LogProbabilities,
    Logits,
}

fn argmax(row: ndarray::ArrayView1<'_, f32>) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// The labels of one chunk: its samples' labels and the index of its first sample.
#[derive(Clone, Copy)]
pub(super) struct ChunkLabels<'a> {
    pub labels: ArrayView1<'a, i64>,
    pub first: usize,
}

/// Reduces one chunk's graph outputs (float and quantized, in graph order) holding `rows`
/// samples, with the labels of those samples.
pub(super) fn reduce_outputs(
    float: &[(String, TensorData)],
    quant: &[(String, TensorData)],
    kinds: &HashMap<String, KlKind>,
    rows: usize,
    labels: Option<ChunkLabels<'_>>,
    sums: &mut ChunkSums,
) -> Result<()> {
    for ((name, f), (_, q)) in float.iter().zip(quant) {
        let (TensorData::F32(f), TensorData::F32(q)) = (f, q) else {
            continue;
        };
        if f.shape() != q.shape() {
            return Err(Error::Graph(format!(
                "output '{name}': float shape {:?} but quantized {:?}",
                f.shape(),
                q.shape()
            )));
        }
        let mut out = OutputSums {
            name: name.clone(),
            has_kl: true,
            ..Default::default()
        };
        for (&a, &b) in f.iter().zip(q.iter()) {
            let (a, b) = (f64::from(a), f64::from(b));
            out.signal += a * a;
            out.noise += (a - b) * (a - b);
            out.dot += a * b;
            out.quant_power += b * b;
            out.max_abs = out.max_abs.max((a - b).abs());
        }
        let kind = kinds.get(name).copied().unwrap_or(KlKind::FromValues);
        let softmax = kind != KlKind::FromValues;
        let classes = class_shape(f.shape(), rows, softmax);
        let is_class = classes.is_some() && sums.classification.is_none();
        let (fr, qr) = (rows_of(f, classes), rows_of(q, classes));
        let kl = match (&fr, &qr) {
            (Some(fr), Some(qr)) => match kind {
                KlKind::LogProbabilities if is_distribution(&fr.mapv(f32::exp)) => {
                    Some(kl_rows(fr, qr, KlRows::LogProbabilities))
                }
                KlKind::LogProbabilities => None,
                _ if is_distribution(fr) => Some(kl_rows(fr, qr, KlRows::Probabilities)),
                KlKind::FromValues if is_class => Some(kl_rows(fr, qr, KlRows::Logits)),
                _ => None,
            },
            _ => None,
        };
        match (kl, &fr) {
            (Some(total), Some(fr)) => {
                out.kl_sum = total;
                out.kl_rows = fr.nrows();
            }
            _ => out.has_kl = false,
        }
        if is_class && let (Some(c), Some(fr), Some(qr)) = (classes, &fr, &qr) {
            let mut class = ClassSums {
                output: name.clone(),
                classes: c,
                rows: fr.nrows(),
                ..Default::default()
            };
            if let Some(l) = labels {
                check_labels(l.labels, l.first, c, name)?;
            }
            for (i, (a, b)) in fr.rows().into_iter().zip(qr.rows()).enumerate() {
                let (pf, pq) = (argmax(a), argmax(b));
                class.agree += usize::from(pf == pq);
                if let Some(label) = labels.and_then(|l| l.labels.get(i).copied()) {
                    class.float_correct += usize::from(pf as i64 == label);
                    class.quant_correct += usize::from(pq as i64 == label);
                }
            }
            sums.classification = Some(class);
        }
        sums.outputs.push(out);
    }
    Ok(())
}

/// The classification output among `outputs` of a run over `rows` samples (see the module
/// docs), as `[rows, classes]` logits or probabilities.
pub fn classification_rows(
    graph: &Graph,
    outputs: &[(String, TensorData)],
    rows: usize,
) -> Option<(String, ndarray::Array2<f32>)> {
    let kinds = kl_kinds(graph);
    outputs.iter().find_map(|(name, data)| {
        let TensorData::F32(values) = data else {
            return None;
        };
        let softmax = kinds.get(name).is_some_and(|k| *k != KlKind::FromValues);
        let classes = class_shape(values.shape(), rows, softmax)?;
        Some((name.clone(), rows_of(values, Some(classes))?))
    })
}
