//! [`Samples`]: the data a model is run, calibrated and evaluated on, whatever its inputs.
//!
//! Two forms:
//! * **stacked**: one array per graph input with the samples on axis 0 (the array's rank is the
//!   input's declared rank), plus constants (arrays for rank-0 inputs such as a sample rate,
//!   fed unchanged with every chunk);
//! * **per sample**: one complete feed per sample (a folder of `.npz` files), for models whose
//!   state inputs have no sample axis.
//!
//! [`Samples::check`] binds them to a graph: every input has data of the right kind (float or
//! integer), rank and fixed sizes, and every error is one line naming the input, what it
//! expects and what it got. Integer inputs are carried as [`TensorData::I64`]; they are never
//! quantized or observed.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use ndarray::{Array1, ArrayView1, Axis, Slice};

use super::batching::BatchChoice;
use crate::error::{Error, Result};
use crate::ir::{Dim, Graph, TensorData, ValueInfo};

/// One sample's complete feed, with where it came from (for messages).
#[derive(Debug, Clone)]
pub struct Feed {
    /// The file (or "sample i") it was read from.
    pub origin: String,
    pub arrays: BTreeMap<String, TensorData>,
}

/// How the inputs are held.
#[derive(Debug, Clone)]
pub enum SampleInputs {
    /// Arrays by input name with the samples on axis 0, and constants fed with every chunk.
    Stacked {
        arrays: BTreeMap<String, TensorData>,
        constants: BTreeMap<String, TensorData>,
        count: usize,
    },
    /// One complete feed per sample.
    PerSample(Vec<Feed>),
}

/// The data of a workflow: inputs, optional labels, and what they are.
#[derive(Debug, Clone)]
pub struct Samples {
    inputs: SampleInputs,
    /// One class index per sample, checked against the classes when used.
    pub labels: Option<Array1<i64>>,
    /// Shown with every figure computed from these samples.
    pub description: String,
    /// Generated data (ranges only indicative, no labels).
    pub synthetic: bool,
    /// Batch choices already probed, by graph fingerprint (shared by clones).
    pub(super) batch_cache: Arc<Mutex<Vec<(u64, BatchChoice)>>>,
}

/// The feeds of one chunk, by input name.
pub type Feeds = HashMap<String, TensorData>;

fn leading(data: &TensorData) -> Option<usize> {
    data.shape().first().copied()
}

fn slice_rows(data: &TensorData, range: Range<usize>) -> TensorData {
    let slice = Slice::from(range);
    match data {
        TensorData::F32(a) => TensorData::F32(a.slice_axis(Axis(0), slice).to_owned()),
        TensorData::I64(a) => TensorData::I64(a.slice_axis(Axis(0), slice).to_owned()),
    }
}

impl Samples {
    fn with_inputs(inputs: SampleInputs, description: impl Into<String>) -> Self {
        Samples {
            inputs,
            labels: None,
            description: description.into(),
            synthetic: false,
            batch_cache: Arc::default(),
        }
    }

