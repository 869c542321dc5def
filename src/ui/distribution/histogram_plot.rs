//! Draws one value histogram (linear or log counts) with the quantization grid over it: the
//! levels as thin lines (or the quantized histogram), ternary thresholds, the clip handles or a
//! read-only range, the calibration markers and ACIQ's assumed densities. Draws from borrowed
//! data only; the caller turns the returned response into commands.

use egui::Color32;
use egui_plot::{
    Bar, BarChart, Line, LineStyle, Plot, PlotBounds, PlotPoints, PlotResponse, VLine,
};

use crate::metrics::FineHistogram;
use crate::quant::Quantizer;

use super::CalibrationMarker;
use super::plot_key::{KeyEntry, Swatch};
use super::threshold::{AciqDensities, GAUSS_COLOR, LAPLACE_COLOR};

/// Most bars drawn for a histogram (fine bins are summed down to this many).
pub const DISPLAY_BINS: usize = 512;
/// Most level lines drawn; beyond this the grid is too dense to see.
pub const MAX_LEVEL_LINES: usize = 64;

/// Colour of the clip handles.
pub const HANDLE_COLOR: Color32 = Color32::from_rgb(230, 80, 60);
/// Colour of the histogram's bars.
pub const VALUES_COLOR: Color32 = Color32::from_rgb(100, 140, 200);
const LEVEL_COLOR: Color32 = Color32::from_rgba_premultiplied(150, 150, 150, 150);
const QUANTIZED_COLOR: Color32 = Color32::from_rgba_premultiplied(200, 120, 20, 150);
const THRESHOLD_COLOR: Color32 = Color32::from_rgb(120, 170, 90);

/// Colour of calibration marker `i`.
pub fn marker_color(i: usize) -> Color32 {
    const PALETTE: [Color32; 8] = [
        Color32::from_rgb(86, 180, 233),
        Color32::from_rgb(0, 158, 115),
        Color32::from_rgb(240, 228, 66),
        Color32::from_rgb(204, 121, 167),
        Color32::from_rgb(213, 94, 0),
        Color32::from_rgb(0, 114, 178),
        Color32::from_rgb(170, 170, 255),
        Color32::from_rgb(255, 170, 120),
    ];
    PALETTE[i % PALETTE.len()]
}

/// What one histogram plot shows.
pub struct HistogramPlot<'a> {
    pub id: &'a str,
    pub fine: &'a FineHistogram,
    pub log_counts: bool,
    pub quantizer: Option<&'a Quantizer>,
    /// Draw the quantized histogram (mass moved to the levels).
    pub show_quantized: bool,
    /// Draggable clip handles at these x (linear schemes of the main histogram).
    pub handles: Option<(f32, f32)>,
    /// A read-only range (a channel's clip range).
    pub range_lines: Option<(f32, f32)>,
    pub markers: &'a [CalibrationMarker],
    /// ACIQ's assumed densities, drawn over the bars.
    pub densities: Option<&'a AciqDensities>,
    /// Fixed x range of the plot.
    pub x_bounds: (f64, f64),
    pub height: f32,
}

