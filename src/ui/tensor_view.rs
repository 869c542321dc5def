//! The centre view: one tensor's statistics and value histogram.

use egui_plot::{Bar, BarChart, Plot};

use crate::stats::Histogram;
use crate::summary::TensorSummary;

/// Shows `tensor`'s statistics and `histogram` (linear or log counts).
pub fn tensor_view_ui(
    ui: &mut egui::Ui,
    tensor: &TensorSummary,
    histogram: &Histogram,
    log_counts: &mut bool,
) {
    ui.heading(&tensor.name);
    egui::Grid::new("tensor_stats")
        .num_columns(2)
        .show(ui, |ui| {
            let rows = [
                ("role", tensor.role.to_string()),
                ("stored as", tensor.dtype.to_string()),
                ("shape", format!("{:?}", tensor.shape)),
                ("elements", tensor.stats.count.to_string()),
                (
                    "min / max",
                    format!("{:.5} / {:.5}", tensor.stats.min, tensor.stats.max),
                ),
                (
                    "mean / std",
                    format!("{:.5} / {:.5}", tensor.stats.mean, tensor.stats.std),
                ),
                (
                    "channel axis",
                    match (tensor.channel_axis, tensor.channels) {
                        (Some(axis), Some(n)) => format!("{axis} ({n} channels)"),
                        _ => "none".into(),
                    },
                ),
                (
                    "channel range spread",
                    tensor
                        .channel_range_spread
                        .map(|s| format!("{s:.1}× (widest / narrowest channel range)"))
                        .unwrap_or_else(|| "-".into()),
                ),
            ];
            for (name, value) in rows {
                ui.label(name);
                ui.label(value);
                ui.end_row();
            }
            if tensor.stats.nan_count + tensor.stats.inf_count > 0 {
                ui.colored_label(egui::Color32::LIGHT_RED, "non-finite");
                ui.colored_label(
                    egui::Color32::LIGHT_RED,
                    format!(
                        "{} NaN, {} Inf (left out of every statistic)",
                        tensor.stats.nan_count, tensor.stats.inf_count
                    ),
                );
                ui.end_row();
            }
        });
    ui.checkbox(log_counts, "log counts")
        .on_hover_text("Plot log10(1 + count) so rare outliers stay visible");
    let width = histogram.bin_width().max(f32::EPSILON) as f64;
    let bars: Vec<Bar> = histogram
        .counts
        .iter()
        .enumerate()
        .map(|(i, &count)| {
            let height = if *log_counts {
                (1.0 + count as f64).log10()
            } else {
                count as f64
            };
            Bar::new(histogram.bin_center(i) as f64, height)
                .width(width)
                .fill(egui::Color32::from_rgb(90, 150, 230))
        })
        .collect();
    Plot::new("tensor_histogram")
        .x_axis_label("value")
        .y_axis_label(if *log_counts {
            "log10(1 + count)"
        } else {
            "count"
        })
        .show(ui, |plot_ui| {
            plot_ui.bar_chart(
                BarChart::new("values", bars).color(egui::Color32::from_rgb(90, 150, 230)),
            );
        });
}
