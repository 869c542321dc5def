//! [`DistributionView`]: the centre panel's state and its `show_ui`, which lays out the tabs
//! (histogram with grid, handles and markers; per-channel ranges; reconstruction), the error
//! figures (estimate and exact) and, in explain mode, the formulas.

use egui::RichText;
use egui_plot::PlotTransform;

use crate::metrics::ErrorEstimate;
use crate::quant::Quantizer;

use super::cache::ViewCache;
use super::channel_tab::ChannelDrag;
use super::clip_handles::shown_clip;
use super::explain::{explain_ui, formulas};
use super::figures::{EstimateOf, figures_ui};
use super::histogram_plot::{
    HistogramPlot, histogram_key, histogram_plot_ui, marker_color, spike_share, x_bounds,
};
use super::interaction::{DragState, PointerOnPlot, Scene, interact};
use super::plot_key::plot_key_ui;
use super::reconstruction::{reconstruct, reconstruction_ui};
use super::threshold::{DrawnCurves, curves_key, threshold_curves_ui};
use super::{DistributionCommand, DistributionInput};

/// The view's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Histogram,
    Channels,
    Reconstruction,
}

/// Where the parts of the view were laid out on the last frame (screen points): what the
/// layout tests check and the slide export crops to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewRects {
    /// The whole view.
    pub view: Option<egui::Rect>,
    /// The main plot (histogram, channel ranges or reconstruction).
    pub plot: Option<egui::Rect>,
    /// The plot's key (drawn outside the plot).
    pub key: Option<egui::Rect>,
    /// The error figures under the plot.
    pub figures: Option<egui::Rect>,
    /// Explain mode's formulas with live numbers.
    pub formulas: Option<egui::Rect>,
}

/// The "before" of a transform for the shown tensor: its per-channel ranges before, drawn as a
/// ghost behind the current bars of the per-channel plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Ghost {
    /// The weight tensor the ranges belong to.
    pub tensor: String,
    /// What the ghost shows, e.g. "before equalization".
    pub label: String,
    pub before: Vec<(f32, f32)>,
}

/// The view's own state (what is shown, the handle being dragged, the selected channel).
#[derive(Debug, Default)]
pub struct DistributionView {
    /// The height the view must fit in without scrolling (the visible centre); the histogram
    /// takes at least half of it. None: the height available.
    pub fit_height: Option<f32>,
    /// Ranges before a transform, for the shown tensor's per-channel plot.
    pub ghost: Option<Ghost>,
    pub(super) rects: ViewRects,
    /// Height of what follows the histogram (figures, key, formulas) on the last frame.
    below_height: Option<f32>,
    /// Explain mode's formulas in a column beside the tab (wide centres) or under the plot.
    formulas_beside: bool,
    /// The clip range the formulas show (the dragged one on the histogram tab).
    formula_clip: (f32, f32),
    /// The formulas' text size, shrunk from [`FORMULA_SIZE`] while they do not fit in the
    /// visible centre (None: full size).
    formula_size: Option<f32>,
    /// Screen y of the visible centre's bottom on this frame.
    visible_bottom: f32,
    /// Log counts as the user chose them; None: automatic, on when one bar is a spike (an
    /// activation after ReLU is a spike at zero in linear counts).
    pub log_counts: Option<bool>,
    pub selected_channel: Option<usize>,
    pub tab: Tab,
    /// Overlay the quantized histogram (mass moved to the levels).
    pub show_quantized: bool,
    /// Draw the Gaussian and Laplace densities ACIQ assumes over the histogram.
    pub show_densities: bool,
    /// Hide the "why this threshold" curves under the histogram.
    pub hide_threshold_curves: bool,
    /// What the curves plots drew on the last frame.
    drawn_curves: Option<DrawnCurves>,
    /// The tallest bar's share of the shown tensor when it is a spike (log counts on by
    /// themselves).
    spike_share: Option<f64>,
    drag: DragState,
    /// The drag of the selected channel's clip handles (per-channel tab).
    pub(super) channel_drag: ChannelDrag,
    pub(super) last_plot_rect: Option<egui::Rect>,
    pub(super) last_transform: Option<PlotTransform>,
    /// The selected channel's histogram drawn last: its rect and transform.
    pub(super) channel_plot: Option<(egui::Rect, PlotTransform)>,
    pub(super) cache: ViewCache,
}

