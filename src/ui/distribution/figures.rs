//! The figures under the plots: the error estimate at the clip range in force next to the
//! exact figures of the worker, where the clip range comes from (with its reset), and the
//! per-tensor vs per-channel comparison of the channel tab.

use egui::{Color32, RichText};

use crate::metrics::ErrorEstimate;

use super::view::level_count_text;
use super::{DistributionCommand, DistributionInput, ExactFigures};

/// Which grid an estimate is for: one for the whole tensor, or one per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EstimateOf {
    Tensor,
    Channels,
}

/// The estimate at the clip range in force, the exact figures when the worker has them, and
/// where the range comes from.
pub(super) fn figures_ui(
    ui: &mut egui::Ui,
    input: &DistributionInput<'_>,
    clip: (f32, f32),
    linear: bool,
    levels: Option<usize>,
    estimate: Option<(&ErrorEstimate, EstimateOf)>,
    commands: &mut Vec<DistributionCommand>,
) {
    ui.horizontal_wrapped(|ui| {
        if let Some(n) = levels {
            ui.label(RichText::new(level_count_text(n)).strong())
                .on_hover_text(
                    "Reconstruction levels of the grid. Up to 64 in view are drawn as thin \
                     lines; denser grids are shown by the quantized histogram.",
                );
        }
        match estimate {
            Some((e, of)) => ui.label(
                RichText::new(format!(
                    "estimate{}: MSE {:.4e} · SQNR {:.2} dB",
                    match of {
                        EstimateOf::Tensor => "",
                        EstimateOf::Channels => " (per channel)",
                    },
                    e.mse,
                    e.sqnr_db
                ))
                .strong(),
            ),
            None => ui.label("estimate: —"),
        }
        .on_hover_text(
            "Expected quantization error from the fine histogram (its per-bin moments), \
             recomputed every frame while you drag. SQNR = 10·log10(E[x²] / MSE). A tensor \
             quantized per channel is estimated channel by channel, each on its own grid, \
             like the exact figure.",
        );
        match input.exact {
            Some(exact) => exact_label_ui(ui, exact),
            None => {
                ui.label(RichText::new("exact: computing…").weak())
                    .on_hover_text("A worker computes the element-wise figures for this setting.");
            }
        }
    });
    if linear {
        ui.horizontal_wrapped(|ui| {
            let source = if input.clip_is_manual {
                "set by hand".to_string()
            } else {
                format!("from {}", input.method_name)
            };
            ui.label(format!(
                "clip range [{:.5}, {:.5}] {source}",
                clip.0, clip.1
            ))
            .on_hover_text("rmin and rmax: values outside are clipped to the end levels.");
            if !input.channel_clips.is_empty() {
                ui.label(format!(
                    "· {} channel clip(s) set by hand (channel {})",
                    input.channel_clips.len(),
                    input
                        .channel_clips
                        .keys()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .on_hover_text(
                    "These channels use their own range set in the per-channel tab; the tensor \
                     is quantized per channel.",
                );
            }
            if input.clip_is_manual
                && ui
                    .button(format!("reset to {}", input.method_name))
                    .on_hover_text(
                        "Drop the hand-set range and use the calibration method's (same as a \
                         double-click on the plot).",
                    )
                    .clicked()
            {
                commands.push(DistributionCommand::ResetClip);
            }
        });
    }
}

fn exact_label_ui(ui: &mut egui::Ui, exact: &ExactFigures) {
    let m = &exact.metrics;
    ui.label(
        RichText::new(format!(
            "exact: MSE {:.4e} · SQNR {:.2} dB · max |err| {:.3e} · cosine {:.5}",
            m.mse, m.sqnr_db, m.max_abs_error, m.cosine
        ))
        .color(Color32::from_rgb(120, 190, 120)),
    )
    .on_hover_text("Element-wise figures over the whole tensor, computed by a worker.");
}

/// Per-tensor vs per-channel error, side by side.
pub(super) fn comparison_ui(
    ui: &mut egui::Ui,
    per_tensor: Option<&ErrorEstimate>,
    per_channel: Option<&ErrorEstimate>,
    exact: Option<&ExactFigures>,
) {
    let db = |v: Option<f64>| {
        v.map(|v| format!("{v:.2} dB"))
            .unwrap_or_else(|| "—".into())
    };
    // Lines that wrap (a grid would widen a narrow column past its neighbours).
    ui.horizontal_wrapped(|ui| {
        ui.label("SQNR estimate:");
        ui.label(format!("per tensor {}", db(per_tensor.map(|e| e.sqnr_db))))
            .on_hover_text("One grid (S, Z) for the whole tensor, from the clip range in force.");
        ui.label(format!(
            "· per channel {}",
            db(per_channel.map(|e| e.sqnr_db))
        ))
        .on_hover_text(
            "One grid per output channel, from that channel's clip range (its own min and max, \
             or the range set by hand in this tab).",
        );
    });
    if let Some(exact) = exact {
        ui.horizontal_wrapped(|ui| {
            ui.label("SQNR exact:");
            ui.label(format!("per tensor {}", db(exact.per_tensor_sqnr_db)));
            ui.label(format!("· per channel {}", db(exact.per_channel_sqnr_db)));
        });
    }
}
