//! "Why this threshold": the objectives the MSE and KL calibrators search over, drawn against
//! the clip value under the histogram with every calibration method's clip marked on them, and
//! the densities ACIQ assumes (a Gaussian and a Laplace fitted to the tensor's moments) drawn
//! over the histogram. The curves come from [`crate::diagnose::threshold_curves`], computed on
//! the worker with the rest of the view data (O(bins), once per tensor and bit width); drawing
//! them only reads.

use egui::Color32;
use egui_plot::{Line, LineStyle, PlotPoints, Points, VLine};

use crate::ui::fixed_plot::fixed_plot;

use crate::calib::CalibrationStats;
use crate::diagnose::{CurvePoint, ThresholdCurves, threshold_curves};

use super::CalibrationMarker;
use super::histogram_plot::marker_color;
use super::plot_key::{KeyEntry, Swatch};

/// Colours of the two curves and of the ACIQ densities.
const MSE_COLOR: Color32 = Color32::from_rgb(220, 140, 60);
const KL_COLOR: Color32 = Color32::from_rgb(150, 110, 220);
pub const GAUSS_COLOR: Color32 = Color32::from_rgb(230, 200, 70);
pub const LAPLACE_COLOR: Color32 = Color32::from_rgb(90, 200, 170);

/// What the view shows about a tensor's threshold: the curves and ACIQ's densities.
#[derive(Debug, Clone, PartialEq)]
pub struct WhyThreshold {
    pub curves: ThresholdCurves,
    pub densities: Option<AciqDensities>,
}

impl WhyThreshold {
    /// The curves at `bits` and the densities of `stats`; None when the statistics have no
    /// histogram or the bit width is out of the curves' range.
    pub fn of(stats: &CalibrationStats, bits: u32) -> Option<WhyThreshold> {
        Some(WhyThreshold {
            curves: threshold_curves(stats, bits.clamp(2, 16)).ok()?,
            densities: AciqDensities::of(stats),
        })
    }
}

/// The densities ACIQ assumes, with the moments it takes them from: two-sided, a Gaussian
/// N(μ, σ²) and a Laplace(μ, b = mean |x − μ|) over all values; one-sided (min ≥ 0), a
/// half-Gaussian of RMS σ and an exponential of mean b over the positive values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AciqDensities {
    pub one_sided: bool,
    /// Values the densities describe (all finite ones, or the positive ones).
    pub count: f64,
    pub mean: f64,
    pub sigma: f64,
    pub b: f64,
}

impl AciqDensities {
    /// From the statistics, as ACIQ reads them (None without values or with zero spread).
    pub fn of(stats: &CalibrationStats) -> Option<AciqDensities> {
        let (min, _) = stats.min_max()?;
        let d = if min >= 0.0 {
            let (n, mean, rms) = stats.positive_moments()?;
            AciqDensities {
                one_sided: true,
                count: n as f64,
                mean: 0.0,
                sigma: rms,
                b: mean,
            }
        } else {
            AciqDensities {
                one_sided: false,
                count: stats.finite_count() as f64,
                mean: stats.mean()?,
                sigma: stats.std()?,
                b: stats.mean_abs_deviation()?,
            }
        };
        (d.sigma > 0.0 && d.b > 0.0 && d.count > 0.0).then_some(d)
    }

    /// Expected values per unit of x at `x` under the Gaussian assumption.
    pub fn gauss(&self, x: f64) -> f64 {
        let z = (x - self.mean) / self.sigma;
        let pdf = (-0.5 * z * z).exp() / (self.sigma * (std::f64::consts::TAU).sqrt());
        if self.one_sided {
            if x < 0.0 { 0.0 } else { 2.0 * pdf * self.count }
        } else {
            pdf * self.count
        }
    }

