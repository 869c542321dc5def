//! The session's transforms (BN folding, equalization, high-bias absorption, bias correction)
//! and its exports. Float transforms run on a worker and give a rebuilt model for the session
//! to show (so the weight views show the folded or equalized weights, and calibration runs
//! again); bias correction is applied inside each evaluation, once the config and calibration
//! are known; the evaluation's worker measures its per-channel output shifts before and after
//! on (the first samples of) the evaluation data and sends the report back, tagged with the config it was made for. Exports run on a
//! worker from the same graph the evaluation uses.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::export::{ExportFormat, ExportInputs, ExportSummary, export_to};
use crate::ir::{Graph, Model};
use crate::jobs::pipeline::{Calibration, Data, Evaluation};
use crate::jobs::{JobError, JobSlot};
use crate::quant::{QuantConfig, QuantizedModel};
use crate::summary::ModelSummary;
use crate::transform::bias_correction::measure_shifts;
use crate::transform::toggles::{
    BiasCorrection, CorrectionData, TransformToggles, Transformed, apply_bias_correction,
    apply_float_transforms,
};
use crate::transform::{FloatGraph, TransformReport};
use crate::workflow::RunControl;

use super::layers::layer_rows;
use super::load_job::LoadedModel;
use super::waker::Waker;

/// What bias correction needs from the session (taken when an evaluation starts), and where
/// its report goes.
#[derive(Clone)]
pub struct CorrectionInput {
    pub mode: BiasCorrection,
    pub model: Arc<FloatGraph>,
    /// Where the report goes, with the shifts measured on the evaluation data (None: not
    /// wanted, as for exports).
    reports: Option<SyncSender<CorrectionOutcome>>,
}

/// A bias correction's report and what it was made for.
struct CorrectionOutcome {
    mode: BiasCorrection,
    model: Arc<FloatGraph>,
    config: QuantConfig,
    report: TransformReport,
}

/// Bias correction reports sent at once before the UI takes them (a newer one replaces
/// older ones; when full, the worker drops its report rather than wait).
const CORRECTION_REPORTS: usize = 4;

/// Evaluation samples the output shifts before and after bias correction are measured on at
/// most (per-channel means settle long before; the cost stays bounded on large data).
const SHIFT_SAMPLES: usize = 512;

/// The channel bias correction's reports come back on.
struct CorrectionReports {
    sender: SyncSender<CorrectionOutcome>,
    receiver: Receiver<CorrectionOutcome>,
}

impl Default for CorrectionReports {
    fn default() -> Self {
        let (sender, receiver) = sync_channel(CORRECTION_REPORTS);
        CorrectionReports { sender, receiver }
    }
}

/// What a change of the switches asks of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformSwitch {
    /// The switches are as they were.
    Unchanged,
    /// Only bias correction changed: the next evaluation applies it.
    BiasCorrection,
    /// A float transform changed: the model is being rebuilt on a worker.
    Rebuilding,
}

