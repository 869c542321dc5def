//! The quantization grid of the current choice as a [`Quantizer`]: its reconstruction levels
//! (drawn over the histogram), its staircase (applied to the sample), its O(bins) error
//! estimate from the fine histogram, and the quantized histogram (each bin's mass moved to its
//! level). Pure functions, no GUI.

use crate::metrics::{ErrorEstimate, FineHistogram, Staircase};
use crate::quant::config::WeightScheme;
use crate::quant::{IntGrid, LinearParams};

use super::QuantChoice;
use super::scheme_stats::ScaleStats;

/// One scalar quantizer, as the view draws and estimates it.
#[derive(Debug, Clone, PartialEq)]
pub enum Quantizer {
    /// r = S·(q − Z) on an integer grid.
    Linear(LinearParams),
    /// α·sign(x).
    Binary { alpha: f32 },
    /// 0 for |x| < Δ, +Wp above, −Wn below.
    Ternary { delta: f32, wp: f32, wn: f32 },
    /// Nearest of the codebook's values (sorted, distinct).
    Codebook(Vec<f32>),
}

impl Quantizer {
    /// The quantizer of `choice` with clip range `clip` (linear schemes), the scales `stats`
    /// (binary, ternary) and `codebook` (k-means; None while it is not computed). Errors as text.
    pub fn new(
        choice: &QuantChoice,
        clip: (f32, f32),
        stats: &ScaleStats,
        codebook: Option<&[f32]>,
    ) -> Result<Self, String> {
        match choice.scheme {
            WeightScheme::Linear { bits, symmetric } => Ok(Quantizer::Linear(linear_params(
                bits,
                symmetric,
                choice.unsigned,
                clip,
            )?)),
            WeightScheme::Binary { scaled, .. } => Ok(Quantizer::Binary {
                alpha: if scaled { stats.mean_abs } else { 1.0 },
            }),
            WeightScheme::Ternary { ttq } => {
                let t = stats.ternary(ttq);
                Ok(Quantizer::Ternary {
                    delta: t.delta,
                    wp: t.wp,
                    wn: t.wn,
                })
            }
            WeightScheme::KMeans { .. } => match codebook {
                Some(book) if !book.is_empty() => {
                    let mut levels: Vec<f32> =
                        book.iter().copied().filter(|v| v.is_finite()).collect();
                    levels.sort_by(f32::total_cmp);
                    levels.dedup();
                    if levels.is_empty() {
                        return Err("the codebook has no finite value".into());
                    }
                    Ok(Quantizer::Codebook(levels))
                }
                _ => Err("the k-means codebook is not computed yet".into()),
            },
        }
    }

    /// Number of reconstruction levels (the whole grid for linear schemes).
    pub fn level_count(&self) -> usize {
        match self {
            Quantizer::Linear(p) => p.grid.levels() as usize,
            Quantizer::Binary { .. } => 2,
            Quantizer::Ternary { .. } => 3,
            Quantizer::Codebook(levels) => levels.len(),
        }
    }

    /// The levels within [lo, hi], ascending, or None when there are more than `max`.
    pub fn levels_between(&self, lo: f64, hi: f64, max: usize) -> Option<Vec<f64>> {
        let inside = |v: &f64| *v >= lo && *v <= hi;
        let levels: Vec<f64> = match self {
            Quantizer::Linear(p) => {
                let (qa, qb) = (p.quantize(lo as f32), p.quantize(hi as f32));
                let (qa, qb) = (qa.min(qb), qa.max(qb));
                if (qb - qa) as usize >= max.saturating_add(2) {
                    return None;
                }
                (qa..=qb)
                    .map(|q| f64::from(p.dequantize(q)))
                    .filter(inside)
                    .collect()
            }
            Quantizer::Binary { alpha } => {
                vec![-f64::from(*alpha), f64::from(*alpha)]
            }
            Quantizer::Ternary { wp, wn, .. } => {
                vec![-f64::from(*wn), 0.0, f64::from(*wp)]
            }
            Quantizer::Codebook(levels) => levels.iter().map(|&v| f64::from(v)).collect(),
        };
        let levels: Vec<f64> = levels.into_iter().filter(inside).collect();
        (levels.len() <= max).then_some(levels)
    }

