//! The bottom panel: float vs quantized accuracy, top-1 agreement and output KL for
//! classifiers, every output's SQNR for any model, model size and BitOps per inference against
//! float, and the running jobs' progress with Cancel; beside them the per-layer SQNR chart
//! (accumulated, and each layer's own error once diagnosed) or the integer-only path's counts.
//! Results of an older settings revision are labelled stale, never shown as current.

use std::sync::Arc;

use crate::diagnose::Diagnosis;
use crate::jobs::pipeline::Evaluation;
use crate::quant::integer::compare::IntegerComparison;

use super::badge::{sqnr_colour, sqnr_text};
use super::commands::AppCommand;
use super::diagnose::{
    Diagnostics, DiagnosticsCommand, OWN_LEGEND, PropagationInput, PropagationRow, Shown,
    integer_ui, propagation_ui,
};
use super::layers::LayerRow;
use super::panel::Panel;
use super::selection::{Part, Selection};
use super::session::Session;

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
    /// The diagnosis switches, jobs and results.
    pub diagnostics: DiagnosticsInput<'a>,
}

impl<'a> ResultsInput<'a> {
    /// The input for `session` and its `diagnostics`.
    pub fn of(session: &'a Session, diagnostics: &'a Diagnostics, explain: bool) -> Self {
        ResultsInput {
            inference_unavailable: session.inference_unavailable(),
            auto_evaluate: session.auto_evaluate,
            progress: session.progress(),
            busy: session.is_busy(),
            message: session.job_message.as_deref(),
            evaluation: session.evaluation.as_ref().map(|(r, e)| (*r, e.as_ref())),
            revision: session.revision,
            diagnostics: diagnostics.input(session, explain),
        }
    }
}

/// The diagnosis part of the panel's input.
pub struct DiagnosticsInput<'a> {
    pub propagation_on: bool,
    pub integer_on: bool,
    pub diagnosis: Shown<'a, Diagnosis>,
    pub integer: Shown<'a, IntegerComparison>,
    /// The diagnosis jobs' labels and progress.
    pub progress: Vec<(String, f32)>,
    /// The model panel's rows and selection (a clicked layer selects its row).
    pub layers: &'a [LayerRow],
    pub selection: Option<Selection>,
    pub explain: bool,
}

impl DiagnosticsInput<'_> {
    fn selected_node(&self) -> Option<&str> {
        let s = self.selection?;
        self.layers.get(s.layer).map(|r| r.node.as_str())
    }

    /// Selects `node`'s row with the part shown now, when the row has it.
    fn select(&self, node: &str) -> Option<AppCommand> {
        let part = self.selection.map_or(Part::Weight, |s| s.part);
        let row = self.layers.iter().position(|r| r.node == node)?;
        let r = &self.layers[row];
        let has = |p: Part| match p {
            Part::Weight => r.weight.is_some(),
            Part::Recurrence => r.recurrence.is_some(),
            Part::Input => r.input.is_some(),
            Part::Output => r.output.is_some(),
        };
        let part = [part, Part::Weight, Part::Output]
            .into_iter()
            .find(|p| has(*p))?;
        Some(AppCommand::Select(Selection { layer: row, part }))
    }
}

/// The panel (no state of its own; the chart/integer choice lives in egui's memory).
#[derive(Debug, Default)]
pub struct ResultsPanel;

/// Which view the right half shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum RightView {
    #[default]
    Chart,
    Integer,
}

fn right_view_id() -> egui::Id {
    egui::Id::unique("quantscope_results_right_view")
}

impl Panel for ResultsPanel {
    type Input<'a> = ResultsInput<'a>;

    /// Draws the panel in a scroll area filling it (a shrunk first frame would fix the
    /// panel's height at that size).
    fn ui(&mut self, ui: &mut egui::Ui, input: &ResultsInput<'_>) -> Vec<AppCommand> {
        egui::ScrollArea::vertical()
            .auto_shrink(false)
            .show(ui, |ui| {
                ui.heading("Results");
                results_ui(ui, input)
            })
            .inner
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
        toggles_ui(ui, &input.diagnostics, &mut commands);
        let progress = input
            .progress
            .iter()
            .chain(&input.diagnostics.progress)
            .next();
        if let Some((label, progress)) = progress {
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
        commands.extend(right_ui(ui, evaluation, current, &input.diagnostics));
    });
    commands
}

