//! One open model and everything derived from it: the `QuantConfig` and its revision, the
//! calibration and evaluation data, the latest calibration and evaluation, the shown tensor's
//! view data, and the jobs computing them (each tagged with the revision it was started for;
//! a result of an older revision is kept only as "stale", never shown as current).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::calib::Method;
use crate::export::ExportFormat;
use crate::ir::Model;
use crate::jobs::pipeline::{
    self, Calibration, Data, DataSource, Evaluation, Focus, default_source,
};
use crate::jobs::{JobError, JobSlot};
use crate::quant::{ActivationQuant, LayerQuant, QuantConfig, WeightScheme};
use crate::transform::toggles::TransformToggles;
use crate::workflow::RunControl;

use super::activation_distribution::{Shown, ViewKey, ViewWork, method_label, view_work};
use super::distribution::{
    DistributionCommand, DistributionInput, ExactFigures, NO_CHANNEL_CLIPS, QuantChoice,
};
use super::load_job::LoadedModel;
use super::selection::Selection;
use super::session_transforms::{ExportSource, SessionExtras, TransformSwitch, corrected_graph};
use super::waker::Waker;

/// Settings changes are evaluated once they have rested this long.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The open model's session: its config, data, results and their jobs.
pub struct Session {
    pub loaded: LoadedModel,
    pub config: QuantConfig,
    /// Bumped by every config change.
    pub revision: u64,
    pub source: DataSource,
    pub data: Option<Arc<Data>>,
    pub calibration: Option<Arc<Calibration>>,
    /// The latest evaluation and the revision it was computed for.
    pub evaluation: Option<(u64, Arc<Evaluation>)>,
    pub selection: Option<Selection>,
    pub shown: Option<Shown>,
    pub auto_evaluate: bool,
    /// The last job failure or cancellation, shown in the results panel.
    pub job_message: Option<String>,
    /// Why learned (AdaRound) rounding was last dropped from the config.
    pub adaround_notice: Option<String>,
    evaluate_after: Option<Instant>,
    calibration_job: JobSlot<(Arc<Data>, Calibration)>,
    evaluation_job: JobSlot<(Option<Focus>, Evaluation)>,
    view_job: JobSlot<Shown>,
    /// The focus of the latest evaluation.
    evaluated_focus: Option<Focus>,
    /// Transforms and exports (see `session_transforms`).
    pub extras: SessionExtras,
    /// What trained the shown model, when it is a trained (QAT) one.
    pub trained: Option<String>,
}

impl Session {
    /// A session on a freshly loaded model; the first weight is selected.
    pub fn new(loaded: LoadedModel) -> Self {
        let source = default_source(&loaded.model.path);
        let selection = Selection::first_weight(&loaded.layers);
        Session {
            loaded,
            config: QuantConfig::int8_per_channel(),
            revision: 1,
            source,
            data: None,
            calibration: None,
            evaluation: None,
            selection,
            shown: None,
            auto_evaluate: true,
            job_message: None,
            adaround_notice: None,
            evaluate_after: None,
            calibration_job: JobSlot::default(),
            evaluation_job: JobSlot::default(),
            view_job: JobSlot::default(),
            evaluated_focus: None,
            extras: SessionExtras::default(),
            trained: None,
        }
    }

    /// Whether inference (calibration, evaluation) is possible, or why not.
    pub fn inference_unavailable(&self) -> Option<String> {
        if self.loaded.summary.runnable {
            None
        } else {
            Some(format!(
                "{} holds weights only: there is no graph to calibrate or run",
                self.loaded.summary.path
            ))
        }
    }

    /// The running job's label and progress.
    pub fn progress(&self) -> Option<(String, f32)> {
        if let Some(job) = self.calibration_job.running() {
            return Some((job.label.clone(), job.progress()));
        }
        self.evaluation_job
            .running()
            .map(|job| (job.label.clone(), job.progress()))
    }

    /// Whether calibration or evaluation is running or due.
    pub fn is_busy(&self) -> bool {
        self.calibration_job.is_running()
            || self.evaluation_job.is_running()
            || self.evaluate_after.is_some()
            || self.extras.is_busy()
    }

    /// Whether the shown tensor's view data is being prepared.
    pub fn is_preparing_view(&self) -> bool {
        self.view_job.is_running()
    }

