//! A QAT run of the Train window as a background job: `run_qat` on a named worker thread
//! (through the app's `JobSlot`, with its cancel flag), per-epoch curve points sent over a
//! bounded channel as they come, the finished run kept until the user makes it the session's
//! model. A cancelled or failed run leaves the session untouched.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use crate::ir::Model;
use crate::jobs::pipeline::{Calibration, Data, DataSource};
use crate::jobs::{JobError, JobSlot};
use crate::quant::QuantConfig;
use crate::summary::ModelSummary;
use crate::train::{EpochPoint, QatInputs, QatProgress, QatResult, run_qat};
use crate::workflow::RunControl;

use super::super::layers::layer_rows;
use super::super::load_job::LoadedModel;
use super::super::session::Session;
use super::super::session_transforms::{CorrectionInput, corrected_graph};
use super::super::waker::Waker;
use super::data::training_data;
use super::settings::{TrainSettings, describe_quant};

/// The curves of a run so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveCurve {
    pub points: Vec<EpochPoint>,
    pub float_accuracy: Option<f64>,
    pub ptq_accuracy: Option<f64>,
}

/// Where the window's run is.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainState {
    Idle,
    Running,
    /// Finished; the trained model waits in [`TrainJob::trained`] (or is in use).
    Done,
    /// Stopped by Cancel; the session's model is unchanged.
    Cancelled,
    Failed(String),
}

/// A finished run.
pub struct Trained {
    pub result: QatResult,
    /// The trained model as the session shows it (taken when it is used).
    pub loaded: Option<LoadedModel>,
    /// What was trained, for the session and the window.
    pub summary: String,
    /// What it trained on.
    pub data: String,
    /// The model file the run started from.
    pub model_path: std::path::PathBuf,
}

/// The window's job and its latest run.
pub struct TrainJob {
    slot: JobSlot<Trained>,
    updates: Option<Receiver<LiveCurve>>,
    pub curve: LiveCurve,
    pub state: TrainState,
    pub trained: Option<Trained>,
    /// Whether Cancel was pressed for the running job.
    pub cancelling: bool,
}

impl Default for TrainJob {
    fn default() -> Self {
        TrainJob {
            slot: JobSlot::default(),
            updates: None,
            curve: LiveCurve::default(),
            state: TrainState::Idle,
            trained: None,
            cancelling: false,
        }
    }
}

/// What a run needs from the session, taken on the UI thread.
struct RunSource {
    model: Arc<Model>,
    config: QuantConfig,
    source: DataSource,
    data: Arc<Data>,
    calibration: Arc<Calibration>,
    correction: Option<CorrectionInput>,
}

impl TrainJob {
    /// Whether a run is in flight.
    pub fn is_running(&self) -> bool {
        self.slot.is_running()
    }

    /// The running job's progress.
    pub fn progress(&self) -> Option<f32> {
        self.slot.running().map(|j| j.progress())
    }

