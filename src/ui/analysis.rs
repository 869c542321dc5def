//! The Analysis window: the lecture's experiments on the open model, each a background job on
//! the session's data.
//!
//! * **Paper's table** (Nagel et al. 2019): float; BN folded per-tensor int8; + CLE;
//!   + absorption; + bias correction (analytic, empirical); per-channel.
//! * **Mixed precision**: each layer alone at 8/4/2 bits (accuracy drop, output KL), then the
//!   bit allocation under a model-size budget with its measured size-vs-accuracy curve; the
//!   chosen allocation can be applied to the session's config.
//! * **AdaRound**: learned rounding of every layer's weights under the current weight setting,
//!   with each layer's loss curve and its error against round-to-nearest.

use std::sync::atomic::AtomicBool;

use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints, Points};

use crate::jobs::pipeline::input_name;
use crate::jobs::{JobError, JobSlot};
use crate::mixed::{
    Allocation, AllocationOptions, BitAssignment, Budget, CostModel, EvalData, Evaluator,
    SensitivityReport, allocate, analyze, quantizable_layers,
};
use crate::quant::{QuantConfig, WeightScheme};
use crate::transform::adaround::{AdaRoundOptions, LayerRounding, adaround_model};
use crate::transform::compare::{CompareOptions, CompareTable, paper_table};

use super::commands::AppCommand;
use super::session::{Session, Waker};

/// Weight widths the sensitivity analysis and the allocation consider.
const CANDIDATE_BITS: [u32; 3] = [8, 4, 2];
/// Allocations measured for the curve.
const CURVE_POINTS: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Tab {
    #[default]
    Table,
    MixedPrecision,
    AdaRound,
}

/// Sensitivities at every candidate width and the allocation under the budget.
pub struct MixedResult {
    reports: Vec<SensitivityReport>,
    allocation: Allocation,
    uniform_4bit_bytes: f64,
}

/// The window's state and its jobs.
#[derive(Default)]
pub struct Analysis {
    pub open: bool,
    tab: Tab,
    /// Budget as a fraction of the uniform 4-bit model size.
    budget_fraction: f32,
    table_job: JobSlot<CompareTable>,
    table: Option<Result<CompareTable, String>>,
    mixed_job: JobSlot<MixedResult>,
    mixed: Option<Result<MixedResult, String>>,
    adaround_job: JobSlot<Vec<LayerRounding>>,
    adaround: Option<Result<Vec<LayerRounding>, String>>,
}

fn outcome<T>(result: Result<T, JobError>) -> Option<Result<T, String>> {
    match result {
        Ok(value) => Some(Ok(value)),
        Err(JobError::Cancelled) => None,
        Err(e) => Some(Err(e.to_string())),
    }
}

impl Analysis {
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