    /// Expected values per unit of x at `x` under the Laplace assumption.
    pub fn laplace(&self, x: f64) -> f64 {
        if self.one_sided {
            if x < 0.0 {
                0.0
            } else {
                (-x / self.b).exp() / self.b * self.count
            }
        } else {
            (-(x - self.mean).abs() / self.b).exp() / (2.0 * self.b) * self.count
        }
    }

    /// Both densities as polylines over `[lo, hi]` in counts per bar of width `bar_width`
    /// (`log`: as log10(1 + count), like the bars).
    pub fn lines(&self, lo: f64, hi: f64, bar_width: f64, log: bool) -> [Vec<[f64; 2]>; 2] {
        const POINTS: usize = 400;
        let lo = if self.one_sided { lo.max(0.0) } else { lo };
        let at = |i: usize| lo + (hi - lo) * i as f64 / (POINTS - 1) as f64;
        let height = |count: f64| {
            let c = count * bar_width;
            if log { (1.0 + c).log10() } else { c }
        };
        [
            (0..POINTS)
                .map(|i| [at(i), height(self.gauss(at(i)))])
                .collect(),
            (0..POINTS)
                .map(|i| [at(i), height(self.laplace(at(i)))])
                .collect(),
        ]
    }
}

/// Each marker's clip as a magnitude threshold (the curves' x): max(|rmin|, |rmax|).
pub fn marker_clips(markers: &[CalibrationMarker]) -> Vec<(String, f64)> {
    markers
        .iter()
        .map(|m| {
            let t = m.range.0.abs().max(m.range.1.abs());
            (m.method.clone(), f64::from(t))
        })
        .collect()
}

/// What the curves plots drew on the last frame (for tests and the slide export).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrawnCurves {
    pub mse: Vec<[f64; 2]>,
    pub kl: Vec<[f64; 2]>,
    /// Each calibration method's clip as drawn (name, x).
    pub markers: Vec<(String, f64)>,
    pub rects: Vec<egui::Rect>,
}

/// The finite points of a curve; the MSE curve as log10 of its value (it spans decades).
fn points(curve: &[CurvePoint], log: bool) -> Vec<[f64; 2]> {
    curve
        .iter()
        .filter(|p| p.value.is_finite() && (!log || p.value > 0.0))
        .map(|p| [p.clip, if log { p.value.log10() } else { p.value }])
        .collect()
}

/// The key of the curves plots (drawn outside them).
pub fn curves_key(markers: &[CalibrationMarker]) -> Vec<KeyEntry> {
    let mut key = vec![
        KeyEntry::new("MSE curve", MSE_COLOR, Swatch::Line),
        KeyEntry::new("KL curve", KL_COLOR, Swatch::Line),
    ];
    for (i, m) in markers.iter().enumerate() {
        key.push(KeyEntry::new(
            m.method.clone(),
            marker_color(i),
            Swatch::Dashed,
        ));
    }
    key
}

