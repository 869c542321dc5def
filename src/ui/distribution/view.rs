//! [`DistributionView`]: the centre panel's state and its `show_ui`, which lays out the tabs
//! (histogram with grid, handles and markers; per-channel ranges; reconstruction), the error
//! figures (estimate and exact) and, in explain mode, the formulas.

use egui::{Color32, RichText};
use egui_plot::PlotTransform;

use crate::metrics::ErrorEstimate;
use crate::quant::Quantizer;

use super::cache::ViewCache;
use super::channels_plot::{channel_at, channel_ranges_plot_ui};
use super::clip_handles::shown_clip;
use super::explain::{explain_ui, formulas};
use super::histogram_plot::{HistogramPlot, histogram_plot_ui, marker_color, x_bounds};
use super::interaction::{DragState, PointerOnPlot, Scene, interact};
use super::reconstruction::{reconstruct, reconstruction_ui};
use super::{DistributionCommand, DistributionInput, ExactFigures};

/// The view's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Histogram,
    Channels,
    Reconstruction,
}

/// The view's own state (what is shown, the handle being dragged, the selected channel).
#[derive(Debug, Default)]
pub struct DistributionView {
    pub log_counts: bool,
    pub selected_channel: Option<usize>,
    pub tab: Tab,
    /// Overlay the quantized histogram (mass moved to the levels).
    pub show_quantized: bool,
    drag: DragState,
    last_plot_rect: Option<egui::Rect>,
    last_transform: Option<PlotTransform>,
    cache: ViewCache,
}

/// Text size factor of explain mode.
const EXPLAIN_SCALE: f32 = 1.4;

impl DistributionView {
    /// Screen rect of the plot drawn last (the main histogram, the channel ranges or the
    /// reconstruction scatter), for exporting it as PNG.
    pub fn last_plot_rect(&self) -> Option<egui::Rect> {
        self.last_plot_rect
    }

    /// Screen ↔ plot mapping of the main histogram (histogram tab) or of the channel range plot
    /// (per-channel tab) drawn last.
    pub fn last_transform(&self) -> Option<PlotTransform> {
        self.last_transform
    }

    /// Whether a clip handle is being dragged.
    pub fn is_dragging(&self) -> bool {
        self.drag.handle.is_some()
    }

    /// Draws the view; returns the user's commands of this frame.
    pub fn show_ui(
        &mut self,
        ui: &mut egui::Ui,
        input: &DistributionInput<'_>,
    ) -> Vec<DistributionCommand> {
        self.cache.sync(input);
        if self.drag.handle.is_none() {
            self.drag.clip = None;
        }
        let mut commands = Vec::new();
        ui.scope(|ui| {
            if input.explain {
                for font in ui.style_mut().text_styles.values_mut() {
                    font.size *= EXPLAIN_SCALE;
                }
            }
            let codebook = self.cache.codebook(input.data, input.choice.scheme);
            header_ui(ui, input);
            self.tabs_ui(ui, input);
            let clip = match self.tab {
                Tab::Histogram => {
                    self.histogram_tab_ui(ui, input, codebook.as_deref(), &mut commands)
                }
                Tab::Channels => {
                    self.channels_tab_ui(ui, input, codebook.as_deref());
                    input.clip
                }
                Tab::Reconstruction => {
                    self.reconstruction_tab_ui(ui, input, codebook.as_deref());
                    input.clip
                }
            };
            if input.explain {
                let symmetric = is_symmetric(input);
                let stats = &input.data.scheme_stats.tensor;
                let shown = shown_clip(clip, symmetric);
                match input.choice.quantizer(shown, stats, codebook.as_deref()) {
                    Ok(q) => {
                        let estimate = input.data.fine.estimate_quantizer(&q);
                        explain_ui(
                            ui,
                            &formulas(&input.choice, shown, &q, stats, estimate.as_ref()),
                        );
                    }
                    Err(e) => {
                        ui.label(e);
                    }
                }
            }
        });
        commands
    }