/// Narrowest centre (points) that shows the formulas in a column beside the plots.
const BESIDE_MIN_WIDTH: f32 = 440.0;

/// The formulas' text size, and the smallest it shrinks to so that they fit.
const FORMULA_SIZE: f32 = 15.0;
const FORMULA_MIN_SIZE: f32 = 10.5;

/// Text size factor of explain mode.
const EXPLAIN_SCALE: f32 = 1.4;

impl DistributionView {
    /// Whether `fine` is drawn with log counts: as chosen, or automatically when one bar is a
    /// spike ([`spike_share`]).
    pub fn log_counts_for(&self, fine: &crate::metrics::FineHistogram) -> bool {
        self.log_counts
            .unwrap_or_else(|| spike_share(fine).is_some())
    }

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

    /// Where the parts of the view were laid out on the last frame.
    pub fn rects(&self) -> &ViewRects {
        &self.rects
    }

    /// Whether a clip handle (the tensor's or a channel's) is being dragged.
    pub fn is_dragging(&self) -> bool {
        self.drag.handle.is_some() || self.channel_drag.state.handle.is_some()
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
        if self.channel_drag.state.handle.is_none() {
            self.channel_drag.state.clip = None;
        }
        self.channel_plot = None;
        self.drawn_curves = None;
        self.spike_share = spike_share(&input.data.fine);
        let mut commands = Vec::new();
        self.rects = ViewRects::default();
        let view_top = ui.cursor().top();
        let fit = self.fit_height.unwrap_or_else(|| ui.available_height());
        self.visible_bottom = view_top + fit;
        let response = ui.scope(|ui| {
            if input.explain {
                for font in ui.style_mut().text_styles.values_mut() {
                    font.size *= EXPLAIN_SCALE;
                }
            }
            let codebook = self.cache.codebook(input.data, input.choice.scheme);
            header_ui(ui, input);
            ui.horizontal_wrapped(|ui| {
                self.tabs_ui(ui, input);
                if self.tab == Tab::Histogram {
                    ui.separator();
                    self.grid_checkboxes_ui(ui);
                }
            });
            self.formula_clip = input.clip;
            let width = ui.available_width();
            self.formulas_beside = input.explain && width >= BESIDE_MIN_WIDTH;
            if self.formulas_beside {
                let right = (width * 0.45).clamp(220.0, 600.0);
                let spacing = ui.spacing().item_spacing.x;
                let left = width - right - spacing;
                let height = ui.available_height();
                let origin = ui.cursor().min;
                let left_rect = egui::Rect::from_min_size(origin, egui::vec2(left, height));
                let tab = ui.scope_builder(egui::UiBuilder::new().max_rect(left_rect), |ui| {
                    // Clipped to the column's width and, as before, to the scrolled centre.
                    let mut clip = ui.clip_rect();
                    clip.min.x = clip.min.x.max(left_rect.min.x);
                    clip.max.x = clip.max.x.min(left_rect.max.x);
                    ui.set_clip_rect(clip);
                    self.tab_ui(ui, input, codebook.as_deref(), view_top, fit, &mut commands);
                });
                // The formulas get the room the tab left: never over it, even when something in
                // the tab was wider than its column.
                let formulas_left =
                    (origin.x + width - right).max(tab.response.rect.right() + spacing);
                // One point short of the centre's edge: the scroll area's fractional width
                // otherwise rounds past it.
                let right_rect = egui::Rect::from_min_max(
                    egui::pos2(formulas_left, origin.y),
                    egui::pos2(origin.x + width - 1.0, origin.y + height),
                );
                // Scroll only when the visible centre cannot hold them.
                let visible = (view_top + fit - origin.y).max(120.0);
                ui.scope_builder(egui::UiBuilder::new().max_rect(right_rect), |ui| {
                    egui::ScrollArea::vertical()
                        .id_salt("distribution_formulas")
                        .max_height(visible)
                        .auto_shrink([false, true])
                        .show(ui, |ui| {
                            let clip = self.formula_clip;
                            self.draw_formulas_ui(ui, input, clip, codebook.as_deref());
                        });
                });
            } else {
                self.tab_ui(ui, input, codebook.as_deref(), view_top, fit, &mut commands);
            }
        });
        self.rects.view = Some(response.response.rect);
        commands
    }

