//! The bottom panel: float vs quantized accuracy, top-1 agreement and output KL for
//! classifiers, every output's SQNR for any model, the per-layer output SQNR chart, model size
//! and BitOps per inference against float, and the running job's progress with Cancel.
//! Results of an older settings revision are labelled stale, never shown as current.

use egui_plot::{Bar, BarChart, Plot};

use crate::jobs::pipeline::Evaluation;

use super::badge::{sqnr_colour, sqnr_text};
use super::commands::AppCommand;
use super::panel::Panel;

/// What the panel shows.
pub struct ResultsInput<'a> {
    /// Why inference is not possible (weights-only files).
    pub inference_unavailable: Option<String>,
    pub auto_evaluate: bool,
    /// The running job's label and progress.
    pub progress: Option<(String, f32)>,
    /// Whether a job is running or an evaluation is due.
    pub busy: bool,
    /// The last job failure or cancellation.
    pub message: Option<&'a str>,
    /// The latest evaluation and the settings revision it was computed for.
    pub evaluation: Option<(u64, &'a Evaluation)>,
    /// The settings revision now.
    pub revision: u64,
}

/// The panel (no state of its own).
#[derive(Debug, Default)]
pub struct ResultsPanel;

impl Panel for ResultsPanel {
    type Input<'a> = ResultsInput<'a>;

    fn ui(&mut self, ui: &mut egui::Ui, input: &ResultsInput<'_>) -> Vec<AppCommand> {
        results_ui(ui, input)
    }
}

fn percent(x: Option<f64>) -> String {
    x.map(|x| format!("{:.2} %", 100.0 * x))
        .unwrap_or_else(|| "no labels".into())
}

/// (name, value, hover) rows of the figures: classification figures when the model has a
/// `[N, classes]` output, the worst output error for any model, size and BitOps, the data.
fn figure_rows(e: &Evaluation) -> Vec<(&'static str, String, &'static str)> {
    let mut rows = Vec::new();
    if let Some(c) = &e.classification {
        rows.push((
            "float accuracy",
            percent(c.float_accuracy),
            "Top-1 accuracy of the float model on the evaluation data",
        ));
        rows.push((
            "quantized accuracy",
            percent(c.quant_accuracy),
            "Top-1 accuracy of the fake-quantized model",
        ));
        rows.push((
            "top-1 agreement",
            format!("{:.2} %", 100.0 * c.agreement),
            "How often both models pick the same class (needs no labels)",
        ));
        rows.push((
            "output KL",
            format!("{:.3e} nats", c.output_kl),
            "Mean KL(float || quantized) of the class distributions: how far the outputs moved",
        ));
    }
    if let Some(worst) = e
        .outputs
        .iter()
        .min_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db))
    {
        rows.push((
            "worst output",
            format!(
                "{} SQNR, cosine {:.4} ({})",
                sqnr_text(worst.sqnr_db),
                worst.cosine,
                worst.name
            ),
            "The graph output furthest from float: 10*log10(sum float^2 / sum (float - quantized)^2)",
        ));
    }
    if let Some(cost) = e.cost {
        rows.push((
            "model size",
            format!(
                "{:.1} KiB vs {:.1} KiB float ({:.1}x smaller)",
                cost.size_bytes / 1024.0,
                cost.float_size_bytes / 1024.0,
                cost.float_size_bytes / cost.size_bytes.max(1.0)
            ),
            "Parameter storage with the chosen bits, scales and codebooks",
        ));
        rows.push((
            "BitOps",
            format!(
                "{:.3e} vs {:.3e} float ({:.1}x fewer)",
                cost.bitops as f64,
                cost.float_bitops as f64,
                cost.float_bitops as f64 / cost.bitops.max(1) as f64
            ),
            "MACs x weight bits x activation bits, per inference",
        ));
    }
    rows.push((
        "data",
        format!("{} ({} samples, {})", e.data, e.samples, e.batch.describe()),
        "What the figures were computed on, and how many samples run at once",
    ));
    rows
}

