//! The per-channel range plot: one vertical bar per output channel from its min to its max (the
//! classic "per-channel ranges" picture), with the per-tensor clip range across it and, after
//! a transform, the ranges before it as wide grey ghosts behind (the value axis then fits the
//! current ranges, and ghosts reaching past it are cut off with their extent noted); a click
//! picks a channel. Also the per-channel error estimate (every channel on its own grid).

use egui::Color32;
use egui_plot::{Bar, BarChart, HLine, LineStyle, PlotPoint, PlotResponse, Text};

use crate::ui::fixed_plot::fixed_plot;

use crate::metrics::ErrorEstimate;

use super::plot_key::{KeyEntry, Swatch};
use super::{QuantChoice, TensorDistribution};

const BAR_COLOR: Color32 = Color32::from_rgb(100, 140, 200);
const SELECTED_COLOR: Color32 = Color32::from_rgb(230, 160, 40);
/// The "before" ranges of a transform, drawn as wide translucent bars behind the current ones.
const GHOST_COLOR: Color32 = Color32::from_rgba_premultiplied(90, 90, 90, 90);
const CLIP_COLOR: Color32 = Color32::from_rgb(230, 80, 60);
const GHOST_TEXT_COLOR: Color32 = Color32::from_rgb(160, 160, 160);

/// The key of the range plot (drawn outside it); `ghost_label` names the ghost bars, if any.
pub fn channels_key(ghost_label: Option<&str>) -> Vec<KeyEntry> {
    let mut key = vec![KeyEntry::new("channel min..max", BAR_COLOR, Swatch::Fill)];
    if let Some(label) = ghost_label {
        key.push(KeyEntry::new(label, GHOST_COLOR, Swatch::Fill));
    }
    key.push(KeyEntry::new(
        "per-tensor clip range",
        CLIP_COLOR,
        Swatch::Dashed,
    ));
    key
}

/// Draws the range plot; returns its response.
pub fn channel_ranges_plot_ui(
    ui: &mut egui::Ui,
    ranges: &[(f32, f32)],
    selected: Option<usize>,
    tensor_clip: (f32, f32),
    ghost: Option<&[(f32, f32)]>,
    height: f32,
) -> PlotResponse<()> {
    let ghost_bars: Vec<Bar> = ghost
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(c, &(lo, hi))| {
            Bar::new(c as f64, f64::from(hi) - f64::from(lo))
                .base_offset(f64::from(lo))
                .width(0.95)
                .fill(GHOST_COLOR)
                .stroke(egui::Stroke::NONE)
                .name(format!("channel {c} before"))
        })
        .collect();
    let bars: Vec<Bar> = ranges
        .iter()
        .enumerate()
        .map(|(c, &(lo, hi))| {
            let bar = Bar::new(c as f64, f64::from(hi) - f64::from(lo))
                .base_offset(f64::from(lo))
                .width(0.7)
                .name(format!("channel {c}"));
            if Some(c) == selected {
                bar.fill(SELECTED_COLOR)
            } else {
                bar.fill(BAR_COLOR)
            }
        })
        .collect();
    // With a ghost the value axis fits the current ranges (the story is how they even out);
    // ghost bars reaching past it are cut off and their extent written in the corner.
    let current = ranges
        .iter()
        .fold((tensor_clip.0, tensor_clip.1), |(lo, hi), &(a, b)| {
            (lo.min(a), hi.max(b))
        });
    let fitted = ghost.filter(|g| !g.is_empty()).map(|g| {
        let margin = 0.08 * f64::from(current.1 - current.0).max(1e-6);
        let axis = (f64::from(current.0) - margin, f64::from(current.1) + margin);
        let reach = g
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &(a, b)| {
                (lo.min(a), hi.max(b))
            });
        let cut = f64::from(reach.0) < axis.0 || f64::from(reach.1) > axis.1;
        (axis, cut.then_some(reach))
    });
    let id = if fitted.is_some() {
        "distribution_channel_ranges_with_ghost"
    } else {
        "distribution_channel_ranges"
    };
    fixed_plot(id)
        .height(height)
        .x_axis_label("output channel")
        .y_axis_label("value")
        .show(ui, |plot_ui| {
            if let Some(((lo, hi), cut)) = fitted {
                plot_ui.set_plot_bounds_y(lo..=hi);
                if let Some((reach_lo, reach_hi)) = cut {
                    let note = format!("grey bars cut off: before, {reach_lo:.3} … {reach_hi:.3}");
                    plot_ui.text(
                        Text::new("ghost extent", PlotPoint::new(-0.5, hi), note)
                            .color(GHOST_TEXT_COLOR)
                            .anchor(egui::Align2::LEFT_TOP),
                    );
                }
            }
            if !ghost_bars.is_empty() {
                plot_ui.bar_chart(
                    BarChart::new("before", ghost_bars)
                        .color(GHOST_COLOR)
                        .allow_hover(false),
                );
            }
            plot_ui.bar_chart(BarChart::new("channel min..max", bars).color(BAR_COLOR));
            for y in [tensor_clip.0, tensor_clip.1] {
                plot_ui.hline(
                    HLine::new("per-tensor clip range", f64::from(y))
                        .color(CLIP_COLOR)
                        .style(LineStyle::dashed_loose())
                        .allow_hover(false),
                );
            }
        })
}

