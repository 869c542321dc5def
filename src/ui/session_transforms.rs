//! The session's transforms (BN folding, equalization, high-bias absorption, bias correction)
//! and its exports. Float transforms run on a worker and replace the shown model (so the
//! weight views show the folded or equalized weights, and calibration runs again); bias
//! correction is applied inside each evaluation, once the config and calibration are known.
//! Exports run on a worker from the same graph the evaluation uses.

use std::path::PathBuf;
use std::sync::Arc;

use crate::calib::CalibrationStats;
use crate::export::{ExportFormat, ExportInputs, ExportSummary, export_to};
use crate::ir::{Graph, Model};
use crate::jobs::pipeline::{Calibration, Data, Evaluation, input_name};
use crate::jobs::{JobError, JobSlot};
use crate::quant::{QuantConfig, QuantizedModel};
use crate::summary::ModelSummary;
use crate::transform::toggles::{
    BiasCorrection, CorrectionData, TransformToggles, Transformed, apply_bias_correction,
    apply_float_transforms,
};
use crate::transform::{FloatGraph, TransformReport};

use super::layers::layer_rows;
use super::load_job::LoadedModel;
use super::session::{Part, Selection, Session, Waker};

/// What bias correction needs from the session (taken when an evaluation starts).
#[derive(Clone)]
pub struct CorrectionInput {
    pub mode: BiasCorrection,
    pub model: Arc<FloatGraph>,
}

/// Transform and export state of a session.
#[derive(Default)]
pub struct SessionExtras {
    /// The model as loaded, before any transform.
    original: Option<Arc<Model>>,
    /// The switches in force (those the shown model was made with, plus bias correction).
    pub toggles: TransformToggles,
    /// The float graph after the float transforms (with the BN statistics folding left).
    float_model: Option<Arc<FloatGraph>>,
    /// What each float transform did.
    pub reports: Vec<TransformReport>,
    transform_job: JobSlot<(TransformToggles, Transformed, LoadedModel)>,
    export_job: JobSlot<ExportSummary>,
    /// The last transform or export message.
    pub message: Option<String>,
}

impl SessionExtras {
    /// The inputs of bias correction, when it is switched on.
    pub fn bias_correction_input(&self) -> Option<CorrectionInput> {
        if self.toggles.bias_correction == BiasCorrection::Off {
            return None;
        }
        Some(CorrectionInput {
            mode: self.toggles.bias_correction,
            model: self.float_model.clone()?,
        })
    }

    /// Whether a transform or an export is running.
    pub fn is_busy(&self) -> bool {
        self.transform_job.is_running() || self.export_job.is_running()
    }
}

/// The graph bias correction makes for `config` (None when it is off).
pub fn corrected_graph(
    correction: Option<&CorrectionInput>,
    config: &QuantConfig,
    calibration: &Calibration,
    data: &Data,
) -> Result<Option<Graph>, JobError> {
    let Some(correction) = correction else {
        return Ok(None);
    };
    let toggles = TransformToggles {
        bias_correction: correction.mode,
        ..Default::default()
    };
    let input = input_name(&correction.model.graph)?.to_string();
    let samples = CorrectionData {
        stats: &calibration.stats,
        input: &input,
        samples: data.calibration.inputs.view(),
    };
    let transformed = Transformed {
        model: (*correction.model).clone(),
        reports: Vec::new(),
    };
    let corrected = apply_bias_correction(&transformed, &toggles, config, Some(&samples))?;
    Ok(Some(corrected.model.graph))
}

impl Session {
    /// The model as loaded, before any transform.
    pub fn original_model(&self) -> Arc<Model> {
        self.extras
            .original
            .clone()
            .unwrap_or_else(|| self.loaded.model.clone())
    }

    /// The switches the session uses.
    pub fn transforms(&self) -> TransformToggles {
        self.extras.toggles
    }

    /// Switches transforms. Folding, equalization or absorption rebuild the model on a worker
    /// (then calibration runs again); bias correction only re-evaluates.
    pub fn set_transforms(&mut self, toggles: TransformToggles, wake: &Waker) {
        let before = self.extras.toggles;
        if toggles == before {
            return;
        }
        if self.extras.original.is_none() {
            self.extras.original = Some(self.loaded.model.clone());
        }
        let float_changed = toggles.fold_bn != before.fold_bn
            || toggles.equalize != before.equalize
            || toggles.absorb_bias != before.absorb_bias;
        self.extras.toggles = toggles;
        self.revision += 1;
        if !float_changed {
            if self.auto_evaluate {
                self.request_evaluation(false);
            }
            return;
        }
        let Some(original) = self.extras.original.clone() else {
            return;
        };
        let w = wake.clone();
        let started = self.extras.transform_job.start(
            "quantscope-transform",
            "applying transforms".to_string(),
            self.revision,
            move || w(),
            move |ctx| {
                let transformed = apply_float_transforms(&original.graph, &toggles)?;
                ctx.check()?;
                let model = Model {
                    path: original.path.clone(),
                    format: original.format,
                    graph: transformed.model.graph.clone(),
                };
                let loaded = LoadedModel {
                    summary: ModelSummary::of(&model),
                    layers: layer_rows(&model.graph),
                    model: Arc::new(model),
                };
                Ok((toggles, transformed, loaded))
            },
        );
        if let Err(e) = started {
            self.extras.message = Some(e.to_string());
        }
    }

