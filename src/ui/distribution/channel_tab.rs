//! The per-channel tab: the per-tensor vs per-channel error, every channel's range as a bar,
//! and the selected channel's histogram zoomed to its own values with its clip handles: a drag
//! sets that channel's range by hand (the others keep theirs), a double-click or "reset channel
//! clip" drops it. Weights and activations alike: a channel clip of an activation makes it
//! quantized per channel along the axis its consumer defines, the other channels on the
//! tensor's range.

use egui::RichText;
use egui_plot::PlotTransform;

use super::channels_plot::{channel_at, channel_ranges_plot_ui, channels_key};
use super::clip_handles::shown_clip;
use super::figures::comparison_ui;
use super::histogram_plot::{HistogramPlot, histogram_plot_ui, x_bounds};
use super::interaction::{DragState, PointerOnPlot, Scene, interact};
use super::plot_key::plot_key_ui;
use super::view::{DistributionView, is_symmetric};
use super::{DistributionCommand, DistributionInput};

/// The drag of a channel's clip handle, and the channel it belongs to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChannelDrag {
    pub channel: Option<usize>,
    pub state: DragState,
}

/// `clip` drawn inside `bounds`: an end beyond the plot sits on its edge, where it can still be
/// grabbed.
pub fn handles_in_view(clip: (f32, f32), bounds: (f64, f64)) -> (f32, f32) {
    let (lo, hi) = (bounds.0 as f32, bounds.1 as f32);
    (clip.0.clamp(lo, hi), clip.1.clamp(lo, hi))
}

/// The drag commands of the main histogram turned into commands for `channel`.
fn for_channel(commands: Vec<DistributionCommand>, channel: usize) -> Vec<DistributionCommand> {
    commands
        .into_iter()
        .filter_map(|c| match c {
            DistributionCommand::SetClip { lo, hi } => {
                Some(DistributionCommand::SetChannelClip { channel, lo, hi })
            }
            DistributionCommand::ResetClip => Some(DistributionCommand::ResetChannelClip(channel)),
            _ => None,
        })
        .collect()
}