/// The channel under plot x `x` (bars are centred on their index), if any.
pub fn channel_at(x: f64, channels: usize) -> Option<usize> {
    let c = x.round();
    ((x - c).abs() <= 0.45 && c >= 0.0 && (c as usize) < channels).then_some(c as usize)
}

/// The per-channel error estimate: each channel quantized on its own grid (linear: its clip
/// range in `ranges`, one per channel; binary/ternary: its own scales; k-means: `codebook`),
/// the channels' squared errors summed and divided by the tensor's count.
/// O(channels · channel bins).
pub fn per_channel_estimate(
    data: &TensorDistribution,
    choice: &QuantChoice,
    codebook: Option<&[f32]>,
    ranges: &[(f32, f32)],
) -> Option<ErrorEstimate> {
    if data.channel_histograms.is_empty() {
        return None;
    }
    let mut sum_sq = 0.0;
    let mut count = 0u64;
    for (c, h) in data.channel_histograms.iter().enumerate() {
        let range = *ranges.get(c)?;
        let stats = data
            .scheme_stats
            .channels
            .get(c)
            .unwrap_or(&data.scheme_stats.tensor);
        let q = choice.quantizer(range, stats, codebook).ok()?;
        let e = h.estimate_quantizer(&q)?;
        sum_sq += e.mse * e.count as f64;
        count += e.count;
    }
    if count == 0 {
        return None;
    }
    Some(ErrorEstimate::from_total(
        count,
        sum_sq,
        data.fine.signal_power(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::config::WeightScheme;
    use ndarray::ArrayD;

    #[test]
    fn channel_hit_testing() {
        assert_eq!(channel_at(2.1, 4), Some(2));
        assert_eq!(channel_at(2.5, 4), None);
        assert_eq!(channel_at(-0.2, 4), Some(0));
        assert_eq!(channel_at(4.0, 4), None);
        assert_eq!(channel_at(-1.0, 4), None);
    }

    #[test]
    fn per_channel_beats_per_tensor_when_channel_ranges_differ() {
        // Channel 0 spans ±0.1, channel 1 spans ±1: one grid (S = 1/7) for both leaves channel 0
        // an error as large as channel 1's; on its own grid (S = 0.1/7) it nearly vanishes.
        let mut values = Vec::new();
        for c in 0..2 {
            let scale = if c == 0 { 0.1 } else { 1.0 };
            values.extend((0..512).map(|i| scale * ((i as f32 * 0.731).sin())));
        }
        let t = ArrayD::from_shape_vec(vec![2, 512], values).unwrap();
        let data = TensorDistribution::prepare(t.view(), Some(0), Vec::new()).unwrap();
        let choice = QuantChoice {
            scheme: WeightScheme::Linear {
                bits: 4,
                symmetric: true,
            },
            per_channel: true,
            unsigned: false,
        };
        let per_channel = per_channel_estimate(&data, &choice, None, &data.channel_ranges).unwrap();
        let q = choice
            .quantizer(data.fine.range(), &data.scheme_stats.tensor, None)
            .unwrap();
        let per_tensor = data.fine.estimate_quantizer(&q).unwrap();
        assert_eq!(per_channel.count, 1024);
        // Channel 1's error is the same in both, so the per-channel MSE is about half.
        let ratio = per_channel.mse / per_tensor.mse;
        assert!(
            (0.35..0.75).contains(&ratio),
            "{per_channel:?} {per_tensor:?}"
        );
    }
}
