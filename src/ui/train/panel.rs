//! The Train (QAT) window's drawing: the quantization it trains for (the Settings panel's),
//! the training settings, what it trains on (or why it cannot), the run's progress with
//! Cancel, the live curves (training loss; held-out accuracy with the float and PTQ accuracies
//! as reference lines) and "Use trained model".

use egui_plot::{HLine, Line, Plot, PlotPoints, Points};

use super::job::{LiveCurve, TrainJob, TrainState};
use super::settings::{Optimizer, Ranges, TrainSettings};

/// What the window reads in one frame.
pub struct TrainInput<'a> {
    /// The session's quantization, described.
    pub quant: String,
    /// Whether the session's weights are TTQ (its threshold is a setting then).
    pub ttq: bool,
    /// What a run would train on, or why it cannot start.
    pub plan: Result<String, String>,
    pub job: &'a TrainJob,
    /// What trained the session's model, when it is a trained one.
    pub in_use: Option<&'a str>,
}

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainAction {
    Start,
    Cancel,
    UseTrained,
}

const QAT_COLOUR: egui::Color32 = egui::Color32::from_rgb(90, 150, 230);
const FLOAT_COLOUR: egui::Color32 = egui::Color32::from_rgb(90, 170, 90);
const PTQ_COLOUR: egui::Color32 = egui::Color32::from_rgb(220, 120, 60);
const WARN_COLOUR: egui::Color32 = egui::Color32::from_rgb(230, 170, 60);

fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.2} %", 100.0 * v))
}

/// Draws the window's content; returns what was asked for.
pub fn train_ui(
    ui: &mut egui::Ui,
    settings: &mut TrainSettings,
    input: &TrainInput<'_>,
) -> Vec<TrainAction> {
    let mut actions = Vec::new();
    let running = input.job.is_running();
    ui.label(format!("Trains for: {}", input.quant))
        .on_hover_text("Schemes, bits, calibrated and manual ranges come from the Settings panel");
    if let Some(in_use) = input.in_use {
        ui.weak(format!("The session's model is a trained one ({in_use})."));
    }
    ui.add_enabled_ui(!running, |ui| settings_ui(ui, settings, input.ttq));
    match &input.plan {
        Ok(text) => {
            ui.weak(format!("Data: {text}"));
        }
        Err(why) => {
            ui.colored_label(WARN_COLOUR, format!("Cannot train: {why}"));
        }
    }
    ui.horizontal(|ui| {
        let can_start = !running && input.plan.is_ok();
        if ui
            .add_enabled(can_start, egui::Button::new("Start training"))
            .clicked()
        {
            actions.push(TrainAction::Start);
        }
        if let Some(progress) = input.job.progress() {
            let epoch = input.job.curve.points.len();
            ui.add(
                egui::ProgressBar::new(progress)
                    .desired_width(220.0)
                    .text(format!(
                        "epoch {} of {}",
                        (epoch + 1).min(settings.epochs),
                        settings.epochs
                    )),
            );
            if ui
                .add_enabled(!input.job.cancelling, egui::Button::new("Cancel"))
                .clicked()
            {
                actions.push(TrainAction::Cancel);
            }
        }
    });
    state_ui(ui, input.job);
    curves_ui(ui, &input.job.curve);
    ui.horizontal(|ui| {
        if ui
            .add_enabled(input.job.can_use(), egui::Button::new("Use trained model"))
            .on_hover_text(
                "Make the trained model the session's model: the histograms show its weights, \
                 Results evaluate it, exports and saved sessions use it",
            )
            .clicked()
        {
            actions.push(TrainAction::UseTrained);
        }
        if input
            .job
            .trained
            .as_ref()
            .is_some_and(|t| t.loaded.is_none())
        {
            ui.weak("in use");
        }
    });
    actions
}