    /// The decision thresholds to draw read-only (ternary ±Δ), if any.
    pub fn thresholds(&self) -> Vec<f64> {
        match self {
            Quantizer::Ternary { delta, .. } => vec![-f64::from(*delta), f64::from(*delta)],
            _ => Vec::new(),
        }
    }

    /// The staircase of a non-linear quantizer (linear ones are applied and estimated directly).
    fn staircase(&self) -> Option<Staircase> {
        match self {
            Quantizer::Linear(_) => None,
            Quantizer::Binary { alpha } => Staircase::binary(*alpha).ok(),
            Quantizer::Ternary { delta, wp, wn } => Staircase::new(
                vec![-f64::from(*delta), f64::from(*delta)],
                vec![-f64::from(*wn), 0.0, f64::from(*wp)],
            )
            .ok(),
            Quantizer::Codebook(levels) => Staircase::nearest(levels).ok(),
        }
    }

    /// Expected error over the values of `fine`, in O(bins) (None if the scales are invalid).
    pub fn estimate(&self, fine: &FineHistogram) -> Option<ErrorEstimate> {
        match self {
            Quantizer::Linear(p) => Some(fine.estimate_linear(p)),
            _ => self.staircase().map(|s| fine.estimate(&s)),
        }
    }

    /// A function applying the quantizer to one value.
    pub fn applier(&self) -> impl Fn(f32) -> f32 + '_ {
        let staircase = self.staircase();
        move |x| match (self, &staircase) {
            (Quantizer::Linear(p), _) => p.fake_quantize(x),
            (_, Some(s)) => s.apply(x),
            (_, None) => x,
        }
    }
}

/// Linear parameters for `bits` on a signed grid (unsigned for non-negative activations) from
/// the clip range, as the quantizer computes them (the range is widened to include 0).
pub fn linear_params(
    bits: u32,
    symmetric: bool,
    unsigned: bool,
    clip: (f32, f32),
) -> Result<LinearParams, String> {
    let grid = IntGrid::new(bits, !unsigned, false).map_err(|e| e.to_string())?;
    let (lo, hi) = (clip.0.min(clip.1), clip.0.max(clip.1));
    LinearParams::from_range(lo, hi, grid, symmetric).map_err(|e| e.to_string())
}

/// The fine histogram's mass moved to the levels: (level, count) pairs, ascending, one per
/// level that receives values (each bin goes whole to the level of its centre). O(bins).
pub fn quantized_histogram(fine: &FineHistogram, quantizer: &Quantizer) -> Vec<(f64, u64)> {
    let apply = quantizer.applier();
    let (lo, hi) = fine.range();
    let bins = fine.bin_count().max(1);
    let width = (f64::from(hi) - f64::from(lo)) / bins as f64;
    let mut out: Vec<(f64, u64)> = Vec::new();
    for (i, n) in fine.counts().enumerate() {
        if n == 0 {
            continue;
        }
        let centre = f64::from(lo) + (i as f64 + 0.5) * width;
        let level = f64::from(apply(centre as f32));
        match out.last_mut() {
            Some((l, count)) if *l == level => *count += n,
            _ => out.push((level, n)),
        }
    }
    // Codebook and ternary levels are monotone in x, so equal levels are adjacent already;
    // sort and merge anyway for quantizers that are not.
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out.dedup_by(|b, a| {
        if a.0 == b.0 {
            a.1 += b.1;
            true
        } else {
            false
        }
    });
    out
}

