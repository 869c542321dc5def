//! The Analysis window's experiments as background jobs on the session's data (the paper's
//! table, sensitivity with bit allocation, AdaRound), and their latest results.

use std::sync::atomic::AtomicBool;

use crate::jobs::pipeline::input_name;
use crate::jobs::{JobError, JobSlot};
use crate::mixed::{
    Allocation, AllocationOptions, BitAssignment, Budget, CostModel, EvalData, Evaluator,
    SensitivityReport, allocate, analyze, quantizable_layers,
};
use crate::quant::{QuantConfig, WeightScheme};
use crate::transform::adaround::{AdaRoundOptions, LayerRounding, adaround_model};
use crate::transform::compare::{CompareOptions, CompareTable, paper_table};

use super::session::Session;
use super::waker::Waker;

/// Weight widths the sensitivity analysis and the allocation consider.
const CANDIDATE_BITS: [u32; 3] = [8, 4, 2];
/// Allocations measured for the curve.
const CURVE_POINTS: usize = 12;

/// An experiment the window asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnalysisCommand {
    /// The paper's table on the model as loaded.
    ComputeTable,
    /// Sensitivity at every candidate width, then the allocation under a size budget (a
    /// fraction of the uniform 4-bit model size).
    AllocateBits { budget_fraction: f32 },
    /// AdaRound under the current weight setting.
    RunAdaRound,
}

/// Sensitivities at every candidate width and the allocation under the budget.
pub struct MixedResult {
    pub reports: Vec<SensitivityReport>,
    pub allocation: Allocation,
    pub uniform_4bit_bytes: f64,
}

/// The jobs and their latest results (an error as text; a cancelled job keeps the last one).
#[derive(Default)]
pub struct AnalysisJobs {
    table_job: JobSlot<CompareTable>,
    pub table: Option<Result<CompareTable, String>>,
    mixed_job: JobSlot<MixedResult>,
    pub mixed: Option<Result<MixedResult, String>>,
    adaround_job: JobSlot<Vec<LayerRounding>>,
    pub adaround: Option<Result<Vec<LayerRounding>, String>>,
}

fn outcome<T>(result: Result<T, JobError>) -> Option<Result<T, String>> {
    match result {
        Ok(value) => Some(Ok(value)),
        Err(JobError::Cancelled) => None,
        Err(e) => Some(Err(e.to_string())),
    }
}

impl AnalysisJobs {
    /// Collects finished jobs; returns whether anything arrived.
    pub fn poll(&mut self) -> bool {
        let mut changed = false;
        if let Some(done) = self.table_job.poll() {
            self.table = outcome(done.result).or(self.table.take());
            changed = true;
        }
        if let Some(done) = self.mixed_job.poll() {
            self.mixed = outcome(done.result).or(self.mixed.take());
            changed = true;
        }
        if let Some(done) = self.adaround_job.poll() {
            self.adaround = outcome(done.result).or(self.adaround.take());
            changed = true;
        }
        changed
    }

    /// Whether a job of the window is running.
    pub fn is_busy(&self) -> bool {
        self.table_job.is_running() || self.mixed_job.is_running() || self.adaround_job.is_running()
    }

    /// The progress of each running job: table, mixed precision, AdaRound.
    pub fn progress(&self) -> [Option<f32>; 3] {
        [
            self.table_job.running().map(|j| j.progress()),
            self.mixed_job.running().map(|j| j.progress()),
            self.adaround_job.running().map(|j| j.progress()),
        ]
    }

    /// Starts the experiment `command` on `session`'s data.
    pub fn start(&mut self, command: AnalysisCommand, session: &Session, wake: &Waker) {
        match command {
            AnalysisCommand::ComputeTable => self.start_table(session, wake),
            AnalysisCommand::AllocateBits { budget_fraction } => {
                self.start_mixed(session, budget_fraction, wake)
            }
            AnalysisCommand::RunAdaRound => self.start_adaround(session, wake),
        }
    }

    fn start_table(&mut self, session: &Session, wake: &Waker) {
        let Some(data) = session.data.clone() else {
            self.table = Some(Err("wait for the data to load (calibration)".into()));
            return;
        };
        let model = session.original_model();
        let w = wake.clone();
        let started = self.table_job.start(
            "quantscope-paper-table",
            "the paper's table",
            0,
            move || w(),
            move |_ctx| {
                let labels = data.evaluation.labels.as_ref().ok_or_else(|| {
                    JobError::Failed("the table needs labelled evaluation data".into())
                })?;
                Ok(paper_table(
                    &model.graph,
                    data.calibration.inputs.view(),
                    data.evaluation.inputs.view(),
                    labels.view(),
                    &CompareOptions::default(),
                )?)
            },
        );
        if let Err(e) = started {
            self.table = Some(Err(e.to_string()));
        }
    }

