//! The settings panel's transform section: switches for BN folding, cross-layer equalization,
//! high-bias absorption and bias correction, with what each did (applied, skipped and why,
//! warnings, how the per-channel range spread changed).

use crate::transform::TransformReport;
use crate::transform::toggles::{BiasCorrection, TransformToggles};

use super::commands::AppCommand;
use super::panel::Panel;

/// What the section shows.
pub struct TransformsInput<'a> {
    pub toggles: TransformToggles,
    pub reports: &'a [TransformReport],
    /// A transform job is running.
    pub busy: bool,
    pub message: Option<&'a str>,
    /// Why inference-based transforms are unavailable (weights-only files).
    pub unavailable: Option<&'a str>,
}

/// The section (no state of its own).
#[derive(Debug, Default)]
pub struct TransformsPanel;

impl Panel for TransformsPanel {
    type Input<'a> = TransformsInput<'a>;

    /// Draws the switches and the reports; returns the new switches when one changed.
    fn ui(&mut self, ui: &mut egui::Ui, input: &TransformsInput<'_>) -> Vec<AppCommand> {
        transforms_ui(ui, input)
    }
}

fn transforms_ui(ui: &mut egui::Ui, input: &TransformsInput<'_>) -> Vec<AppCommand> {
    ui.heading("Transforms");
    let mut toggles = input.toggles;
    let enabled = input.unavailable.is_none();
    ui.add_enabled_ui(enabled, |ui| {
        ui.checkbox(&mut toggles.fold_bn, "BN folding")
            .on_hover_text(
                "Fold each BatchNorm into the conv before it: W' = W*gamma/sigma, \
             b' = beta + (b - mu)*gamma/sigma. Watch the depthwise per-channel ranges blow up",
            );
        ui.checkbox(&mut toggles.equalize, "cross-layer equalization")
            .on_hover_text(
                "Scale output channel j of a layer by 1/s_j and the next layer's input channel \
                 j by s_j, s_j = sqrt(r2_j / r1_j), so both ranges become sqrt(r1_j * r2_j): \
                 per-tensor quantization works again. Float outputs are unchanged",
            );
        ui.checkbox(&mut toggles.absorb_bias, "high-bias absorption")
            .on_hover_text(
                "Move c = max(0, beta - 3*gamma) of a layer's bias into the next layer's bias \
                 (through ReLU), shrinking the activation range",
            );
        egui::ComboBox::from_label("bias correction")
            .selected_text(match toggles.bias_correction {
                BiasCorrection::Off => "off",
                BiasCorrection::Analytic => "analytic",
                BiasCorrection::Empirical => "empirical",
            })
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut toggles.bias_correction, BiasCorrection::Off, "off");
                ui.selectable_value(
                    &mut toggles.bias_correction,
                    BiasCorrection::Analytic,
                    "analytic",
                )
                .on_hover_text(
                    "Data-free: E[x] of each input channel from the folded BN's beta and gamma \
                     (Gaussian through ReLU); subtract (W_q - W)E[x] from the bias",
                );
                ui.selectable_value(
                    &mut toggles.bias_correction,
                    BiasCorrection::Empirical,
                    "empirical",
                )
                .on_hover_text(
                    "Measure the mean output shift of each channel on the calibration data \
                     and subtract it from the bias",
                );
            })
            .response
            .on_hover_text("Remove the expected output shift that quantized weights cause");
    });
    if let Some(reason) = input.unavailable {
        ui.weak(reason);
    }
    if input.busy {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("applying transforms");
        });
    }
    if let Some(message) = input.message {
        ui.colored_label(ui.visuals().warn_fg_color, message);
    }
    for report in input.reports {
        report_ui(ui, report);
    }
    if toggles == input.toggles {
        Vec::new()
    } else {
        vec![AppCommand::SetTransforms(toggles)]
    }
}

fn report_ui(ui: &mut egui::Ui, report: &TransformReport) {
    let title = format!(
        "{}: {} applied, {} skipped",
        report.transform,
        report.applied.len(),
        report.skipped.len()
    );
    egui::CollapsingHeader::new(title)
        .id_salt(&report.transform)
        .show(ui, |ui| {
            if report.applied.is_empty() {
                ui.label("nothing to do here:");
            }
            for applied in &report.applied {
                ui.label(format!("{}: {}", applied.layer, applied.detail));
            }
            for skipped in &report.skipped {
                ui.weak(format!("skipped {}: {}", skipped.layer, skipped.reason));
            }
            for warning in &report.warnings {
                ui.colored_label(ui.visuals().warn_fg_color, warning);
            }
            for ranges in &report.ranges {
                if let (Some(before), Some(after)) = (ranges.spread_before(), ranges.spread_after())
                {
                    ui.label(format!(
                        "{}: channel range spread {before:.1}x -> {after:.1}x",
                        ranges.tensor
                    ));
                }
            }
        });
}