    /// The shown tab's content.
    fn tab_ui(
        &mut self,
        ui: &mut egui::Ui,
        input: &DistributionInput<'_>,
        codebook: Option<&[f32]>,
        view_top: f32,
        fit: f32,
        commands: &mut Vec<DistributionCommand>,
    ) {
        match self.tab {
            Tab::Histogram => {
                let frame = Frame { view_top, fit };
                self.histogram_tab_ui(ui, input, codebook, frame, commands);
            }
            Tab::Channels => self.channels_tab_ui(ui, input, codebook, commands),
            Tab::Reconstruction => {
                self.reconstruction_tab_ui(ui, input, codebook);
                self.formulas_ui(ui, input, input.clip, codebook);
            }
        }
    }

    /// Explain mode's formulas in the flow of the tab (unless they are drawn beside it).
    pub(super) fn formulas_ui(
        &mut self,
        ui: &mut egui::Ui,
        input: &DistributionInput<'_>,
        clip: (f32, f32),
        codebook: Option<&[f32]>,
    ) {
        self.formula_clip = clip;
        if !self.formulas_beside {
            self.draw_formulas_ui(ui, input, clip, codebook);
        }
    }

    /// Explain mode's formulas for the scheme on screen with the clip range `clip`.
    fn draw_formulas_ui(
        &mut self,
        ui: &mut egui::Ui,
        input: &DistributionInput<'_>,
        clip: (f32, f32),
        codebook: Option<&[f32]>,
    ) {
        if !input.explain {
            return;
        }
        let symmetric = is_symmetric(input);
        let stats = &input.data.scheme_stats.tensor;
        let shown = shown_clip(clip, symmetric);
        let room = self.visible_bottom - ui.cursor().top();
        let size = self.formula_size.unwrap_or(FORMULA_SIZE);
        let rect = match input.choice.quantizer(shown, stats, codebook) {
            Ok(q) => {
                let estimate = input.data.fine.estimate_quantizer(&q);
                explain_ui(
                    ui,
                    &formulas(&input.choice, shown, &q, stats, estimate.as_ref()),
                    size,
                )
            }
            Err(e) => ui.label(e).rect,
        };
        self.formula_size = fitted_formula_size(size, rect.height(), room);
        if self.formula_size != Some(size) {
            ui.ctx().request_repaint();
        }
        self.rects.formulas = Some(rect);
    }