/// The diagnosis switches of the top row.
fn toggles_ui(ui: &mut egui::Ui, d: &DiagnosticsInput<'_>, commands: &mut Vec<AppCommand>) {
    let mut propagation = d.propagation_on;
    if ui
        .checkbox(&mut propagation, "error propagation")
        .on_hover_text(format!(
            "Diagnose each layer's own error beside the accumulated one (a background run of \
             about two evaluations after each settings change); colours the model list. {OWN_LEGEND}"
        ))
        .changed()
    {
        commands.push(AppCommand::Diagnostics(DiagnosticsCommand::SetPropagation(
            propagation,
        )));
    }
    let mut integer = d.integer_on;
    if ui
        .checkbox(&mut integer, "integer-only path")
        .on_hover_text(
            "Run Conv/Gemm/MatMul with integer arithmetic only (i32 accumulators, fixed-point \
             requantization) beside the simulation and count the codes that differ",
        )
        .changed()
    {
        let view = if integer {
            RightView::Integer
        } else {
            RightView::Chart
        };
        ui.data_mut(|m| m.insert_temp(right_view_id(), view));
        commands.push(AppCommand::Diagnostics(DiagnosticsCommand::SetIntegerPath(
            integer,
        )));
    }
}

/// The right half: the per-layer SQNR chart or the integer path's counts.
fn right_ui(
    ui: &mut egui::Ui,
    evaluation: &Evaluation,
    evaluation_current: bool,
    d: &DiagnosticsInput<'_>,
) -> Vec<AppCommand> {
    let mut view: RightView = ui.data(|m| m.get_temp(right_view_id())).unwrap_or_default();
    if d.integer_on {
        ui.horizontal(|ui| {
            ui.selectable_value(&mut view, RightView::Chart, "per-layer SQNR");
            ui.selectable_value(&mut view, RightView::Integer, "integer vs simulation");
        });
        ui.data_mut(|m| m.insert_temp(right_view_id(), view));
    } else {
        view = RightView::Chart;
    }
    let selected = d.selected_node();
    let clicked = match view {
        RightView::Integer => match d.integer {
            Some((current, result)) => integer_ui(ui, result, current, selected, d.explain),
            None => {
                ui.spinner();
                ui.weak("the integer-only path runs after the evaluation");
                None
            }
        },
        RightView::Chart => {
            let diagnosis = d
                .diagnosis
                .and_then(|(current, r)| r.as_ref().ok().map(|r| (current, r)));
            if let Some((_, Err(e))) = d.diagnosis {
                ui.colored_label(egui::Color32::LIGHT_RED, format!("diagnosis failed: {e}"));
            }
            let input = chart_input(evaluation, evaluation_current, diagnosis, selected);
            propagation_ui(ui, &input)
        }
    };
    clicked
        .and_then(|node| d.select(&node))
        .into_iter()
        .collect()
}

/// The chart's rows: the diagnosis's own and accumulated SQNR when there is one, else the
/// evaluation's per-layer SQNR (the same accumulated figure).
fn chart_input<'a>(
    evaluation: &'a Evaluation,
    evaluation_current: bool,
    diagnosis: Option<(bool, &'a Arc<Diagnosis>)>,
    selected: Option<&'a str>,
) -> PropagationInput<'a> {
    match diagnosis {
        Some((current, d)) => PropagationInput {
            rows: d
                .layers
                .iter()
                .map(|l| PropagationRow {
                    node: &l.node,
                    accumulated_db: l.accumulated_sqnr_db,
                    own_db: Some(l.own_sqnr_db),
                })
                .collect(),
            selected,
            current,
        },
        None => PropagationInput {
            rows: evaluation
                .layers
                .iter()
                .map(|l| PropagationRow {
                    node: &l.node,
                    accumulated_db: l.sqnr_db,
                    own_db: None,
                })
                .collect(),
            selected,
            current: evaluation_current,
        },
    }
}