/// The x range showing the histogram, the markers and `extra` (a clip range), padded.
pub fn x_bounds(
    fine: &FineHistogram,
    markers: &[CalibrationMarker],
    extra: Option<(f32, f32)>,
) -> (f64, f64) {
    let (lo, hi) = fine.range();
    let (mut lo, mut hi) = (f64::from(lo), f64::from(hi));
    let ranges = markers.iter().map(|m| m.range).chain(extra);
    for (a, b) in ranges {
        for v in [a, b].map(f64::from).into_iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    let pad = ((hi - lo) * 0.05).max(1e-6 * lo.abs().max(hi.abs()).max(1.0));
    (lo - pad, hi + pad)
}

/// Fewest bars drawn for a histogram with values.
pub const MIN_DISPLAY_BARS: usize = 8;

/// How many bars `count` values are drawn with: √n (so that a small tensor, 144 weights say,
/// shows a shape rather than a barcode of single values), between [`MIN_DISPLAY_BARS`] and
/// [`DISPLAY_BINS`].
pub fn display_bar_target(count: u64) -> usize {
    ((count as f64).sqrt().ceil() as usize).clamp(MIN_DISPLAY_BARS, DISPLAY_BINS)
}

/// Heights of the histogram summed down to about [`display_bar_target`] bars (at most
/// [`DISPLAY_BINS`]): (left edge, width, counts). O(bins).
pub fn display_bins(fine: &FineHistogram) -> (f64, f64, Vec<u64>) {
    let (lo, hi) = fine.range();
    let bins = fine.bin_count().max(1);
    let group = bins.div_ceil(display_bar_target(fine.count())).max(1);
    let mut counts = vec![0u64; bins.div_ceil(group)];
    for (i, n) in fine.counts().enumerate() {
        counts[i / group] += n;
    }
    let span = (f64::from(hi) - f64::from(lo)).max(0.0);
    let width = if span > 0.0 {
        span * group as f64 / bins as f64
    } else {
        // A constant tensor: one bar of nominal width.
        (f64::from(lo).abs() * 1e-3).max(1e-6)
    };
    let left = if span > 0.0 {
        f64::from(lo)
    } else {
        f64::from(lo) - 0.5 * width
    };
    (left, width, counts)
}

/// The share of the values in the tallest bar as drawn, when that bar is a spike that flattens
/// the rest in linear counts: it holds most of the values, or ten times the next bar (the
/// zeros of an activation after ReLU). None otherwise.
pub fn spike_share(fine: &FineHistogram) -> Option<f64> {
    let (_, _, mut counts) = display_bins(fine);
    let total: u64 = counts.iter().sum();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let (top, next) = (counts.first().copied()?, counts.get(1).copied()?);
    if total == 0 || next == 0 {
        return None;
    }
    let share = top as f64 / total as f64;
    (share > 0.5 || top >= 10 * next).then_some(share)
}

fn height_of(count: u64, log: bool) -> f64 {
    if log {
        (1.0 + count as f64).log10()
    } else {
        count as f64
    }
}

/// Draws the plot; returns egui_plot's response (with the transform of this frame).
pub fn histogram_plot_ui(ui: &mut egui::Ui, plot: &HistogramPlot<'_>) -> PlotResponse<()> {
    let (left, width, counts) = display_bins(plot.fine);
    let bars: Vec<Bar> = counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, &n)| {
            Bar::new(
                left + (i as f64 + 0.5) * width,
                height_of(n, plot.log_counts),
            )
            .width(width)
            .stroke(egui::Stroke::NONE)
        })
        .collect();
    let mut y_max = counts
        .iter()
        .map(|&n| height_of(n, plot.log_counts))
        .fold(1.0f64, f64::max);
    let quantized = match (plot.quantizer, plot.show_quantized) {
        (Some(q), true) => {
            let moved = plot.fine.quantized(q);
            let bar_width = quantized_bar_width(q, &moved, plot.x_bounds);
            // Summed onto levels, the counts are taller: rescale them to the same plot height,
            // so the overlay compares shapes.
            let top = moved
                .iter()
                .map(|&(_, n)| height_of(n, plot.log_counts))
                .fold(1.0f64, f64::max);
            let factor = y_max / top;
            let bars: Vec<Bar> = moved
                .iter()
                .map(|&(level, n)| {
                    Bar::new(level, height_of(n, plot.log_counts) * factor)
                        .width(bar_width)
                        .fill(QUANTIZED_COLOR)
                        .stroke(egui::Stroke::NONE)
                })
                .collect();
            Some(bars)
        }
        _ => None,
    };
    y_max *= 1.08;
    let densities = plot
        .densities
        .map(|d| d.lines(plot.x_bounds.0, plot.x_bounds.1, width, plot.log_counts));
    let levels = plot
        .quantizer
        .and_then(|q| q.levels_between(plot.x_bounds.0, plot.x_bounds.1, MAX_LEVEL_LINES));
    let thresholds = plot
        .quantizer
        .map(Quantizer::thresholds)
        .unwrap_or_default();
    let y_label = if plot.log_counts {
        "log10(1 + count)"
    } else {
        "count"
    };
    let (x0, x1) = plot.x_bounds;
    Plot::new(plot.id)
        .height(plot.height)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .allow_axis_zoom_drag(false)
        .show_grid([false, true])
        .y_axis_label(y_label)
        .show(ui, |plot_ui| {
            plot_ui.set_plot_bounds(PlotBounds::from_min_max([x0, 0.0], [x1, y_max]));
            plot_ui.bar_chart(
                BarChart::new("values", bars)
                    .color(VALUES_COLOR)
                    .allow_hover(false),
            );
            if let Some(bars) = quantized {
                plot_ui.bar_chart(
                    BarChart::new("quantized", bars)
                        .color(QUANTIZED_COLOR)
                        .allow_hover(false),
                );
            }
            if let Some([gauss, laplace]) = densities {
                for (name, color, points) in [
                    ("ACIQ Gaussian density", GAUSS_COLOR, gauss),
                    ("ACIQ Laplace density", LAPLACE_COLOR, laplace),
                ] {
                    plot_ui.line(
                        Line::new(name, PlotPoints::from(points))
                            .color(color)
                            .width(2.0)
                            .allow_hover(false),
                    );
                }
            }
            for level in levels.iter().flatten() {
                plot_ui.vline(
                    VLine::new("levels", *level)
                        .color(LEVEL_COLOR)
                        .width(1.0)
                        .allow_hover(false),
                );
            }
            for t in thresholds {
                plot_ui.vline(
                    VLine::new("±Δ (threshold)", t)
                        .color(THRESHOLD_COLOR)
                        .style(LineStyle::dotted_dense())
                        .width(1.5)
                        .allow_hover(false),
                );
            }
            for (i, marker) in plot.markers.iter().enumerate() {
                for x in [marker.range.0, marker.range.1] {
                    plot_ui.vline(
                        VLine::new(marker.method.clone(), f64::from(x))
                            .color(marker_color(i))
                            .style(LineStyle::dashed_loose())
                            .width(1.5)
                            .allow_hover(false),
                    );
                }
            }
            if let Some((lo, hi)) = plot.handles {
                for (name, x) in [("clip min", lo), ("clip max", hi)] {
                    plot_ui.vline(
                        VLine::new(name, f64::from(x))
                            .color(HANDLE_COLOR)
                            .width(3.0)
                            .allow_hover(false),
                    );
                }
            }
            if let Some((lo, hi)) = plot.range_lines {
                for x in [lo, hi] {
                    plot_ui.vline(
                        VLine::new("clip range", f64::from(x))
                            .color(HANDLE_COLOR)
                            .width(2.0)
                            .allow_hover(false),
                    );
                }
            }
        })
}