    fn tabs_ui(&mut self, ui: &mut egui::Ui, input: &DistributionInput<'_>) {
        ui.scope(|ui| {
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
                .on_disabled_hover_text(
                    input
                        .data
                        .channel_note
                        .as_deref()
                        .unwrap_or("This tensor has no channel axis."),
                );
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
        frame: Frame,
        commands: &mut Vec<DistributionCommand>,
    ) {
        let data = input.data;
        let symmetric = is_symmetric(input);
        let linear = input.choice.scheme.is_linear();
        let stats = &data.scheme_stats.tensor;
        let clip_now = shown_clip(self.drag.clip.unwrap_or(input.clip), symmetric);
        let quantizer = input.choice.quantizer(clip_now, stats, codebook);
        let bounds = self
            .drag
            .bounds
            .unwrap_or_else(|| x_bounds(&data.fine, &data.markers, Some(clip_now)));
        let above = ui.cursor().top() - frame.view_top;
        let below = self
            .below_height
            .unwrap_or(if input.explain && !self.formulas_beside {
                320.0
            } else {
                120.0
            });
        // With the "why this threshold" curves under it, the histogram gives up more of the
        // centre so that the curves are on screen without scrolling; in explain mode (the
        // lecture's projector) the histogram keeps half and the formulas come first.
        let floor_share = if self.curves_shown(input) && !input.explain {
            0.35
        } else {
            0.5
        };
        let height = histogram_height(frame.fit, above, below, floor_share);
        let plot = HistogramPlot {
            id: "distribution_histogram",
            fine: &data.fine,
            log_counts: self.log_counts_for(&data.fine),
            quantizer: quantizer.as_ref().ok(),
            show_quantized: self.show_quantized,
            handles: linear.then_some(clip_now),
            range_lines: None,
            markers: &data.markers,
            densities: data
                .why
                .as_ref()
                .and_then(|w| w.densities.as_ref())
                .filter(|_| self.show_densities),
            x_bounds: bounds,
            height,
        };
        let key = histogram_key(&plot);
        let response = histogram_plot_ui(ui, &plot);
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
        self.rects.plot = Some(response.rect);
        self.last_transform = Some(transform);
        let pointer = PointerOnPlot::read(ui, &response);
        let new = interact(
            &mut self.drag,
            &pointer,
            &Scene {
                transform: &transform,
                handles: linear.then_some(clip_now),
                clip: clip_now,
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
        let dragged = (clip != shown_clip(input.clip, symmetric)).then_some(clip);
        let estimate = self.shown_estimate(input, dragged, quantizer.as_ref().ok(), codebook);
        self.rects.key = Some(plot_key_ui(ui, &key));
        let levels = quantizer.as_ref().ok().map(Quantizer::level_count);
        let figures = ui.scope(|ui| {
            let estimate = estimate.as_ref().map(|(e, of)| (e, *of));
            figures_ui(ui, input, clip, linear, levels, estimate, commands)
        });
        self.rects.figures = Some(figures.response.rect);
        self.formulas_ui(ui, input, clip, codebook);
        let below_bottom = if self.formulas_beside {
            figures.response.rect.bottom()
        } else {
            self.rects
                .formulas
                .unwrap_or(figures.response.rect)
                .bottom()
        };
        let curves_bottom = self.threshold_curves_ui(ui, input);
        let below_bottom = curves_bottom.map_or(below_bottom, |b| b.max(below_bottom));
        self.below_height = Some(below_bottom - response.rect.bottom());
        self.markers_ui(ui, input, commands);
    }

    /// The error estimate of the tensor as it will be quantized: per channel (each channel on
    /// its own grid, as the exact figure) when the tensor is quantized per channel, else one
    /// grid from `quantizer`. `dragged`: the tensor's clip range being set by hand this frame
    /// (which makes the tensor per tensor, unless channels have ranges set by hand).
    fn shown_estimate(
        &mut self,
        input: &DistributionInput<'_>,
        dragged: Option<(f32, f32)>,
        quantizer: Option<&Quantizer>,
        codebook: Option<&[f32]>,
    ) -> Option<(ErrorEstimate, EstimateOf)> {
        let per_channel = match dragged {
            None => input.quantized_per_channel(),
            Some(_) => !input.channel_clips.is_empty() && !input.data.channel_ranges.is_empty(),
        };
        if per_channel {
            let ranges: Vec<(f32, f32)> = match dragged {
                None => input.channel_clip_ranges(),
                Some(d) => (0..input.data.channel_ranges.len())
                    .map(|c| input.channel_clips.get(&c).copied().unwrap_or(d))
                    .collect(),
            };
            let e = self
                .cache
                .per_channel(input.data, &input.choice, codebook, &ranges)?;
            return Some((e, EstimateOf::Channels));
        }
        let e = input.data.fine.estimate_quantizer(quantizer?)?;
        Some((e, EstimateOf::Tensor))
    }

    /// Whether the "why this threshold" curves are drawn for `input`: the data has them, they
    /// are not hidden and the scheme is linear.
    fn curves_shown(&self, input: &DistributionInput<'_>) -> bool {
        input.data.why.is_some() && !self.hide_threshold_curves && input.choice.scheme.is_linear()
    }

    /// The "why this threshold" curves (when [`Self::curves_shown`]); returns the bottom of
    /// what it drew.
    fn threshold_curves_ui(
        &mut self,
        ui: &mut egui::Ui,
        input: &DistributionInput<'_>,
    ) -> Option<f32> {
        if !self.curves_shown(input) {
            return None;
        }
        let why = input.data.why.as_ref()?;
        ui.label(RichText::new("why this threshold").strong())
            .on_hover_text(
                "What the MSE and KL calibrators minimise, against the clip value |t|: the \
                 expected squared error of the grid clipping at t, and TensorRT's KL(P||Q). \
                 Dots: each curve's minimum (the method's choice); dashed: every method's clip.",
            );
        let height = (self.fit_height.unwrap_or(600.0) * 0.2).clamp(100.0, 220.0);
        let drawn = threshold_curves_ui(ui, why, &input.data.markers, height);
        let key = plot_key_ui(ui, &curves_key(&input.data.markers));
        self.drawn_curves = Some(drawn);
        Some(key.bottom())
    }

    /// What the "why this threshold" plots drew on the last frame (None when not drawn).
    pub fn last_threshold_curves(&self) -> Option<&DrawnCurves> {
        self.drawn_curves.as_ref()
    }

    fn grid_checkboxes_ui(&mut self, ui: &mut egui::Ui) {
        let (mut on, label) = match (self.log_counts, self.spike_share) {
            (Some(on), _) => (on, "log counts".to_string()),
            (None, Some(share)) => (
                true,
                format!(
                    "log counts (auto: one bar holds {:.0} % of the values)",
                    100.0 * share
                ),
            ),
            (None, None) => (false, "log counts".to_string()),
        };
        if ui
            .checkbox(&mut on, label)
            .on_hover_text(
                "Plot log10(1 + count): the tails, where clipping happens, become visible. On \
                 by itself when one bar is a spike that flattens the rest.",
            )
            .changed()
        {
            self.log_counts = Some(on);
        }
        ui.checkbox(&mut self.show_quantized, "quantized histogram")
            .on_hover_text(
                "Overlay the histogram after quantization: every value's mass moved to its \
                 reconstruction level Q(x).",
            );
        ui.checkbox(&mut self.show_densities, "ACIQ densities")
            .on_hover_text(
                "Draw the Gaussian and the Laplace density ACIQ assumes (fitted to the tensor's \
                 mean, standard deviation and mean absolute deviation) over the histogram.",
            );
        let mut curves = !self.hide_threshold_curves;
        if ui
            .checkbox(&mut curves, "why this threshold")
            .on_hover_text("Show the MSE and KL curves against the clip value under the histogram.")
            .changed()
        {
            self.hide_threshold_curves = !curves;
        }
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
        egui::ScrollArea::horizontal()
            .id_salt("distribution_markers_scroll")
            .show(ui, |ui| {
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
                            let current =
                                !input.clip_is_manual && input.method_name == marker.method;
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
                                commands
                                    .push(DistributionCommand::AdoptMarker(marker.method.clone()));
                            }
                            ui.end_row();
                        }
                    });
            });
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
                let rect = reconstruction_ui(ui, &rec, height);
                self.last_plot_rect = Some(rect);
                self.rects.plot = Some(rect);
            }
            Err(e) => {
                ui.label(e);
            }
        }
    }
}

