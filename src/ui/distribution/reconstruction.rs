//! Original vs reconstructed values of the sample (a scatter on the staircase) and the
//! distribution of the error Q(x) − x. O(sample) per frame.

use egui::Color32;
use egui_plot::{Bar, BarChart, Line, Plot, PlotPoints, Points};

use crate::quant::Quantizer;

use super::plot_key::{KeyEntry, Swatch, plot_key_ui};

/// Bars of the error histogram.
pub const ERROR_BINS: usize = 64;

/// The sample quantized, and its error histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconstruction {
    /// (x, Q(x)) per sample value.
    pub pairs: Vec<[f64; 2]>,
    /// Left edge and width of the error bins, and their counts.
    pub error_lo: f64,
    pub error_width: f64,
    pub error_counts: Vec<u64>,
    /// Mean squared and largest absolute error over the sample.
    pub mse: f64,
    pub max_abs_error: f64,
}

/// Quantizes `sample` with `quantizer`.
pub fn reconstruct(sample: &[f32], quantizer: &Quantizer) -> Reconstruction {
    let apply = quantizer.applier();
    let pairs: Vec<[f64; 2]> = sample
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| [f64::from(x), f64::from(apply(x))])
        .collect();
    let errors = pairs.iter().map(|[x, q]| q - x);
    let (lo, hi) = errors
        .clone()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), e| {
            (a.min(e), b.max(e))
        });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 0.0) };
    let span = hi - lo;
    let width = if span > 0.0 {
        span / ERROR_BINS as f64
    } else {
        1e-6_f64.max(lo.abs() * 1e-3)
    };
    let lo = if span > 0.0 { lo } else { lo - 0.5 * width };
    let mut counts = vec![0u64; if span > 0.0 { ERROR_BINS } else { 1 }];
    let mut sum_sq = 0.0;
    for e in errors.clone() {
        let i = (((e - lo) / width) as usize).min(counts.len() - 1);
        counts[i] += 1;
        sum_sq += e * e;
    }
    let n = pairs.len().max(1) as f64;
    Reconstruction {
        mse: sum_sq / n,
        max_abs_error: errors.fold(0.0, |m, e| m.max(e.abs())),
        pairs,
        error_lo: lo,
        error_width: width,
        error_counts: counts,
    }
}

const SAMPLE_COLOR: Color32 = Color32::from_rgb(100, 140, 200);
const ERROR_COLOR: Color32 = Color32::from_rgb(200, 120, 20);

/// Draws the scatter and the error histogram side by side.
/// Returns the rect of the two plots.
pub fn reconstruction_ui(ui: &mut egui::Ui, rec: &Reconstruction, height: f32) -> egui::Rect {
    ui.label(format!(
        "{} sampled values: MSE {:.3e}, largest |Q(x) − x| {:.3e}",
        rec.pairs.len(),
        rec.mse,
        rec.max_abs_error
    ))
    .on_hover_text("An evenly strided sample of the tensor, quantized and de-quantized.");
    plot_key_ui(
        ui,
        &[
            KeyEntry::new("sample (x, Q(x))", SAMPLE_COLOR, Swatch::Fill),
            KeyEntry::new("Q(x) = x", Color32::GRAY, Swatch::Line),
            KeyEntry::new("error Q(x) − x", ERROR_COLOR, Swatch::Fill),
        ],
    );
    let width = (ui.available_width() * 0.5 - 8.0).max(120.0);
    let plots = ui.horizontal(|ui| {
        let (lo, hi) = rec
            .pairs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p[0]), b.max(p[0]))
            });
        Plot::new("reconstruction_scatter")
            .width(width)
            .height(height)
            .x_axis_label("original x")
            .y_axis_label("reconstructed Q(x)")
            .show(ui, |plot_ui| {
                if lo.is_finite() {
                    plot_ui.line(
                        Line::new("Q(x) = x", vec![[lo, lo], [hi, hi]])
                            .color(Color32::GRAY)
                            .allow_hover(false),
                    );
                }
                plot_ui.points(
                    Points::new("sample", PlotPoints::from(rec.pairs.clone()))
                        .radius(1.5)
                        .color(SAMPLE_COLOR),
                );
            });
        let bars: Vec<Bar> = rec
            .error_counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                Bar::new(rec.error_lo + (i as f64 + 0.5) * rec.error_width, n as f64)
                    .width(rec.error_width)
            })
            .collect();
        Plot::new("reconstruction_error")
            .width(width)
            .height(height)
            .x_axis_label("error Q(x) − x")
            .y_axis_label("count")
            .show(ui, |plot_ui| {
                plot_ui.bar_chart(BarChart::new("error", bars).color(ERROR_COLOR));
            });
    });
    plots.response.rect
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{IntGrid, LinearParams};

    #[test]
    fn the_error_of_a_linear_grid_stays_within_half_a_step() {
        // 3-bit symmetric on [−1, 1]: S = 1/3; unclipped values err by at most S/2.
        let p = LinearParams::from_range(-1.0, 1.0, IntGrid::new(3, true, false).unwrap(), true)
            .unwrap();
        let sample: Vec<f32> = (0..1000).map(|i| -1.0 + i as f32 * 0.002).collect();
        let rec = reconstruct(&sample, &Quantizer::Linear(p));
        assert_eq!(rec.pairs.len(), 1000);
        assert!(rec.max_abs_error <= f64::from(p.scale) * 0.5 + 1e-6);
        assert!(rec.max_abs_error > f64::from(p.scale) * 0.45);
        assert_eq!(rec.error_counts.iter().sum::<u64>(), 1000);
        // Uniform values: MSE ≈ S²/12.
        let s2 = f64::from(p.scale).powi(2) / 12.0;
        assert!((rec.mse - s2).abs() < 0.05 * s2, "{} vs {s2}", rec.mse);
    }

    #[test]
    fn an_exact_quantizer_has_one_error_bin() {
        let rec = reconstruct(&[0.5, -0.5, f32::NAN], &Quantizer::Binary { alpha: 0.5 });
        assert_eq!(rec.pairs.len(), 2);
        assert_eq!((rec.mse, rec.max_abs_error), (0.0, 0.0));
        assert_eq!(rec.error_counts, vec![2]);
    }
}