    /// The evaluation, if it belongs to the current revision.
    pub fn current_evaluation(&self) -> Option<&Evaluation> {
        match &self.evaluation {
            Some((rev, e)) if *rev == self.revision => Some(e),
            _ => None,
        }
    }

    /// Starts reading the data and calibrating (after a load or a data source change).
    pub fn calibrate(&mut self, wake: &Waker) {
        if self.inference_unavailable().is_some() {
            return;
        }
        self.evaluation_job.cancel();
        let model = self.loaded.model.clone();
        let source = self.source.clone();
        let w = wake.clone();
        let started = self.calibration_job.start(
            "quantscope-calibrate",
            format!("calibrating on {}", source.describe_for(&model.graph)),
            self.revision,
            move || w(),
            move |ctx| {
                let data = pipeline::read_data(&model.graph, &model.path, &source)?;
                ctx.check()?;
                let calibration = pipeline::calibrate(&model.graph, &data.calibration, ctx)?;
                Ok((Arc::new(data), calibration))
            },
        );
        // A new attempt: the last one's failure no longer describes what is on screen.
        self.job_message = started.err().map(|e| e.to_string());
    }

    /// Asks for an evaluation of the current revision, after [`DEBOUNCE`] (or now).
    pub fn request_evaluation(&mut self, now: bool) {
        if self.inference_unavailable().is_some() {
            return;
        }
        let at = Instant::now();
        self.evaluate_after = Some(if now {
            at.checked_sub(DEBOUNCE).unwrap_or(at)
        } else {
            at + DEBOUNCE
        });
    }

    /// Cancels calibration and evaluation (their results are dropped).
    pub fn cancel(&mut self) {
        if self.calibration_job.is_running() || self.evaluation_job.is_running() {
            self.job_message = Some("cancelled".into());
        }
        self.calibration_job.cancel();
        self.evaluation_job.cancel();
        self.evaluate_after = None;
    }

    /// A config change: new revision, re-evaluation when automatic.
    pub fn set_config(&mut self, mut config: QuantConfig) {
        let dropped = crate::quant::learned_rounding::retain_matching(&mut config);
        if !dropped.is_empty() || !config.adaround.is_empty() {
            self.adaround_notice = (!dropped.is_empty()).then(|| dropped.join("; "));
        }
        if config == self.config {
            return;
        }
        self.config = config;
        self.revision += 1;
        if self.auto_evaluate {
            self.request_evaluation(false);
        }
    }

    /// A new default quantization of every layer without an override.
    pub fn set_default(&mut self, quant: LayerQuant) {
        let mut config = self.config.clone();
        config.default = quant;
        self.set_config(config);
    }

    /// A per-layer override of `node` (None: back to the default).
    pub fn set_layer(&mut self, node: String, quant: Option<LayerQuant>) {
        let mut config = self.config.clone();
        match quant {
            Some(q) => config.layers.insert(node, q),
            None => config.layers.remove(&node),
        };
        self.set_config(config);
    }

    /// A new data source: the data and everything computed from it are dropped, and
    /// calibration starts again.
    pub fn set_source(&mut self, source: DataSource, wake: &Waker) {
        self.source = source;
        self.data = None;
        self.recalibrate(wake);
    }

    /// Drops the calibration, the evaluation and the view data, and calibrates again.
    fn recalibrate(&mut self, wake: &Waker) {
        self.calibration = None;
        self.evaluation = None;
        self.shown = None;
        self.calibrate(wake);
    }

    /// Shows `selection` (and asks for its exact figures when evaluating automatically).
    pub fn select(&mut self, selection: Selection) {
        self.selection = Some(selection);
        if self.auto_evaluate && self.evaluation.is_some() {
            self.request_evaluation(false); // exact figures of the new tensor
        }
    }

    /// Moves the selection to the next (+1) or previous (−1) quantizable layer.
    pub fn step_selection(&mut self, delta: i32) {
        if let Some(next) = Selection::step(self.selection, &self.loaded.layers, delta) {
            self.selection = Some(next);
        }
    }