/// "3 levels", "256 levels": the level count as the view shows it.
pub fn level_count_text(count: usize) -> String {
    if count == 1 {
        "1 level".into()
    } else {
        format!("{count} levels")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::distribution::scheme_stats::TernaryParams;

    fn choice(scheme: WeightScheme) -> QuantChoice {
        QuantChoice {
            scheme,
            per_channel: false,
            unsigned: false,
        }
    }

    #[test]
    fn linear_levels_follow_s_and_z() {
        // 2-bit asymmetric on [−1, 2]: S = 3/3 = 1, Z = round(−2 + 1) = −1, levels S·(q − Z)
        // for q = −2..1: −1, 0, 1, 2.
        let q = Quantizer::new(
            &choice(WeightScheme::Linear {
                bits: 2,
                symmetric: false,
            }),
            (-1.0, 2.0),
            &ScaleStats::default(),
            None,
        )
        .unwrap();
        assert_eq!(q.level_count(), 4);
        assert_eq!(
            q.levels_between(-5.0, 5.0, 64).unwrap(),
            vec![-1.0, 0.0, 1.0, 2.0]
        );
        // Only the levels in view, and None when too many.
        assert_eq!(q.levels_between(-0.5, 1.5, 64).unwrap(), vec![0.0, 1.0]);
        assert_eq!(q.levels_between(-5.0, 5.0, 3), None);
        let int8 = Quantizer::new(
            &choice(WeightScheme::Linear {
                bits: 8,
                symmetric: true,
            }),
            (-1.27, 0.5),
            &ScaleStats::default(),
            None,
        )
        .unwrap();
        assert_eq!(int8.level_count(), 256);
        assert_eq!(int8.levels_between(-1.3, 1.3, 64), None);
        let near_zero = int8.levels_between(-0.025, 0.025, 64).unwrap();
        // S = 1.27/127 = 0.01: levels −0.02 .. 0.02.
        assert_eq!(near_zero.len(), 5);
        assert!((near_zero[0] + 0.02).abs() < 1e-6);
    }

    #[test]
    fn ternary_binary_and_codebook_levels() {
        let stats = ScaleStats {
            mean_abs: 0.5,
            max_abs: 2.0,
            twn: TernaryParams {
                delta: 0.35,
                wp: 0.9,
                wn: 0.9,
            },
            ttq: TernaryParams {
                delta: 0.1,
                wp: 0.8,
                wn: 0.6,
            },
        };
        let twn = Quantizer::new(
            &choice(WeightScheme::Ternary { ttq: false }),
            (0.0, 0.0),
            &stats,
            None,
        )
        .unwrap();
        assert_eq!(twn.level_count(), 3);
        assert_eq!(
            twn.levels_between(-9.0, 9.0, 64).unwrap(),
            [-0.9f32, 0.0, 0.9].map(f64::from)
        );
        assert_eq!(twn.thresholds(), [-0.35f32, 0.35].map(f64::from));
        let apply = twn.applier();
        assert_eq!([-1.0, -0.3, 0.2, 0.4].map(&apply), [-0.9, 0.0, 0.0, 0.9]);
        let ttq = Quantizer::new(
            &choice(WeightScheme::Ternary { ttq: true }),
            (0.0, 0.0),
            &stats,
            None,
        )
        .unwrap();
        assert_eq!(ttq.applier()(-0.5), -0.6);
        let binary = Quantizer::new(
            &choice(WeightScheme::Binary {
                scaled: true,
                stochastic: false,
            }),
            (0.0, 0.0),
            &stats,
            None,
        )
        .unwrap();
        assert_eq!((binary.level_count(), binary.applier()(-3.0)), (2, -0.5));
        let kmeans = choice(WeightScheme::KMeans { bits: 2 });
        assert!(Quantizer::new(&kmeans, (0.0, 0.0), &stats, None).is_err());
        let book = Quantizer::new(
            &kmeans,
            (0.0, 0.0),
            &stats,
            Some(&[0.5, -1.0, 0.5, 2.0][..]),
        )
        .unwrap();
        assert_eq!(book.level_count(), 3);
        assert_eq!(book.applier()(1.3), 2.0);
    }

    #[test]
    fn quantized_histogram_keeps_the_mass_and_the_estimate_matches_the_closed_form() {
        // Uniform values on [−1, 1] under binary ±0.5: E(x − 0.5·sign x)² = ∫₀¹ (x − ½)² dx
        // = 1/12.
        let values: Vec<f32> = (0..20_000)
            .map(|i| -1.0 + (i as f32 + 0.5) / 10_000.0)
            .collect();
        let fine = FineHistogram::from_slice(&values).unwrap();
        let binary = Quantizer::Binary { alpha: 0.5 };
        let est = binary.estimate(&fine).unwrap();
        assert!((est.mse - 1.0 / 12.0).abs() < 1e-4, "{}", est.mse);
        let moved = quantized_histogram(&fine, &binary);
        assert_eq!(moved, vec![(-0.5, 10_000), (0.5, 10_000)]);
        assert_eq!(level_count_text(3), "3 levels");
    }
}