    fn start_mixed(&mut self, session: &Session, budget_fraction: f32, wake: &Waker) {
        let Some(data) = session.data.clone() else {
            self.mixed = Some(Err("wait for the data to load (calibration)".into()));
            return;
        };
        let model = session.loaded.model.clone();
        let per_channel = session.config.default.weights.is_none_or(|w| w.per_channel);
        let fraction = f64::from(budget_fraction.clamp(0.25, 2.0));
        let w = wake.clone();
        let started = self.mixed_job.start(
            "quantscope-mixed-precision",
            "sensitivity and bit allocation",
            0,
            move || w(),
            move |ctx| {
                let graph = &model.graph;
                let input = input_name(graph)?.to_string();
                let cancel: &AtomicBool = ctx.cancel_flag();
                let eval = EvalData {
                    input: &input,
                    samples: data.evaluation.inputs.view(),
                    labels: data.evaluation.labels.as_ref().map(|l| l.view()),
                };
                let evaluator = Evaluator::new(graph, eval, cancel)?;
                let options = AllocationOptions {
                    candidates: CANDIDATE_BITS.to_vec(),
                    per_channel,
                    ..AllocationOptions::default()
                };
                let mut reports = Vec::new();
                for (i, &bits) in CANDIDATE_BITS.iter().enumerate() {
                    let done = i as f32 / (CANDIDATE_BITS.len() + 1) as f32;
                    ctx.set_progress(done);
                    reports.push(analyze(
                        &evaluator,
                        options.weights(bits),
                        &|_, _| {},
                        cancel,
                    )?);
                }
                let one_sample = data
                    .evaluation
                    .inputs
                    .slice_axis(ndarray::Axis(0), (0..1).into())
                    .to_owned();
                let costs = CostModel::new(graph, &input, crate::ir::TensorData::F32(one_sample))?;
                let uniform: BitAssignment = quantizable_layers(graph)
                    .iter()
                    .map(|l| (l.node.clone(), 4))
                    .collect();
                let uniform_4bit_bytes = costs.size_bytes(&uniform, &options);
                let budget = Budget::SizeBytes(uniform_4bit_bytes * fraction);
                let allocation = allocate(
                    &evaluator,
                    &costs,
                    &reports,
                    budget,
                    &options,
                    CURVE_POINTS,
                    &mut |_, _| {},
                    cancel,
                )?;
                Ok(MixedResult {
                    reports,
                    allocation,
                    uniform_4bit_bytes,
                })
            },
        );
        if let Err(e) = started {
            self.mixed = Some(Err(e.to_string()));
        }
    }

    fn start_adaround(&mut self, session: &Session, wake: &Waker) {
        let Some(data) = session.data.clone() else {
            self.adaround = Some(Err("wait for the data to load (calibration)".into()));
            return;
        };
        let weights = match session.config.default.weights {
            Some(w) if matches!(w.scheme, WeightScheme::Linear { .. }) => w,
            _ => {
                self.adaround = Some(Err(
                    "AdaRound learns the rounding of a linear grid: choose a linear weight scheme"
                        .into(),
                ));
                return;
            }
        };
        let model = session.loaded.model.clone();
        let config = QuantConfig::uniform(Some(weights), None);
        let w = wake.clone();
        let started = self.adaround_job.start(
            "quantscope-adaround",
            "AdaRound",
            0,
            move || w(),
            move |ctx| {
                let input = input_name(&model.graph)?.to_string();
                let result = adaround_model(
                    &model.graph,
                    &config,
                    &input,
                    data.calibration.inputs.view(),
                    &AdaRoundOptions::default(),
                    &mut |p| {
                        let within = p.point.iteration as f32
                            / AdaRoundOptions::default().iterations.max(1) as f32;
                        ctx.set_progress(
                            (p.layer_index as f32 + within) / p.layer_count.max(1) as f32,
                        );
                    },
                    ctx.cancel_flag(),
                )?;
                Ok(result.layers)
            },
        );
        if let Err(e) = started {
            self.adaround = Some(Err(e.to_string()));
        }
    }
}
