//! The Analysis window: the lecture's experiments on the open model, each a background job on
//! the session's data.
//!
//! * **Paper's table** (Nagel et al. 2019): float; BN folded per-tensor int8; + CLE;
//!   + absorption; + bias correction (analytic, empirical); per-channel.
//! * **Mixed precision**: each layer alone at 8/4/2 bits (accuracy drop, output KL), then the
//!   bit allocation under a model-size budget with its measured size-vs-accuracy curve; the
//!   chosen allocation can be applied to the session's config.
//! * **AdaRound**: learned rounding of every layer's weights under the session's weight
//!   settings, with each layer's loss curve and its error against round-to-nearest; "Apply to
//!   session" puts the rounding in the session's config (Results, histograms and exports use
//!   it until the weight settings change).

use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints, Points};

use crate::quant::QuantConfig;
use crate::quant::learned_rounding::retain_matching;

use super::analysis_jobs::{AnalysisCommand, AnalysisJobs};
use super::commands::AppCommand;
use super::panel::Panel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Tab {
    #[default]
    Table,
    MixedPrecision,
    AdaRound,
}

/// What the window reads.
pub struct AnalysisInput<'a> {
    /// The session's config (an applied allocation changes a copy of it).
    pub config: &'a QuantConfig,
}

/// The window's state and its jobs.
#[derive(Default)]
pub struct Analysis {
    pub open: bool,
    tab: Tab,
    /// Budget as a fraction of the uniform 4-bit model size.
    budget_fraction: f32,
    pub jobs: AnalysisJobs,
}

impl Analysis {
    /// Whether a job of the window is running.
    pub fn is_busy(&self) -> bool {
        self.jobs.is_busy()
    }
}

impl Panel for Analysis {
    type Input<'a> = AnalysisInput<'a>;

    /// Draws the window (when open) on the context of `ui`; returns commands for the session
    /// (starting an experiment, applying an allocation).
    fn ui(&mut self, ui: &mut egui::Ui, input: &AnalysisInput<'_>) -> Vec<AppCommand> {
        let mut commands = Vec::new();
        if self.budget_fraction == 0.0 {
            self.budget_fraction = 1.0;
        }
        let mut open = self.open;
        egui::Window::new("Analysis")
            .open(&mut open)
            .default_size([720.0, 520.0])
            .show(ui.ctx(), |ui| {
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
                    Tab::Table => self.table_ui(ui, &mut commands),
                    Tab::MixedPrecision => self.mixed_ui(ui, input.config, &mut commands),
                    Tab::AdaRound => self.adaround_ui(ui, input.config, &mut commands),
                }
            });
        self.open = open;
        commands
    }
}

impl Analysis {
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