    /// Polls the transform and export jobs; returns whether anything arrived.
    pub fn tick_extras(&mut self, wake: &Waker) -> bool {
        let mut changed = false;
        if let Some(outcome) = self.extras.transform_job.poll() {
            changed = true;
            match outcome.result {
                Ok((toggles, transformed, loaded)) => {
                    self.adopt_transformed(toggles, transformed, loaded, wake)
                }
                Err(JobError::Cancelled) => {}
                Err(e) => {
                    // Back to the switches the shown model was made with.
                    let shown = self.float_toggles();
                    self.extras.toggles = TransformToggles {
                        bias_correction: self.extras.toggles.bias_correction,
                        ..shown
                    };
                    self.extras.message = Some(format!("transform refused: {e}"));
                }
            }
        }
        if let Some(outcome) = self.extras.export_job.poll() {
            changed = true;
            self.extras.message = Some(match outcome.result {
                Ok(summary) => {
                    let files: Vec<String> = summary
                        .files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect();
                    let mut text = format!("exported {}", files.join(", "));
                    if !summary.warnings.is_empty() {
                        text.push_str(&format!(" ({})", summary.warnings.join("; ")));
                    }
                    text
                }
                Err(e) => format!("export failed: {e}"),
            });
        }
        changed
    }

    /// The float switches the shown model was made with.
    fn float_toggles(&self) -> TransformToggles {
        let applied = |name: &str| self.extras.reports.iter().any(|r| r.transform == name);
        TransformToggles {
            fold_bn: applied("BN folding"),
            equalize: applied("cross-layer equalization"),
            absorb_bias: applied("high-bias absorption"),
            bias_correction: BiasCorrection::Off,
        }
    }

    fn adopt_transformed(
        &mut self,
        toggles: TransformToggles,
        transformed: Transformed,
        loaded: LoadedModel,
        wake: &Waker,
    ) {
        let selected = self.selection.and_then(|s| {
            let row = self.loaded.layers.get(s.layer)?;
            Some((row.node.clone(), s.part))
        });
        self.loaded = loaded;
        self.selection = selected
            .and_then(|(node, part)| {
                let layer = self.loaded.layers.iter().position(|r| r.node == node)?;
                Some(Selection { layer, part })
            })
            .or_else(|| {
                let layer = self.loaded.layers.iter().position(|l| l.weight.is_some())?;
                Some(Selection {
                    layer,
                    part: Part::Weight,
                })
            });
        self.extras.reports = transformed.reports;
        self.extras.float_model = Some(Arc::new(transformed.model));
        self.extras.toggles = TransformToggles {
            bias_correction: self.extras.toggles.bias_correction,
            ..toggles
        };
        self.extras.message = None;
        self.calibration = None;
        self.evaluation = None;
        self.shown = None;
        self.revision += 1;
        self.calibrate(wake);
        if self.auto_evaluate {
            self.request_evaluation(true);
        }
    }

    /// Exports the current config as `format` to `path` on a worker.
    pub fn export(&mut self, format: ExportFormat, path: PathBuf, wake: &Waker) {
        let (Some(data), Some(calibration)) = (self.data.clone(), self.calibration.clone()) else {
            self.extras.message =
                Some("export needs calibration: wait for it to finish (or pick data)".into());
            return;
        };
        let model = self.loaded.model.clone();
        let config = self.config.clone();
        let correction = self.extras.bias_correction_input();
        let evaluation = self.current_evaluation().map(export_evaluation);
        let w = wake.clone();
        let started = self.extras.export_job.start(
            "quantscope-export",
            format!("exporting {}", format.name()),
            self.revision,
            move || w(),
            move |_ctx| {
                let corrected = corrected_graph(correction.as_ref(), &config, &calibration, &data)?;
                let model = match corrected {
                    Some(graph) => Arc::new(Model {
                        path: model.path.clone(),
                        format: model.format,
                        graph,
                    }),
                    None => model,
                };
                let stats: &std::collections::BTreeMap<String, CalibrationStats> =
                    &calibration.stats;
                let quantized = QuantizedModel::prepare(&model.graph, &config, stats)?;
                let inputs = ExportInputs {
                    model: &model,
                    config: &config,
                    quantized: &quantized,
                    evaluation: evaluation.as_ref(),
                };
                Ok(export_to(format, &inputs, &path)?)
            },
        );
        if let Err(e) = started {
            self.extras.message = Some(e.to_string());
        }
    }
}

/// The figures a report carries, from the app's latest evaluation.
fn export_evaluation(evaluation: &Evaluation) -> crate::export::Evaluation {
    crate::export::Evaluation {
        float_accuracy: evaluation.comparison.float_accuracy,
        quantized_accuracy: evaluation.comparison.quant_accuracy,
        top1_agreement: Some(evaluation.comparison.agreement),
        size_bytes: Some(evaluation.cost.size_bytes),
        float32_size_bytes: Some(evaluation.cost.float_size_bytes),
    }
}
