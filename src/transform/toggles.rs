//! The transforms a user switches on in the app (or a session file), applied in the lecture's
//! order: BN folding, cross-layer equalization, high-bias absorption on the float graph, then
//! bias correction once the quantization config (and, for the empirical variant, calibration
//! statistics) are known. Each step's [`TransformReport`] is kept so the app can show what was
//! changed, what was skipped and why.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::absorb_bias::absorb_high_bias;
use super::bias_correction::{analytic_bias_correction, empirical_bias_correction};
use super::equalize::{EqualizeOptions, equalize};
use super::fold_bn::fold_batch_norm;
use super::{FloatGraph, TransformReport};
use crate::calib::CalibrationStats;
use crate::error::Result;
use crate::ir::Graph;
use crate::quant::QuantConfig;
use crate::workflow::{RunControl, Samples};

/// Which bias correction to apply after quantization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BiasCorrection {
    #[default]
    Off,
    /// Data-free: expected input of each layer from the folded BN's β and γ (Gaussian through
    /// ReLU); needs BN folding.
    Analytic,
    /// Measured: the mean output shift per channel on the calibration data.
    Empirical,
}

/// The transform switches of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TransformToggles {
    pub fold_bn: bool,
    pub equalize: bool,
    pub absorb_bias: bool,
    pub bias_correction: BiasCorrection,
}

impl TransformToggles {
    /// Whether any switch is on.
    pub fn any(&self) -> bool {
        self.fold_bn
            || self.equalize
            || self.absorb_bias
            || self.bias_correction != BiasCorrection::Off
    }
}

/// A graph after the float transforms, with the reports of each step.
#[derive(Debug, Clone)]
pub struct Transformed {
    pub model: FloatGraph,
    pub reports: Vec<TransformReport>,
}

/// Applies the float-preserving transforms that are switched on (folding, equalization,
/// absorption) to `graph`. A step that finds nothing to do leaves the graph and says why in
/// its report; a step that would produce NaN/Inf fails with an error naming the tensor.
pub fn apply_float_transforms(graph: &Graph, toggles: &TransformToggles) -> Result<Transformed> {
    apply_float_transforms_with(graph, toggles, &EqualizeOptions::default())
}

/// [`apply_float_transforms`] with these equalization options.
pub fn apply_float_transforms_with(
    graph: &Graph,
    toggles: &TransformToggles,
    equalize_options: &EqualizeOptions,
) -> Result<Transformed> {
    let mut model = FloatGraph::new(graph.clone());
    let mut reports = Vec::new();
    if toggles.fold_bn {
        let (folded, report) = fold_batch_norm(&model)?;
        model = folded;
        reports.push(report);
    }
    if toggles.equalize {
        let (equalized, report) = equalize(&model, equalize_options)?;
        model = equalized;
        reports.push(report);
    }
    if toggles.absorb_bias {
        let (absorbed, report) = absorb_high_bias(&model)?;
        model = absorbed;
        reports.push(report);
    }
    Ok(Transformed { model, reports })
}

/// Calibration data for empirical bias correction: the statistics `config` needs, the
/// samples, and the run's cancel flag and progress.
pub struct CorrectionData<'a> {
    pub stats: &'a BTreeMap<String, CalibrationStats>,
    pub samples: &'a Samples,
    pub control: RunControl<'a>,
}

/// Applies the bias correction switched on in `toggles` for `config`. Empirical correction
/// without `data` is an error; analytic correction on a graph without folded BN statistics
/// leaves the graph and says why in its report.
pub fn apply_bias_correction(
    transformed: &Transformed,
    toggles: &TransformToggles,
    config: &QuantConfig,
    data: Option<&CorrectionData<'_>>,
) -> Result<Transformed> {
    let (model, report) = match toggles.bias_correction {
        BiasCorrection::Off => return Ok(transformed.clone()),
        BiasCorrection::Analytic => analytic_bias_correction(&transformed.model, config)?,
        BiasCorrection::Empirical => {
            let data = data.ok_or_else(|| crate::Error::Input {
                name: "calibration data".into(),
                msg: "empirical bias correction needs calibration samples".into(),
            })?;
            empirical_bias_correction(
                &transformed.model,
                config,
                data.stats,
                data.samples,
                &data.control,
            )?
        }
    };
    let mut reports = transformed.reports.clone();
    reports.push(report);
    Ok(Transformed { model, reports })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use ndarray::{ArrayD, Axis};

    use super::*;
    use crate::engine::{Plan, RunOptions};
    use crate::ir::TensorData;
    use crate::load::load_model;
    use crate::load::read_arrays;

    fn sample(name: &str) -> Graph {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sample_models")
            .join(name);
        load_model(&path).unwrap().graph
    }

    fn digits(count: usize) -> ArrayD<f32> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_models/data/digits_test_x.npy");
        let arrays = read_arrays(&path).unwrap();
        let x = arrays[0].data.to_f32();
        x.slice_axis(Axis(0), (0..count).into()).to_owned()
    }

    fn logits(graph: &Graph, x: &ArrayD<f32>) -> ArrayD<f32> {
        let input = graph.inputs[0].name.clone();
        let feeds = HashMap::from([(input, TensorData::F32(x.clone()))]);
        let outputs = Plan::new(graph)
            .unwrap()
            .run(feeds, None, RunOptions::default())
            .unwrap();
        outputs[0].1.to_f32()
    }

    #[test]
    fn float_transforms_keep_the_outputs_and_report_each_step() {
        let graph = sample("digits_mobilenet.onnx");
        let toggles = TransformToggles {
            fold_bn: true,
            equalize: true,
            absorb_bias: true,
            bias_correction: BiasCorrection::Off,
        };
        let transformed = apply_float_transforms(&graph, &toggles).unwrap();
        let names: Vec<&str> = transformed
            .reports
            .iter()
            .map(|r| r.transform.as_str())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(!transformed.reports[0].applied.is_empty(), "BN folded");
        assert!(
            !transformed.reports[1].applied.is_empty(),
            "pairs equalized"
        );
        let x = digits(32);
        let before = logits(&graph, &x);
        let after = logits(&transformed.model.graph, &x);
        let worst = (&before - &after)
            .iter()
            .fold(0.0f32, |m, d| m.max(d.abs()));
        assert!(worst <= 1e-4, "outputs moved by {worst}");
        let batch_norms = |g: &Graph| {
            g.nodes
                .iter()
                .filter(|n| n.op_type == "BatchNormalization")
                .count()
        };
        assert!(batch_norms(&graph) > 0);
        assert_eq!(batch_norms(&transformed.model.graph), 0);
    }

    #[test]
    fn nothing_switched_on_changes_nothing_and_empirical_needs_data() {
        let graph = sample("digits_cnn.onnx");
        let toggles = TransformToggles::default();
        assert!(!toggles.any());
        let transformed = apply_float_transforms(&graph, &toggles).unwrap();
        assert!(transformed.reports.is_empty());
        assert_eq!(transformed.model.graph.nodes.len(), graph.nodes.len());
        let empirical = TransformToggles {
            bias_correction: BiasCorrection::Empirical,
            ..Default::default()
        };
        let error = apply_bias_correction(&transformed, &empirical, &QuantConfig::default(), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("calibration samples"), "{error}");
    }
}