impl DistributionView {
    /// The per-channel tab.
    pub(super) fn channels_tab_ui(
        &mut self,
        ui: &mut egui::Ui,
        input: &DistributionInput<'_>,
        codebook: Option<&[f32]>,
        commands: &mut Vec<DistributionCommand>,
    ) {
        let data = input.data;
        let n = data.channel_ranges.len();
        if let Some(note) = &data.channel_note {
            ui.label(note);
        }
        if n == 0 {
            if data.channel_note.is_none() {
                ui.label("This tensor has no channel axis.");
            }
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
        // An activation is quantized per tensor unless channels are clipped by hand: its "per
        // channel" figure is what each channel's own calibrated range would give.
        let ranges = if input.tensor.role == "activation" && input.channel_clips.is_empty() {
            data.channel_ranges.clone()
        } else {
            input.channel_clip_ranges()
        };
        let per_channel = self
            .cache
            .per_channel(data, &input.choice, codebook, &ranges);
        comparison_ui(ui, per_tensor.as_ref(), per_channel.as_ref(), input.exact);
        let height =
            (self.fit_height.unwrap_or_else(|| ui.available_height()) * 0.4).clamp(140.0, 480.0);
        let ghost = self
            .ghost
            .as_ref()
            .filter(|g| g.tensor == input.tensor.name && g.before.len() == n);
        let response = channel_ranges_plot_ui(
            ui,
            &data.channel_ranges,
            self.selected_channel,
            tensor_clip,
            ghost.map(|g| g.before.as_slice()),
            height,
        );
        let plot_response = response.response.on_hover_text(
            "Each bar spans one output channel's [min, max]; the dashed lines are the per-tensor \
             clip range. Click a bar to see that channel's histogram and clip it by hand.",
        );
        self.last_plot_rect = Some(plot_response.rect);
        self.rects.plot = Some(plot_response.rect);
        self.last_transform = Some(response.transform);
        let key = channels_key(ghost.map(|g| g.label.as_str()));
        self.rects.key = Some(plot_key_ui(ui, &key));
        self.formulas_ui(ui, input, input.clip, codebook);
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
        self.channel_histogram_ui(ui, input, codebook, c, commands);
    }

    /// Channel `c`'s histogram over its own values, with its grid and clip handles.
    fn channel_histogram_ui(
        &mut self,
        ui: &mut egui::Ui,
        input: &DistributionInput<'_>,
        codebook: Option<&[f32]>,
        c: usize,
        commands: &mut Vec<DistributionCommand>,
    ) {
        let data = input.data;
        let Some(hist) = data.channel_histograms.get(c) else {
            ui.label(if data.channel_histograms.is_empty() {
                "No channel histograms are kept for this tensor."
            } else {
                "No histogram for this channel (no finite value)."
            });
            return;
        };
        if self.channel_drag.channel != Some(c) || self.channel_drag.state.handle.is_none() {
            self.channel_drag = ChannelDrag {
                channel: Some(c),
                state: DragState::default(),
            };
        }
        let symmetric = is_symmetric(input);
        let linear = input.choice.scheme.is_linear();
        let activation = input.tensor.role == "activation";
        let by_hand = input.channel_clips.contains_key(&c);
        let per_channel = input.quantized_per_channel();
        let clip = shown_clip(
            self.channel_drag
                .state
                .clip
                .unwrap_or(input.channel_clip(c)),
            symmetric,
        );
        let stats = &data.scheme_stats.tensor;
        let channel_stats = if per_channel {
            data.scheme_stats.channels.get(c).unwrap_or(stats)
        } else {
            stats
        };
        let quantizer = input.choice.quantizer(clip, channel_stats, codebook);
        let estimate = quantizer
            .as_ref()
            .ok()
            .and_then(|q| hist.estimate_quantizer(q));
        let source = if by_hand {
            "set by hand"
        } else if per_channel && input.choice.per_channel && !input.clip_is_manual {
            "its own"
        } else {
            "the tensor's"
        };
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(format!("channel {c}: histogram")).strong());
            ui.label(format!(
                "range [{:.5}, {:.5}] · clip ({source}) [{:.5}, {:.5}]{}",
                data.channel_ranges[c].0,
                data.channel_ranges[c].1,
                clip.0,
                clip.1,
                estimate
                    .map(|e| format!(" · estimate: MSE {:.3e}, SQNR {:.2} dB", e.mse, e.sqnr_db))
                    .unwrap_or_default()
            ));
            if by_hand
                && ui
                    .button("reset channel clip")
                    .on_hover_text(
                        "Drop this channel's hand-set range: it goes back to the range the \
                         tensor's settings give it (same as a double-click on its histogram).",
                    )
                    .clicked()
            {
                commands.push(DistributionCommand::ResetChannelClip(c));
            }
        });
        let height = (ui.available_height() - 8.0).clamp(120.0, 360.0);
        // Zoomed to the channel's own values (frozen while a handle is dragged).
        let bounds = self
            .channel_drag
            .state
            .bounds
            .unwrap_or_else(|| x_bounds(hist, &[], None));
        let handles = handles_in_view(clip, bounds);
        let response = histogram_plot_ui(
            ui,
            &HistogramPlot {
                id: "distribution_channel_histogram",
                fine: hist,
                log_counts: self.log_counts_for(hist),
                quantizer: quantizer.as_ref().ok(),
                show_quantized: self.show_quantized,
                handles: linear.then_some(handles),
                range_lines: None,
                markers: &[],
                densities: None,
                x_bounds: bounds,
                height,
            },
        );
        let transform = response.transform;
        let response = if linear {
            response.response.on_hover_text(if activation {
                "Drag a red handle to clip this channel by hand (the activation is then \
                 quantized per channel, the other channels on the tensor's range; QDQ exports \
                 it per axis); double-click to drop it."
            } else {
                "Drag a red handle to clip this channel by hand (the tensor is then quantized \
                 per channel, the other channels keep their ranges); double-click to drop it."
            })
        } else {
            response.response
        };
        self.channel_plot = Some((response.rect, transform));
        let pointer = PointerOnPlot::read(ui, &response);
        let new = interact(
            &mut self.channel_drag.state,
            &pointer,
            &Scene {
                transform: &transform,
                handles: linear.then_some(handles),
                clip,
                symmetric,
                bounds,
                markers: &[],
            },
        );
        commands.extend(for_channel(new, c));
    }

    /// Screen rect and transform of the selected channel's histogram drawn last.
    pub fn last_channel_plot(&self) -> Option<(egui::Rect, PlotTransform)> {
        self.channel_plot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_beyond_the_view_sit_on_its_edges() {
        assert_eq!(handles_in_view((-3.0, 0.5), (-1.0, 1.0)), (-1.0, 0.5));
        assert_eq!(handles_in_view((-0.2, 0.4), (-1.0, 1.0)), (-0.2, 0.4));
    }

    #[test]
    fn drag_commands_name_the_channel() {
        let out = for_channel(
            vec![
                DistributionCommand::SetClip { lo: -1.0, hi: 1.0 },
                DistributionCommand::ResetClip,
                DistributionCommand::AdoptMarker("KL".into()),
            ],
            3,
        );
        assert_eq!(
            out,
            vec![
                DistributionCommand::SetChannelClip {
                    channel: 3,
                    lo: -1.0,
                    hi: 1.0
                },
                DistributionCommand::ResetChannelClip(3),
            ]
        );
    }
}