    /// Polls the jobs and starts the ones that are due. Returns whether anything arrived, and
    /// how long until the next due job when one waits for its debounce.
    pub fn tick(&mut self, wake: &Waker) -> (bool, Option<Duration>) {
        let mut changed = false;
        if let Some(outcome) = self.calibration_job.poll() {
            changed = true;
            match outcome.result {
                Ok((data, calibration)) => {
                    self.data = Some(data);
                    self.calibration = Some(Arc::new(calibration));
                    self.shown = None; // activations now have statistics
                    self.job_message = None;
                    if self.auto_evaluate {
                        self.request_evaluation(true);
                    }
                }
                Err(e) => self.job_message = Some(format!("calibration failed: {e}")),
            }
        }
        if let Some(outcome) = self.evaluation_job.poll() {
            changed = true;
            match outcome.result {
                Ok((focus, evaluation)) => {
                    self.evaluation = Some((outcome.revision, Arc::new(evaluation)));
                    self.evaluated_focus = focus;
                    self.job_message = None;
                }
                Err(JobError::Cancelled) => {}
                Err(e) => self.job_message = Some(format!("evaluation failed: {e}")),
            }
        }
        if let Some(outcome) = self.view_job.poll() {
            changed = true;
            match outcome.result {
                Ok(shown) => self.shown = Some(shown),
                Err(e) => {
                    // Shown as the view's problem (and not retried until the selection changes).
                    if let Some(key) = self.view_key() {
                        let why = format!("preparing the view failed: {e}");
                        self.shown = Some(Shown::problem(key, why));
                    }
                }
            }
        }
        self.prepare_view(wake);
        let Some(due) = self.evaluate_after else {
            return (changed, None);
        };
        let now = Instant::now();
        if now < due {
            return (changed, Some(due - now));
        }
        if self.calibration_job.is_running() {
            return (changed, None); // evaluated when calibration ends
        }
        self.evaluate_after = None;
        self.start_evaluation(wake);
        (true, None)
    }

    fn focus(&self) -> Option<Focus> {
        let (tensor, weight, node) = self.selected_tensor()?;
        Some(if weight {
            Focus::Weight { tensor, node }
        } else {
            Focus::Activation { tensor }
        })
    }

    fn start_evaluation(&mut self, wake: &Waker) {
        let (Some(data), Some(calibration)) = (self.data.clone(), self.calibration.clone()) else {
            if !self.calibration_job.is_running() {
                self.calibrate(wake);
                self.request_evaluation(true);
            }
            return;
        };
        let model = self.loaded.model.clone();
        let config = self.config.clone();
        let focus = self.focus();
        let w = wake.clone();
        let correction = self.extras.bias_correction_input();
        let started = self.evaluation_job.start(
            "quantscope-evaluate",
            format!("evaluating on {}", data.evaluation.description),
            self.revision,
            move || w(),
            move |ctx| {
                let control = RunControl::cancel(ctx.cancel_flag());
                let corrected =
                    corrected_graph(correction.as_ref(), &config, &calibration, &data, &control)?;
                let evaluation = pipeline::evaluate_against(
                    &model.graph,
                    corrected.as_ref().unwrap_or(&model.graph),
                    &config,
                    &calibration.stats,
                    &data.evaluation,
                    focus.as_ref(),
                    ctx,
                )?;
                Ok((focus, evaluation))
            },
        );
        if let Err(e) = started {
            self.job_message = Some(e.to_string());
        }
    }

    /// The shown tensor's name, whether it is a weight, and its node.
    pub fn selected_tensor(&self) -> Option<(String, bool, String)> {
        let selection = self.selection?;
        let tensor = selection.tensor(&self.loaded.layers)?.to_string();
        let node = self.loaded.layers.get(selection.layer)?.node.clone();
        Some((tensor, selection.part.is_weight(), node))
    }

    /// The settings of the shown tensor's layer.
    fn layer_quant(&self) -> LayerQuant {
        match self.selected_tensor() {
            Some((_, _, node)) => *self.config.layer(&node),
            None => self.config.default,
        }
    }

    /// The activation settings of the shown tensor's layer (of the default, or the int8
    /// default's when activations stay float).
    fn activation_settings(&self) -> Option<ActivationQuant> {
        self.layer_quant()
            .activations
            .or(self.config.default.activations)
            .or(QuantConfig::int8_per_channel().default.activations)
    }

    fn view_key(&self) -> Option<ViewKey> {
        let (tensor, weight, _) = self.selected_tensor()?;
        let act = self.activation_settings()?;
        Some(ViewKey {
            tensor,
            weight,
            bits: act.bits,
            method: act.method,
        })
    }