fn results_ui(ui: &mut egui::Ui, input: &ResultsInput<'_>) -> Vec<AppCommand> {
    let mut commands = Vec::new();
    if let Some(reason) = &input.inference_unavailable {
        ui.add_enabled_ui(false, |ui| {
            ui.horizontal(|ui| {
                let _ = ui.button("Evaluate");
                ui.label("accuracy, agreement, output KL, per-layer SQNR");
            })
        })
        .response
        .on_disabled_hover_text(reason);
        ui.weak(format!("inference unavailable: {reason}"));
        return commands;
    }
    ui.horizontal(|ui| {
        if ui
            .button("Evaluate")
            .on_hover_text("Quantize with the current settings and run float and quantized models on the evaluation data")
            .clicked()
        {
            commands.push(AppCommand::Evaluate);
        }
        let mut auto = input.auto_evaluate;
        if ui
            .checkbox(&mut auto, "auto")
            .on_hover_text("Re-evaluate after every settings change")
            .changed()
        {
            commands.push(AppCommand::SetAutoEvaluate(auto));
        }
        if let Some((label, progress)) = &input.progress {
            ui.add(
                egui::ProgressBar::new(*progress)
                    .desired_width(220.0)
                    .show_percentage()
                    .animate(true),
            );
            ui.label(label);
            if ui
                .button("Cancel")
                .on_hover_text("Stop the running job; its result is dropped")
                .clicked()
            {
                commands.push(AppCommand::Cancel);
            }
        } else if input.busy {
            ui.label("settings changed: evaluating shortly");
        }
        if let Some(message) = input.message {
            ui.colored_label(egui::Color32::LIGHT_RED, message);
        }
    });
    let Some((revision, evaluation)) = input.evaluation else {
        ui.weak("No results yet: calibration runs first, then the evaluation.");
        return commands;
    };
    let current = revision == input.revision;
    if !current {
        ui.colored_label(
            egui::Color32::from_rgb(235, 140, 50),
            format!(
                "stale: these results are for settings revision {revision}, the settings are at {}",
                input.revision
            ),
        );
    }
    ui.columns(2, |columns| {
        let ui = &mut columns[0];
        if !current {
            ui.disable();
        }
        egui::Grid::new("results_grid")
            .num_columns(2)
            .striped(true)
            .show(ui, |ui| {
                for (name, value, hover) in figure_rows(evaluation) {
                    ui.label(name).on_hover_text(hover);
                    ui.label(value);
                    ui.end_row();
                }
            });
        if evaluation.outputs.len() > 1 {
            egui::CollapsingHeader::new(format!("{} outputs", evaluation.outputs.len()))
                .id_salt("output_errors")
                .show(ui, |ui| {
                    egui::Grid::new("output_errors_grid")
                        .num_columns(4)
                        .striped(true)
                        .show(ui, |ui| {
                            for h in ["output", "SQNR", "cosine", "max |error|"] {
                                ui.strong(h);
                            }
                            ui.end_row();
                            for o in &evaluation.outputs {
                                ui.label(&o.name);
                                ui.colored_label(sqnr_colour(o.sqnr_db), sqnr_text(o.sqnr_db));
                                ui.label(format!("{:.5}", o.cosine));
                                ui.label(format!("{:.3e}", o.max_abs_error));
                                ui.end_row();
                            }
                        });
                });
        }
        let ui = &mut columns[1];
        let bars: Vec<Bar> = evaluation
            .layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let db = if layer.sqnr_db.is_finite() {
                    layer.sqnr_db
                } else {
                    100.0
                };
                Bar::new(i as f64, db)
                    .name(format!("{}: {}", layer.node, sqnr_text(layer.sqnr_db)))
                    .fill(sqnr_colour(layer.sqnr_db))
                    .width(0.8)
            })
            .collect();
        ui.label("per-layer output SQNR (dB): the lowest bar hurts most")
            .on_hover_text(
                "10*log10(sum float^2 / sum (float - quantized)^2) of each layer's output",
            );
        Plot::new("layer_sqnr")
            .height(ui.available_height().max(80.0))
            .allow_scroll(false)
            .allow_zoom(false)
            .allow_drag(false)
            .x_axis_label("layer (execution order)")
            .y_axis_label("dB")
            .show(ui, |plot_ui| {
                plot_ui.bar_chart(BarChart::new("SQNR", bars));
            });
    });
    commands
}
