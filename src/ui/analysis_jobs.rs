//! The Analysis window's experiments as background jobs on the session's data (the paper's
//! table, sensitivity with bit allocation, AdaRound), and their latest results.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::jobs::pipeline::Data;
use crate::jobs::{JobContext, JobError, JobSlot};
use crate::mixed::{
    Allocation, AllocationOptions, BitAssignment, Budget, CostModel, SensitivityReport, allocate,
    analyze, quantizable_layers,
};
use crate::quant::WeightScheme;
use crate::transform::adaround::{AdaRoundModel, AdaRoundOptions, adaround_model};
use crate::transform::compare::{CompareOptions, CompareTable, paper_table};
use crate::workflow::{Evaluator, RunControl};

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
    /// AdaRound under the session's weight settings.
    RunAdaRound,
}

/// Sensitivities at every candidate width and the allocation under the budget.
pub struct MixedResult {
    pub reports: Vec<SensitivityReport>,
    pub allocation: Allocation,
    pub uniform_4bit_bytes: f64,
}

/// Shown when an experiment is asked for before the session's data has loaded.
const WAIT_FOR_DATA: &str = "wait for the data to load (calibration)";

/// One experiment: its job and its latest result (an error as text; a cancelled run keeps the
/// result before it).
pub struct Experiment<T> {
    job: JobSlot<T>,
    pub result: Option<Result<T, String>>,
}

impl<T> Default for Experiment<T> {
    fn default() -> Self {
        Experiment {
            job: JobSlot::default(),
            result: None,
        }
    }
}

impl<T: Send + 'static> Experiment<T> {
    /// Collects a finished run; returns whether one arrived.
    fn poll(&mut self) -> bool {
        let Some(done) = self.job.poll() else {
            return false;
        };
        self.result = match done.result {
            Ok(value) => Some(Ok(value)),
            Err(JobError::Cancelled) => self.result.take(),
            Err(e) => Some(Err(e.to_string())),
        };
        true
    }

    /// The running job's progress.
    pub fn progress(&self) -> Option<f32> {
        self.job.running().map(|j| j.progress())
    }

    /// Shows why the experiment did not start.
    fn fail(&mut self, why: &str) {
        self.result = Some(Err(why.to_string()));
    }

    /// Runs `work` on the session's `data` on a thread named `thread_name` (or says that the
    /// data has not loaded yet).
    fn start(
        &mut self,
        thread_name: &str,
        label: &str,
        data: Option<Arc<Data>>,
        wake: &Waker,
        work: impl FnOnce(&Data, &JobContext) -> Result<T, JobError> + Send + 'static,
    ) {
        let Some(data) = data else {
            self.fail(WAIT_FOR_DATA);
            return;
        };
        let w = wake.clone();
        let started = self.job.start(
            thread_name,
            label,
            0,
            move || w(),
            move |ctx| work(&data, ctx),
        );
        if let Err(e) = started {
            self.fail(&e.to_string());
        }
    }
}

/// The window's experiments.
#[derive(Default)]
pub struct AnalysisJobs {
    pub table: Experiment<CompareTable>,
    pub mixed: Experiment<MixedResult>,
    /// The layers' results and the session's config (at the start) with their rounding.
    pub adaround: Experiment<AdaRoundModel>,
}

impl AnalysisJobs {
    /// Collects finished runs; returns whether anything arrived.
    pub fn poll(&mut self) -> bool {
        let table = self.table.poll();
        let mixed = self.mixed.poll();
        let adaround = self.adaround.poll();
        table || mixed || adaround
    }

    /// Whether an experiment is running.
    pub fn is_busy(&self) -> bool {
        self.table.job.is_running() || self.mixed.job.is_running() || self.adaround.job.is_running()
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
        let model = session.original_model();
        self.table.start(
            "quantscope-paper-table",
            "the paper's table",
            session.data.clone(),
            wake,
            move |data, ctx| {
                Ok(paper_table(
                    &model.graph,
                    &data.calibration,
                    &data.evaluation,
                    &CompareOptions::default(),
                    &RunControl::cancel(ctx.cancel_flag()),
                )?)
            },
        );
    }

    fn start_mixed(&mut self, session: &Session, budget_fraction: f32, wake: &Waker) {
        let model = session.loaded.model.clone();
        let per_channel = session.config.default.weights.is_none_or(|w| w.per_channel);
        let fraction = f64::from(budget_fraction.clamp(0.25, 2.0));
        self.mixed.start(
            "quantscope-mixed-precision",
            "sensitivity and bit allocation",
            session.data.clone(),
            wake,
            move |data, ctx| {
                let graph = &model.graph;
                let cancel: &AtomicBool = ctx.cancel_flag();
                let control = RunControl::cancel(cancel);
                let evaluator = Evaluator::new(graph, &data.evaluation, None, &control)?
                    .with_float_cache(&control)?;
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
                let costs = CostModel::of(&evaluator)?;
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
    }

    fn start_adaround(&mut self, session: &Session, wake: &Waker) {
        let config = &session.config;
        let linear = config
            .default
            .weights
            .into_iter()
            .chain(config.layers.values().filter_map(|l| l.weights))
            .any(|w| matches!(w.scheme, WeightScheme::Linear { .. }));
        if !linear {
            self.adaround.fail(match session.data {
                Some(_) => {
                    "AdaRound learns the rounding of a linear grid: choose a linear weight scheme"
                }
                None => WAIT_FOR_DATA,
            });
            return;
        };
        let model = session.loaded.model.clone();
        let config = config.clone();
        self.adaround.start(
            "quantscope-adaround",
            "AdaRound",
            session.data.clone(),
            wake,
            move |data, ctx| {
                let result = adaround_model(
                    &model.graph,
                    &config,
                    &data.calibration,
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
                Ok(result)
            },
        );
    }
}
