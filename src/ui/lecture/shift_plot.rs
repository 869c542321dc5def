//! The bias-correction step's before/after: the mean output shift per channel (quantized minus
//! float, measured on the evaluation data) of the corrected layer on screen, before correction
//! and after it, as two bar series side by side, with their mean |shift| in the line above.

use egui::Color32;
use egui_plot::{Bar, BarChart};

use crate::ui::fixed_plot::fixed_plot;

use crate::transform::report::ChannelShifts;

use super::before_after::mean_magnitude;

const BEFORE_COLOR: Color32 = Color32::from_rgb(150, 150, 150);
const AFTER_COLOR: Color32 = Color32::from_rgb(100, 140, 200);

fn bars(shift: &[f32], offset: f64, color: Color32, what: &str) -> Vec<Bar> {
    shift
        .iter()
        .enumerate()
        .map(|(c, &s)| {
            Bar::new(c as f64 + offset, f64::from(s))
                .width(0.4)
                .fill(color)
                .stroke(egui::Stroke::NONE)
                .name(format!("channel {c} {what}"))
        })
        .collect()
}

/// Draws the line with both totals and the two bar series, `height` points tall.
pub fn shift_plot_ui(ui: &mut egui::Ui, shifts: &ChannelShifts, height: f32) {
    ui.horizontal_wrapped(|ui| {
        ui.label(
            "Output shift per channel, quantized − float, on the evaluation data; mean |shift|",
        )
        .on_hover_text(format!(
            "The mean of each output channel of {} in the quantized model minus the float \
                 one: before bias correction and after it",
            shifts.layer
        ));
        ui.colored_label(
            BEFORE_COLOR,
            format!("before correction: {:.3e}", mean_magnitude(&shifts.before)),
        );
        ui.colored_label(
            AFTER_COLOR,
            format!("after: {:.3e}", mean_magnitude(&shifts.after)),
        );
    });
    fixed_plot("lecture_bias_shift")
        .height(height)
        .show_x(false)
        .show(ui, |plot_ui| {
            plot_ui.bar_chart(
                BarChart::new(
                    "before correction",
                    bars(&shifts.before, -0.2, BEFORE_COLOR, "before"),
                )
                .color(BEFORE_COLOR),
            );
            plot_ui.bar_chart(
                BarChart::new(
                    "after correction",
                    bars(&shifts.after, 0.2, AFTER_COLOR, "after"),
                )
                .color(AFTER_COLOR),
            );
        });
}