/// The formulas' next text size: shrunk in proportion while they are taller than `room`, grown
/// back by 5 % steps while they take less than 85 % of it (text height grows about as the
/// square of its size, so the two rules do not oscillate). None: the full size.
fn fitted_formula_size(size: f32, height: f32, room: f32) -> Option<f32> {
    let next = if height > room + 0.5 && room > 0.0 {
        size * (room / height).max(0.5) * 0.98
    } else if height < 0.85 * room {
        size * 1.05
    } else {
        size
    };
    let next = next.clamp(FORMULA_MIN_SIZE, FORMULA_SIZE);
    (next < FORMULA_SIZE).then_some(next)
}

/// Where the view started and the height it must fit in (for the histogram's height).
#[derive(Debug, Clone, Copy)]
struct Frame {
    view_top: f32,
    fit: f32,
}

/// The histogram's height: what is left of `fit` after `above` and `below`, and never less than
/// `floor_share` of `fit` (on a projector the histogram is the picture: half of it, or a bit
/// more than a third when the threshold curves need room under it).
pub fn histogram_height(fit: f32, above: f32, below: f32, floor_share: f32) -> f32 {
    // The plot's own rect excludes its axes (about 28 points): ask for that much more.
    let floor = (floor_share * fit + 28.0).max(120.0);
    (fit - above - below - 8.0).clamp(floor, floor.max(900.0))
}

pub(super) fn is_symmetric(input: &DistributionInput<'_>) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_shrink_to_fit_and_grow_back() {
        // Too tall: shrunk at least in proportion.
        let shrunk = fitted_formula_size(FORMULA_SIZE, 460.0, 370.0).unwrap();
        assert!(shrunk <= FORMULA_SIZE * 370.0 / 460.0, "{shrunk}");
        // Never below the smallest size, whatever the room.
        assert_eq!(
            fitted_formula_size(FORMULA_SIZE, 900.0, 10.0),
            Some(FORMULA_MIN_SIZE)
        );
        // In the band: kept; much room: grows back to full size (None).
        assert_eq!(fitted_formula_size(12.0, 90.0, 100.0), Some(12.0));
        assert!(fitted_formula_size(12.0, 50.0, 100.0).unwrap() > 12.0);
        assert_eq!(fitted_formula_size(FORMULA_SIZE, 50.0, 100.0), None);
    }

    #[test]
    fn level_counts_read_as_words() {
        assert_eq!(level_count_text(3), "3 levels");
        assert_eq!(level_count_text(1), "1 level");
    }
}