    fn tabs_ui(&mut self, ui: &mut egui::Ui, input: &DistributionInput<'_>) {
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.tab, Tab::Histogram, "histogram")
                .on_hover_text(
                    "The tensor's value histogram with the quantization grid, the clip range \
                     [rmin, rmax] and every calibration method's range.",
                );
            let channels = ui
                .add_enabled(
                    !input.data.channel_ranges.is_empty(),
                    egui::Button::selectable(self.tab == Tab::Channels, "per channel"),
                )
                .on_hover_text(
                    "Each output channel's min..max: one grid per channel (per-channel \
                     quantization) or one for the whole tensor (per-tensor).",
                )
                .on_disabled_hover_text("This tensor has no channel axis.");
            if channels.clicked() {
                self.tab = Tab::Channels;
            }
            ui.selectable_value(&mut self.tab, Tab::Reconstruction, "reconstruction")
                .on_hover_text(
                    "Original x against reconstructed Q(x) for a sample of the values, and \
                     the distribution of the error Q(x) − x.",
                );
        });
    }

    /// The main histogram with handles and markers; returns the clip in force after this
    /// frame's drag.
    fn histogram_tab_ui(
        &mut self,
        ui: &mut egui::Ui,
        input: &DistributionInput<'_>,
        codebook: Option<&[f32]>,
        commands: &mut Vec<DistributionCommand>,
    ) -> (f32, f32) {
        let data = input.data;
        let symmetric = is_symmetric(input);
        let linear = input.choice.scheme.is_linear();
        let stats = &data.scheme_stats.tensor;
        let clip_now = shown_clip(self.drag.clip.unwrap_or(input.clip), symmetric);
        let quantizer = input.choice.quantizer(clip_now, stats, codebook);
        self.grid_controls_ui(ui, quantizer.as_ref().ok());
        let bounds = self
            .drag
            .bounds
            .unwrap_or_else(|| x_bounds(&data.fine, &data.markers, Some(clip_now)));
        let height = (ui.available_height() - 240.0).clamp(160.0, 520.0);
        let response = histogram_plot_ui(
            ui,
            &HistogramPlot {
                id: "distribution_histogram",
                fine: &data.fine,
                log_counts: self.log_counts,
                quantizer: quantizer.as_ref().ok(),
                show_quantized: self.show_quantized,
                handles: linear.then_some(clip_now),
                range_lines: None,
                markers: &data.markers,
                x_bounds: bounds,
                height,
            },
        );
        let transform = response.transform;
        let response = if linear {
            response.response.on_hover_text(
                "Drag a red handle to move the clip range [rmin, rmax] (values outside are \
                 clipped to the end levels); double-click to go back to the calibration method; \
                 click a dashed marker to adopt that method's range.",
            )
        } else {
            response.response
        };
        self.last_plot_rect = Some(response.rect);
        self.last_transform = Some(transform);
        let pointer = PointerOnPlot::read(ui, &response);
        let new = interact(
            &mut self.drag,
            &pointer,
            &Scene {
                transform: &transform,
                handles: linear.then_some(clip_now),
                symmetric,
                bounds,
                markers: &data.markers,
            },
        );
        let clip = new
            .iter()
            .rev()
            .find_map(|c| match c {
                DistributionCommand::SetClip { lo, hi } => Some((*lo, *hi)),
                _ => None,
            })
            .unwrap_or(clip_now);
        commands.extend(new);
        let quantizer = if clip == clip_now {
            quantizer
        } else {
            input.choice.quantizer(clip, stats, codebook)
        };
        let estimate = quantizer
            .as_ref()
            .ok()
            .and_then(|q| data.fine.estimate_quantizer(q));
        figures_ui(ui, input, clip, linear, estimate.as_ref(), commands);
        self.markers_ui(ui, input, commands);
        clip
    }

    fn grid_controls_ui(&mut self, ui: &mut egui::Ui, quantizer: Option<&Quantizer>) {
        ui.horizontal(|ui| {
            ui.checkbox(&mut self.log_counts, "log counts")
                .on_hover_text(
                    "Plot log10(1 + count): the tails, where clipping happens, become visible.",
                );
            ui.checkbox(&mut self.show_quantized, "quantized histogram")
                .on_hover_text(
                    "Overlay the histogram after quantization: every value's mass moved to its \
                     reconstruction level Q(x).",
                );
            if let Some(q) = quantizer {
                let n = q.level_count();
                ui.label(RichText::new(level_count_text(n)).strong())
                    .on_hover_text(
                        "Reconstruction levels of the grid. Up to 64 in view are drawn as thin \
                         lines; denser grids are shown by the quantized histogram.",
                    );
            }
        });
    }

    fn markers_ui(
        &mut self,
        ui: &mut egui::Ui,
        input: &DistributionInput<'_>,
        commands: &mut Vec<DistributionCommand>,
    ) {
        let data = input.data;
        if data.markers.is_empty() {
            return;
        }
        let bits = input.choice.scheme.bits();
        let estimates = self.cache.marker_estimates(data, &input.choice).to_vec();
        ui.label(RichText::new(format!("calibration methods at {bits} bits (estimates)")).strong())
            .on_hover_text(
                "Each calibration method's clip range for this tensor, and the error the \
                 current grid would have with it (histogram estimate).",
            );
        egui::Grid::new("distribution_markers")
            .num_columns(5)
            .striped(true)
            .show(ui, |ui| {
                for (i, marker) in data.markers.iter().enumerate() {
                    ui.colored_label(marker_color(i), format!("— {}", marker.method));
                    ui.label(format!("[{:.5}, {:.5}]", marker.range.0, marker.range.1));
                    match estimates.get(i).copied().flatten() {
                        Some(e) => {
                            ui.label(format!("MSE {:.3e}", e.mse));
                            ui.label(format!("SQNR {:.2} dB", e.sqnr_db));
                        }
                        None => {
                            ui.label("—");
                            ui.label("—");
                        }
                    }
                    let current = !input.clip_is_manual && input.method_name == marker.method;
                    let button = ui
                        .add_enabled(
                            !current,
                            egui::Button::new(format!("use {}", marker.method)),
                        )
                        .on_hover_text(format!(
                            "Quantize with the {} clip range [rmin, rmax].",
                            marker.method
                        ));
                    if button.clicked() {
                        commands.push(DistributionCommand::AdoptMarker(marker.method.clone()));
                    }
                    ui.end_row();
                }
            });
    }

    fn channels_tab_ui(
        &mut self,
        ui: &mut egui::Ui,
        input: &DistributionInput<'_>,
        codebook: Option<&[f32]>,
    ) {
        let data = input.data;
        let n = data.channel_ranges.len();
        if n == 0 {
            ui.label("This tensor has no channel axis.");
            return;
        }
        let symmetric = is_symmetric(input);
        let tensor_clip = shown_clip(input.clip, symmetric);
        let stats = &data.scheme_stats.tensor;
        let per_tensor = input
            .choice
            .quantizer(tensor_clip, stats, codebook)
            .ok()
            .and_then(|q| data.fine.estimate_quantizer(&q));
        let per_channel = self.cache.per_channel(data, &input.choice, codebook);
        comparison_ui(ui, per_tensor.as_ref(), per_channel.as_ref(), input.exact);
        let height = (ui.available_height() * 0.4).clamp(140.0, 360.0);
        let response = channel_ranges_plot_ui(
            ui,
            &data.channel_ranges,
            self.selected_channel,
            tensor_clip,
            height,
        );
        let plot_response = response.response.on_hover_text(
            "Each bar spans one output channel's [min, max]; the dashed lines are the per-tensor \
             clip range. Click a bar to see that channel's histogram.",
        );
        self.last_plot_rect = Some(plot_response.rect);
        self.last_transform = Some(response.transform);
        if plot_response.clicked()
            && let Some(pos) = plot_response.interact_pointer_pos()
            && let Some(c) = channel_at(response.transform.value_from_position(pos).x, n)
        {
            self.selected_channel = Some(c);
        }
        ui.horizontal(|ui| {
            let mut channel = self.selected_channel.unwrap_or(0).min(n - 1);
            let label = ui.label("channel");
            let changed = ui
                .add(egui::DragValue::new(&mut channel).range(0..=n - 1))
                .labelled_by(label.id)
                .on_hover_text("The output channel whose histogram is shown below.")
                .changed();
            if changed || self.selected_channel.is_none() {
                self.selected_channel = Some(channel);
            }
        });
        let Some(c) = self.selected_channel.filter(|&c| c < n) else {
            return;
        };
        let Some(hist) = data.channel_histograms.get(c) else {
            ui.label("No histogram for this channel (no finite value).");
            return;
        };
        // Per channel (and no range by hand): the channel's own min-max; else the tensor's clip.
        let own = input.choice.per_channel && !input.clip_is_manual;
        let clip = if own {
            shown_clip(data.channel_ranges[c], symmetric)
        } else {
            tensor_clip
        };
        let channel_stats = if input.choice.per_channel {
            data.scheme_stats.channels.get(c).unwrap_or(stats)
        } else {
            stats
        };
        let quantizer = input.choice.quantizer(clip, channel_stats, codebook);
        let linear = input.choice.scheme.is_linear();
        let estimate = quantizer
            .as_ref()
            .ok()
            .and_then(|q| hist.estimate_quantizer(q));
        ui.label(RichText::new(format!("channel {c}: histogram")).strong());
        ui.label(format!(
            "range [{:.5}, {:.5}] · clip {} [{:.5}, {:.5}]{}",
            data.channel_ranges[c].0,
            data.channel_ranges[c].1,
            if own { "(its own)" } else { "(the tensor's)" },
            clip.0,
            clip.1,
            estimate
                .map(|e| format!(" · estimate: MSE {:.3e}, SQNR {:.2} dB", e.mse, e.sqnr_db))
                .unwrap_or_default()
        ));
        let height = (ui.available_height() - 8.0).clamp(120.0, 360.0);
        let bounds = x_bounds(hist, &[], Some(clip));
        histogram_plot_ui(
            ui,
            &HistogramPlot {
                id: "distribution_channel_histogram",
                fine: hist,
                log_counts: self.log_counts,
                quantizer: quantizer.as_ref().ok(),
                show_quantized: self.show_quantized,
                handles: None,
                range_lines: linear.then_some(clip),
                markers: &[],
                x_bounds: bounds,
                height,
            },
        );
    }

    fn reconstruction_tab_ui(
        &mut self,
        ui: &mut egui::Ui,
        input: &DistributionInput<'_>,
        codebook: Option<&[f32]>,
    ) {
        let clip = shown_clip(input.clip, is_symmetric(input));
        match input
            .choice
            .quantizer(clip, &input.data.scheme_stats.tensor, codebook)
        {
            Ok(q) => {
                let rec = reconstruct(&input.data.sample, &q);
                let height = (ui.available_height() - 40.0).clamp(160.0, 480.0);
                reconstruction_ui(ui, &rec, height);
                self.last_plot_rect = Some(ui.min_rect());
            }
            Err(e) => {
                ui.label(e);
            }
        }
    }
}