    /// Starts training the session's model under its config on a worker (a run in flight is
    /// superseded). Fails with the reason when the session's data has not loaded yet.
    pub fn start(&mut self, session: &Session, settings: TrainSettings, wake: &Waker) {
        let (Some(data), Some(calibration)) = (session.data.clone(), session.calibration.clone())
        else {
            self.state = TrainState::Failed("wait for the data to load (calibration)".into());
            return;
        };
        let run = RunSource {
            model: session.loaded.model.clone(),
            config: session.config.clone(),
            source: session.source.clone(),
            data,
            calibration,
            correction: session.extras.bias_correction_input(),
        };
        let (sender, receiver) = sync_channel(settings.epochs + 2);
        let worker_wake = wake.clone();
        let done_wake = wake.clone();
        let started = self.slot.start(
            "quantscope-qat",
            "training (QAT)",
            session.revision,
            move || done_wake(),
            move |ctx| {
                let cancel = ctx.cancel_flag();
                let control = RunControl::cancel(cancel);
                let corrected = corrected_graph(
                    run.correction.as_ref(),
                    &run.config,
                    &run.calibration,
                    &run.data,
                    &control,
                )?;
                let graph = corrected.as_ref().unwrap_or(&run.model.graph);
                let data = training_data(
                    graph,
                    &run.model.path,
                    &run.source,
                    &run.data,
                    &settings,
                    cancel,
                )?;
                let config = settings.qat_config(graph, run.config.clone());
                let inputs = QatInputs {
                    graph,
                    config: &config,
                    stats: &run.calibration.stats,
                    train: &data.train,
                    eval: data.eval.as_ref(),
                };
                let mut sent = (0usize, false);
                let mut progress = |p: &QatProgress<'_>| {
                    ctx.set_progress(p.fraction);
                    let references = p.float_accuracy.is_some() || p.ptq_accuracy.is_some();
                    if p.curve.len() > sent.0 || references != sent.1 {
                        sent = (p.curve.len(), references);
                        // A full channel only drops a point the final result carries anyway.
                        let _ = sender.try_send(LiveCurve {
                            points: p.curve.to_vec(),
                            float_accuracy: p.float_accuracy,
                            ptq_accuracy: p.ptq_accuracy,
                        });
                    }
                    worker_wake();
                };
                let result = run_qat(&inputs, &settings.options(), &mut progress, cancel)?;
                let model = Model {
                    path: run.model.path.clone(),
                    format: run.model.format,
                    graph: result.graph.clone(),
                };
                let loaded = LoadedModel {
                    summary: ModelSummary::of(&model),
                    layers: layer_rows(&model.graph),
                    model: Arc::new(model),
                };
                let summary = format!(
                    "QAT, {}, {} epoch(s){}",
                    describe_quant(&run.config, settings.xnor),
                    result.epochs,
                    result
                        .qat_accuracy
                        .map_or(String::new(), |a| format!(", held-out {:.2} %", 100.0 * a))
                );
                Ok(Trained {
                    result,
                    loaded: Some(loaded),
                    summary,
                    data: data.description,
                    model_path: run.model.path.clone(),
                })
            },
        );
        match started {
            Ok(()) => {
                self.updates = Some(receiver);
                self.curve = LiveCurve::default();
                self.state = TrainState::Running;
                self.cancelling = false;
            }
            Err(e) => self.state = TrainState::Failed(e.to_string()),
        }
    }

    /// Asks the running job to stop; it ends as [`TrainState::Cancelled`].
    pub fn cancel(&mut self) {
        if let Some(job) = self.slot.running() {
            job.cancel();
            self.cancelling = true;
        }
    }

    /// Collects curve points and a finished run; returns whether anything arrived.
    pub fn poll(&mut self) -> bool {
        let mut changed = false;
        if let Some(updates) = &self.updates {
            while let Ok(curve) = updates.try_recv() {
                self.curve = curve;
                changed = true;
            }
        }
        let Some(outcome) = self.slot.poll() else {
            return changed;
        };
        self.updates = None;
        self.cancelling = false;
        match outcome.result {
            Ok(trained) => {
                self.curve = LiveCurve {
                    points: trained.result.curve.clone(),
                    float_accuracy: trained.result.float_accuracy,
                    ptq_accuracy: trained.result.ptq_accuracy,
                };
                self.trained = Some(trained);
                self.state = TrainState::Done;
            }
            Err(JobError::Cancelled) => self.state = TrainState::Cancelled,
            Err(e) => self.state = TrainState::Failed(e.to_string()),
        }
        true
    }

    /// Makes the finished run's model the session's model (its config with it).
    pub fn use_trained(&mut self, session: &mut Session, wake: &Waker) {
        let Some(trained) = self.trained.as_mut() else {
            return;
        };
        if trained.model_path != session.loaded.model.path {
            self.state = TrainState::Failed(format!(
                "the trained model is of {}, which is no longer the open model",
                trained.model_path.display()
            ));
            return;
        }
        let Some(loaded) = trained.loaded.take() else {
            return;
        };
        session.use_trained(
            loaded,
            trained.result.config.clone(),
            trained.summary.clone(),
            wake,
        );
    }

    /// Whether the finished run's model waits to be used.
    pub fn can_use(&self) -> bool {
        self.trained.as_ref().is_some_and(|t| t.loaded.is_some())
    }
}