    /// Starts preparing the shown tensor's view data when the selection or the settings its
    /// markers depend on changed.
    fn prepare_view(&mut self, wake: &Waker) {
        let Some(key) = self.view_key() else {
            self.shown = None;
            return;
        };
        if self.shown.as_ref().is_some_and(|s| s.key == key) {
            return;
        }
        if self
            .view_job
            .running()
            .is_some_and(|j| j.label == key.tensor)
        {
            return;
        }
        let label = key.tensor.clone();
        let work = match view_work(
            key,
            &self.loaded.model.graph.initializers,
            &self.loaded.summary,
            self.calibration.as_ref(),
            self.inference_unavailable(),
        ) {
            ViewWork::Prepare(work) => work,
            ViewWork::Show(shown) => {
                self.shown = Some(*shown);
                return;
            }
            ViewWork::Nothing => return,
        };
        let w = wake.clone();
        let started = self.view_job.start(
            "quantscope-view",
            label,
            self.revision,
            move || w(),
            move |_| Ok(work()),
        );
        if let Err(e) = started {
            self.job_message = Some(e.to_string());
        }
    }

    /// The exact figures of the shown tensor, when the current revision's evaluation has them.
    pub fn exact_figures(&self) -> Option<ExactFigures> {
        let evaluation = self.current_evaluation()?;
        let figures = evaluation.focus.as_ref()?;
        let (tensor, _, _) = self.selected_tensor()?;
        (figures.tensor == tensor && self.evaluated_focus == self.focus()).then_some(ExactFigures {
            metrics: figures.metrics,
            per_tensor_sqnr_db: figures.per_tensor_sqnr_db,
            per_channel_sqnr_db: figures.per_channel_sqnr_db,
        })
    }

    /// The view's input for this frame (None while the view data is prepared).
    pub fn distribution_input<'a>(
        &'a self,
        exact: Option<&'a ExactFigures>,
        explain: bool,
    ) -> Option<DistributionInput<'a>> {
        let shown = self.shown.as_ref()?;
        let data = shown.data.as_ref().ok()?;
        let (tensor, weight, _) = self.selected_tensor()?;
        if shown.key.tensor != tensor {
            return None;
        }
        let layer = self.layer_quant();
        let act = self.activation_settings()?;
        let (choice, manual, method) = if weight {
            let quant = layer
                .weights
                .or(self.config.default.weights)
                .or(QuantConfig::int8_per_channel().default.weights)?;
            (
                QuantChoice {
                    scheme: quant.scheme,
                    per_channel: quant.per_channel,
                    unsigned: false,
                },
                self.config.weight_ranges.get(&tensor).copied(),
                self.config.weight_calib.unwrap_or(Method::MinMax),
            )
        } else {
            (
                QuantChoice {
                    scheme: WeightScheme::Linear {
                        bits: act.bits,
                        symmetric: act.symmetric,
                    },
                    per_channel: false,
                    unsigned: !act.symmetric,
                },
                self.config.activation_ranges.get(&tensor).copied(),
                act.method,
            )
        };
        let method_name = method_label(method);
        let auto = data
            .markers
            .iter()
            .find(|m| m.method == method_name)
            .map(|m| m.range)
            .unwrap_or_else(|| data.fine.range());
        let clips = if weight {
            self.config.weight_channel_ranges.get(&tensor)
        } else {
            self.config.activation_channel_ranges.get(&tensor)
        };
        let channel_clips = match clips {
            Some(clips) if choice.scheme.is_linear() => clips,
            _ => &NO_CHANNEL_CLIPS,
        };
        Some(DistributionInput {
            tensor: &shown.summary,
            data,
            choice,
            clip: manual.unwrap_or(auto),
            clip_is_manual: manual.is_some(),
            channel_clips,
            method_name,
            exact,
            explain,
        })
    }

    /// Why the shown tensor has no view data, if so.
    pub fn view_problem(&self) -> Option<&str> {
        self.shown.as_ref()?.data.as_ref().err().map(String::as_str)
    }

    /// Applies a command of the distribution view to the config.
    pub fn apply_distribution_command(&mut self, command: DistributionCommand) {
        let Some((tensor, weight, _)) = self.selected_tensor() else {
            return;
        };
        let mut config = self.config.clone();
        let channel_ranges = if weight {
            &mut config.weight_channel_ranges
        } else {
            &mut config.activation_channel_ranges
        };
        match command {
            DistributionCommand::SetChannelClip { channel, lo, hi } => {
                if lo.is_finite() && hi.is_finite() && lo < hi {
                    channel_ranges
                        .entry(tensor)
                        .or_default()
                        .insert(channel, (lo, hi));
                    self.set_config(config);
                }
                return;
            }
            DistributionCommand::ResetChannelClip(channel) => {
                if let Some(clips) = channel_ranges.get_mut(&tensor) {
                    clips.remove(&channel);
                    if clips.is_empty() {
                        channel_ranges.remove(&tensor);
                    }
                    self.set_config(config);
                }
                return;
            }
            _ => {}
        }
        let ranges = if weight {
            &mut config.weight_ranges
        } else {
            &mut config.activation_ranges
        };
        match command {
            DistributionCommand::SetClip { lo, hi } => {
                if lo.is_finite() && hi.is_finite() && lo < hi {
                    ranges.insert(tensor, (lo, hi));
                }
            }
            DistributionCommand::ResetClip => {
                ranges.remove(&tensor);
            }
            DistributionCommand::AdoptMarker(name) => {
                let marker = self
                    .shown
                    .as_ref()
                    .and_then(|s| s.data.as_ref().ok())
                    .and_then(|d| d.markers.iter().find(|m| m.method == name));
                if let Some(marker) = marker {
                    ranges.insert(tensor, marker.range);
                }
            }
            #[allow(unreachable_patterns)]
            _ => return, // commands of a newer view this shell does not know yet
        }
        self.set_config(config);
    }
}