/// The two curves side by side, `height` points tall, each with every method's clip marked
/// and its own minimum as a dot; returns what was drawn.
pub fn threshold_curves_ui(
    ui: &mut egui::Ui,
    why: &WhyThreshold,
    markers: &[CalibrationMarker],
    height: f32,
) -> DrawnCurves {
    let curves = &why.curves;
    let mut drawn = DrawnCurves {
        mse: points(&curves.mse, true),
        kl: points(&curves.kl, false),
        markers: marker_clips(markers),
        rects: Vec::new(),
    };
    let width = ((ui.available_width() - ui.spacing().item_spacing.x) / 2.0).max(120.0);
    let grid = if curves.one_sided {
        "unsigned"
    } else {
        "signed"
    };
    ui.horizontal(|ui| {
        let panels = [
            (
                "threshold_mse",
                "log10 Σ squared error",
                &drawn.mse,
                MSE_COLOR,
                "MSE curve",
                curves.mse_choice,
            ),
            (
                "threshold_kl",
                "KL(P||Q) nats",
                &drawn.kl,
                KL_COLOR,
                "KL curve",
                curves.kl_choice,
            ),
        ];
        for (id, y_label, line, color, name, choice) in panels {
            let response = fixed_plot(id)
                .width(width)
                .height(height)
                .x_axis_label(format!("clip |t| ({} bits, {grid} grid)", curves.bits))
                .y_axis_label(y_label)
                .show(ui, |plot_ui| {
                    plot_ui.line(
                        Line::new(name, PlotPoints::from(line.clone()))
                            .color(color)
                            .width(2.0)
                            .allow_hover(false),
                    );
                    for (i, (method, x)) in drawn.markers.iter().enumerate() {
                        plot_ui.vline(
                            VLine::new(method.clone(), *x)
                                .color(marker_color(i))
                                .style(LineStyle::dashed_loose())
                                .width(1.5)
                                .allow_hover(false),
                        );
                    }
                    let minimum = choice
                        .and_then(|c| line.iter().find(|p| p[0] == c))
                        .copied();
                    if let Some(p) = minimum {
                        plot_ui.points(
                            Points::new("minimum", vec![p])
                                .color(color)
                                .radius(4.0)
                                .allow_hover(false),
                        );
                    }
                });
            drawn.rects.push(response.response.rect);
        }
    });
    drawn
}

#[cfg(test)]
mod tests {
    use ndarray::ArrayD;

    use super::*;
    use crate::calib::ObserverConfig;

    #[test]
    fn densities_integrate_to_the_count() {
        let values: Vec<f32> = (0..20_000)
            .map(|i| ((i as f32 * 0.618).fract() - 0.5) * 4.0)
            .collect();
        let array = ArrayD::from_shape_vec(vec![values.len()], values).unwrap();
        let stats = CalibrationStats::of_tensor(array.view(), ObserverConfig::default());
        let d = AciqDensities::of(&stats).unwrap();
        assert!(!d.one_sided);
        // Riemann sums over ±12 σ.
        let (lo, hi, n) = (-24.0, 24.0, 48_000);
        let dx = (hi - lo) / n as f64;
        let sum = |f: &dyn Fn(f64) -> f64| {
            (0..n)
                .map(|i| f(lo + (i as f64 + 0.5) * dx) * dx)
                .sum::<f64>()
        };
        assert!((sum(&|x| d.gauss(x)) / 20_000.0 - 1.0).abs() < 1e-3);
        assert!((sum(&|x| d.laplace(x)) / 20_000.0 - 1.0).abs() < 1e-3);
        // Uniform on [−2, 2]: σ = 4/√12, b = 1.
        assert!((d.sigma - 4.0 / 12f64.sqrt()).abs() < 1e-3, "{d:?}");
        assert!((d.b - 1.0).abs() < 1e-2, "{d:?}");
    }

    #[test]
    fn one_sided_densities_cover_the_positive_values() {
        let values: Vec<f32> = (0..10_000)
            .map(|i| ((i % 100) as f32 - 40.0).max(0.0))
            .collect();
        let array = ArrayD::from_shape_vec(vec![values.len()], values).unwrap();
        let stats = CalibrationStats::of_tensor(array.view(), ObserverConfig::default());
        let d = AciqDensities::of(&stats).unwrap();
        assert!(d.one_sided);
        assert_eq!(d.count, 5_900.0);
        assert_eq!(d.gauss(-1.0), 0.0);
        assert_eq!(d.laplace(-1.0), 0.0);
        let lines = d.lines(-10.0, 60.0, 1.0, false);
        assert!(lines.iter().all(|l| l.iter().all(|p| p[0] >= 0.0)));
    }

    #[test]
    fn marker_clips_are_magnitudes() {
        let markers = [CalibrationMarker {
            method: "MSE".into(),
            range: (-0.5, 2.0),
        }];
        assert_eq!(marker_clips(&markers), vec![("MSE".to_string(), 2.0)]);
    }
}