/// What an export is made from.
pub struct ExportSource<'a> {
    /// The model shown (after the float transforms).
    pub model: Arc<Model>,
    pub config: &'a QuantConfig,
    pub data: Option<Arc<Data>>,
    pub calibration: Option<Arc<Calibration>>,
    /// The evaluation of the current settings, for reports.
    pub evaluation: Option<&'a Evaluation>,
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
    correction_reports: CorrectionReports,
    /// The latest bias correction's report.
    correction: Option<CorrectionOutcome>,
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
            reports: Some(self.correction_reports.sender.clone()),
        })
    }

    /// The report of the bias correction in force under `config` (its output shifts before
    /// and after), once an evaluation has made it; None while none matches the switches, the
    /// shown model and `config`.
    pub fn correction_report(&self, config: &QuantConfig) -> Option<&TransformReport> {
        let outcome = self.correction.as_ref()?;
        let current = self.float_model.as_ref()?;
        (outcome.mode == self.toggles.bias_correction
            && Arc::ptr_eq(&outcome.model, current)
            && outcome.config == *config)
            .then_some(&outcome.report)
    }

    /// Whether a transform or an export is running.
    pub fn is_busy(&self) -> bool {
        self.transform_job.is_running() || self.export_job.is_running()
    }

    /// The model as loaded, before any transform (`shown` while none was switched on).
    pub fn original_model(&self, shown: &Arc<Model>) -> Arc<Model> {
        self.original.clone().unwrap_or_else(|| shown.clone())
    }

    /// Switches transforms on the model `shown`. Folding, equalization or absorption rebuild
    /// the model on a worker (tagged with `revision`, the session's next one); bias correction
    /// only changes the switches.
    pub fn switch(
        &mut self,
        toggles: TransformToggles,
        shown: &Arc<Model>,
        revision: u64,
        wake: &Waker,
    ) -> TransformSwitch {
        let before = self.toggles;
        if toggles == before {
            return TransformSwitch::Unchanged;
        }
        let original = self.original.get_or_insert_with(|| shown.clone()).clone();
        let float_changed = toggles.fold_bn != before.fold_bn
            || toggles.equalize != before.equalize
            || toggles.absorb_bias != before.absorb_bias;
        self.toggles = toggles;
        if !float_changed {
            return TransformSwitch::BiasCorrection;
        }
        let w = wake.clone();
        let started = self.transform_job.start(
            "quantscope-transform",
            "applying transforms".to_string(),
            revision,
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
            self.message = Some(e.to_string());
        }
        TransformSwitch::Rebuilding
    }

    /// Polls the transform and export jobs: whether anything arrived, and the rebuilt model
    /// when a transform has finished (the session shows it from then on).
    pub fn poll(&mut self) -> (bool, Option<LoadedModel>) {
        let mut changed = false;
        let mut rebuilt = None;
        while let Ok(outcome) = self.correction_reports.receiver.try_recv() {
            self.correction = Some(outcome);
            changed = true;
        }
        if let Some(outcome) = self.transform_job.poll() {
            changed = true;
            match outcome.result {
                Ok((toggles, transformed, loaded)) => {
                    self.reports = transformed.reports;
                    self.float_model = Some(Arc::new(transformed.model));
                    self.keep_bias_correction(toggles);
                    self.message = None;
                    rebuilt = Some(loaded);
                }
                Err(JobError::Cancelled) => {}
                Err(e) => {
                    // Back to the switches the shown model was made with.
                    self.keep_bias_correction(self.float_toggles());
                    self.message = Some(format!("transform refused: {e}"));
                }
            }
        }
        if let Some(outcome) = self.export_job.poll() {
            changed = true;
            self.message = Some(match outcome.result {
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
        (changed, rebuilt)
    }

    /// The float switches of `float`, with the bias correction in force.
    fn keep_bias_correction(&mut self, float: TransformToggles) {
        self.toggles = TransformToggles {
            bias_correction: self.toggles.bias_correction,
            ..float
        };
    }

    /// The float switches the shown model was made with.
    fn float_toggles(&self) -> TransformToggles {
        let applied = |name: &str| self.reports.iter().any(|r| r.transform == name);
        TransformToggles {
            fold_bn: applied("BN folding"),
            equalize: applied("cross-layer equalization"),
            absorb_bias: applied("high-bias absorption"),
            bias_correction: BiasCorrection::Off,
        }
    }

    /// Exports `source` under its config as `format` to `path` on a worker (tagged with
    /// `revision`); says so in the message when calibration has not run yet.
    pub fn export(
        &mut self,
        format: ExportFormat,
        path: PathBuf,
        source: ExportSource<'_>,
        revision: u64,
        wake: &Waker,
    ) {
        let (Some(data), Some(calibration)) = (source.data, source.calibration) else {
            self.message =
                Some("export needs calibration: wait for it to finish (or pick data)".into());
            return;
        };
        let model = source.model;
        let config = source.config.clone();
        let correction = self
            .bias_correction_input()
            .map(|c| CorrectionInput { reports: None, ..c });
        let evaluation = source.evaluation.cloned();
        let w = wake.clone();
        let started = self.export_job.start(
            "quantscope-export",
            format!("exporting {}", format.name()),
            revision,
            move || w(),
            move |ctx| {
                let corrected = corrected_graph(
                    correction.as_ref(),
                    &config,
                    &calibration,
                    &data,
                    &RunControl::cancel(ctx.cancel_flag()),
                )?;
                let model = match corrected {
                    Some(graph) => Arc::new(Model {
                        path: model.path.clone(),
                        format: model.format,
                        graph,
                    }),
                    None => model,
                };
                let quantized = QuantizedModel::prepare(&model.graph, &config, &calibration.stats)?;
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
            self.message = Some(e.to_string());
        }
    }
}

/// The graph bias correction makes for `config` (None when it is off).
pub fn corrected_graph(
    correction: Option<&CorrectionInput>,
    config: &QuantConfig,
    calibration: &Calibration,
    data: &Data,
    control: &RunControl<'_>,
) -> Result<Option<Graph>, JobError> {
    let Some(correction) = correction else {
        return Ok(None);
    };
    let toggles = TransformToggles {
        bias_correction: correction.mode,
        ..Default::default()
    };
    let samples = CorrectionData {
        stats: &calibration.stats,
        samples: &data.calibration,
        control: *control,
    };
    let transformed = Transformed {
        model: (*correction.model).clone(),
        reports: Vec::new(),
    };
    let mut corrected = apply_bias_correction(&transformed, &toggles, config, Some(&samples))?;
    if let (Some(sender), Some(mut report)) = (&correction.reports, corrected.reports.pop()) {
        measure_shifts(
            &correction.model,
            &corrected.model,
            config,
            &calibration.stats,
            &data.evaluation.first(SHIFT_SAMPLES),
            control,
            &mut report,
        )?;
        let outcome = CorrectionOutcome {
            mode: correction.mode,
            model: correction.model.clone(),
            config: config.clone(),
            report,
        };
        // Full: the UI has not polled for a while (it gets the next one); disconnected: the
        // session is gone. Neither is worth waiting for.
        let _ = sender.try_send(outcome);
    }
    Ok(Some(corrected.model.graph))
}