fn is_symmetric(input: &DistributionInput<'_>) -> bool {
    input.choice.scheme.is_symmetric()
}

/// "3 levels", "256 levels": the level count as the view shows it.
pub fn level_count_text(count: usize) -> String {
    if count == 1 {
        "1 level".into()
    } else {
        format!("{count} levels")
    }
}

fn header_ui(ui: &mut egui::Ui, input: &DistributionInput<'_>) {
    ui.horizontal_wrapped(|ui| {
        ui.heading(&input.tensor.name);
        ui.label(format!("{:?}", input.tensor.shape));
        let granularity = if input.choice.per_channel {
            "per channel"
        } else {
            "per tensor"
        };
        ui.label(format!("{} · {granularity}", input.choice.scheme))
            .on_hover_text("The scheme of this tensor (set in the settings panel).");
    });
}

/// The estimate at the clip range in force, the exact figures when the worker has them, and
/// where the range comes from.
fn figures_ui(
    ui: &mut egui::Ui,
    input: &DistributionInput<'_>,
    clip: (f32, f32),
    linear: bool,
    estimate: Option<&ErrorEstimate>,
    commands: &mut Vec<DistributionCommand>,
) {
    ui.horizontal_wrapped(|ui| {
        match estimate {
            Some(e) => ui.label(
                RichText::new(format!(
                    "estimate: MSE {:.4e} · SQNR {:.2} dB",
                    e.mse, e.sqnr_db
                ))
                .strong(),
            ),
            None => ui.label("estimate: —"),
        }
        .on_hover_text(
            "Expected quantization error from the fine histogram (its per-bin moments), \
             recomputed every frame while you drag. SQNR = 10·log10(E[x²] / MSE).",
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
fn comparison_ui(
    ui: &mut egui::Ui,
    per_tensor: Option<&ErrorEstimate>,
    per_channel: Option<&ErrorEstimate>,
    exact: Option<&ExactFigures>,
) {
    let db = |v: Option<f64>| {
        v.map(|v| format!("{v:.2} dB"))
            .unwrap_or_else(|| "—".into())
    };
    egui::Grid::new("distribution_granularity")
        .num_columns(3)
        .show(ui, |ui| {
            ui.label("");
            ui.label("per tensor").on_hover_text(
                "One grid (S, Z) for the whole tensor, from the clip range in force.",
            );
            ui.label("per channel")
                .on_hover_text("One grid per output channel, from that channel's min and max.");
            ui.end_row();
            ui.label("SQNR estimate");
            ui.label(db(per_tensor.map(|e| e.sqnr_db)));
            ui.label(db(per_channel.map(|e| e.sqnr_db)));
            ui.end_row();
            if let Some(exact) = exact {
                ui.label("SQNR exact");
                ui.label(db(exact.per_tensor_sqnr_db));
                ui.label(db(exact.per_channel_sqnr_db));
                ui.end_row();
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_counts_read_as_words() {
        assert_eq!(level_count_text(3), "3 levels");
        assert_eq!(level_count_text(1), "1 level");
    }
}