fn settings_ui(ui: &mut egui::Ui, settings: &mut TrainSettings, ttq: bool) {
    egui::Grid::new("train_settings")
        .num_columns(2)
        .spacing([12.0, 4.0])
        .show(ui, |ui| {
            ui.label("epochs");
            ui.add(egui::DragValue::new(&mut settings.epochs).range(1..=500));
            ui.end_row();
            ui.label("learning rate");
            ui.add(
                egui::DragValue::new(&mut settings.learning_rate)
                    .range(1e-6..=1.0)
                    .speed(1e-4)
                    .max_decimals(6),
            );
            ui.end_row();
            ui.label("optimizer");
            egui::ComboBox::from_id_salt("train_optimizer")
                .selected_text(settings.optimizer.label())
                .show_ui(ui, |ui| {
                    for o in Optimizer::ALL {
                        ui.selectable_value(&mut settings.optimizer, o, o.label());
                    }
                });
            ui.end_row();
            ui.label("batch size");
            ui.add(egui::DragValue::new(&mut settings.batch_size).range(1..=4096));
            ui.end_row();
            ui.label("activation ranges");
            egui::ComboBox::from_id_salt("train_ranges")
                .selected_text(settings.ranges.label())
                .show_ui(ui, |ui| {
                    for r in Ranges::ALL {
                        ui.selectable_value(&mut settings.ranges, r, r.label());
                    }
                });
            ui.end_row();
            ui.label("TTQ threshold t").on_hover_text(
                "Trained Ternary Quantization: Delta = t * max|W| (weights set to TTQ)",
            );
            ui.add_enabled(
                ttq,
                egui::DragValue::new(&mut settings.ttq_threshold)
                    .range(0.0..=0.99)
                    .speed(0.005),
            );
            ui.end_row();
            ui.label("XNOR-Net");
            ui.checkbox(
                &mut settings.xnor,
                "inner Conv/Gemm layers binary with binary inputs",
            )
            .on_hover_text(
                "XNOR-Net: alpha per output channel, K for the inputs; the first and last \
                     layers stay as the settings say",
            );
            ui.end_row();
            ui.label("training samples");
            ui.add(
                egui::DragValue::new(&mut settings.max_samples)
                    .range(0..=1_000_000)
                    .custom_formatter(|v, _| {
                        if v == 0.0 {
                            "all".into()
                        } else {
                            format!("{v}")
                        }
                    }),
            )
            .on_hover_text("Train on the first N samples only (0: all)");
            ui.end_row();
            ui.label("labels");
            ui.checkbox(
                &mut settings.float_labels,
                "from the float model when the data has none",
            )
            .on_hover_text(
                "Train towards the float model's top-1 class: accuracy then means agreement \
                     with the float model",
            );
            ui.end_row();
        });
}

fn state_ui(ui: &mut egui::Ui, job: &TrainJob) {
    match &job.state {
        TrainState::Idle | TrainState::Running => {}
        TrainState::Done => {
            if let Some(trained) = &job.trained {
                let r = &trained.result;
                ui.label(format!(
                    "Done on {}: float {}, PTQ {}, QAT {}",
                    trained.data,
                    percent(r.float_accuracy),
                    percent(r.ptq_accuracy),
                    percent(r.qat_accuracy)
                ));
                if !r.xnor_layers.is_empty() || !r.binary_activations.is_empty() {
                    ui.weak(
                        "Binary (sign) activations and XNOR inputs have no PTQ setting: the \
                         session runs them in float",
                    );
                }
            }
        }
        TrainState::Cancelled => {
            ui.label("Cancelled: the session's model is unchanged.");
        }
        TrainState::Failed(why) => {
            ui.colored_label(egui::Color32::LIGHT_RED, format!("Training failed: {why}"));
        }
    }
}

fn curves_ui(ui: &mut egui::Ui, curve: &LiveCurve) {
    let loss: Vec<[f64; 2]> = curve
        .points
        .iter()
        .map(|p| [p.epoch as f64, p.train_loss])
        .collect();
    let accuracy: Vec<[f64; 2]> = curve
        .points
        .iter()
        .filter_map(|p| Some([p.epoch as f64, 100.0 * p.eval_accuracy?]))
        .collect();
    let latest = curve.points.last().and_then(|p| p.eval_accuracy);
    let height = 190.0;
    ui.columns(2, |columns| {
        columns[0].label("training loss per epoch");
        columns[0].label(" "); // level with the accuracy plot's key
        Plot::new("qat_loss")
            .height(height)
            .include_x(1.0)
            .include_y(0.0)
            .x_axis_label("epoch")
            .show(&mut columns[0], |plot| {
                plot.line(
                    Line::new("training loss", PlotPoints::from(loss.clone())).color(QAT_COLOUR),
                );
                plot.points(
                    Points::new("loss", PlotPoints::from(loss))
                        .radius(3.0)
                        .color(QAT_COLOUR),
                );
            });
        columns[1].label("held-out accuracy (%)");
        // The key sits above the plot, never over the curves.
        columns[1].horizontal_wrapped(|ui| {
            ui.colored_label(QAT_COLOUR, format!("— QAT {}", percent(latest)));
            ui.colored_label(
                FLOAT_COLOUR,
                format!("— float {}", percent(curve.float_accuracy)),
            );
            ui.colored_label(PTQ_COLOUR, format!("— PTQ {}", percent(curve.ptq_accuracy)));
        });
        Plot::new("qat_accuracy")
            .height(height)
            .include_x(1.0)
            .include_y(0.0)
            .include_y(100.0)
            .x_axis_label("epoch")
            .show(&mut columns[1], |plot| {
                if let Some(float) = curve.float_accuracy {
                    plot.hline(HLine::new("float", 100.0 * float).color(FLOAT_COLOUR));
                }
                if let Some(ptq) = curve.ptq_accuracy {
                    plot.hline(HLine::new("PTQ", 100.0 * ptq).color(PTQ_COLOUR));
                }
                plot.line(Line::new("QAT", PlotPoints::from(accuracy.clone())).color(QAT_COLOUR));
                plot.points(
                    Points::new("QAT epochs", PlotPoints::from(accuracy))
                        .radius(3.0)
                        .color(QAT_COLOUR),
                );
            });
    });
}