    fn table_ui(&mut self, ui: &mut egui::Ui, commands: &mut Vec<AppCommand>) {
        ui.label(
            "Per-tensor int8 weights, uint8 min-max activations, on the session's data \
             (the model as loaded, before the transforms of the settings panel).",
        );
        let running = self.jobs.table.progress();
        if Self::job_row_ui(ui, running, "Compute the table") {
            commands.push(AppCommand::Analysis(AnalysisCommand::ComputeTable));
        }
        match &self.jobs.table.result {
            Some(Ok(table)) => {
                egui::Grid::new("paper_table").striped(true).show(ui, |ui| {
                    ui.strong("model");
                    ui.strong("correct");
                    ui.strong("accuracy");
                    ui.strong("agreement with float");
                    ui.strong("worst output SQNR");
                    ui.end_row();
                    let percent =
                        |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2} %", 100.0 * v));
                    for row in &table.rows {
                        ui.label(&row.name);
                        ui.label(
                            row.correct
                                .map_or("-".into(), |c| format!("{c}/{}", row.total)),
                        );
                        ui.label(percent(row.accuracy));
                        ui.label(percent(row.agreement));
                        ui.label(
                            row.worst_output_sqnr_db
                                .map_or("-".into(), |v| format!("{v:.2} dB")),
                        );
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
        config: &QuantConfig,
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
        let running = self.jobs.mixed.progress();
        if Self::job_row_ui(ui, running, "Analyse sensitivity and allocate bits") {
            commands.push(AppCommand::Analysis(AnalysisCommand::AllocateBits {
                budget_fraction: self.budget_fraction,
            }));
        }
        let result = match &self.jobs.mixed.result {
            Some(Ok(result)) => result,
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
                return;
            }
            None => return,
        };
        let chosen = &result.allocation.chosen;
        ui.label(format!(
            "chosen: {:.1} KiB (uniform int4 {:.1} KiB), accuracy {}, loss {:.3e}",
            chosen.size_bytes / 1024.0,
            result.uniform_4bit_bytes / 1024.0,
            chosen
                .evaluation
                .quant_accuracy()
                .map_or("-".into(), |a| format!("{:.2} %", 100.0 * a)),
            chosen.evaluation.loss()
        ));
        if ui
            .button("Apply this allocation")
            .on_hover_text("Per-layer weight bits as chosen (activations as in the settings)")
            .clicked()
        {
            let mut applied = config.clone();
            let allocated = &result.allocation.config;
            for (node, layer) in &allocated.layers {
                let mut quant = *config.layer(node);
                quant.weights = layer.weights;
                applied.layers.insert(node.clone(), quant);
            }
            commands.push(AppCommand::SetConfig(Box::new(applied)));
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
                                l.evaluation.loss().max(1e-9).log10(),
                            )
                            .width(width)
                            .name(&l.layer.node)
                        })
                        .collect();
                    BarChart::new(report.weights.clone(), bars)
                })
                .collect();
            columns[0].label(
                "each layer alone: log10 loss (output KL of classifiers; higher hurts more)",
            );
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
                .filter_map(|p| {
                    Some([
                        p.size_bytes / 1024.0,
                        100.0 * p.evaluation.quant_accuracy()?,
                    ])
                })
                .collect();
            let chosen_point = chosen
                .evaluation
                .quant_accuracy()
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

    fn adaround_ui(
        &mut self,
        ui: &mut egui::Ui,
        config: &QuantConfig,
        commands: &mut Vec<AppCommand>,
    ) {
        ui.label(
            "Learns each weight's up/down rounding on the calibration data under the session's \
             weight settings (h(V) rectified sigmoid, regulariser annealed beta 20 -> 2, Adam).",
        );
        let running = self.jobs.adaround.progress();
        if Self::job_row_ui(ui, running, "Run AdaRound") {
            commands.push(AppCommand::Analysis(AnalysisCommand::RunAdaRound));
        }
        let result = match &self.jobs.adaround.result {
            Some(Ok(result)) => result,
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
                return;
            }
            None => return,
        };
        let layers = &result.layers;
        Self::apply_adaround_ui(ui, config, &result.config, commands);
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

    /// "Apply to session": the session's config with the learned rounding (which the
    /// session drops again, with a message, if its weight settings changed since the run).
    fn apply_adaround_ui(
        ui: &mut egui::Ui,
        config: &QuantConfig,
        learned: &QuantConfig,
        commands: &mut Vec<AppCommand>,
    ) {
        let mut applied = config.clone();
        applied.adaround = learned.adaround.clone();
        let stale = retain_matching(&mut applied);
        let in_session = !learned.adaround.is_empty() && config.adaround == learned.adaround;
        ui.horizontal(|ui| {
            let button = ui
                .add_enabled(
                    !in_session && !applied.adaround.is_empty(),
                    egui::Button::new("Apply to session"),
                )
                .on_hover_text(
                    "Use this rounding instead of round-to-nearest for these weights: Results, \
                     the histograms' exact figures, exports and the saved session see it",
                );
            if button.clicked() {
                commands.push(AppCommand::SetConfig(Box::new(applied.clone())));
            }
            if in_session {
                ui.label("applied to the session");
            } else if !stale.is_empty() {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!(
                        "{} of {} layers no longer match the settings (run again)",
                        stale.len(),
                        learned.adaround.len()
                    ),
                );
            }
        });
    }
}