/// The key of `plot` (drawn outside the plot by [`super::plot_key::plot_key_ui`]): what each
/// colour means, in the order drawn.
pub fn histogram_key(plot: &HistogramPlot<'_>) -> Vec<KeyEntry> {
    let mut key = vec![KeyEntry::new("values", VALUES_COLOR, Swatch::Fill)];
    if plot.show_quantized && plot.quantizer.is_some() {
        key.push(KeyEntry::new("quantized", QUANTIZED_COLOR, Swatch::Fill));
    }
    let levels = plot
        .quantizer
        .and_then(|q| q.levels_between(plot.x_bounds.0, plot.x_bounds.1, MAX_LEVEL_LINES));
    if levels.is_some_and(|l| !l.is_empty()) {
        key.push(KeyEntry::new("levels", LEVEL_COLOR, Swatch::Line));
    }
    if plot.quantizer.is_some_and(|q| !q.thresholds().is_empty()) {
        key.push(KeyEntry::new(
            "±Δ threshold",
            THRESHOLD_COLOR,
            Swatch::Dashed,
        ));
    }
    if plot.densities.is_some() {
        key.push(KeyEntry::new(
            "ACIQ Gaussian density",
            GAUSS_COLOR,
            Swatch::Line,
        ));
        key.push(KeyEntry::new(
            "ACIQ Laplace density",
            LAPLACE_COLOR,
            Swatch::Line,
        ));
    }
    if plot.handles.is_some() || plot.range_lines.is_some() {
        key.push(KeyEntry::new("clip range", HANDLE_COLOR, Swatch::Line));
    }
    for (i, marker) in plot.markers.iter().enumerate() {
        key.push(KeyEntry::new(
            marker.method.clone(),
            marker_color(i),
            Swatch::Dashed,
        ));
    }
    key
}