/// Transforms and exports (the work is in `session_transforms`).
impl Session {
    /// The model as loaded, before any transform.
    pub fn original_model(&self) -> Arc<Model> {
        self.extras.original_model(&self.loaded.model)
    }

    /// The switches the session uses.
    pub fn transforms(&self) -> TransformToggles {
        self.extras.toggles
    }

    /// Switches transforms. Folding, equalization or absorption rebuild the model on a worker
    /// (then calibration runs again); bias correction only re-evaluates.
    pub fn set_transforms(&mut self, toggles: TransformToggles, wake: &Waker) {
        let next = self.revision + 1;
        match self.extras.switch(toggles, &self.loaded.model, next, wake) {
            TransformSwitch::Unchanged => {}
            TransformSwitch::BiasCorrection => {
                self.revision = next;
                if self.auto_evaluate {
                    self.request_evaluation(false);
                }
            }
            TransformSwitch::Rebuilding => self.revision = next,
        }
    }

    /// Polls the transform and export jobs (a rebuilt model is shown from now on); returns
    /// whether anything arrived.
    pub fn tick_extras(&mut self, wake: &Waker) -> bool {
        let (changed, rebuilt) = self.extras.poll();
        if let Some(loaded) = rebuilt {
            self.show_rebuilt(loaded, wake);
        }
        changed
    }

    /// Shows a model the transforms rebuilt, keeping the selected layer, and calibrates it.
    fn show_rebuilt(&mut self, loaded: LoadedModel, wake: &Waker) {
        let selected = self.selection.and_then(|s| {
            let row = self.loaded.layers.get(s.layer)?;
            Some((row.node.clone(), s.part))
        });
        self.loaded = loaded;
        let layers = &self.loaded.layers;
        self.selection = selected
            .and_then(|(node, part)| Selection::of_node(layers, &node, part))
            .or_else(|| Selection::first_weight(layers));
        self.revision += 1;
        self.recalibrate(wake);
        if self.auto_evaluate {
            self.request_evaluation(true);
        }
    }

    /// Makes a trained model the session's model, with the config that quantizes it to the
    /// trained one. Its weights already hold the transforms it was trained after, so the
    /// switches start again from it; calibration and evaluation run again.
    pub fn use_trained(
        &mut self,
        loaded: LoadedModel,
        config: QuantConfig,
        summary: String,
        wake: &Waker,
    ) {
        self.extras = SessionExtras::default();
        self.trained = Some(summary);
        self.config = config;
        self.show_rebuilt(loaded, wake);
    }

    /// Exports the current config as `format` to `path` on a worker.
    pub fn export(&mut self, format: ExportFormat, path: PathBuf, wake: &Waker) {
        let evaluation = match &self.evaluation {
            Some((revision, e)) if *revision == self.revision => Some(e.as_ref()),
            _ => None,
        };
        let source = ExportSource {
            model: self.loaded.model.clone(),
            config: &self.config,
            data: self.data.clone(),
            calibration: self.calibration.clone(),
            evaluation,
        };
        self.extras
            .export(format, path, source, self.revision, wake);
    }
}