    /// Stacked samples: `arrays` share their axis-0 length (the sample count); `constants` are
    /// fed unchanged with every chunk.
    pub fn stacked(
        arrays: BTreeMap<String, TensorData>,
        constants: BTreeMap<String, TensorData>,
        description: impl Into<String>,
    ) -> Result<Self> {
        let mut count = None;
        for (name, data) in &arrays {
            let Some(n) = leading(data) else {
                return Err(Error::Input {
                    name: name.clone(),
                    msg: "a rank-0 array has no sample axis (give it as a constant)".into(),
                });
            };
            match count {
                None => count = Some((name, n)),
                Some((first, m)) if m != n => {
                    return Err(Error::Input {
                        name: name.clone(),
                        msg: format!(
                            "holds {n} samples on axis 0 but '{first}' holds {m}: every input \
                             needs the same number of samples"
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        let count = count.map_or(0, |(_, n)| n);
        if arrays.is_empty() && constants.is_empty() {
            return Err(Error::Input {
                name: "data".into(),
                msg: "holds no input arrays".into(),
            });
        }
        // Only constants: a single sample.
        let count = if arrays.is_empty() { 1 } else { count };
        Ok(Samples::with_inputs(
            SampleInputs::Stacked {
                arrays,
                constants,
                count,
            },
            description,
        ))
    }

    /// One input's stacked samples.
    pub fn single(name: &str, data: TensorData, description: impl Into<String>) -> Result<Self> {
        Samples::stacked(
            BTreeMap::from([(name.to_string(), data)]),
            BTreeMap::new(),
            description,
        )
    }

    /// One complete feed per sample.
    pub fn per_sample(feeds: Vec<Feed>, description: impl Into<String>) -> Result<Self> {
        if feeds.is_empty() {
            return Err(Error::Input {
                name: "data".into(),
                msg: "holds no samples".into(),
            });
        }
        Ok(Samples::with_inputs(
            SampleInputs::PerSample(feeds),
            description,
        ))
    }

    /// These samples with `labels` (one per sample).
    pub fn with_labels(mut self, labels: Option<Array1<i64>>) -> Result<Self> {
        if let Some(l) = &labels
            && l.len() != self.count()
        {
            return Err(Error::Input {
                name: "labels".into(),
                msg: format!(
                    "{} labels for {} samples: the labels do not match the data",
                    l.len(),
                    self.count()
                ),
            });
        }
        self.labels = labels;
        Ok(self)
    }

    /// Marks the samples as generated.
    pub fn into_synthetic(mut self) -> Self {
        self.synthetic = true;
        self
    }

    /// The number of samples.
    pub fn count(&self) -> usize {
        match &self.inputs {
            SampleInputs::Stacked { count, .. } => *count,
            SampleInputs::PerSample(feeds) => feeds.len(),
        }
    }

    /// How the inputs are held.
    pub fn inputs(&self) -> &SampleInputs {
        &self.inputs
    }

    /// Whether each sample is a complete feed of its own.
    pub fn is_per_sample(&self) -> bool {
        matches!(self.inputs, SampleInputs::PerSample(_))
    }

    /// The feeds of samples `range` (a per-sample range holds one sample).
    pub fn feeds(&self, range: Range<usize>) -> Feeds {
        match &self.inputs {
            SampleInputs::Stacked {
                arrays, constants, ..
            } => arrays
                .iter()
                .map(|(name, data)| (name.clone(), slice_rows(data, range.clone())))
                .chain(constants.iter().map(|(n, d)| (n.clone(), d.clone())))
                .collect(),
            SampleInputs::PerSample(feeds) => feeds
                .get(range.start)
                .map(|f| {
                    f.arrays
                        .iter()
                        .map(|(n, d)| (n.clone(), d.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The first `n` samples (all of them when there are fewer), labels included.
    pub fn first(&self, n: usize) -> Samples {
        let n = n.min(self.count());
        let inputs = match &self.inputs {
            SampleInputs::Stacked {
                arrays, constants, ..
            } => SampleInputs::Stacked {
                arrays: arrays
                    .iter()
                    .map(|(k, v)| (k.clone(), slice_rows(v, 0..n)))
                    .collect(),
                constants: constants.clone(),
                count: n,
            },
            SampleInputs::PerSample(feeds) => SampleInputs::PerSample(feeds[..n].to_vec()),
        };
        Samples {
            inputs,
            labels: self
                .labels
                .as_ref()
                .map(|l| l.slice_axis(Axis(0), Slice::from(0..n)).to_owned()),
            description: self.description.clone(),
            synthetic: self.synthetic,
            batch_cache: Arc::default(),
        }
    }

    /// The samples as one stacked float array of the input `name` (for single-input tools
    /// that need the values themselves).
    pub fn stacked_input(&self, name: &str) -> Option<&TensorData> {
        match &self.inputs {
            SampleInputs::Stacked { arrays, .. } => arrays.get(name),
            SampleInputs::PerSample(_) => None,
        }
    }

    /// Checks that these samples fit `graph`'s inputs: names, kind, rank and fixed sizes (the
    /// batch axis of stacked arrays excepted; batching handles it). One line per error, naming
    /// the input, what it expects and what it got.
    pub fn check(&self, graph: &Graph) -> Result<()> {
        let required: Vec<&ValueInfo> = graph
            .inputs
            .iter()
            .filter(|i| !graph.initializers.contains_key(&i.name))
            .collect();
        match &self.inputs {
            SampleInputs::Stacked {
                arrays, constants, ..
            } => {
                let given = arrays.keys().chain(constants.keys());
                check_names(graph, &required, given, None)?;
                for (name, data) in arrays {
                    if let Some(info) = graph.inputs.iter().find(|i| &i.name == name) {
                        check_value(info, data, true, None)?;
                    }
                }
                for (name, data) in constants {
                    if let Some(info) = graph.inputs.iter().find(|i| &i.name == name) {
                        check_value(info, data, false, None)?;
                    }
                }
            }
            SampleInputs::PerSample(feeds) => {
                for feed in feeds {
                    check_names(graph, &required, feed.arrays.keys(), Some(&feed.origin))?;
                    for (name, data) in &feed.arrays {
                        if let Some(info) = graph.inputs.iter().find(|i| &i.name == name) {
                            check_value(info, data, false, Some(&feed.origin))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn input_list(graph: &Graph) -> String {
    graph
        .inputs
        .iter()
        .filter(|i| !graph.initializers.contains_key(&i.name))
        .map(|i| format!("'{}' {}", i.name, expectation(i)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_names<'a>(
    graph: &Graph,
    required: &[&ValueInfo],
    given: impl Iterator<Item = &'a String> + Clone,
    origin: Option<&str>,
) -> Result<()> {
    let at = origin.map_or(String::new(), |o| format!(" in {o}"));
    if let Some(extra) = given
        .clone()
        .find(|name| !graph.inputs.iter().any(|i| &&i.name == name))
    {
        return Err(Error::Input {
            name: extra.clone(),
            msg: format!(
                "the model has no such input{at} (its inputs: {})",
                input_list(graph)
            ),
        });
    }
    if let Some(missing) = required
        .iter()
        .find(|i| !given.clone().any(|name| *name == i.name))
    {
        let held: Vec<String> = given.map(|n| format!("'{n}'")).collect();
        return Err(Error::Input {
            name: missing.name.clone(),
            msg: format!(
                "expects {}, but the data{at} has no array for it (it holds {})",
                expectation(missing),
                if held.is_empty() {
                    "none".to_string()
                } else {
                    held.join(", ")
                }
            ),
        });
    }
    Ok(())
}

/// "float [N, 3, 48, 192]" or "int64 []".
pub fn expectation(info: &ValueInfo) -> String {
    let kind = match info.dtype {
        Some(d) if !d.is_held_as_f32() => d.name(),
        Some(_) => "float",
        None => "any type",
    };
    format!("{kind} {}", info.shape_text())
}

/// "int64 [4, 3, 48]".
pub fn description(data: &TensorData) -> String {
    let kind = match data {
        TensorData::F32(_) => "float",
        TensorData::I64(_) => "int64",
    };
    format!("{kind} {:?}", data.shape())
}

/// Checks one value against the declared input. `stacked`: axis 0 holds samples, so its size
/// is not compared with the declared batch.
fn check_value(
    info: &ValueInfo,
    data: &TensorData,
    stacked: bool,
    origin: Option<&str>,
) -> Result<()> {
    let kind_fits = info
        .dtype
        .is_none_or(|d| d.is_held_as_f32() == matches!(data, TensorData::F32(_)));
    let shape = data.shape();
    let shape_fits = info.shape.as_ref().is_none_or(|dims| {
        dims.len() == shape.len()
            && dims.iter().zip(shape).enumerate().all(|(axis, (d, &n))| {
                (stacked && axis == 0)
                    || match d {
                        Dim::Fixed(f) => *f == n,
                        _ => true,
                    }
            })
    });
    if kind_fits && shape_fits {
        return Ok(());
    }
    let at = origin.map_or(String::new(), |o| format!(" ({o})"));
    let samples = if stacked { ", samples on axis 0" } else { "" };
    Err(Error::Input {
        name: info.name.clone(),
        msg: format!(
            "expects {}{samples}, got {}{at}",
            expectation(info),
            description(data)
        ),
    })
}

/// Checks labels (of samples `first`, `first + 1`, ...) against `classes` (0..classes): one
/// line naming the first bad one.
pub fn check_labels(
    labels: ArrayView1<'_, i64>,
    first: usize,
    classes: usize,
    output: &str,
) -> Result<()> {
    match labels
        .iter()
        .enumerate()
        .find(|(_, l)| **l < 0 || **l as usize >= classes)
    {
        None => Ok(()),
        Some((i, l)) => Err(Error::Input {
            name: "labels".into(),
            msg: format!(
                "label {l} of sample {} is not a class of output '{output}' (0..{})",
                first + i,
                classes.saturating_sub(1)
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::ir::DType;

    fn graph(inputs: Vec<ValueInfo>) -> Graph {
        Graph {
            inputs,
            ..Default::default()
        }
    }

    fn info(name: &str, dtype: DType, dims: Vec<Dim>) -> ValueInfo {
        ValueInfo {
            name: name.into(),
            dtype: Some(dtype),
            shape: Some(dims),
        }
    }

    fn f32s(shape: &[usize]) -> TensorData {
        TensorData::F32(ArrayD::zeros(IxDyn(shape)))
    }

    fn i64s(shape: &[usize]) -> TensorData {
        TensorData::I64(ArrayD::zeros(IxDyn(shape)))
    }

    #[test]
    fn stacked_samples_slice_into_chunks_with_constants() {
        let arrays = BTreeMap::from([("x".to_string(), f32s(&[5, 2]))]);
        let constants = BTreeMap::from([("sr".to_string(), i64s(&[]))]);
        let samples = Samples::stacked(arrays, constants, "test").unwrap();
        assert_eq!(samples.count(), 5);
        let feeds = samples.feeds(3..5);
        assert_eq!(feeds["x"].shape(), &[2, 2]);
        assert_eq!(feeds["sr"].shape(), &[] as &[usize]);
        assert_eq!(samples.first(2).count(), 2);
    }

    #[test]
    fn mismatched_sample_counts_and_labels_are_one_line_errors() {
        let arrays = BTreeMap::from([("a".to_string(), f32s(&[5, 2])), ("b".into(), f32s(&[4]))]);
        let err = Samples::stacked(arrays, BTreeMap::new(), "t").unwrap_err();
        assert!(err.to_string().contains("holds 4 samples"), "{err}");
        let one = Samples::single("a", f32s(&[5, 2]), "t").unwrap();
        let err = one.with_labels(Some(Array1::zeros(4))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 'labels': 4 labels for 5 samples: the labels do not match the data"
        );
        let labels = Array1::from(vec![0, 3, 2]);
        let err = check_labels(labels.view(), 10, 3, "probs").unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 'labels': label 3 of sample 11 is not a class of output 'probs' (0..2)"
        );
    }

    #[test]
    fn check_names_the_input_what_it_expects_and_what_it_got() {
        let n = Dim::Symbolic("N".into());
        let g = graph(vec![
            info(
                "x",
                DType::F32,
                vec![n.clone(), Dim::Fixed(3), Dim::Fixed(48), Dim::Fixed(192)],
            ),
            info("sr", DType::I64, vec![]),
        ]);
        let feeds = |x: TensorData| {
            Samples::stacked(
                BTreeMap::from([("x".to_string(), x)]),
                BTreeMap::from([("sr".to_string(), i64s(&[]))]),
                "t",
            )
            .unwrap()
        };
        feeds(f32s(&[7, 3, 48, 192])).check(&g).unwrap();
        let err = feeds(i64s(&[4, 3, 48])).check(&g).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 'x': expects float [N, 3, 48, 192], samples on axis 0, got int64 [4, 3, 48]"
        );
        let err = feeds(f32s(&[4, 3, 48, 100])).check(&g).unwrap_err();
        assert!(
            err.to_string().contains("got float [4, 3, 48, 100]"),
            "{err}"
        );
        let missing = Samples::single("x", f32s(&[1, 3, 48, 192]), "t").unwrap();
        let err = missing.check(&g).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("input 'sr': expects int64 [], but the data has no array"),
            "{err}"
        );
        let extra = Samples::single("y", f32s(&[1]), "t").unwrap();
        let err = extra.check(&g).unwrap_err();
        assert!(err.to_string().contains("no such input"), "{err}");
        let per_sample = Samples::per_sample(
            vec![Feed {
                origin: "003.npz".into(),
                arrays: BTreeMap::from([
                    ("x".to_string(), f32s(&[1, 3, 48, 192])),
                    ("sr".to_string(), f32s(&[])),
                ]),
            }],
            "t",
        )
        .unwrap();
        let err = per_sample.check(&g).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 'sr': expects int64 [], got float [] (003.npz)"
        );
    }
}