    fn start_mixed(&mut self, session: &Session, wake: &Waker) {
        let Some(data) = session.data.clone() else {
            self.mixed = Some(Err("wait for the data to load (calibration)".into()));
            return;
        };
        let model = session.loaded.model.clone();
        let per_channel = session.config.default.weights.is_none_or(|w| w.per_channel);
        let fraction = f64::from(self.budget_fraction.clamp(0.25, 2.0));
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

    /// Draws the window (when open); returns commands for the session.
    pub fn window_ui(
        &mut self,
        ctx: &egui::Context,
        session: &Session,
        wake: &Waker,
    ) -> Vec<AppCommand> {
        let mut commands = Vec::new();
        if self.budget_fraction == 0.0 {
            self.budget_fraction = 1.0;
        }
        let mut open = self.open;
        egui::Window::new("Analysis")
            .open(&mut open)
            .default_size([720.0, 520.0])
            .show(ctx, |ui| {
                ui.horizontal(|ui| {
                    ui.selectable_value(&mut self.tab, Tab::Table, "Paper's table")
                        .on_hover_text("Float vs BN folding, CLE and bias correction at int8");
                    ui.selectable_value(&mut self.tab, Tab::MixedPrecision, "Mixed precision")
                        .on_hover_text("Per-layer sensitivity and bit allocation under a budget");
                    ui.selectable_value(&mut self.tab, Tab::AdaRound, "AdaRound")
                        .on_hover_text("Learned up/down rounding vs round-to-nearest");
                });
                ui.separator();
                match self.tab {
                    Tab::Table => self.table_ui(ui, session, wake),
                    Tab::MixedPrecision => self.mixed_ui(ui, session, wake, &mut commands),
                    Tab::AdaRound => self.adaround_ui(ui, session, wake),
                }
            });
        self.open = open;
        commands
    }

    fn job_row_ui(ui: &mut egui::Ui, running: Option<f32>, label: &str) -> bool {
        ui.horizontal(|ui| {
            let clicked = ui
                .add_enabled(running.is_none(), egui::Button::new(label))
                .clicked();
            if let Some(progress) = running {
                ui.add(egui::ProgressBar::new(progress).desired_width(200.0));
            }
            clicked
        })
        .inner
    }

    fn table_ui(&mut self, ui: &mut egui::Ui, session: &Session, wake: &Waker) {
        ui.label(
            "Per-tensor int8 weights, uint8 min-max activations, on the session's data \
             (the model as loaded, before the transforms of the settings panel).",
        );
        let running = self.table_job.running().map(|j| j.progress());
        if Self::job_row_ui(ui, running, "Compute the table") {
            self.start_table(session, wake);
        }
        match &self.table {
            Some(Ok(table)) => {
                egui::Grid::new("paper_table").striped(true).show(ui, |ui| {
                    ui.strong("model");
                    ui.strong("correct");
                    ui.strong("accuracy");
                    ui.strong("agreement with float");
                    ui.end_row();
                    for row in &table.rows {
                        ui.label(&row.name);
                        ui.label(format!("{}/{}", row.correct, row.total));
                        ui.label(format!("{:.2} %", 100.0 * row.accuracy));
                        ui.label(format!("{:.2} %", 100.0 * row.agreement));
                        ui.end_row();
                    }
                });
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            None => {}
        }
    }

    fn mixed_ui(
        &mut self,
        ui: &mut egui::Ui,
        session: &Session,
        wake: &Waker,
        commands: &mut Vec<AppCommand>,
    ) {
        ui.horizontal(|ui| {
            ui.add(
                egui::Slider::new(&mut self.budget_fraction, 0.25..=2.0)
                    .text("size budget (x uniform int4)"),
            )
            .on_hover_text(
                "The model-size budget of the allocation, relative to every layer at 4 bits",
            );
        });
        let running = self.mixed_job.running().map(|j| j.progress());
        if Self::job_row_ui(ui, running, "Analyse sensitivity and allocate bits") {
            self.start_mixed(session, wake);
        }
        let result = match &self.mixed {
            Some(Ok(result)) => result,
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
                return;
            }
            None => return,
        };
        let chosen = &result.allocation.chosen;
        ui.label(format!(
            "chosen: {:.1} KiB (uniform int4 {:.1} KiB), accuracy {}, output KL {:.3e}",
            chosen.size_bytes / 1024.0,
            result.uniform_4bit_bytes / 1024.0,
            chosen
                .evaluation
                .accuracy
                .map_or("-".into(), |a| format!("{:.2} %", 100.0 * a)),
            chosen.evaluation.output_kl
        ));
        if ui
            .button("Apply this allocation")
            .on_hover_text("Per-layer weight bits as chosen (activations as in the settings)")
            .clicked()
        {
            let mut config = session.config.clone();
            let allocated = &result.allocation.config;
            for (node, layer) in &allocated.layers {
                let mut quant = *session.config.layer(node);
                quant.weights = layer.weights;
                config.layers.insert(node.clone(), quant);
            }
            commands.push(AppCommand::SetConfig(Box::new(config)));
        }
        ui.columns(2, |columns| {
            let bars: Vec<BarChart> = result
                .reports
                .iter()
                .enumerate()
                .map(|(k, report)| {
                    let width = 0.8 / result.reports.len() as f64;
                    let bars = report
                        .layers
                        .iter()
                        .enumerate()
                        .map(|(i, l)| {
                            Bar::new(
                                i as f64 + (k as f64 - 1.0) * width,
                                l.evaluation.output_kl.max(1e-9).log10(),
                            )
                            .width(width)
                            .name(&l.layer.node)
                        })
                        .collect();
                    BarChart::new(report.weights.clone(), bars)
                })
                .collect();
            columns[0].label("each layer alone: log10 output KL (higher hurts more)");
            Plot::new("sensitivity_plot")
                .legend(Legend::default())
                .height(220.0)
                .x_axis_label("layer (graph order)")
                .show(&mut columns[0], |plot| {
                    for chart in bars {
                        plot.bar_chart(chart);
                    }
                });
            columns[1].label("measured allocations: size vs accuracy");
            let curve: Vec<[f64; 2]> = result
                .allocation
                .curve
                .iter()
                .filter_map(|p| Some([p.size_bytes / 1024.0, 100.0 * p.evaluation.accuracy?]))
                .collect();
            let chosen_point = chosen
                .evaluation
                .accuracy
                .map(|a| [chosen.size_bytes / 1024.0, 100.0 * a]);
            Plot::new("allocation_curve")
                .legend(Legend::default())
                .height(220.0)
                .x_axis_label("model size (KiB)")
                .y_axis_label("accuracy (%)")
                .show(&mut columns[1], |plot| {
                    plot.line(Line::new("frontier", PlotPoints::from(curve.clone())));
                    plot.points(Points::new("measured", PlotPoints::from(curve)).radius(3.0));
                    if let Some(point) = chosen_point {
                        plot.points(
                            Points::new("chosen", PlotPoints::from(vec![point]))
                                .radius(6.0)
                                .color(egui::Color32::from_rgb(230, 160, 40)),
                        );
                    }
                });
        });
    }

    fn adaround_ui(&mut self, ui: &mut egui::Ui, session: &Session, wake: &Waker) {
        ui.label(
            "Learns each weight's up/down rounding on the calibration data under the current \
             weight setting (h(V) rectified sigmoid, regulariser annealed beta 20 -> 2, Adam).",
        );
        let running = self.adaround_job.running().map(|j| j.progress());
        if Self::job_row_ui(ui, running, "Run AdaRound") {
            self.start_adaround(session, wake);
        }
        let layers = match &self.adaround {
            Some(Ok(layers)) => layers,
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
                return;
            }
            None => return,
        };
        egui::Grid::new("adaround_layers")
            .striped(true)
            .show(ui, |ui| {
                ui.strong("layer");
                ui.strong("nearest error");
                ui.strong("AdaRound error");
                ui.strong("flipped");
                ui.end_row();
                for layer in layers {
                    ui.label(&layer.node);
                    ui.label(format!("{:.4e}", layer.nearest_error));
                    ui.label(format!("{:.4e}", layer.adaround_error));
                    ui.label(format!("{} of {}", layer.flipped, layer.weights));
                    ui.end_row();
                }
            });
        ui.label(
            "reconstruction error per layer (log10 ||Wx - W~x||^2; the regulariser, on after \
             the 20 % warm start, pushes h(V) to 0 or 1 while this rises only a little)",
        );
        Plot::new("adaround_curves")
            .legend(Legend::default())
            .height(220.0)
            .x_axis_label("iteration")
            .show(ui, |plot| {
                for layer in layers {
                    let points: Vec<[f64; 2]> = layer
                        .curve
                        .iter()
                        .map(|p| [p.iteration as f64, p.reconstruction.max(1e-12).log10()])
                        .collect();
                    plot.line(Line::new(layer.node.clone(), PlotPoints::from(points)));
                }
            });
    }
}