/// Width of the quantized histogram's bars: 60 % of the smallest gap between levels, at least
/// a pixel-ish fraction of the view.
fn quantized_bar_width(q: &Quantizer, moved: &[(f64, u64)], x_bounds: (f64, f64)) -> f64 {
    let floor = (x_bounds.1 - x_bounds.0) / 400.0;
    let gap = match q {
        Quantizer::Linear(p) => f64::from(p.scale),
        _ => moved
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .fold(f64::INFINITY, f64::min),
    };
    if gap.is_finite() {
        (gap * 0.6).max(floor)
    } else {
        floor * 4.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_bins_keep_every_count() {
        let values: Vec<f32> = (0..100_000).map(|i| (i as f32 * 0.37).sin()).collect();
        let fine = FineHistogram::from_slice(&values).unwrap();
        assert_eq!(fine.bin_count(), 8192);
        let (left, width, counts) = display_bins(&fine);
        // √100 000 ≈ 317 bars wanted: groups of ⌈8192 / 317⌉ = 26 fine bins.
        assert_eq!(counts.len(), 8192usize.div_ceil(26));
        assert_eq!(counts.iter().sum::<u64>(), 100_000);
        let (lo, hi) = fine.range();
        assert!((left - f64::from(lo)).abs() < 1e-9);
        assert!((left + width * 8192.0 / 26.0 - f64::from(hi)).abs() < 1e-6);
    }

    #[test]
    fn small_tensors_draw_a_shape_not_a_barcode() {
        // 144 values (a 16×1×3×3 depthwise weight): 12 bars, not hundreds of single values.
        let values: Vec<f32> = (0..144).map(|i| (i as f32 * 0.731).sin()).collect();
        let fine = FineHistogram::from_slice(&values).unwrap();
        let (_, _, counts) = display_bins(&fine);
        assert_eq!(
            counts.len(),
            fine.bin_count().div_ceil(fine.bin_count().div_ceil(12))
        );
        assert!(counts.len() <= 12, "{}", counts.len());
        let filled = counts.iter().filter(|&&n| n > 0).count();
        assert!(filled >= 10, "{counts:?}");
        // Huge tensors stay at the cap; a spike shows as most of the mass in one bar.
        assert_eq!(display_bar_target(10_000_000), DISPLAY_BINS);
        let mut relu: Vec<f32> = vec![0.0; 9_000];
        relu.extend((0..1_000).map(|i| i as f32 / 100.0));
        let spike = FineHistogram::from_slice(&relu).unwrap();
        assert!(spike_share(&spike).unwrap() > 0.89);
        assert_eq!(spike_share(&fine), None);
        // 40 % zeros (a ReLU6 output of the sample MobileNet): no majority, still a spike.
        let mut relu: Vec<f32> = vec![0.0; 4_000];
        relu.extend((0..6_000).map(|i| i as f32 / 1000.0));
        let share = spike_share(&FineHistogram::from_slice(&relu).unwrap()).unwrap();
        assert!((share - 0.4).abs() < 0.01, "{share}");
    }

    #[test]
    fn bounds_include_markers_and_clip() {
        let fine = FineHistogram::from_slice(&[-1.0, 1.0]).unwrap();
        let markers = [CalibrationMarker {
            method: "KL".into(),
            range: (-3.0, 0.5),
        }];
        let (lo, hi) = x_bounds(&fine, &markers, Some((0.0, 2.0)));
        // [−3, 2] padded by 5 %.
        assert!(
            (lo + 3.25).abs() < 1e-9 && (hi - 2.25).abs() < 1e-9,
            "{lo} {hi}"
        );
    }
}
